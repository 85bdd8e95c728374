-- The ingest workers that split the gateways among them (ingest.shares), one row per MQTT
-- client id: each marks itself seen every few seconds, and ready once the broker has
-- acknowledged its share since its last connect. The live ready members own the gateways
-- that rendezvous hashing gives them; a worker lets a gateway go only to one of them.
CREATE TABLE anbu.ingest_members (
    client_id  text PRIMARY KEY,
    seen_at    timestamptz NOT NULL,
    ready_at   timestamptz            -- NULL: not (yet, or since its last connect) subscribed
);
