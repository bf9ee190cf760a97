-- The full-text (GIN) index on ticket_summaries.search is gone: every keyword list is
-- served by the ordered term index (0105, projections/queries.py), and maintaining GIN
-- entries cost each projected ticket more PostgreSQL time than the rest of its row
-- (and, with fastupdate, an occasional pending-list merge of hundreds of milliseconds
-- inside a projection batch). Without it, an update that leaves the other indexed
-- columns alone (a reply's new words) can be a HOT update.
-- Unqualified names, like 0101: a rebuild runs this file in its scratch schema too.
DROP INDEX IF EXISTS ticket_summaries_search_idx;
