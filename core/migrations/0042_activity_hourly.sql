-- Hourly activity per home: what the timeline, the weekly report and Grafana read, never the
-- raw readings. Activity is what ingest counts for home_activity (detectors.summaries keeps
-- the rule): motion or contact at 1, a door or appliance changing, a plug stepping by 10 W
-- or more unless nightly learning marked it automatic. A plain table under both storage modes
-- (a continuous aggregate cannot look at the previous reading), kept by the worker from the
-- readings received since its last pass, so late and buffered readings land in their hour.
CREATE TABLE anbu.activity_hourly (
    resident_id  bigint NOT NULL REFERENCES anbu.resident(id),
    hour         timestamptz NOT NULL,        -- the UTC hour it starts
    activity     integer NOT NULL,            -- a person's doings
    motion       integer NOT NULL,
    door         integer NOT NULL,            -- the entrance door opening or closing
    power_steps  integer NOT NULL,
    readings     integer NOT NULL,            -- every reading, a person's or not
    rooms        text[] NOT NULL,             -- rooms with activity, sorted
    PRIMARY KEY (resident_id, hour)
);
CREATE INDEX activity_hourly_hour ON anbu.activity_hourly (hour);

-- How far each summary has read anbu.readings, by received_at.
CREATE TABLE anbu.summary_marks (
    name     text PRIMARY KEY,
    through  timestamptz NOT NULL
);

-- Readings are appended in receipt order: a BRIN index finds the ones received lately.
CREATE INDEX readings_received_brin ON anbu.readings USING brin (received_at);
