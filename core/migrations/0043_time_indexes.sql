-- Findings and calls are appended in time order: a BRIN index lets the last day's rows be found
-- without reading the whole table (the metrics' 24-hour counts, a resident's week of findings).
CREATE INDEX findings_raised_brin ON anbu.findings USING brin (raised_at);
CREATE INDEX calls_created_brin ON anbu.calls USING brin (created_at);
