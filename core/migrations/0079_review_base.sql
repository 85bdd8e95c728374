-- The weekly review's complete days, summed once a local day (issue 21: the review in p95 under
-- 100 ms). A resident's review is the 4 weeks and 6 days before today, which stay as they are
-- all day, and today: `review_base` keeps the first part per (zone, resident, day it was summed
-- for), filled by the review itself for the residents it lacks (dashboards/review.py), so a
-- dong's review reads 5,000 of these and 5,000 of today's daily rows instead of 175,000.
--
-- A change to a past day (a late reading, a rebuild) makes the sums of every later `as_of` of
-- that resident wrong: the trigger below removes them in the transaction that changes the day,
-- and the next review sums them again. A fill and a change never cross unseen: a fill holds
-- the exclusive side of one transaction lock (advisory, class 'revb') while it reads the days
-- and writes its sums, in a short transaction of its own at READ COMMITTED, taken only if free
-- (else the review reads the days as they are); a change holds the shared side while it
-- removes (so a fill waits for no one and reads every committed change, and a change waits for
-- a fill's commit and removes what it wrote). A review reads a resident without sums from the
-- days themselves in the same statement, so a change committing between a fill and the read
-- is never shown as a missing history.
CREATE TABLE anbu.review_base (
    tz               text NOT NULL,
    resident_id      bigint NOT NULL REFERENCES anbu.resident(id) ON DELETE CASCADE,
    as_of            date NOT NULL,        -- the local day these sums end before
    week_activity    bigint NOT NULL,      -- the 6 days before as_of
    before_activity  bigint NOT NULL,      -- the 28 days before those
    days_with_data   integer NOT NULL,     -- of the 6, days with any reading
    night            bigint NOT NULL,      -- the 6 days' small hours
    first_reading    timestamptz,          -- the first hour with readings of the 34 days
    PRIMARY KEY (tz, resident_id, as_of)
);
CREATE INDEX review_base_as_of ON anbu.review_base (tz, as_of);  -- the prune of old days

CREATE FUNCTION anbu.review_base_forget() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    changed text := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT tz, resident_id, day FROM came'
        WHEN 'DELETE' THEN 'SELECT tz, resident_id, day FROM went'
        ELSE 'SELECT tz, resident_id, day FROM came UNION ALL
              SELECT tz, resident_id, day FROM went' END;
    any_row boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (%s)', changed) INTO any_row;
    IF NOT any_row THEN  -- nothing changed: no lock, no work
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1919252066, 0);  -- 'revb'
    EXECUTE format($q$
        DELETE FROM anbu.review_base b USING (%s) c
         WHERE b.tz = c.tz AND b.resident_id = c.resident_id AND c.day < b.as_of$q$, changed);
    RETURN NULL;
END $fn$;

CREATE TRIGGER review_base_insert AFTER INSERT ON anbu.activity_daily
    REFERENCING NEW TABLE AS came FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_forget();
CREATE TRIGGER review_base_update AFTER UPDATE ON anbu.activity_daily
    REFERENCING OLD TABLE AS went NEW TABLE AS came
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_forget();
CREATE TRIGGER review_base_delete AFTER DELETE ON anbu.activity_daily
    REFERENCING OLD TABLE AS went FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_forget();
-- the days truncated with the hours (0076): every sum goes with them
CREATE FUNCTION anbu.review_base_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1919252066, 0);  -- 'revb'
    DELETE FROM anbu.review_base;
    RETURN NULL;
END $fn$;
CREATE TRIGGER review_base_truncate AFTER TRUNCATE ON anbu.activity_daily
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_truncate();
