-- Who looked at whom: every read of a resident's card, notes, call transcripts or recordings by
-- a person, append-only. `at` is the database's clock. The resident's dong is copied at the time
-- of the read, so a supervisor's listing is one index range and stays true after a move. No
-- foreign keys: an audit row outlives whatever it names. No personal data: ids and classes only.
CREATE TABLE anbu.access_log (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    care_manager_id  bigint,                -- the person (session or bearer token)
    actor            text,                  -- or a non-person reader, e.g. 'cli:<os user>'
    resident_id      bigint NOT NULL,
    dong_code        text NOT NULL,         -- the resident's dong when read
    view             text NOT NULL CHECK (view IN ('card', 'activity', 'notes', 'alert', 'export')),
    fields           text[] NOT NULL DEFAULT '{}',  -- classes of fields shown
    request_id       text,
    client           text,                  -- the client's address
    CONSTRAINT access_log_who CHECK (care_manager_id IS NOT NULL OR actor IS NOT NULL)
);
CREATE INDEX access_log_dong ON anbu.access_log (dong_code, id DESC);
CREATE INDEX access_log_resident ON anbu.access_log (resident_id, id DESC);
CREATE INDEX access_log_reader ON anbu.access_log (care_manager_id, id DESC);

-- The schema has no roles of its own: a trigger refuses changing or removing audit rows.
CREATE FUNCTION anbu.access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'anbu.access_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON anbu.access_log
    FOR EACH ROW EXECUTE FUNCTION anbu.access_log_append_only();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON anbu.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.access_log_append_only();

-- Health and access notes sealed at rest (AES-256-GCM, core/crypto.py) under the data key named
-- by `sealed_key_id`. The plaintext columns `notes` and `access_notes` are no longer written;
-- rows written before this migration keep them until `anbu keys rotate` seals and empties them.
ALTER TABLE anbu.resident
    ADD COLUMN notes_sealed         bytea,
    ADD COLUMN access_notes_sealed  bytea,
    ADD COLUMN sealed_key_id        text,
    ADD CONSTRAINT resident_sealed_key
        CHECK ((notes_sealed IS NULL AND access_notes_sealed IS NULL) OR sealed_key_id IS NOT NULL);
CREATE INDEX resident_sealed_key_id ON anbu.resident (sealed_key_id)
    WHERE sealed_key_id IS NOT NULL;
