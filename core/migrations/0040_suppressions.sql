-- detectors issue: an away or hospital status suppresses inactivity, and the sweep records that
-- it did: which level the silence reached while suppressed, under which status, until when.
CREATE TABLE anbu.suppressions (
    id            bigserial PRIMARY KEY,
    resident_id   bigint NOT NULL REFERENCES anbu.resident(id),
    kind          text NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('watch', 'warning', 'critical')),
    silence_since timestamptz NOT NULL,     -- the last activity the silence is counted from
    reached_at    timestamptz NOT NULL,     -- when the sweep saw the level reached
    status        text NOT NULL,            -- away / hospital
    status_until  timestamptz NOT NULL,
    UNIQUE (resident_id, kind, severity, silence_since)
);
