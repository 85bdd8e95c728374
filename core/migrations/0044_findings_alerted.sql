-- A stored finding must end in an alert (issue 13). alerts/ sets `alerted_at` in the very
-- transaction that opens or raises the finding's alert (or finds its open alert already as
-- severe); until then the finding is waiting, and the worker's reconciling pass
-- (AlertService.reconcile_findings) claims it with FOR UPDATE SKIP LOCKED and hands it over,
-- so a crash, a deploy or an error between the finding's commit and its alert's loses nothing.
-- A failed hand-over is counted and retried after a back-off (`alert_retry_at`).
-- alerts/ writes only these three columns of the detectors' table.
ALTER TABLE anbu.findings
    ADD COLUMN alerted_at     timestamptz,
    ADD COLUMN alert_tries    integer NOT NULL DEFAULT 0,
    ADD COLUMN alert_retry_at timestamptz;

-- Every finding stored before this migration was handed to alerts by the old path (or lost
-- long ago): count it as alerted, so that deploying opens no old alerts.
UPDATE anbu.findings SET alerted_at = raised_at WHERE alerted_at IS NULL;

-- The reconciler's queue: small, since a finding leaves it when its alert commits.
CREATE INDEX findings_not_alerted ON anbu.findings (id) WHERE alerted_at IS NULL;
