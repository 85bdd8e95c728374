-- The care queue, live (issue 21): every change a care manager's queue shows (an alert opened,
-- its severity or state changed, a call attempt counted, reassigned) notifies channel
-- anbu_queue with the resident's dong code, and nothing else (no id, no name: the listeners
-- are web processes, which read the queue again for each care manager whose dongs it names).
-- Notifications leave at commit, one per dong and transaction (PostgreSQL folds repeats), so
-- a sweep that opens a hundred alerts in one dong sends one. The timers' own updates
-- (next_action_at) change nothing the queue shows and send nothing.
CREATE FUNCTION anbu.notify_alert_queue() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('anbu_queue', r.dong_code)
       FROM anbu.resident r WHERE r.id = NEW.resident_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER alerts_queue_opened AFTER INSERT ON anbu.alerts
    FOR EACH ROW EXECUTE FUNCTION anbu.notify_alert_queue();

CREATE TRIGGER alerts_queue_changed AFTER UPDATE ON anbu.alerts
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.severity IS DISTINCT FROM NEW.severity
          OR OLD.call_attempts IS DISTINCT FROM NEW.call_attempts
          OR OLD.resident_id IS DISTINCT FROM NEW.resident_id
          OR OLD.assigned_to IS DISTINCT FROM NEW.assigned_to)
    EXECUTE FUNCTION anbu.notify_alert_queue();
