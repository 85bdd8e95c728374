-- Latest state of every sensor, written by ingest in the same transaction as the readings.
-- Detectors read it (open intervals, device health) instead of the raw readings.
CREATE TABLE anbu.sensor_state (
    sensor_id        bigint PRIMARY KEY REFERENCES anbu.sensor(id),
    resident_id      bigint NOT NULL REFERENCES anbu.resident(id),
    value            double precision NOT NULL,  -- latest primary value (1/0, or watts)
    since            timestamptz NOT NULL,       -- when `value` took its current value
    last_reading_at  timestamptz NOT NULL,       -- newest reading of any kind from this sensor
    battery          real,                       -- percent, when the device reports it
    link_quality     real,                       -- vendor link quality, when reported
    online           boolean,                    -- device availability (LWT), when reported
    updated_at       timestamptz NOT NULL
);
CREATE INDEX sensor_state_resident ON anbu.sensor_state (resident_id);
