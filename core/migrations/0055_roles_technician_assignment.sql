-- Roles (dashboards.authz): a technician sees gateways, sensors, device findings and how to
-- get into a home, never health notes, call transcripts or alert reasons.
ALTER TABLE anbu.care_manager DROP CONSTRAINT IF EXISTS care_manager_role_check;
ALTER TABLE anbu.care_manager
    ADD CONSTRAINT care_manager_role_check
    CHECK (role IN ('manager', 'supervisor', 'admin', 'technician'));

-- Who an alert is handed to: a supervisor reassigns it within the district (audited in
-- alert_events). NULL: the dong's care managers, as before. A resident's own care manager is
-- anbu.resident.care_manager_id (0056).
ALTER TABLE anbu.alerts
    ADD COLUMN assigned_to bigint REFERENCES anbu.care_manager(id);
