-- Append-only audit of what care managers change on a resident's care settings: who, when,
-- which field, old -> new. Only the fields named below may appear, so names, phone numbers and
-- notes never reach this table. Values are text: ISO 8601 UTC for times, HH:MM for quiet hours
-- (local), hours for the inactivity caps; NULL means none.
CREATE TABLE anbu.resident_changes (
    id               bigserial PRIMARY KEY,
    resident_id      bigint NOT NULL REFERENCES anbu.resident(id),
    care_manager_id  bigint NOT NULL REFERENCES anbu.care_manager(id),
    at               timestamptz NOT NULL,
    field            text NOT NULL CHECK (field IN ('status', 'status_until', 'quiet_start',
                                                    'quiet_end', 'watch_h_max', 'warning_h_max',
                                                    'critical_h_max')),
    old_value        text,
    new_value        text,
    CHECK (old_value IS DISTINCT FROM new_value)
);
CREATE INDEX resident_changes_resident ON anbu.resident_changes (resident_id, at);
