-- calls issue: care-manager alert calls are taken by alerts/intake once (pressing 1 acknowledges).
ALTER TABLE anbu.calls ADD COLUMN reported_at timestamptz;
CREATE INDEX calls_manager_unreported ON anbu.calls (id)
    WHERE purpose = 'manager_alert' AND reported_at IS NULL;
