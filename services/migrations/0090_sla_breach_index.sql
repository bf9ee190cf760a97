-- SlaBreached events are few; a partial index lets /metrics count them without
-- scanning the whole log (ticketing_sla_breaches_total via workers.sla.breach_count).
CREATE INDEX IF NOT EXISTS events_sla_breached_idx ON events (position) WHERE type = 'SlaBreached';
