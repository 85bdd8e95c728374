-- The resident card (dashboards/resident_card.py) reads a resident's last calls and alerts:
-- without these, every card read scanned both tables (calls had only its BRIN on created_at).
CREATE INDEX IF NOT EXISTS calls_resident_created
    ON anbu.calls (resident_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_resident_opened
    ON anbu.alerts (resident_id, opened_at DESC, id DESC);
