-- The webhook delivery log's retention (issue 22, alerts.webhooks.prune_log): a delivery is
-- aged from when it finished (delivered, or cancelled with its subscription), never from when
-- it was queued, so a backlog cancelled today is kept its full time. Indexes for the nightly
-- prune: the finished deliveries by age, and the attempts by delivery (each deleted delivery's
-- foreign-key check and the attempts' own delete would read the whole table without it).
-- Made in the migration's transaction: the tables are small where this first runs.
ALTER TABLE anbu.webhook_delivery ADD COLUMN finished_at timestamptz;
UPDATE anbu.webhook_delivery
   SET finished_at = CASE WHEN state = 'delivered' THEN delivered_at ELSE now() END
 WHERE state <> 'pending';
ALTER TABLE anbu.webhook_delivery
    ADD CONSTRAINT webhook_delivery_finished CHECK ((state = 'pending') = (finished_at IS NULL));
CREATE INDEX webhook_delivery_finished_at ON anbu.webhook_delivery (finished_at, id)
    WHERE state <> 'pending';
CREATE INDEX webhook_attempt_delivery ON anbu.webhook_attempt (delivery_id);
