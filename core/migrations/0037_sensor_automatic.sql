-- detectors issue: a plug that switches by itself (a fridge's compressor) is not a person.
-- Nightly learning sets the flag from each home's own history; ingest then leaves that plug's
-- steps out of home_activity, so the live sweep and `anbu detect` judge the same silences.
ALTER TABLE anbu.sensor ADD COLUMN automatic boolean NOT NULL DEFAULT false;
