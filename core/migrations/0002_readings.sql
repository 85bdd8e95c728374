-- Readings: a TimescaleDB hypertable where the server can run TimescaleDB, otherwise native
-- daily range partitions (created ahead, plus a default partition so nothing is ever refused)
-- with a BRIN index on ts. Unique on (sensor_id, ts) either way: a reading delivered twice is
-- stored once.
--
-- The mode is decided by asking the server, never by trying CREATE EXTENSION and catching the
-- failure (on a server that has the extension installed but not preloaded, as a fresh cluster
-- from the distribution packages is, loading it kills the backend): TimescaleDB when the
-- extension is available AND timescaledb is in shared_preload_libraries. The setting
-- anbu.storage ('auto', the default; 'partitions'; 'timescaledb', which fails when the server
-- cannot) overrides that for a database being created (core.db.migrate(storage=...), or
-- ALTER DATABASE ... SET anbu.storage). The choice is recorded in anbu.storage_mode and never
-- changes for an existing database.

CREATE TABLE anbu.storage_mode (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mode       text NOT NULL CHECK (mode IN ('timescaledb', 'partitions'))
);

DO $migration$
DECLARE
    wanted     text := coalesce(nullif(current_setting('anbu.storage', true), ''), 'auto');
    available  boolean := EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb');
    preloaded  boolean := current_setting('shared_preload_libraries')
                          ~ '(^|[\s,"/])timescaledb([\s,"]|$)';
    have_timescale boolean := false;
    why        text;
BEGIN
    IF wanted NOT IN ('auto', 'partitions', 'timescaledb') THEN
        RAISE EXCEPTION 'anbu.storage = %: expected auto, partitions or timescaledb', wanted;
    END IF;
    IF wanted = 'partitions' THEN
        why := 'anbu.storage = partitions was asked for';
    ELSIF NOT available THEN
        why := 'the timescaledb extension is not installed on this server';
    ELSIF NOT preloaded THEN
        why := 'the timescaledb extension is installed but not preloaded'
               ' (add timescaledb to shared_preload_libraries and restart PostgreSQL to use it)';
    ELSE
        have_timescale := true;
    END IF;
    IF wanted = 'timescaledb' AND NOT have_timescale THEN
        RAISE EXCEPTION 'anbu.storage = timescaledb, but %', why;
    END IF;

    IF have_timescale THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE anbu.readings (
            ts           timestamptz NOT NULL,
            sensor_id    bigint NOT NULL,
            value        double precision NOT NULL,
            received_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (sensor_id, ts)
        );
        EXECUTE $$SELECT create_hypertable('anbu.readings', 'ts',
                    chunk_time_interval => interval '1 day')$$;
        EXECUTE $$ALTER TABLE anbu.readings SET (timescaledb.compress,
                    timescaledb.compress_segmentby = 'sensor_id')$$;
        EXECUTE $$SELECT add_compression_policy('anbu.readings', interval '7 days')$$;
        EXECUTE $$SELECT add_retention_policy('anbu.readings', interval '400 days')$$;
        INSERT INTO anbu.storage_mode (mode) VALUES ('timescaledb');
        RAISE NOTICE 'anbu storage: timescaledb (readings are a hypertable)';
    ELSE
        CREATE TABLE anbu.readings (
            ts           timestamptz NOT NULL,
            sensor_id    bigint NOT NULL,
            value        double precision NOT NULL,
            received_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (sensor_id, ts)
        ) PARTITION BY RANGE (ts);
        CREATE TABLE anbu.readings_default PARTITION OF anbu.readings DEFAULT;
        CREATE INDEX readings_ts_brin ON anbu.readings USING brin (ts);
        INSERT INTO anbu.storage_mode (mode) VALUES ('partitions');
        RAISE NOTICE 'anbu storage: native partitions, because %', why;
    END IF;
END
$migration$;

-- Creates the daily partitions covering [first_day, first_day + days) in UTC,
-- moving any rows already parked in the default partition. A no-op under Timescale.
CREATE FUNCTION anbu.ensure_reading_partitions(first_day date, days integer)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    d        date;
    part     text;
    created  integer := 0;
    lo       timestamptz;
    hi       timestamptz;
BEGIN
    IF (SELECT mode FROM anbu.storage_mode) <> 'partitions' THEN
        RETURN 0;
    END IF;
    FOR i IN 0 .. days - 1 LOOP
        d := first_day + i;
        part := 'readings_' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('anbu.' || part) IS NOT NULL;
        lo := (d::timestamp AT TIME ZONE 'UTC');
        hi := ((d + 1)::timestamp AT TIME ZONE 'UTC');
        PERFORM pg_advisory_xact_lock(hashtext('anbu.readings.partitions'));
        CONTINUE WHEN to_regclass('anbu.' || part) IS NOT NULL;
        EXECUTE format('CREATE TABLE anbu.%I (LIKE anbu.readings INCLUDING DEFAULTS)', part);
        EXECUTE format(
            'WITH moved AS (DELETE FROM anbu.readings_default WHERE ts >= %L AND ts < %L RETURNING *)
             INSERT INTO anbu.%I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE anbu.readings ATTACH PARTITION anbu.%I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$fn$;

SELECT anbu.ensure_reading_partitions((now() AT TIME ZONE 'UTC')::date - 2, 10);
