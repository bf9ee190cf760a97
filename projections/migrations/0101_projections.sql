-- Read models built only from events (projections/*). Names are UNQUALIFIED on purpose:
-- `ticketing migrate` creates them in the live schema (public); a rebuild runs the same
-- files with search_path set to a scratch schema, fills it and swaps the tables in.
-- Keep every projection migration schema-agnostic (no "public." prefixes).

-- Concatenates tsvectors in order: the search column is a left fold of
-- subject, description and public message bodies, identical on incremental and bulk paths.
CREATE OR REPLACE AGGREGATE ticketing_tsvector_agg(tsvector) (
    SFUNC = tsvector_concat,
    STYPE = tsvector,
    INITCOND = ''
);

CREATE TABLE IF NOT EXISTS ticket_summaries (
    id                       bigint PRIMARY KEY,
    subject                  text NOT NULL,
    description              text NOT NULL,
    status                   text NOT NULL,
    priority                 text NOT NULL,
    category_id              bigint NOT NULL,
    requester_id             text NOT NULL,
    requester_role           text NOT NULL,
    requester_name           text,
    assignee                 text,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    version                  integer NOT NULL,
    first_response_due_at    timestamptz,
    resolution_due_at        timestamptz,
    first_response_at        timestamptz,
    sla_paused               boolean NOT NULL DEFAULT false,
    first_response_breached  boolean NOT NULL DEFAULT false,
    resolution_breached      boolean NOT NULL DEFAULT false,
    rating                   integer,
    rating_comment           text,
    message_count            integer NOT NULL DEFAULT 0,
    public_message_count     integer NOT NULL DEFAULT 0,
    last_activity_at         timestamptz NOT NULL,   -- the latest message, else when raised
    closed_at                timestamptz,
    resolved_at              timestamptz,
    resolution               text,
    resolution_type          text,
    resolution_subject       text,
    reopened_count           integer NOT NULL DEFAULT 0,
    last_position            bigint NOT NULL,
    -- the folded domain.ticket.Ticket (messages left out), msgpack: the next batch
    -- continues the fold from here, so the row always equals a fold of its events
    state                    bytea NOT NULL,
    search                   tsvector NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ticket_summaries_created_idx
    ON ticket_summaries (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS ticket_summaries_requester_idx
    ON ticket_summaries (requester_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS ticket_summaries_assignee_idx
    ON ticket_summaries (assignee, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS ticket_summaries_status_idx
    ON ticket_summaries (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS ticket_summaries_category_idx
    ON ticket_summaries (category_id);
CREATE INDEX IF NOT EXISTS ticket_summaries_search_idx
    ON ticket_summaries USING gin (search);
-- The SLA sweep's work lists: open targets that can still be breached.
CREATE INDEX IF NOT EXISTS ticket_summaries_first_response_due_idx
    ON ticket_summaries (first_response_due_at)
    WHERE status NOT IN ('resolved', 'closed') AND NOT sla_paused
      AND first_response_at IS NULL AND NOT first_response_breached;
CREATE INDEX IF NOT EXISTS ticket_summaries_resolution_due_idx
    ON ticket_summaries (resolution_due_at)
    WHERE status NOT IN ('resolved', 'closed') AND NOT sla_paused AND NOT resolution_breached;

CREATE TABLE IF NOT EXISTS ticket_messages (
    id                    bigint PRIMARY KEY,          -- the message_id of MessagePosted
    ticket_id             bigint NOT NULL,
    author_id             text NOT NULL,
    author_role           text NOT NULL,
    author_name           text,
    body                  text NOT NULL,
    body_type             text NOT NULL,
    visibility            text NOT NULL,
    attachments           text[] NOT NULL,
    external_attachments  json NOT NULL,
    created_at            timestamptz NOT NULL,
    position              bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_messages_ticket_idx ON ticket_messages (ticket_id, position);

-- One row per event, in global position order.
CREATE TABLE IF NOT EXISTS ticket_logs (
    position      bigint PRIMARY KEY,
    ticket_id     bigint NOT NULL,
    version       integer NOT NULL,
    requester_id  text,
    action        text NOT NULL,      -- the event type
    action_text   text NOT NULL,      -- a phrase for people: "Raised the ticket"
    visibility    text NOT NULL,      -- 'internal' for internal notes, else 'public'
    actor_id      text NOT NULL,
    actor_role    text NOT NULL,
    actor_name    text,
    at            timestamptz NOT NULL,
    details       json NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_logs_ticket_idx ON ticket_logs (ticket_id, position);
CREATE INDEX IF NOT EXISTS ticket_logs_requester_idx ON ticket_logs (requester_id, position);

CREATE TABLE IF NOT EXISTS category_counts (
    category_id  bigint NOT NULL,
    status       text NOT NULL,
    count        integer NOT NULL,
    PRIMARY KEY (category_id, status)
);

CREATE TABLE IF NOT EXISTS agent_counts (
    assignee  text NOT NULL,
    status    text NOT NULL,
    count     integer NOT NULL,
    PRIMARY KEY (assignee, status)
);

-- Where each projection has got to in commit-safe global order; moved in the same
-- transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name            text PRIMARY KEY,
    transaction_id  xid8 NOT NULL DEFAULT '0',
    position        bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO projection_checkpoints (name) VALUES
    ('ticket_summaries'), ('ticket_messages'), ('ticket_logs'), ('counts')
ON CONFLICT (name) DO NOTHING;
