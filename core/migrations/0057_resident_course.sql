-- A resident's whole course (issue 15): end of service, the gateway's broker account revoked,
-- and after the district's retention period the personal data pseudonymised while the
-- statistics (alerts, calls, readings keyed by ids) stay.
ALTER TABLE anbu.resident
    ADD COLUMN ended_at          timestamptz,   -- when the service ended (status 'ended')
    ADD COLUMN end_reason        text CHECK (end_reason IN ('moved', 'care_home', 'died', 'other')),
    ADD COLUMN pseudonymised_at  timestamptz;   -- personal data removed after the retention
-- residents ended before this migration (or by a plain UPDATE of status): the retention counts
-- from the last change of their row (alerts.course.purge_due reads it so too)
UPDATE anbu.resident SET ended_at = COALESCE(updated_at, created_at), end_reason = 'other'
 WHERE status = 'ended' AND ended_at IS NULL;
CREATE INDEX resident_retention ON anbu.resident (COALESCE(ended_at, updated_at, created_at))
    WHERE status = 'ended' AND pseudonymised_at IS NULL;

-- A gateway whose resident's service ended: its broker account is revoked at once, or, when
-- anbu holds no broker admin credentials, marked pending until someone revokes it.
ALTER TABLE anbu.gateway
    ADD COLUMN revoked_at          timestamptz,
    ADD COLUMN revocation_pending  timestamptz;   -- since when a revocation waits
CREATE INDEX gateway_revocation_pending ON anbu.gateway (revocation_pending)
    WHERE revocation_pending IS NOT NULL;

-- A routine check-in round cancelled because the service ended: finished, reported (nothing
-- to alert about), with an event saying why.
ALTER TABLE anbu.checkin_rounds DROP CONSTRAINT checkin_rounds_state_check;
ALTER TABLE anbu.checkin_rounds ADD CONSTRAINT checkin_rounds_state_check
    CHECK (state IN ('calling', 'ok', 'unwell', 'help', 'emergency', 'unreached', 'missed',
                     'cancelled'));
ALTER TABLE anbu.checkin_round_events DROP CONSTRAINT checkin_round_events_kind_check;
ALTER TABLE anbu.checkin_round_events ADD CONSTRAINT checkin_round_events_kind_check
    CHECK (kind IN ('missed', 'late', 'cancelled'));

-- The audit also records the end of service, its reason, the broker account and the purge.
ALTER TABLE anbu.resident_changes
    DROP CONSTRAINT resident_changes_field_check,
    ADD CONSTRAINT resident_changes_field_check CHECK (field IN (
        'status', 'status_until', 'quiet_start', 'quiet_end',
        'watch_h_max', 'warning_h_max', 'critical_h_max',
        'enrolled', 'external_id', 'home', 'dong_code', 'display_name', 'birth_year', 'address',
        'mobile_phone', 'landline_phone', 'emergency_contacts', 'consent_date',
        'consent_recorded_by', 'consent_sensors', 'consent_calls', 'consent_family',
        'health_notes', 'access_notes', 'care_manager_id',
        'end_reason', 'broker_access', 'pseudonymised'));
