-- A resident's assigned care manager (담당자), set at enrolment by the district's admin or
-- reassigned within the district by its supervisor; NULL leaves the resident to the dong's care
-- managers, as before. Its changes are audited in anbu.resident_changes as the field
-- 'care_manager_id' (an id, no personal data).
ALTER TABLE anbu.resident
    ADD COLUMN care_manager_id bigint REFERENCES anbu.care_manager(id);
CREATE INDEX resident_care_manager ON anbu.resident (care_manager_id)
    WHERE care_manager_id IS NOT NULL;

ALTER TABLE anbu.resident_changes
    DROP CONSTRAINT resident_changes_field_check,
    ADD CONSTRAINT resident_changes_field_check CHECK (field IN (
        'status', 'status_until', 'quiet_start', 'quiet_end',
        'watch_h_max', 'warning_h_max', 'critical_h_max',
        'enrolled', 'external_id', 'home', 'dong_code', 'display_name', 'birth_year', 'address',
        'mobile_phone', 'landline_phone', 'emergency_contacts', 'consent_date',
        'consent_recorded_by', 'consent_sensors', 'consent_calls', 'consent_family',
        'health_notes', 'access_notes', 'care_manager_id'));
