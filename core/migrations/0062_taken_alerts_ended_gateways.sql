-- What a care manager's acknowledgement or resolution leaves behind: the alert's SMS and voice
-- notifications not yet sent are 'cancelled' in that transaction (nobody needs telling any
-- more), instead of staying 'pending' for ever. Written so that it can run again.
ALTER TABLE anbu.notifications DROP CONSTRAINT IF EXISTS notifications_status;
ALTER TABLE anbu.notifications
    ADD CONSTRAINT notifications_status
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled'));
UPDATE anbu.notifications n SET status = 'cancelled', error_code = a.state,
       updated_at = now()
  FROM anbu.alerts a
 WHERE a.id = n.alert_id AND n.status = 'pending' AND n.channel IN ('sms', 'voice')
   AND a.state IN ('acknowledged', 'resolved');

-- Residents whose service ended before 0057 (or by a plain UPDATE of their status) still have
-- live broker accounts on their gateways: mark them for revocation, which the nightly purge
-- (alerts.course.revoke_pending) carries out or keeps pending without broker credentials.
UPDATE anbu.gateway g SET revocation_pending = now()
  FROM anbu.resident r
 WHERE r.id = g.resident_id AND r.status = 'ended'
   AND g.revoked_at IS NULL AND g.revocation_pending IS NULL;

-- A finding handed over without an alert says why (alerts/ writes it with `alerted_at`):
-- 'service_ended' when the resident's service ended before (or while) it was handed over, so
-- nobody is called about a resident no longer in the service.
ALTER TABLE anbu.findings ADD COLUMN IF NOT EXISTS not_alerted text;
