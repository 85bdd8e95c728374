-- Detection, live = offline (issue 18): how long an open interval of this sensor (a bed or seat
-- mat pressed, a door left open) counts as a person there, learned nightly with the routine
-- (detectors.learning's hold, seconds). NULL: nothing learned yet, the fixed open hold applies
-- (ANBU_INACTIVITY_OPEN_HOLD_HOURS), as in the offline replay's grace period. The live sweep
-- starts a silence when the last such hold runs out, as `anbu detect` does.
ALTER TABLE anbu.sensor ADD COLUMN IF NOT EXISTS hold_s real CHECK (hold_s IS NULL OR hold_s >= 0);
