-- The district's monthly report (alerts.report) reads one month of rounds and alerts and the
-- transfers of the residents of its dongs; these indexes keep a request from reading whole
-- tables. IF NOT EXISTS: an operator who built one by hand beforehand (CONCURRENTLY, on a busy
-- server) keeps it. The tables are plain in both storage modes (only readings is a hypertable
-- or partitioned), so the same statements serve both.
--
-- Btree, not BRIN (calls_created_brin in 0043 is BRIN because a call row is written and then
-- barely touched): an alert is updated at every transition and a round at every call, and each
-- update writes the row's new version wherever there is room, so neither table stays in the
-- physical order of opened_at, resolved_at or slot, and a BRIN range would soon cover most of
-- the table. resolved_at is set weeks after insertion at times; slots are planned ahead.

-- Transfers only (field = 'dong_code'): the report's dong spans partition them by resident and
-- order them by time; the other audited changes, far more numerous, stay out of the index.
CREATE INDEX IF NOT EXISTS resident_changes_dong
    ON anbu.resident_changes (resident_id, at) WHERE field = 'dong_code';

CREATE INDEX IF NOT EXISTS checkin_rounds_slot ON anbu.checkin_rounds (slot);

CREATE INDEX IF NOT EXISTS alerts_opened ON anbu.alerts (opened_at);

-- Partial: an alert still open has no resolved_at.
CREATE INDEX IF NOT EXISTS alerts_resolved ON anbu.alerts (resolved_at)
    WHERE resolved_at IS NOT NULL;
