-- When a finding was stored, by the database's clock (issue 20 review): the reconciler
-- (AlertService.reconcile_findings) takes only findings that waited a while, never one the
-- urgent listener is handing over that very moment (it opened those alerts late, labelled
-- '누락 복구로 열림', and their messages waited for the outbox job). Rows stored before this
-- migration get the migration's time: they were handed over long ago, or wait no longer
-- than RECONCILE_AFTER more.
ALTER TABLE anbu.findings ADD COLUMN IF NOT EXISTS stored_at timestamptz NOT NULL DEFAULT now();
