-- The few fields of a learned routine the live sweep's routine checks read ("not up",
-- "not back", bathroom), as columns: the sweep no longer extracts them from each candidate's
-- whole `model` document (TOASTed and decompressed per row at a million homes).
ALTER TABLE anbu.baselines
    ADD COLUMN anchor_slot  smallint,   -- the night's stillest local half hour (0-47)
    ADD COLUMN wake_h       real,       -- latest usual first activity after it, local hours
    ADD COLUMN out_h        real,       -- the longest outing seen, hours
    ADD COLUMN bathroom_h   real;       -- watch for a silence begun in the bathroom, hours

UPDATE anbu.baselines
   SET anchor_slot = (model->>'anchor_slot')::smallint,
       wake_h = (model->>'wake_h')::real,
       out_h = (model->'out_h'->>0)::real,
       bathroom_h = (model->'bathroom_h'->>0)::real;
