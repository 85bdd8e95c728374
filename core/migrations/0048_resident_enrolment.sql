-- Resident enrolment as districts keep it: the city's case number (external id), birth year,
-- address, mobile and landline (E.164), consent record, access notes, emergency contacts.
-- `phone` stays the number check-in calls go to (the mobile, else the landline) and `notes`
-- the health notes, so every existing reader keeps working. Personal data: never logged.
ALTER TABLE anbu.resident
    ADD COLUMN external_id          text UNIQUE,      -- the city's case number (사례번호)
    ADD COLUMN birth_year           smallint CHECK (birth_year BETWEEN 1900 AND 2100),
    ADD COLUMN address              text,
    ADD COLUMN mobile_phone         text CHECK (mobile_phone ~ '^\+82[0-9]{8,10}$'),
    ADD COLUMN landline_phone       text CHECK (landline_phone ~ '^\+82[0-9]{8,10}$'),
    ADD COLUMN access_notes         text,             -- how to get in: personal data
    ADD COLUMN consent_date         date,
    ADD COLUMN consent_recorded_by  text,
    ADD COLUMN consent_sensors      boolean NOT NULL DEFAULT false,
    ADD COLUMN consent_calls        boolean NOT NULL DEFAULT false,
    ADD COLUMN consent_family       boolean NOT NULL DEFAULT false,
    ADD COLUMN updated_at           timestamptz;

CREATE TABLE anbu.emergency_contact (
    resident_id   bigint NOT NULL REFERENCES anbu.resident(id) ON DELETE CASCADE,
    position      smallint NOT NULL CHECK (position BETWEEN 1 AND 9),  -- 1 is called first
    name          text NOT NULL,                                      -- personal data
    relationship  text NOT NULL DEFAULT '',
    phone         text NOT NULL CHECK (phone ~ '^\+82[0-9]{8,10}$'),
    may_call      boolean NOT NULL DEFAULT false,  -- consented to be called about the resident
    PRIMARY KEY (resident_id, position)
);

-- The audit of resident changes now also records enrolment (created by an import or a page)
-- and its edits. Who: a care manager, or an actor such as 'cli:<os user>'. Personal fields
-- (name, address, phones, contacts, notes) are recorded masked (홍*동, 010-****-5678, a
-- note's length), so this table still holds no personal data; `masked` marks those rows,
-- whose masked values may look alike while the values differ.
ALTER TABLE anbu.resident_changes
    ALTER COLUMN care_manager_id DROP NOT NULL,
    ADD COLUMN actor  text,
    ADD COLUMN masked boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT resident_changes_field_check,
    DROP CONSTRAINT resident_changes_check,
    ADD CONSTRAINT resident_changes_who CHECK (care_manager_id IS NOT NULL OR actor IS NOT NULL),
    ADD CONSTRAINT resident_changes_changed CHECK (masked OR old_value IS DISTINCT FROM new_value),
    ADD CONSTRAINT resident_changes_field_check CHECK (field IN (
        'status', 'status_until', 'quiet_start', 'quiet_end',
        'watch_h_max', 'warning_h_max', 'critical_h_max',
        'enrolled', 'external_id', 'home', 'dong_code', 'display_name', 'birth_year', 'address',
        'mobile_phone', 'landline_phone', 'emergency_contacts', 'consent_date',
        'consent_recorded_by', 'consent_sensors', 'consent_calls', 'consent_family',
        'health_notes', 'access_notes'));
