-- Dead letters cost bounded room: a payload is kept up to a size (its full size recorded), a
-- gateway's refusals past an hourly allowance are counted here instead of kept as rows, and
-- rows expire (ingest.dead_letter_limits).
ALTER TABLE anbu.dead_letters
    ADD COLUMN payload_bytes integer,                  -- the size received; NULL before 0054
    ADD COLUMN truncated     boolean NOT NULL DEFAULT false;

CREATE TABLE anbu.dead_letter_budget (
    gateway_id  text NOT NULL,          -- '' for topics outside gw/
    hour        timestamptz NOT NULL,
    refused     integer NOT NULL,       -- every refusal this hour
    kept        integer NOT NULL,       -- of which stored as dead_letters rows
    last_reason text NOT NULL,
    PRIMARY KEY (gateway_id, hour)
);
CREATE INDEX dead_letter_budget_hour ON anbu.dead_letter_budget (hour);

-- A resident's phone is the number the 돌봄콜 line matches a caller against: checked E.164
-- from now on (registry.phones). Numbers written the Korean way are converted; the check is
-- NOT VALID so a number nobody can read does not stop the upgrade (it simply never matches).
UPDATE anbu.resident
   SET phone = '+82' || substr(regexp_replace(phone, '[^0-9]', '', 'g'), 2)
 WHERE phone !~ '^\+82[0-9]{8,10}$'
   AND regexp_replace(phone, '[^0-9]', '', 'g') ~ '^0[1-9][0-9]{7,9}$';
ALTER TABLE anbu.resident
    ADD CONSTRAINT resident_phone_e164 CHECK (phone ~ '^\+82[0-9]{8,10}$') NOT VALID;
