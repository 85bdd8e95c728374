-- The findings a safety reading collapses into (ingest.urgent._anchors, issue 20 review): one
-- sensor's findings of one kind, by reading time. Without it every batch with a press or an
-- alarm scanned the resident's findings. anbu.findings is a plain table (not a hypertable),
-- so this is the same on PostgreSQL and TimescaleDB.
CREATE INDEX IF NOT EXISTS findings_urgent_anchor
    ON anbu.findings (resident_id, kind, ((details->>'sensor_id')), raised_at);
