-- The care queue, live (issue 21): every change a care manager's queue shows (an alert opened,
-- its severity or state changed, a call attempt counted, reassigned, moved to another
-- resident, or its resident moved to another dong) notifies channel anbu_queue with the dong
-- code of each dong concerned, and nothing else (no id, no name: the listeners are web
-- processes, which read the queue again for each care manager whose dongs it names).
-- Notifications leave at commit, one per dong and transaction (PostgreSQL folds repeats), so
-- a sweep that opens a hundred alerts in one dong sends one. The timers' own updates
-- (next_action_at) change nothing the queue shows and send nothing.
CREATE FUNCTION anbu.notify_alert_queue() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('anbu_queue', r.dong_code)
       FROM anbu.resident r
      WHERE r.id = NEW.resident_id
         OR (TG_OP = 'UPDATE' AND r.id = OLD.resident_id);
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

-- A resident moved to another dong (or their home id changed) takes their open alerts along:
-- both dongs' queues change.
CREATE FUNCTION anbu.notify_resident_queue() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM anbu.alerts a
                WHERE a.resident_id = NEW.id AND a.state <> 'resolved') THEN
        PERFORM pg_notify('anbu_queue', OLD.dong_code);
        PERFORM pg_notify('anbu_queue', NEW.dong_code);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER resident_queue_moved AFTER UPDATE ON anbu.resident
    FOR EACH ROW
    WHEN (OLD.dong_code IS DISTINCT FROM NEW.dong_code OR OLD.home IS DISTINCT FROM NEW.home)
    EXECUTE FUNCTION anbu.notify_resident_queue();
