-- Who may download an attachment (services/api/attachments.py may_download) asks which
-- messages carry it: an index of the messages that have any, instead of a scan of every
-- message. The query must keep the predicate and use @> for the index to apply.
CREATE INDEX IF NOT EXISTS ticket_messages_attachments_idx
    ON ticket_messages USING gin (attachments)
    WHERE attachments <> '{}';
