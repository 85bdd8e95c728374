-- detectors issue 17: the minute sweep reads only the homes that have something due.
-- One row per home with activity: the moment the sweep next may have something to say about it
-- (its next inactivity level, "not back" level, bathroom stay, morning check, the end of an
-- away/hospital stay, a dated status change), indexed. The sweep writes it after judging a home;
-- the triggers below pull it earlier whenever what it was computed from changes, so it is
-- never late: a due time may come early (the sweep then judges the home, finds nothing new and
-- writes the next one), never after a finding the full scan would raise. The sweep never
-- writes a due time more than an hour ahead, so a change no trigger saw is late by an hour at
-- most, never missed for good.
-- `lead_s`: the home's shortest time from a silence's start to anything the sweep may raise
-- (written by the sweep with the due time; what activity uses to pull the due time in).
CREATE TABLE anbu.sweep_due (
    resident_id  bigint PRIMARY KEY REFERENCES anbu.resident(id),
    due_at       timestamptz NOT NULL,
    lead_s       double precision NOT NULL DEFAULT 0 CHECK (lead_s >= 0)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01);
-- Rewritten by every batch's activity and every tick: room on each page for the new version
-- (a HOT update, the due_at index aside) and a vacuum well before dead rows pile up.
CREATE INDEX sweep_due_at ON anbu.sweep_due (due_at);

-- The sweep's own bookkeeping: when it last ran, under which UTC offset and policy. A moment
-- behind `last_now` (the clock stepped back), another offset or another policy means a full
-- pass that rebuilds every due time.
CREATE TABLE anbu.sweep_state (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_now      timestamptz NOT NULL,
    utc_offset_s  double precision NOT NULL,
    policy        text NOT NULL
);

-- Activity (ingest's upsert of home_activity). A later last activity starts a new silence:
-- nothing of it is due before its start plus the home's lead, so the due time comes in to that
-- at the latest. A first activity, or the same silence seen otherwise (a late door or motion
-- reading, another room at the same moment, a last activity moved back), is due at once.
-- The row is always written, even when the time stays: a sweep judging the home at this moment
-- then sees the row changed under it and leaves the new due time alone (detectors.sweep_due).
CREATE FUNCTION anbu.sweep_due_activity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.last_activity_at > OLD.last_activity_at THEN
        UPDATE anbu.sweep_due
           SET due_at = LEAST(due_at, NEW.last_activity_at + make_interval(secs => lead_s))
         WHERE resident_id = NEW.resident_id;
    ELSE
        UPDATE anbu.sweep_due SET due_at = '-infinity' WHERE resident_id = NEW.resident_id;
    END IF;
    IF NOT FOUND THEN
        INSERT INTO anbu.sweep_due (resident_id, due_at) VALUES (NEW.resident_id, '-infinity')
        ON CONFLICT (resident_id) DO UPDATE SET due_at = '-infinity';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER sweep_due_activity_insert AFTER INSERT ON anbu.home_activity
    FOR EACH ROW EXECUTE FUNCTION anbu.sweep_due_activity();
CREATE TRIGGER sweep_due_activity_update
    AFTER UPDATE OF last_activity_at, last_motion_at, last_door_at, last_room
    ON anbu.home_activity FOR EACH ROW
    WHEN (OLD.last_activity_at IS DISTINCT FROM NEW.last_activity_at
          OR OLD.last_motion_at IS DISTINCT FROM NEW.last_motion_at
          OR OLD.last_door_at IS DISTINCT FROM NEW.last_door_at
          OR OLD.last_room IS DISTINCT FROM NEW.last_room)
    EXECUTE FUNCTION anbu.sweep_due_activity();

-- Anything else the sweep's judgement reads (status and its end, level caps, quiet hours, a
-- dated status change, the learned routine, whether every gateway is down): due at once.
CREATE FUNCTION anbu.sweep_due_now() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    IF TG_TABLE_NAME = 'resident' THEN
        ids := ARRAY[NEW.id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.resident_id];
    ELSIF TG_OP = 'UPDATE' THEN
        ids := ARRAY[OLD.resident_id, NEW.resident_id];
    ELSE
        ids := ARRAY[NEW.resident_id];
    END IF;
    UPDATE anbu.sweep_due SET due_at = '-infinity' WHERE resident_id = ANY(ids);
    RETURN NULL;
END $$;

CREATE TRIGGER sweep_due_resident
    AFTER UPDATE OF status, status_until, watch_h_max, warning_h_max, critical_h_max,
                    quiet_start, quiet_end
    ON anbu.resident FOR EACH ROW
    WHEN ((OLD.status, OLD.status_until, OLD.watch_h_max, OLD.warning_h_max, OLD.critical_h_max,
           OLD.quiet_start, OLD.quiet_end)
          IS DISTINCT FROM
          (NEW.status, NEW.status_until, NEW.watch_h_max, NEW.warning_h_max, NEW.critical_h_max,
           NEW.quiet_start, NEW.quiet_end))
    EXECUTE FUNCTION anbu.sweep_due_now();
CREATE TRIGGER sweep_due_status_change AFTER INSERT ON anbu.resident_changes
    FOR EACH ROW WHEN (NEW.field = 'status') EXECUTE FUNCTION anbu.sweep_due_now();
CREATE TRIGGER sweep_due_baseline AFTER INSERT OR DELETE ON anbu.baselines
    FOR EACH ROW EXECUTE FUNCTION anbu.sweep_due_now();
-- the nightly upsert rewrites every routine: only a change in what the sweep reads counts
CREATE TRIGGER sweep_due_baseline_update
    AFTER UPDATE OF resident_id, grace, watch_h, step_h, usual_h, anchor_slot, wake_h, out_h,
                    bathroom_h
    ON anbu.baselines FOR EACH ROW
    WHEN ((OLD.resident_id, OLD.grace, OLD.watch_h, OLD.step_h, OLD.usual_h, OLD.anchor_slot,
           OLD.wake_h, OLD.out_h, OLD.bathroom_h)
          IS DISTINCT FROM
          (NEW.resident_id, NEW.grace, NEW.watch_h, NEW.step_h, NEW.usual_h, NEW.anchor_slot,
           NEW.wake_h, NEW.out_h, NEW.bathroom_h))
    EXECUTE FUNCTION anbu.sweep_due_now();
CREATE TRIGGER sweep_due_gateway_change AFTER INSERT OR DELETE ON anbu.gateway
    FOR EACH ROW EXECUTE FUNCTION anbu.sweep_due_now();
CREATE TRIGGER sweep_due_gateway_online
    AFTER UPDATE OF online, resident_id, removed_at ON anbu.gateway
    FOR EACH ROW
    WHEN ((OLD.online, OLD.resident_id, OLD.removed_at)
          IS DISTINCT FROM (NEW.online, NEW.resident_id, NEW.removed_at))
    EXECUTE FUNCTION anbu.sweep_due_now();

-- Every home with activity is due at once: the first sweep judges them all. Written after the
-- triggers, so a home whose activity arrives meanwhile is not missed (a row a trigger wrote
-- stands); the sweep's full pass adds any home still without a row (detectors.sweep_due).
INSERT INTO anbu.sweep_due (resident_id, due_at)
SELECT resident_id, '-infinity' FROM anbu.home_activity
ON CONFLICT (resident_id) DO NOTHING;
