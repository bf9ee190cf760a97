-- A batch the read models cannot apply (a "poison" event) is never skipped: the runner
-- stops at it, retries it on every tick, and records here what fails and since when, so
-- /health/ready can answer "failing" and operators can see the error. Applying any batch
-- clears the three columns in the same UPDATE that moves the checkpoint.
-- Unqualified names, like 0101: a rebuild runs this file in its scratch schema too.
ALTER TABLE projection_checkpoints
    ADD COLUMN IF NOT EXISTS last_error        text,
    ADD COLUMN IF NOT EXISTS failing_position  bigint,
    ADD COLUMN IF NOT EXISTS failing_since     timestamptz;
