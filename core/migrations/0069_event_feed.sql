-- The events the city's systems read (GET /api/v1/events?after=SEQ; issue 22), in the order
-- they were published: alert events copied from anbu.alert_events by one copier at a time
-- (a transaction-level advisory lock), each once (event_id unique). seq is given at copy
-- time, so a reader that has seen seq N never later finds a smaller one. alert_events.id
-- cannot serve: it is taken at insert, and a transaction holding a lower id may commit after
-- one holding a higher id, which a reader polling "after the last id" would never see.
-- The sequence keeps CACHE 1 (the default): a cache per session would hand out seqs out of
-- commit order.
CREATE TABLE anbu.event_feed (
    seq           bigserial PRIMARY KEY,
    event_id      bigint NOT NULL UNIQUE REFERENCES anbu.alert_events(id),
    published_at  timestamptz NOT NULL
);
