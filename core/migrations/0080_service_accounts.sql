-- Service accounts (issue 22): machine credentials for the city's systems, with scopes, over
-- one or several dongs of a district, made and revoked by the district's admin.
--
-- Each account acts as a principal row of anbu.care_manager (role 'service', never active:
-- it cannot log in, is listed nowhere people are and is never an escalation target), so every
-- write it makes is recorded under that id like a person's, with the account's name, and
-- every read of a resident goes to the access log under it. The token is shown once; only
-- its SHA-256 is kept (it is 256 random bits: no slow hash needed). Revoked accounts keep
-- their row. `last_used_at` moves at most once a minute; `uses` counts those moves (minutes
-- in which it was used).
ALTER TABLE anbu.care_manager DROP CONSTRAINT IF EXISTS care_manager_role_check;
ALTER TABLE anbu.care_manager
    ADD CONSTRAINT care_manager_role_check
    CHECK (role IN ('manager', 'supervisor', 'admin', 'technician', 'service'));
ALTER TABLE anbu.care_manager
    ADD CONSTRAINT care_manager_service_inactive CHECK (role <> 'service' OR NOT active);

CREATE TABLE anbu.service_account (
    care_manager_id  bigint PRIMARY KEY REFERENCES anbu.care_manager(id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    district         text NOT NULL,
    scopes           text[] NOT NULL CHECK (
                         cardinality(scopes) BETWEEN 1 AND 5
                         AND scopes <@ ARRAY['alerts:read', 'alerts:write', 'residents:read',
                                             'residents:write', 'events:read']),
    dongs            text[] NOT NULL CHECK (cardinality(dongs) BETWEEN 1 AND 200),
    token_hash       bytea NOT NULL CHECK (length(token_hash) = 32),
    created_by       bigint NOT NULL REFERENCES anbu.care_manager(id),
    created_at       timestamptz NOT NULL,
    revoked_by       bigint REFERENCES anbu.care_manager(id),
    revoked_at       timestamptz,
    last_used_at     timestamptz,
    uses             bigint NOT NULL DEFAULT 0,
    CONSTRAINT service_account_revoked CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX service_account_district ON anbu.service_account (district, care_manager_id);
