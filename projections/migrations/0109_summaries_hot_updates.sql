-- A reply's summary update can be a HOT update (heap-only: no index entry written), as
-- long as it changes no column an index of ticket_summaries covers, predicates included,
-- and the row's page has room for the new version. Three things stood in the way:
--  * the full-text index on ``search``, which every public message extends: keyword
--    queries now find their candidates through ticket_search_terms (0105), which holds
--    the same lexemes, and check ``search @@ query`` on the rows (projections/queries.py);
--  * the first-response work list, a partial index whose predicate names
--    first_response_at, which a ticket's first staff reply sets: the list is now a table
--    of its own, sla_first_response_queue, maintained with the summaries
--    (projections/sla_queue.py), so a first reply deletes a row there instead;
--  * full pages: a fillfactor of 80 leaves each page room for its rows' next versions.
-- At a million tickets, the ten index entries each non-HOT update wrote, on pages far
-- beyond shared_buffers, cost the message path about a third of its throughput (README
-- "Performance"). The fillfactor applies to pages written from now on: a rebuild
-- (`ticketing projections rebuild`) rewrites the table with it.
-- Unqualified names, like 0101: a rebuild runs this file in its scratch schema too.
-- The runner's lock first (projections/runner.py RUNNER_LOCK): a worker holding it waits
-- for this file's table locks, so taking it after them could deadlock with one.
SELECT pg_advisory_xact_lock(7310101);
DROP INDEX IF EXISTS ticket_summaries_search_idx;
ALTER TABLE ticket_summaries SET (fillfactor = 80);

-- The SLA sweep's first-response work list (workers/sla.py): one row per ticket whose
-- first-response target can still be breached (open, unpaused, unanswered, unbreached),
-- due_at its first_response_due_at.
CREATE TABLE IF NOT EXISTS sla_first_response_queue (
    ticket_id  bigint PRIMARY KEY,
    due_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sla_first_response_queue_due_idx
    ON sla_first_response_queue (due_at, ticket_id);
-- Existing read models: fill it from the summaries (the runner's lock keeps a worker
-- from applying a batch meanwhile); an empty scratch schema: nothing to do.
INSERT INTO sla_first_response_queue (ticket_id, due_at)
SELECT id, first_response_due_at FROM ticket_summaries
WHERE status NOT IN ('resolved', 'closed') AND NOT sla_paused
  AND first_response_at IS NULL AND NOT first_response_breached
  AND first_response_due_at IS NOT NULL
ON CONFLICT DO NOTHING;
DROP INDEX IF EXISTS ticket_summaries_first_response_due_idx;
