-- An ordered inverted index for keyword lists (projections/queries.py): one row per
-- distinct lexeme of each ticket's search vector, so the tickets containing a lexeme are
-- read newest first and a page stops after its last row, however many tickets match.
-- Maintained with ticket_summaries in the same batch (projections/tickets.py); lexemes
-- only ever join a ticket (its search vector only grows). Terms are lexemes, compared
-- byte-wise (collation "C").
--
-- The index leads with walk_key: the term's hash in the high 32 bits, the whole seconds
-- of created_at since 2000 in the low 32. Within one term, (walk_key, created_at,
-- ticket_id) orders exactly as (created_at, ticket_id), so a backward scan over the
-- term's key range is the newest-first walk; and the leading column has nearly one value
-- per row instead of one per term, which makes building the index (sorting every row of
-- the table, in a rebuild) several times cheaper. A hash collision only puts another
-- term's rows in the range; the walk keeps ``term = $1`` (checked in the index).
-- Every writer computes it with projections/tickets.py term_key_sql (the backfill below
-- spells the same expression out): a plain column, so a rebuild's bulk load does not
-- evaluate it once per row; tests check that every stored key equals the expression.
-- A unique index rather than a primary key, so a rebuild loads the table bare and builds
-- the index once afterwards (projections/rebuild.py drops and recreates plain indexes).
-- Unqualified names, like 0101: a rebuild runs this file in its scratch schema too.
CREATE TABLE IF NOT EXISTS ticket_search_terms (
    term        text COLLATE "C" NOT NULL,
    created_at  timestamptz NOT NULL,
    ticket_id   bigint NOT NULL,
    walk_key    bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ticket_search_terms_walk_idx
    ON ticket_search_terms (walk_key, created_at, ticket_id, term);
-- Existing read models: index what they hold (an empty scratch schema: nothing to do).
-- The runner's lock (projections/runner.py RUNNER_LOCK) keeps a worker from applying a
-- batch meanwhile.
SELECT pg_advisory_xact_lock(7310101);
INSERT INTO ticket_search_terms (term, created_at, ticket_id, walk_key)
SELECT t.term, s.created_at, s.id,
       (hashtext(t.term)::bigint << 32)
       | least(greatest(floor(date_part('epoch',
             s.created_at - timestamptz '2000-01-01 00:00:00+00')), 0), 4294967295)::bigint
FROM ticket_summaries s, unnest(tsvector_to_array(s.search)) AS t(term)
ON CONFLICT DO NOTHING;
ANALYZE ticket_search_terms;
