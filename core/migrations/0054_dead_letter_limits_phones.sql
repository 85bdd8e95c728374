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
--
-- anbu.korean_phone_e164 reads a number as registry.phones does (tests pin the two together):
-- separators and "(0)" dropped; +82, 0082 and 82 (11 digits or more) turned into the national
-- 0; a number whose leading 0 a spreadsheet dropped given it back; then the numbering plan
-- (010, 011 and 016-019, 070, 02, the area codes; no subscriber number starting with 0).
-- NULL for anything it refuses: such a phone is left as it was.
CREATE FUNCTION anbu.korean_phone_e164(raw text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT AS $$
    WITH compact AS (
        SELECT regexp_replace(replace(raw, '(0)', ''), '[[:space:]./()-]', '', 'g') AS s
    ), national AS (
        SELECT CASE
                   WHEN s LIKE '+82%' THEN '0' || regexp_replace(substr(s, 4), '^0', '')
                   WHEN s LIKE '+%' THEN NULL
                   WHEN s LIKE '0082%' THEN '0' || regexp_replace(substr(s, 5), '^0', '')
                   WHEN s LIKE '82%' AND length(s) >= 11
                       THEN '0' || regexp_replace(substr(s, 3), '^0', '')
                   WHEN s ~ '^[0-9]{8,10}$' AND s !~ '^0' THEN '0' || s
                   ELSE s
               END AS d
          FROM compact
    )
    SELECT '+82' || substr(d, 2) FROM national
     WHERE d ~ ('^0(10[1-9][0-9]{7}|1[16-9][1-9][0-9]{6,7}|70[1-9][0-9]{7}'
                '|2[1-9][0-9]{6,7}|(3[1-3]|4[1-4]|5[1-5]|6[1-4])[1-9][0-9]{6,7})$')
$$;

UPDATE anbu.resident
   SET phone = anbu.korean_phone_e164(phone)
 WHERE phone !~ '^\+82[0-9]{8,10}$'
   AND anbu.korean_phone_e164(phone) IS NOT NULL;

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
