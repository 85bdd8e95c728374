-- Idempotency-Key on the API's POSTs (issue 22, dashboards.idempotency). A key is its
-- principal's (a care manager or a service account), remembered 24 hours from its first use.
--
-- A request claims its key before it acts (`lease` is the claim's fencing token, renewed when a
-- later retry takes over a claim whose holder died before acting); the transaction that acts
-- marks `applied_at` in itself, under the lease it holds, so "acted" and "marked" commit
-- together or not at all; the answer is kept after (`status`, `headers`, the body sealed under
-- the data key, as care notes are). A kept answer is replayed to a retry with the same request;
-- one withheld (a token or password shown once) or lost (the process died between acting and
-- answering) is never made again: the retry is told so. `fingerprint` is an HMAC of the request
-- (keyed by the session secret), `grant_hash` what the principal might see when it was kept: a
-- replay needs both the same. A live holder renews `claimed_at`; a refusal that wrote nothing
-- gives its key back. Forgotten after a day, by later claims and the worker's nightly job.
CREATE TABLE anbu.api_idempotency (
    principal_id  bigint NOT NULL REFERENCES anbu.care_manager(id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint   bytea NOT NULL CHECK (length(fingerprint) = 32),
    grant_hash    bytea NOT NULL CHECK (length(grant_hash) = 32),
    path          text NOT NULL,
    lease         uuid NOT NULL,
    first_at      timestamptz NOT NULL,
    claimed_at    timestamptz NOT NULL,
    applied_at    timestamptz,
    finished_at   timestamptz,
    status        smallint CHECK (status BETWEEN 100 AND 599),
    headers       jsonb,
    body          bytea,
    body_key_id   text,
    kept          text CHECK (kept IN ('answer', 'withheld', 'lost')),
    PRIMARY KEY (principal_id, key),
    CONSTRAINT api_idempotency_finished CHECK ((finished_at IS NULL) = (kept IS NULL)),
    CONSTRAINT api_idempotency_answer CHECK (kept IS DISTINCT FROM 'answer' OR status IS NOT NULL)
);
CREATE INDEX api_idempotency_first_at ON anbu.api_idempotency (first_at);
