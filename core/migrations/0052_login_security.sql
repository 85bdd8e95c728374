-- Logins a city's security review accepts (issue 14).
-- A care manager's sessions and bearer tokens carry the `session_generation` they were issued
-- under; logout and a password change bump it, so every earlier one stops working at once, on
-- every web replica. `totp_secret` (base32, RFC 6238) is set when a supervisor or admin enrols
-- an authenticator app; `totp_last_step` is the last 30-second step whose code was accepted, so
-- a code is never accepted twice.
ALTER TABLE anbu.care_manager
    ADD COLUMN session_generation  integer NOT NULL DEFAULT 0,
    ADD COLUMN password_changed_at timestamptz,
    ADD COLUMN totp_secret         text,
    ADD COLUMN totp_last_step      bigint NOT NULL DEFAULT 0;

-- Failed logins, per account name (known or not, so both are answered alike) and per client
-- address. `key` is a SHA-256 of 'user:<name>' or 'addr:<address>': no name is stored as
-- typed. Rows live in the database so that every web replica sees the same lockouts.
CREATE TABLE anbu.login_throttle (
    key           text PRIMARY KEY,
    failures      integer NOT NULL DEFAULT 0,   -- within the current window
    window_start  timestamptz NOT NULL,
    lockouts      integer NOT NULL DEFAULT 0,   -- in a row: each one lasts twice the previous
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX login_throttle_updated ON anbu.login_throttle (updated_at);
