-- Who may download an attachment (services/api/attachments.py may_download) asks whether
-- a ticket was raised with it: without an index that parsed the JSON of every event
-- (4 s at a million events, for each download by an agent). Only TicketRaised events
-- carry a ticket's own attachments, so the index holds those alone. The query counts
-- the matches instead of taking the first (LIMIT 1 made the planner prefer a scan of
-- the whole log, expecting many matches).
CREATE INDEX IF NOT EXISTS events_raised_attachments_idx
    ON events USING gin (((data::jsonb) -> 'attachments'))
    WHERE type = 'TicketRaised';
