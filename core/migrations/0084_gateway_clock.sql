-- A gateway whose clock is off (issue 18): readings are stamped by the gateway, so a clock
-- that drifts shifts every silence and every morning (a clock 40 minutes slow makes each
-- silence look 40 minutes longer), and one more than ingest's future tolerance ahead has every
-- reading refused as from the future; nothing said so. The worker's nightly job learns each
-- gateway's clock from a day of its readings (detectors.health_sweep.learn_clocks): per hour of
-- arrival the smallest delay from a reading's time to its arrival, then a low percentile over
-- the day's hours (the freshest hours: a backlog or a batching gateway's quiet night leaves it
-- alone); and from the day's dead letters, whether its readings were refused as from the
-- future. A table of its own, not columns of anbu.gateway: the nightly write must not lock the
-- rows ingest updates with every batch.
CREATE TABLE anbu.gateway_clock (
    gateway_id  text PRIMARY KEY REFERENCES anbu.gateway(id) ON DELETE CASCADE,
    lag_s       double precision NOT NULL,  -- + behind (or its readings arrive that late), - ahead
    refused     boolean NOT NULL,           -- its readings were refused as from the future
    learned_at  timestamptz NOT NULL,
    nights_off  integer NOT NULL,           -- nights in a row found off
    off_since   timestamptz                 -- off two nights in a row since (NULL: not off)
);
