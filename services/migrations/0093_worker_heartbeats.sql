-- Each running worker's last sign of life (services/heartbeat.py): /health/ready reports
-- the worker as degraded when none has reported lately, since without one projections
-- fall behind and SLA breaches go unrecorded while commands still succeed.
CREATE TABLE IF NOT EXISTS worker_heartbeats (
    worker_id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL
);
