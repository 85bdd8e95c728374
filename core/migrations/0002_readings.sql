-- Readings: a TimescaleDB hypertable where the extension can be created,
-- otherwise native daily range partitions (created ahead, plus a default
-- partition so nothing is ever refused) with a BRIN index on ts.
-- Unique on (sensor_id, ts) either way: a reading delivered twice is stored once.

CREATE TABLE anbu.storage_mode (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mode       text NOT NULL CHECK (mode IN ('timescaledb', 'partitions'))
);

DO $migration$
DECLARE
    have_timescale boolean := false;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        have_timescale := true;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'timescaledb unavailable (%); using native partitions', SQLERRM;
    END;

    IF have_timescale THEN
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
