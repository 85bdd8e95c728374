-- Ingest (issue 4): what sensor_state needs to be maintained from any dialect.
-- value_at: the time of the reading that holds `value` (out-of-order readings don't move it);
-- energy_kwh: a meter's cumulative counter, a secondary reading like battery.
ALTER TABLE anbu.sensor_state ADD COLUMN value_at timestamptz;
ALTER TABLE anbu.sensor_state ADD COLUMN energy_kwh double precision;
-- `anbu deadletters replay` walks the letters not yet replayed.
CREATE INDEX dead_letters_pending ON anbu.dead_letters (received_at) WHERE replayed_at IS NULL;
