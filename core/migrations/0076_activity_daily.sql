-- dashboards issue 21: the dong's weekly review sums five weeks of each resident's activity; from
-- anbu.activity_hourly that is 840 rows a resident (2.9 s for a dong of 5,000), from one row a
-- local day it is 35. The daily rows are derived from the hourly ones by the triggers below, in
-- the transaction that writes the hours, whoever writes them (the worker's summary pass, a
-- rebuild after a dead-letter replay or a backfill, a hand-made correction): a late reading that
-- changes a past hour changes its day at once, and no job can fall behind or be forgotten. The
-- same under both storage modes: activity_hourly is a plain table in both (0042), so there is no
-- hypertable for a continuous aggregate to read, and one path gives one answer. Nothing expires
-- here by itself: a deleted hour leaves its day, so whatever retention the hours get, the days get.

-- The time zones whose local days are kept (the care programme's, ANBU_TIMEZONE). A day is a
-- local day, so each zone has its own rows; a zone not listed has none, and the review then reads
-- the hours as before, so a change of the setting is never wrong, only slower until the worker
-- lists the new zone (anbu.keep_activity_daily). A zone's days are kept from `kept_from` on (the
-- listing sums six weeks back, what the review reads and more, not the whole history); the
-- triggers leave older days alone and the review reads those from the hours.
CREATE TABLE anbu.activity_daily_zone (
    tz         text PRIMARY KEY,
    kept_from  date NOT NULL
);

CREATE TABLE anbu.activity_daily (
    tz             text NOT NULL REFERENCES anbu.activity_daily_zone(tz),
    resident_id    bigint NOT NULL REFERENCES anbu.resident(id),
    day            date NOT NULL,          -- the local day in tz of the hours' starts
    hours          integer NOT NULL,       -- hourly rows summed here (0: the row is removed)
    activity       integer NOT NULL,       -- a person's doings
    night          integer NOT NULL,       -- of which in the small hours (local 0:00-5:59)
    first_reading  timestamptz,            -- the day's first hour with readings (NULL: none)
    PRIMARY KEY (tz, resident_id, day)
) WITH (fillfactor = 70);  -- today's row is rewritten at each pass: room for its new versions

-- Folds a statement's change of activity_hourly into the days of every listed zone: the rows
-- that went (deleted, or as they were before an update) are subtracted, the rows that came are
-- added, so a pass that rewrites 100,000 hours touches 100,000 days once each and never re-reads
-- a day's other hours. Only an hour with readings that went (deleted, moved, or rewritten to none)
-- can take a day's first such hour away: that day's is found again from the hours; a day left
-- with no hours is removed.
CREATE FUNCTION anbu.activity_daily_fold() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    delta text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT resident_id, hour, activity, readings, 1 FROM came'
        WHEN 'DELETE' THEN 'SELECT resident_id, hour, activity, readings, -1 FROM went'
        ELSE 'SELECT resident_id, hour, activity, readings, 1 FROM came
              UNION ALL SELECT resident_id, hour, activity, readings, -1 FROM went' END;
    -- per hour that went: did its readings go (lost), did the hour itself go (left)
    gone text := CASE TG_OP
        WHEN 'DELETE' THEN 'SELECT resident_id, hour, readings > 0 AS lost, true AS left_
                              FROM went'
        ELSE 'SELECT w.resident_id, w.hour,
                     w.readings > 0 AND coalesce(c.readings, 0) = 0 AS lost,
                     c.hour IS NULL AS left_
                FROM went w LEFT JOIN came c USING (resident_id, hour)' END;
BEGIN
    EXECUTE format($q$
        WITH d AS (
            SELECT c.resident_id, z.tz, (c.hour AT TIME ZONE z.tz)::date AS day, c.sign,
                   c.activity, c.hour, c.readings,
                   extract(hour FROM c.hour AT TIME ZONE z.tz) < 6 AS night
              FROM (%s) c(resident_id, hour, activity, readings, sign)
              JOIN anbu.activity_daily_zone z ON (c.hour AT TIME ZONE z.tz)::date >= z.kept_from
        )
        INSERT INTO anbu.activity_daily AS a
               (tz, resident_id, day, hours, activity, night, first_reading)
        SELECT tz, resident_id, day, sum(sign), sum(sign * activity),
               coalesce(sum(sign * activity) FILTER (WHERE night), 0),
               min(hour) FILTER (WHERE sign > 0 AND readings > 0)
          FROM d GROUP BY tz, resident_id, day
         ORDER BY tz, resident_id, day  -- one order of row locks for every writer
        ON CONFLICT (tz, resident_id, day) DO UPDATE
           SET hours = a.hours + excluded.hours, activity = a.activity + excluded.activity,
               night = a.night + excluded.night,
               first_reading = LEAST(a.first_reading, excluded.first_reading)
         WHERE excluded.hours <> 0 OR excluded.activity <> 0 OR excluded.night <> 0
            OR excluded.first_reading < a.first_reading
            OR (a.first_reading IS NULL AND excluded.first_reading IS NOT NULL)$q$, delta);
    IF TG_OP = 'INSERT' THEN
        RETURN NULL;
    END IF;
    EXECUTE format($q$
        WITH g AS (%s)
        DELETE FROM anbu.activity_daily a
         USING g JOIN anbu.activity_daily_zone z ON (g.hour AT TIME ZONE z.tz)::date >= z.kept_from
         WHERE g.left_ AND a.tz = z.tz AND a.resident_id = g.resident_id
           AND a.day = (g.hour AT TIME ZONE z.tz)::date AND a.hours = 0$q$, gone);
    EXECUTE format($q$
        WITH g AS (%s)
        UPDATE anbu.activity_daily a
           SET first_reading = (
                 SELECT min(h.hour) FROM anbu.activity_hourly h
                  WHERE h.resident_id = a.resident_id AND h.readings > 0
                    AND h.hour >= a.day::timestamp AT TIME ZONE a.tz
                    AND h.hour < (a.day + 1)::timestamp AT TIME ZONE a.tz)
          FROM g JOIN anbu.activity_daily_zone z ON (g.hour AT TIME ZONE z.tz)::date >= z.kept_from
         WHERE g.lost AND a.tz = z.tz AND a.resident_id = g.resident_id
           AND a.day = (g.hour AT TIME ZONE z.tz)::date AND a.first_reading = g.hour$q$, gone);
    RETURN NULL;
END $fn$;

CREATE TRIGGER activity_daily_insert AFTER INSERT ON anbu.activity_hourly
    REFERENCING NEW TABLE AS came FOR EACH STATEMENT EXECUTE FUNCTION anbu.activity_daily_fold();
CREATE TRIGGER activity_daily_update AFTER UPDATE ON anbu.activity_hourly
    REFERENCING OLD TABLE AS went NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.activity_daily_fold();
CREATE TRIGGER activity_daily_delete AFTER DELETE ON anbu.activity_hourly
    REFERENCING OLD TABLE AS went FOR EACH STATEMENT EXECUTE FUNCTION anbu.activity_daily_fold();

-- Hours truncated (an operator's full recompute: TRUNCATE, then `anbu rebuild`): the days go
-- with them, so the rebuild's hours are not added to the days of the hours it replaced.
CREATE FUNCTION anbu.activity_daily_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM anbu.activity_daily;
    RETURN NULL;
END $fn$;
CREATE TRIGGER activity_daily_truncate AFTER TRUNCATE ON anbu.activity_hourly
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.activity_daily_truncate();

-- Lists a zone and sums its days from `since` (default: six weeks back, what the review reads and
-- more) from the hours already there (idempotent). Writers of the hours wait meanwhile (a lock that also conflicts with itself: two listings take
-- turns, rather than both waiting on the other's): none commits hours that the new days miss.
CREATE FUNCTION anbu.keep_activity_daily(zone text, since date DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM anbu.activity_daily_zone WHERE tz = zone) THEN
        RETURN;
    END IF;
    PERFORM now() AT TIME ZONE zone;  -- an unknown zone fails here, before anything is locked
    since := coalesce(since, (now() AT TIME ZONE zone)::date - 42);
    LOCK TABLE anbu.activity_hourly IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO anbu.activity_daily_zone (tz, kept_from) VALUES (zone, since)
        ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN  -- listed meanwhile by another session, with its days
        RETURN;
    END IF;
    INSERT INTO anbu.activity_daily (tz, resident_id, day, hours, activity, night, first_reading)
    SELECT zone, resident_id, (hour AT TIME ZONE zone)::date, count(*), sum(activity),
           coalesce(sum(activity) FILTER (WHERE extract(hour FROM hour AT TIME ZONE zone) < 6), 0),
           min(hour) FILTER (WHERE readings > 0)
      FROM anbu.activity_hourly
     WHERE hour >= since::timestamp AT TIME ZONE zone
     GROUP BY resident_id, (hour AT TIME ZONE zone)::date;
END $fn$;

-- The programme's default zone (core.config.Settings.timezone), with the hours already kept.
SELECT anbu.keep_activity_daily('Asia/Seoul');
