-- Lists filtered on status and priority together (the support desk's queue view, e.g.
-- ?status=open&priority=high) walk this index in page order and stop after one page,
-- instead of fetching and sorting every ticket of that status.
-- Unqualified names, like 0101: a rebuild runs this file in its scratch schema too.
CREATE INDEX IF NOT EXISTS ticket_summaries_status_priority_idx
    ON ticket_summaries (status, priority, created_at DESC, id DESC);
