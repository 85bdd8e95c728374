-- What the alert timer needs to know about its check-in calls and its place on the ladder.
ALTER TABLE anbu.alerts
    ADD COLUMN last_call_id      bigint REFERENCES anbu.calls(id),
    ADD COLUMN awaiting_call     boolean NOT NULL DEFAULT false,
    ADD COLUMN escalation_level  integer NOT NULL DEFAULT 0;
CREATE INDEX alerts_awaiting ON anbu.alerts (last_call_id) WHERE awaiting_call;
