-- Every submission is a request row pointing at the job that serves it: a job of its own, an
-- earlier job with the same idempotency key (a duplicate), or a queued job it joined (coalesced).
-- Keys are unique here rather than on jobs, since several keyed requests may share one job.
CREATE TABLE requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    source      TEXT    NOT NULL,
    idem_key    TEXT,
    outcome     TEXT    NOT NULL,            -- new | coalesced | rejected
    received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX requests_key ON requests (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX requests_job ON requests (job_id);

-- Keyed jobs from before this table get their request rows.
INSERT INTO requests (job_id, source, idem_key, outcome, received_at)
    SELECT id, source, idempotency_key, 'new', created_at FROM jobs
    WHERE idempotency_key IS NOT NULL AND status <> 'rejected';

DROP INDEX jobs_idempotency_key;
-- Claiming: the most overdue jobs of one kind and status, read in index order.
CREATE INDEX jobs_kind_due ON jobs (kind, status, next_run_at);
-- Finding a queued job to join.
CREATE INDEX jobs_coalesce ON jobs (kind, status, params) WHERE status = 'queued';

-- Bookkeeping rows written by SQLite itself, in the same statement as the change they record:
-- a job's own request row when it is inserted, and a new attempt row when a queued job is
-- claimed. (Coalesced requests and duplicates are written by the store explicitly.)
CREATE TRIGGER jobs_record_request AFTER INSERT ON jobs
BEGIN
    INSERT INTO requests (job_id, source, idem_key, outcome, received_at)
    VALUES (NEW.id, NEW.source,
            CASE WHEN NEW.status = 'rejected' THEN NULL ELSE NEW.idempotency_key END,
            CASE WHEN NEW.status = 'rejected' THEN 'rejected' ELSE 'new' END,
            NEW.created_at);
END;

CREATE TRIGGER jobs_open_attempt AFTER UPDATE OF status ON jobs
WHEN OLD.status = 'queued' AND NEW.status = 'running'
BEGIN
    INSERT INTO attempts (job_id, attempt, started_at) VALUES (NEW.id, NEW.attempts, NEW.updated_at);
END;
