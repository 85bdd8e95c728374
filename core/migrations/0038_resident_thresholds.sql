-- detectors issue: per-home overrides of the inactivity levels are data, set by the care manager.
-- Hours of silence at which watch / warning / critical are reached at the latest for this
-- resident (NULL: the learned routine or the fixed rule decides alone). Each caps its level.
ALTER TABLE anbu.resident
    ADD COLUMN watch_h_max    real CHECK (watch_h_max > 0),
    ADD COLUMN warning_h_max  real CHECK (warning_h_max > 0),
    ADD COLUMN critical_h_max real CHECK (critical_h_max > 0),
    ADD CONSTRAINT resident_levels_rise CHECK (
        coalesce(watch_h_max, 0) <= coalesce(warning_h_max, 'infinity')
        AND coalesce(warning_h_max, 0) <= coalesce(critical_h_max, 'infinity')
        AND coalesce(watch_h_max, 0) <= coalesce(critical_h_max, 'infinity'));
