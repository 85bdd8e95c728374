-- Each home's learned routine (detectors write it nightly; the sweep reads it).
CREATE TABLE anbu.baselines (
    resident_id   bigint PRIMARY KEY REFERENCES anbu.resident(id),
    learned_at    timestamptz NOT NULL,     -- learned from readings strictly before this
    history_days  real NOT NULL,
    grace         boolean NOT NULL,         -- too little history: the fixed rule applies
    watch_h       real[],                   -- per 30-minute local slot: silence reaching watch
    step_h        real[],                   -- per slot: hours from one level to the next
    usual_h       real[],                   -- per slot: 90 % of silences end within this
    model         jsonb NOT NULL            -- the whole baseline (detectors.learning.Baseline)
);
