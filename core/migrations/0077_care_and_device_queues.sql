-- The care queue and the technician's queue apart (issue 21).
--
-- Each alert says whose queue it is in, from its kind's route (alerts.routing): a device or
-- site finding's alert is the technician's and never enters the care queue, nor wakes its
-- live feed (0073's triggers now fire for the care queue's alerts only).
ALTER TABLE anbu.alerts ADD COLUMN queue text NOT NULL DEFAULT 'care'
    CHECK (queue IN ('care', 'technician'));
-- A safety device (emergency button, smoke, gas or water detector) that is offline, silent or
-- flat stays in the care queue: the resident's way to call for help may be broken, which
-- changes what the care manager does (alerts.service.queue_of).
UPDATE anbu.alerts a SET queue = 'technician'
 WHERE a.kind LIKE ANY (ARRAY['device%', 'gateway%', 'battery%', 'site%', 'alarm_test%'])
   AND NOT EXISTS (SELECT 1 FROM anbu.findings f
                    WHERE f.id = a.finding_id
                      AND f.details->>'sensor_kind' IN ('button', 'smoke', 'gas', 'co',
                                                        'water_leak', 'tamper')
                      AND a.kind NOT LIKE 'alarm_test%');

DROP TRIGGER alerts_queue_opened ON anbu.alerts;
DROP TRIGGER alerts_queue_changed ON anbu.alerts;

CREATE TRIGGER alerts_queue_opened AFTER INSERT ON anbu.alerts
    FOR EACH ROW WHEN (NEW.queue = 'care')
    EXECUTE FUNCTION anbu.notify_alert_queue();

CREATE TRIGGER alerts_queue_changed AFTER UPDATE ON anbu.alerts
    FOR EACH ROW
    WHEN ((OLD.queue = 'care' OR NEW.queue = 'care')
          AND (OLD.state IS DISTINCT FROM NEW.state
               OR OLD.severity IS DISTINCT FROM NEW.severity
               OR OLD.call_attempts IS DISTINCT FROM NEW.call_attempts
               OR OLD.resident_id IS DISTINCT FROM NEW.resident_id
               OR OLD.queue IS DISTINCT FROM NEW.queue
               OR OLD.assigned_to IS DISTINCT FROM NEW.assigned_to))
    EXECUTE FUNCTION anbu.notify_alert_queue();

-- Homes whose resident cannot be observed now (every gateway down, or every sensor that sees
-- the person silent): the health sweep's own view, one row a home while it lasts, deleted
-- when the home is observed again. `since` is the resident's last data; `why` is
-- gateway_offline, sensors_silent or site_outage (gateways down in a site incident);
-- `gateways` and `sensors` name the devices. The care queue shows these homes, once each.
CREATE TABLE anbu.home_unobserved (
    resident_id bigint PRIMARY KEY REFERENCES anbu.resident(id) ON DELETE CASCADE,
    since       timestamptz NOT NULL,
    why         text NOT NULL,
    gateways    text[] NOT NULL DEFAULT '{}',
    sensors     jsonb NOT NULL DEFAULT '[]'::jsonb,
    noted_at    timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- A home entering or leaving the list, or its why changing, changes the care queue of its dong.
CREATE FUNCTION anbu.notify_unobserved_queue() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('anbu_queue', r.dong_code)
       FROM anbu.resident r
      WHERE r.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.resident_id ELSE NEW.resident_id END;
    RETURN NULL;
END;
$$;

CREATE TRIGGER home_unobserved_queue AFTER INSERT OR DELETE ON anbu.home_unobserved
    FOR EACH ROW EXECUTE FUNCTION anbu.notify_unobserved_queue();

CREATE TRIGGER home_unobserved_changed AFTER UPDATE ON anbu.home_unobserved
    FOR EACH ROW
    WHEN (OLD.why IS DISTINCT FROM NEW.why OR OLD.since IS DISTINCT FROM NEW.since
          OR OLD.gateways IS DISTINCT FROM NEW.gateways OR OLD.sensors IS DISTINCT FROM NEW.sensors)
    EXECUTE FUNCTION anbu.notify_unobserved_queue();
