-- Latest activity per home, dead letters, findings, alerts and their audit, calls, notifications.

CREATE TABLE anbu.home_activity (
    resident_id       bigint PRIMARY KEY REFERENCES anbu.resident(id),
    last_activity_at  timestamptz NOT NULL,   -- any sign of a person
    last_motion_at    timestamptz,
    last_door_at      timestamptz,
    last_power_at     timestamptz,
    last_room         text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX home_activity_last ON anbu.home_activity (last_activity_at);

CREATE TABLE anbu.dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    reason       text NOT NULL,
    replayed_at  timestamptz
);
CREATE INDEX dead_letters_received ON anbu.dead_letters (received_at);

CREATE TABLE anbu.findings (
    id           bigserial PRIMARY KEY,
    resident_id  bigint NOT NULL REFERENCES anbu.resident(id),
    kind         text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('watch', 'warning', 'critical')),
    raised_at    timestamptz NOT NULL,
    reason_ko    text NOT NULL,
    reason_en    text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (resident_id, kind, severity, raised_at)
);

CREATE TABLE anbu.alerts (
    id               bigserial PRIMARY KEY,
    resident_id      bigint NOT NULL REFERENCES anbu.resident(id),
    kind             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('watch', 'warning', 'critical')),
    state            text NOT NULL
                     CHECK (state IN ('open', 'calling', 'escalated', 'acknowledged', 'resolved')),
    opened_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    next_action_at   timestamptz,             -- the alert's timer; NULL when nothing is due
    call_attempts    integer NOT NULL DEFAULT 0,
    finding_id       bigint REFERENCES anbu.findings(id),
    acknowledged_by  bigint REFERENCES anbu.care_manager(id),
    acknowledged_at  timestamptz,
    resolved_by      bigint REFERENCES anbu.care_manager(id),
    resolved_at      timestamptz,
    outcome          text
);
-- At most one open alert per resident and kind.
CREATE UNIQUE INDEX alerts_one_open ON anbu.alerts (resident_id, kind) WHERE state <> 'resolved';
CREATE INDEX alerts_due ON anbu.alerts (next_action_at) WHERE next_action_at IS NOT NULL;

CREATE TABLE anbu.alert_events (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES anbu.alerts(id),
    at          timestamptz NOT NULL,
    actor       text NOT NULL,                -- 'system', 'resident', 'care_manager:<id>'
    from_state  text,
    to_state    text NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX alert_events_alert ON anbu.alert_events (alert_id, at);

CREATE TABLE anbu.calls (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,    -- e.g. alert:<id>:attempt:<n>
    resident_id      bigint NOT NULL REFERENCES anbu.resident(id),
    alert_id         bigint REFERENCES anbu.alerts(id),
    purpose          text NOT NULL DEFAULT 'check_in',
    twilio_sid       text UNIQUE,
    status           text NOT NULL DEFAULT 'queued',
    outcome          text CHECK (outcome IN ('ok', 'help', 'no_answer', 'busy', 'failed',
                                             'voicemail', 'unclear')),
    digits           text,
    speech           text,
    answered_by      text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    ended_at         timestamptz
);
CREATE INDEX calls_alert ON anbu.calls (alert_id);

CREATE TABLE anbu.call_events (
    id        bigserial PRIMARY KEY,
    call_id   bigint NOT NULL REFERENCES anbu.calls(id),
    at        timestamptz NOT NULL,
    status    text NOT NULL,
    params    jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE anbu.notifications (
    id               bigserial PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES anbu.alerts(id),
    care_manager_id  bigint NOT NULL REFERENCES anbu.care_manager(id),
    channel          text NOT NULL CHECK (channel IN ('sms', 'dashboard', 'voice')),
    body             text NOT NULL,
    external_id      text,
    status           text NOT NULL DEFAULT 'sent',
    created_at       timestamptz NOT NULL,
    UNIQUE (alert_id, care_manager_id, channel, created_at)
);
CREATE INDEX notifications_alert ON anbu.notifications (alert_id);
