-- Idempotency-Key on the API's writes (issue 22): a client that sends a write again with the
-- same key (a retry after a timeout) gets the first answer again and nothing is done twice.
-- Keyed by the credential that sent it (a digest of the bearer token: never the token itself)
-- and the client's key; the request's digest tells a retry from a different request reusing
-- the key. status NULL: the first request is still running. Kept a day.
CREATE TABLE anbu.idempotency_keys (
    owner         bytea NOT NULL,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  bytea NOT NULL,
    status        smallint,
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_created ON anbu.idempotency_keys (created_at);
