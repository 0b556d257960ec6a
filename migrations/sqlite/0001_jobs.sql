-- The job table is the single source of truth: every ingress writes a row before anything else
-- happens, and every transition is a guarded UPDATE on it. Times are Unix milliseconds (UTC).
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    params          TEXT    NOT NULL,            -- JSON object as submitted (or the raw text when rejected)
    source          TEXT    NOT NULL,            -- amqp | cron | cli | webhook
    schedule        TEXT,                        -- cron schedule name, for overlap checks
    status          TEXT    NOT NULL,            -- queued | running | following | succeeded | failed | rejected | skipped
    claimed_from    TEXT,                        -- the status a running job was claimed from (queued | following)
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    next_run_at     INTEGER NOT NULL,
    jid             TEXT,                        -- the remote job id the cloud returned
    trace_id        TEXT,                        -- trace id / request id of the last response
    http_status     INTEGER,
    error_code      TEXT,
    error_msg       TEXT,
    checkpoint      TEXT,                        -- JSON, kind-specific progress that survives a restart
    result          TEXT,                        -- JSON, kind-specific outcome
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    updated_at      INTEGER NOT NULL
);

-- A key names one job; a rejected submission does not hold its key, so a corrected resend works.
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> 'rejected';
CREATE INDEX jobs_due ON jobs (status, next_run_at);
CREATE INDEX jobs_schedule ON jobs (schedule, status) WHERE schedule IS NOT NULL;
CREATE INDEX jobs_kind_created ON jobs (kind, created_at);

-- One row per attempt: what an operator reads to learn why a job was retried.
CREATE TABLE attempts (
    job_id         INTEGER NOT NULL REFERENCES jobs (id),
    attempt        INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    outcome        TEXT,                         -- succeeded | following | retry | failed | interrupted
    http_status    INTEGER,
    error_code     TEXT,
    error_msg      TEXT,
    retry_delay_ms INTEGER,                      -- the delay chosen before the next attempt
    PRIMARY KEY (job_id, attempt)
);
