-- calls issue: richer outcomes, the send queue on anbu.calls, routine check-in plans and rounds,
-- and the 돌봄콜 line (help requests and recorded messages).

ALTER TABLE anbu.calls DROP CONSTRAINT calls_outcome_check;
ALTER TABLE anbu.calls ADD CONSTRAINT calls_outcome_check
    CHECK (outcome IN ('ok', 'help', 'no_answer', 'busy', 'failed', 'voicemail', 'unclear',
                       'unwell', 'emergency', 'call_back_later'));

-- The send queue is the calls table itself: a row waits until a dialler claims it
-- (FOR UPDATE SKIP LOCKED) with a token from anbu.call_rate. Rows from before this
-- migration were dialled at once.
ALTER TABLE anbu.calls
    ADD COLUMN priority          smallint NOT NULL DEFAULT 1,   -- 0 emergency, 1 alert, 2 routine
    ADD COLUMN not_before        timestamptz,
    ADD COLUMN dial_state        text NOT NULL DEFAULT 'dialled'
                                 CHECK (dial_state IN ('waiting', 'dialled')),
    ADD COLUMN claimed_at        timestamptz,
    ADD COLUMN dialled_at        timestamptz,
    ADD COLUMN attempt           integer NOT NULL DEFAULT 1,
    ADD COLUMN round_id          bigint,
    ADD COLUMN care_manager_id   bigint REFERENCES anbu.care_manager(id),
    ADD COLUMN message_ko        text;                           -- what a care-manager call says
CREATE INDEX calls_waiting ON anbu.calls (priority, not_before, id) WHERE dial_state = 'waiting';
CREATE INDEX calls_round ON anbu.calls (round_id) WHERE round_id IS NOT NULL;

-- One token bucket per Twilio account, refilled by the database clock so that every worker
-- process shares one calls-per-second budget.
CREATE TABLE anbu.call_rate (
    account      text PRIMARY KEY,
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL
);

-- Routine check-in plans: weekdays (ISO 1 = Monday) at a local time.
CREATE TABLE anbu.checkin_plans (
    id           bigserial PRIMARY KEY,
    resident_id  bigint NOT NULL REFERENCES anbu.resident(id),
    weekdays     smallint[] NOT NULL CHECK (weekdays <@ ARRAY[1,2,3,4,5,6,7]::smallint[]),
    local_time   time NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkin_plans_resident ON anbu.checkin_plans (resident_id) WHERE active;

-- One scheduled check-in (a plan's slot) and its attempts; its timer is next_action_at.
CREATE TABLE anbu.checkin_rounds (
    id              bigserial PRIMARY KEY,
    plan_id         bigint NOT NULL REFERENCES anbu.checkin_plans(id),
    resident_id     bigint NOT NULL REFERENCES anbu.resident(id),
    slot            timestamptz NOT NULL,        -- the planned time (UTC)
    state           text NOT NULL DEFAULT 'calling'
                    CHECK (state IN ('calling', 'ok', 'unwell', 'help', 'emergency', 'unreached')),
    attempts        integer NOT NULL DEFAULT 0,
    last_call_id    bigint REFERENCES anbu.calls(id),
    next_action_at  timestamptz,
    finished_at     timestamptz,
    reported_at     timestamptz,                 -- when alerts/intake took it
    UNIQUE (plan_id, slot)
);
CREATE INDEX checkin_rounds_due ON anbu.checkin_rounds (next_action_at)
    WHERE next_action_at IS NOT NULL;
CREATE INDEX checkin_rounds_unreported ON anbu.checkin_rounds (finished_at)
    WHERE reported_at IS NULL AND state <> 'ok';
CREATE INDEX checkin_rounds_resident ON anbu.checkin_rounds (resident_id, slot);

-- Calls to the 돌봄콜 line.
CREATE TABLE anbu.incoming_calls (
    id              bigserial PRIMARY KEY,
    twilio_sid      text NOT NULL UNIQUE,
    resident_id     bigint REFERENCES anbu.resident(id),   -- NULL: an unknown caller
    received_at     timestamptz NOT NULL,
    choice          text CHECK (choice IN ('help', 'message')),
    recording_url   text,
    transcript      text,
    outcome         text,                                   -- the transcript's meaning
    updated_at      timestamptz NOT NULL,
    reported_at     timestamptz                             -- when alerts/intake took it
);
CREATE INDEX incoming_calls_unreported ON anbu.incoming_calls (received_at)
    WHERE reported_at IS NULL AND choice IS NOT NULL;
