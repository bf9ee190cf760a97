-- Targets that passed unmet and were then met late, paused, stopped or retargeted before
-- an SLA sweep recorded them (domain.sla.note_missed): the earliest such due time per
-- ticket, NULL for nearly every row. The sweep's second work list (workers/sla.py) is
-- this small partial index.
ALTER TABLE ticket_summaries ADD COLUMN IF NOT EXISTS sla_missed_due timestamptz;
CREATE INDEX IF NOT EXISTS ticket_summaries_sla_missed_idx
    ON ticket_summaries (sla_missed_due, id) WHERE sla_missed_due IS NOT NULL;
