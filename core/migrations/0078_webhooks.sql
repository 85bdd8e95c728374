-- Webhook subscriptions (issue 22): the event feed (0069) pushed to the city's systems.
--
-- A subscription is a district admin's: a target URL (https; checked against private
-- addresses when made and again at every delivery), the dongs it covers (NULL: every dong of
-- its district, those added later too) and a secret that signs each delivery, sealed with
-- the data key (core/crypto.py) bound to the subscription's id; a deleted subscription keeps
-- its row and its log, never its secret.
--
-- The outbox: one webhook_delivery row per (subscription, feed seq) of an event in scope,
-- written in seq order by one enqueuer at a time per subscription (the row is locked);
-- `feed_after` is the last seq the subscription has looked at, in scope or not. A
-- subscription's deliveries leave strictly in seq order: the next waits for the previous
-- one's success (alerts/webhook_delivery.py). Each attempt is kept in webhook_attempt (time,
-- HTTP status or the error's class, duration), never the body.
CREATE TABLE anbu.webhook_subscription (
    id                bigserial PRIMARY KEY,
    district          text NOT NULL,
    dongs             text[] CHECK (cardinality(dongs) BETWEEN 1 AND 200),
    url               text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description       text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    secret_sealed     bytea,
    secret_key_id     text,
    state             text NOT NULL DEFAULT 'active'
                      CHECK (state IN ('active', 'paused', 'deleted')),
    -- why it is paused: an admin paused it, or it failed for too long (the worker paused it)
    paused_reason     text CHECK (paused_reason IN ('admin', 'failing')),
    state_changed_at  timestamptz NOT NULL,
    state_changed_by  text NOT NULL,  -- care_manager:<id> or system
    created_by        bigint NOT NULL REFERENCES anbu.care_manager(id),
    created_at        timestamptz NOT NULL,
    feed_after        bigint NOT NULL DEFAULT 0,
    failing_since     timestamptz,  -- the first failed attempt since the last success
    last_success_at   timestamptz,
    CONSTRAINT webhook_secret_sealed CHECK ((secret_sealed IS NULL) = (secret_key_id IS NULL)),
    CONSTRAINT webhook_secret_kept CHECK ((state = 'deleted') = (secret_sealed IS NULL)),
    CONSTRAINT webhook_paused_why CHECK ((state = 'paused') = (paused_reason IS NOT NULL))
);
CREATE INDEX webhook_subscription_district ON anbu.webhook_subscription (district, id);

CREATE TABLE anbu.webhook_delivery (
    id                bigserial PRIMARY KEY,
    subscription_id   bigint NOT NULL REFERENCES anbu.webhook_subscription(id),
    seq               bigint NOT NULL REFERENCES anbu.event_feed(seq),
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'delivered', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    created_at        timestamptz NOT NULL,
    delivered_at      timestamptz,
    CONSTRAINT webhook_delivery_once UNIQUE (subscription_id, seq)
);
-- a subscription's next delivery: the lowest pending seq
CREATE INDEX webhook_delivery_pending ON anbu.webhook_delivery (subscription_id, seq)
    WHERE state = 'pending';

CREATE TABLE anbu.webhook_attempt (
    id                bigserial PRIMARY KEY,
    delivery_id       bigint NOT NULL REFERENCES anbu.webhook_delivery(id),
    subscription_id   bigint NOT NULL REFERENCES anbu.webhook_subscription(id),
    seq               bigint NOT NULL,
    attempt           integer NOT NULL,
    at                timestamptz NOT NULL,
    duration_ms       integer NOT NULL CHECK (duration_ms >= 0),
    http_status       integer,
    -- the failure's class only (timeout, connect, dns, address_refused, http_status,
    -- data_key...), never a body or a message that could quote one
    error             text CHECK (length(error) <= 40),
    ok                boolean NOT NULL,
    next_attempt_at   timestamptz
);
CREATE INDEX webhook_attempt_log ON anbu.webhook_attempt (subscription_id, id);
