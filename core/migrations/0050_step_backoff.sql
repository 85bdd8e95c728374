-- One failing unit must not block the others (issue 13). An alert's step or a routine
-- check-in round's step that raises is rolled back alone (a savepoint), counted here and put
-- off for a growing, capped delay (`step_retry_at`), while the pass goes on with the others;
-- the alert's audit says why. A step that succeeds clears both columns.
-- alerts/ writes the alerts' pair, calls/ the rounds' pair.
ALTER TABLE anbu.alerts
    ADD COLUMN step_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN step_retry_at timestamptz;

ALTER TABLE anbu.checkin_rounds
    ADD COLUMN step_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN step_retry_at timestamptz;
