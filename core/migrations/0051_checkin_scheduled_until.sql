-- Routine check-in slots are never skipped after an outage (issue 13). Each plan keeps how far
-- its slots have been turned into rounds (`scheduled_until`), advanced in the transaction that
-- inserts them; the next tick schedules every slot since, however long no worker ran. A slot
-- found too late to call (its local day is over) is still recorded: a round in state 'missed',
-- finished, with an event saying why. A slot called late gets an event saying how late.
-- NULL: a plan never scheduled (it starts from calls.checkins.LOOKBACK before the first tick).
ALTER TABLE anbu.checkin_plans ADD COLUMN scheduled_until timestamptz;

ALTER TABLE anbu.checkin_rounds DROP CONSTRAINT checkin_rounds_state_check;
ALTER TABLE anbu.checkin_rounds ADD CONSTRAINT checkin_rounds_state_check
    CHECK (state IN ('calling', 'ok', 'unwell', 'help', 'emergency', 'unreached', 'missed'));

-- Append-only: why a round was not called on time (calls/ writes it; Korean first).
CREATE TABLE anbu.checkin_round_events (
    id         bigserial PRIMARY KEY,
    round_id   bigint NOT NULL REFERENCES anbu.checkin_rounds(id),
    at         timestamptz NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('missed', 'late')),
    reason_ko  text NOT NULL,
    reason_en  text NOT NULL,
    UNIQUE (round_id, kind)
);
