-- TimescaleDB only (a no-op on native partitions): pin the compression of anbu.readings to how
-- readings are read. Every reader asks for one sensor's (or one home's few sensors') readings
-- over a span of ts, or the latest before a moment (ORDER BY ts DESC LIMIT 1): so segments by
-- sensor_id (as 0002 set), each ordered by ts descending, which also keeps min/max ts per
-- compressed batch for skipping. The hourly summaries find what arrived lately by received_at:
-- a min/max sparse index on it lets that scan skip compressed batches (Timescale makes one by
-- itself from the BRIN index of 0042 while timescaledb.auto_sparse_indexes is on; named here
-- so that it does not depend on that setting).
-- Policies stay as 0002 set them: chunks (one day each) are compressed once older than
-- 7 days, and dropped after 400 days. A late reading into a compressed chunk is still stored
-- (and a duplicate still refused): INSERT ... ON CONFLICT DO NOTHING works on compressed
-- chunks (tests/integration/test_ingest_store.py checks it).
-- New settings apply to chunks compressed from now on; chunks already compressed keep theirs.
DO $migration$
BEGIN
    IF (SELECT mode FROM anbu.storage_mode) = 'timescaledb' THEN
        EXECUTE $$ALTER TABLE anbu.readings SET (
                    timescaledb.compress_segmentby = 'sensor_id',
                    timescaledb.compress_orderby = 'ts DESC',
                    timescaledb.sparse_index = 'minmax(received_at)')$$;
    END IF;
END
$migration$;
