-- The weekly review's complete days, summed once a local day (issue 21: the review in p95 under
-- 100 ms). A resident's review is the 4 weeks and 6 days before today, which stay as they are
-- all day, and today: `review_base` keeps the first part per (zone, resident, day it was summed
-- for), filled by the review itself for the residents it lacks (dashboards/review.py), so a
-- dong's review reads 5,000 of these and 5,000 of today's daily rows instead of 175,000.
--
-- A change to a past day (a late reading, a rebuild) makes the sums of every later `as_of` of
-- that resident wrong: the trigger below removes them in the transaction that changes the day,
-- and the next review sums them again. A fill and a change never cross unseen: a fill holds
-- the exclusive side of one transaction lock while it reads the days and writes its sums, a
-- change the shared side while it removes (so a fill waits for a change's commit and reads it,
-- and a change waits for a fill's commit and removes what it wrote).
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

CREATE FUNCTION anbu.review_base_forget() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('anbu.review_base'));
    IF TG_OP = 'DELETE' THEN
        DELETE FROM anbu.review_base b USING went c
         WHERE b.tz = c.tz AND b.resident_id = c.resident_id AND c.day < b.as_of;
    ELSE
        DELETE FROM anbu.review_base b USING came c
         WHERE b.tz = c.tz AND b.resident_id = c.resident_id AND c.day < b.as_of;
    END IF;
    RETURN NULL;
END $fn$;

-- An update or a delete also changes an old version's day: the new rows of an update carry the
-- same (tz, resident, day) keys (activity_daily never moves a row to another day).
CREATE TRIGGER review_base_insert AFTER INSERT ON anbu.activity_daily
    REFERENCING NEW TABLE AS came FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_forget();
CREATE TRIGGER review_base_update AFTER UPDATE ON anbu.activity_daily
    REFERENCING NEW TABLE AS came FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_forget();
CREATE TRIGGER review_base_delete AFTER DELETE ON anbu.activity_daily
    REFERENCING OLD TABLE AS went FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_forget();
-- the days truncated with the hours (0076): every sum goes with them
CREATE FUNCTION anbu.review_base_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('anbu.review_base'));
    DELETE FROM anbu.review_base;
    RETURN NULL;
END $fn$;
CREATE TRIGGER review_base_truncate AFTER TRUNCATE ON anbu.activity_daily
    FOR EACH STATEMENT EXECUTE FUNCTION anbu.review_base_truncate();
