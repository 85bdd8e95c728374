-- Detectors (device health, site incidents): what the health sweep learns and what it opens.

-- Each sensor's usual cadence, learned nightly from anbu.readings (detectors.health).
CREATE TABLE anbu.sensor_cadence (
    sensor_id   bigint PRIMARY KEY REFERENCES anbu.sensor(id),
    learned_at  timestamptz NOT NULL,     -- learned from readings strictly before this
    readings    integer NOT NULL,         -- how many readings the window held
    max_gap_s   double precision          -- longest gap between two readings in the window
);

-- A site incident: many gateways offline within minutes (power cut, broker or network outage).
-- One row instead of one alert per home; `details.suppressed` lists the gateways whose own
-- gateway_offline / unknown_status findings the incident held back, and why.
CREATE TABLE anbu.incidents (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    gateways    integer NOT NULL,
    dong_codes  text[] NOT NULL,
    reason_ko   text NOT NULL,
    reason_en   text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL
);
-- At most one open incident of a kind at a time.
CREATE UNIQUE INDEX incidents_one_open ON anbu.incidents (kind) WHERE ended_at IS NULL;
CREATE INDEX incidents_started ON anbu.incidents (started_at);
