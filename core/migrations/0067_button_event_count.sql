-- A button's own count of its events (Shelly Gen1 `input_event` `event_cnt`, issue 20): a mains
-- Gen1 device republishes its last event every ~30 s with the same count, so a value whose count
-- equals the stored one is a repeat, not a press. Kept here, not in a worker's memory, so that a
-- worker's restart neither loses a real press nor reads a repeat as one (ingest.presses).
-- event_at is the reading time of that count's event: a message no newer is one already judged
-- (a redelivery). Both are NULL only inside the transaction that first meets the sensor. A plain
-- table: the same on PostgreSQL and TimescaleDB.
CREATE TABLE IF NOT EXISTS anbu.button_event_count (
    sensor_id    bigint PRIMARY KEY REFERENCES anbu.sensor(id) ON DELETE CASCADE,
    event_count  bigint,
    event_at     timestamptz,
    updated_at   timestamptz NOT NULL
);
