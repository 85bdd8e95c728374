-- Detection, live = offline (issue 18): how long an open interval of this sensor (a bed or seat
-- mat pressed, a door left open) counts as a person there, learned nightly with the routine
-- (detectors.learning's hold, seconds). NULL: nothing learned yet. In grace the fixed open hold
-- applies only offline; the live sweep holds nothing in grace (a door left open would hide a
-- fall). The live sweep starts a silence when the last such hold runs out, as `anbu detect` does.
ALTER TABLE anbu.sensor ADD COLUMN IF NOT EXISTS hold_s real CHECK (hold_s IS NULL OR hold_s >= 0);
