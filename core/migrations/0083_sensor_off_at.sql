-- A sensor that repeats itself (issue 18): a motion or contact sensor's latest "off" (0).
-- A repeated "on" (no "off" between) from a sensor that reported an "off" in the day before
-- it and comes 4 minutes or more after the "on" before is the device re-reporting its state (a
-- Zigbee device at its maximum reporting interval, a gateway republishing, a PIR stuck on),
-- not someone new (core.domain.repeat_is_nobody): before, a PIR re-sending 1 every ten minutes
-- kept a fallen resident's home "active" for ever.
-- NULL: no "off" seen since this column came. Nothing is filled in here (that would read every
-- sensor's history under this table's lock, with ingest waiting): ingest records the next
-- "off" of each sensor, and until then reads a sensor's last stored readings when it must.
ALTER TABLE anbu.sensor_state ADD COLUMN off_at timestamptz;
