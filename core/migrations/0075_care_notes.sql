-- Care notes (돌봄 메모) on a resident's card (issue 21): what the dong's care manager saw on a
-- visit or heard on a call, for whoever looks after the resident next. The body is sealed at rest
-- as residents' health and access notes are (AES-256-GCM, core/crypto.py; the key's id beside
-- it), bound to the resident and the note's id, so a dump alone reveals no note and a body
-- copied onto another note (of any resident) does not open. `written_at` is the app's clock where the app writes (the demo's runs fast).
--
-- A care record is never rewritten: a note is corrected by a new note naming it (`corrects`, of
-- the same resident, at most one correction each, so the newest version is a chain's end). A
-- trigger refuses any other change, the app's own code included; only two writes pass it:
--   * a key rotation re-sealing a body under another key (nothing else of the row changes);
--   * the retention purge emptying the body of a resident ended and already pseudonymised
--     (alerts/retention.py): who wrote, when and what kind stay, as other care records do.
-- Every note written is also audited in anbu.resident_changes (field 'care_note', ids only).
CREATE TABLE anbu.care_note (
    id             bigserial PRIMARY KEY,
    resident_id    bigint NOT NULL REFERENCES anbu.resident(id),
    written_by     bigint NOT NULL REFERENCES anbu.care_manager(id),
    written_at     timestamptz NOT NULL DEFAULT now(),
    kind           text NOT NULL DEFAULT 'other' CHECK (kind IN ('visit', 'call', 'other')),
    body_sealed    bytea CHECK (octet_length(body_sealed) <= 8100),  -- 2,000 characters at most
    sealed_key_id  text,
    corrects       bigint,
    -- the writer's token for this note (the card's form, an API client's Idempotency-Key): the
    -- same token sent again (a double click, a retry after a lost answer) is the same note
    client_token   text CHECK (length(client_token) BETWEEN 1 AND 64),
    CONSTRAINT care_note_once UNIQUE (written_by, client_token),
    CONSTRAINT care_note_sealed_key CHECK ((body_sealed IS NULL) = (sealed_key_id IS NULL)),
    CONSTRAINT care_note_not_itself CHECK (corrects <> id),
    CONSTRAINT care_note_of_resident UNIQUE (id, resident_id),
    CONSTRAINT care_note_corrects_same_resident FOREIGN KEY (corrects, resident_id)
        REFERENCES anbu.care_note (id, resident_id)
);
CREATE INDEX care_note_resident ON anbu.care_note (resident_id, written_at DESC, id DESC);
CREATE UNIQUE INDEX care_note_corrected_once ON anbu.care_note (corrects)
    WHERE corrects IS NOT NULL;
CREATE INDEX care_note_sealed_key_id ON anbu.care_note (sealed_key_id)
    WHERE sealed_key_id IS NOT NULL;

CREATE FUNCTION anbu.care_note_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.id, NEW.resident_id, NEW.written_by, NEW.written_at, NEW.kind, NEW.corrects,
            NEW.client_token)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.resident_id, OLD.written_by, OLD.written_at, OLD.kind, OLD.corrects,
            OLD.client_token)
        THEN
            -- a key rotation: the body re-sealed under another key
            IF OLD.body_sealed IS NOT NULL AND NEW.body_sealed IS NOT NULL
               AND NEW.sealed_key_id IS DISTINCT FROM OLD.sealed_key_id THEN
                RETURN NEW;
            END IF;
            -- the retention purge: the body of a pseudonymised resident emptied
            IF NEW.body_sealed IS NULL AND EXISTS (
                   SELECT 1 FROM anbu.resident r
                    WHERE r.id = OLD.resident_id AND r.status = 'ended'
                      AND r.pseudonymised_at IS NOT NULL) THEN
                RETURN NEW;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION 'anbu.care_note is append-only: % refused (a correction is a new note)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER care_note_append_only BEFORE UPDATE OR DELETE ON anbu.care_note
    FOR EACH ROW EXECUTE FUNCTION anbu.care_note_append_only();
CREATE TRIGGER care_note_no_truncate BEFORE TRUNCATE ON anbu.care_note
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.care_note_append_only();

-- Writing a note is audited with the resident's other changes (the note's id; for a
-- correction, the corrected note's id as the old value): no personal data.
ALTER TABLE anbu.resident_changes
    DROP CONSTRAINT resident_changes_field_check,
    ADD CONSTRAINT resident_changes_field_check CHECK (field IN (
        'status', 'status_until', 'quiet_start', 'quiet_end',
        'watch_h_max', 'warning_h_max', 'critical_h_max',
        'enrolled', 'external_id', 'home', 'dong_code', 'display_name', 'birth_year', 'address',
        'mobile_phone', 'landline_phone', 'emergency_contacts', 'consent_date',
        'consent_recorded_by', 'consent_sensors', 'consent_calls', 'consent_family',
        'health_notes', 'access_notes', 'care_manager_id',
        'end_reason', 'broker_access', 'pseudonymised', 'care_note'));
