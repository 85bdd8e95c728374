-- Notifications are an outbox: the alert's transaction writes them (an SMS as 'pending'), and
-- SMS are sent after it commits, never inside it. Each row has a deterministic key, so a step
-- replayed (a retried pass, a second worker) writes nothing twice and texts nobody twice:
-- (alert, care manager, channel, ladder level, round), where `round` counts how often the top
-- of the ladder was told afresh after its reminders had stopped (alerts.notify_round).
--
-- An SMS goes pending -> sending (the attempt is recorded, and committed, before Twilio is
-- asked) -> sent | failed, or back to pending with a later next_attempt_at when the carrier
-- could not be reached. A row left 'sending' by a worker that died mid-send is reconciled
-- after a lease: sent again, with the interruption recorded (it may reach the manager twice,
-- never silently, and never not at all).
ALTER TABLE anbu.alerts ADD COLUMN notify_round integer NOT NULL DEFAULT 0;

ALTER TABLE anbu.notifications
    ADD COLUMN level            integer,
    ADD COLUMN round            integer NOT NULL DEFAULT 0,
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  timestamptz,
    ADD COLUMN sending_at       timestamptz,
    ADD COLUMN sent_at          timestamptz,
    ADD COLUMN error_code       text,
    ADD COLUMN error            text,
    ADD COLUMN interrupted      integer NOT NULL DEFAULT 0,
    ADD COLUMN updated_at       timestamptz;

-- The old key held created_at: two writes of the same step a moment apart were two rows.
DO $$
DECLARE old text;
BEGIN
    FOR old IN SELECT conname FROM pg_constraint
               WHERE conrelid = 'anbu.notifications'::regclass AND contype = 'u'
    LOOP
        EXECUTE format('ALTER TABLE anbu.notifications DROP CONSTRAINT %I', old);
    END LOOP;
END $$;

ALTER TABLE anbu.notifications
    ADD CONSTRAINT notifications_status
        CHECK (status IN ('pending', 'sending', 'sent', 'failed'));

-- Rows from before this migration have no level: they never conflict.
CREATE UNIQUE INDEX notifications_step
    ON anbu.notifications (alert_id, care_manager_id, channel, level, round);
CREATE INDEX notifications_outbox ON anbu.notifications (next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX notifications_sending ON anbu.notifications (sending_at)
    WHERE status = 'sending';
