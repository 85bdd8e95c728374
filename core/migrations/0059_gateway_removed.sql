-- A gateway taken out of a home (issue 15, gateways' credentials from anbu): its registry row
-- stays only as the pending revocation of its broker account (revocation_pending, the record
-- end of service uses) until the broker has been told; registry.gateway_accounts then deletes
-- it. Its sensors are gone and its liveness is cleared, so no sweep or page counts it.
ALTER TABLE anbu.gateway ADD COLUMN removed_at timestamptz;
