-- The ingest workers that split the gateways among them (ingest.shares), one row per MQTT
-- client id: each marks itself seen every few seconds, and owns the gateways that rendezvous
-- hashing over the members gives it. A member stays one while the broker may still hold its
-- persistent session (seen within ANBU_MQTT_SESSION_EXPIRY_S), so a worker that is down keeps
-- its share queued for it, as a shared subscription's member did.
CREATE TABLE anbu.ingest_members (
    client_id  text PRIMARY KEY,
    seen_at    timestamptz NOT NULL
);
