-- The routine check-in call as a short conversation (issue 19): what the resident answered to
-- each question, and the needs they stated, which become service requests (연계 요청) in their
-- dong's queue, apart from alerts.

-- One row per call and question: the answer as understood, with how sure that was. `speech`
-- (the resident's words) is personal data, cleared with the call's own speech by retention.
CREATE TABLE anbu.call_answers (
    call_id      bigint NOT NULL REFERENCES anbu.calls(id),
    question     text NOT NULL,          -- the script's question id (meal, sleep, ...)
    resident_id  bigint NOT NULL REFERENCES anbu.resident(id),
    label        text NOT NULL,          -- yes / no, good / so_so / bad, a need, unclear,
                                         -- end (the resident ended the call), person
    confidence   real NOT NULL,
    tries        smallint NOT NULL DEFAULT 1,  -- 2: asked again in simpler words
    digits       text,
    speech       text,
    answered_at  timestamptz NOT NULL,
    reported_at  timestamptz,            -- a need taken into the dong's queue (alerts/intake)
    PRIMARY KEY (call_id, question)
);
CREATE INDEX call_answers_resident ON anbu.call_answers (resident_id, answered_at);
CREATE INDEX call_answers_needs ON anbu.call_answers (answered_at)
    WHERE reported_at IS NULL
      AND label IN ('meals', 'escort', 'cleaning', 'visit', 'other', 'person');

-- A need the resident stated on a call (or their wish to talk to a person: 'talk'), taken from
-- call_answers by alerts/intake, the only writer: the care manager accepts it, links it to a
-- provider and closes it. One per call and question.
CREATE TABLE anbu.service_requests (
    id            bigserial PRIMARY KEY,
    resident_id   bigint NOT NULL REFERENCES anbu.resident(id),
    call_id       bigint REFERENCES anbu.calls(id),
    question      text,
    category      text NOT NULL
                  CHECK (category IN ('meals', 'escort', 'cleaning', 'visit', 'talk', 'other')),
    words         text,                  -- the resident's own words: personal data
    state         text NOT NULL DEFAULT 'open'
                  CHECK (state IN ('open', 'accepted', 'linked', 'closed')),
    provider      text,                  -- who the need was passed on to (연계 기관)
    note          text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    accepted_by   bigint REFERENCES anbu.care_manager(id),
    accepted_at   timestamptz,
    linked_at     timestamptz,
    closed_by     bigint REFERENCES anbu.care_manager(id),
    closed_at     timestamptz,
    UNIQUE (call_id, question)
);
CREATE INDEX service_requests_resident ON anbu.service_requests (resident_id, created_at);
CREATE INDEX service_requests_open ON anbu.service_requests (created_at, id)
    WHERE state <> 'closed';
