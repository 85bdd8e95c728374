-- Security review of logins (issue: throttle race, lockout as denial of service, readable TOTP
-- seeds).
-- `care_manager.totp_secret` now holds the secret sealed under the data keyring (AES-256-GCM,
-- core/crypto.py), as 'sealed:v1:<key id>:<base64>', bound to the care manager's id. A value
-- written before this migration stays readable as it is until `anbu keys rotate` seals it.
--
-- A TOTP enrolment under way keeps its new secret here, sealed, until its first code confirms
-- it or it expires; the browser's session holds only a random reference, stored as SHA-256.
CREATE TABLE anbu.totp_enrolment (
    ref_hash         text PRIMARY KEY,
    care_manager_id  bigint NOT NULL REFERENCES anbu.care_manager (id) ON DELETE CASCADE,
    secret_sealed    text NOT NULL,
    expires_at       timestamptz NOT NULL
);
CREATE INDEX totp_enrolment_manager ON anbu.totp_enrolment (care_manager_id);

-- Throttle keys are now HMAC-SHA256 under a server key (per name and address pair, per address,
-- per name): the old plain SHA-256 rows can be reversed by hashing guesses and no longer match.
DELETE FROM anbu.login_throttle;
