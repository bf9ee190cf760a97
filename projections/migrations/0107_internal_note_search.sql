-- Keyword lists for agents also find tickets by the words of their internal notes
-- (projections/queries.py _internal_note_matches: each note on its own, beside the public
-- text's ``search``). Customers never search them. A partial index: public messages are
-- searched through the summaries' vector, so only internal notes are indexed here. The
-- expression must stay the one the query spells out. fastupdate off: every search would
-- otherwise read the whole pending list of recent notes (1.5 ms with 10,000 of them, as a
-- rebuild leaves it), and notes are a small share of writes.
CREATE INDEX IF NOT EXISTS ticket_messages_internal_search_idx
    ON ticket_messages USING gin (to_tsvector('english', body))
    WITH (fastupdate = off)
    WHERE visibility = 'internal';
