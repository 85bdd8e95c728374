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
-- from now on (registry.phones). Numbers written the Korean way are converted. The rule is a
-- trigger on writes of `phone` itself, not a CHECK: a NOT VALID check would still refuse every
-- later update of a row whose old number nobody can read (a status change, a note), and such
-- a number simply never matches a caller.
UPDATE anbu.resident
   SET phone = '+82' || substr(regexp_replace(phone, '[^0-9]', '', 'g'), 2)
 WHERE phone !~ '^\+82[0-9]{8,10}$'
   AND regexp_replace(phone, '[^0-9]', '', 'g') ~ '^0[1-9][0-9]{7,9}$';

CREATE FUNCTION anbu.resident_phone_e164() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.phone !~ '^\+82[0-9]{8,10}$' THEN
        RAISE EXCEPTION 'resident phone must be E.164 (+82...)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'resident_phone_e164';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER resident_phone_e164 BEFORE INSERT OR UPDATE OF phone ON anbu.resident
    FOR EACH ROW EXECUTE FUNCTION anbu.resident_phone_e164();
