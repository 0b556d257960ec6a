-- Job lifecycle controls: replays, cancellation, retention.
--
-- `retry_of` links a replay (`jobs retry`) to the job it replays. It is a plain integer, not a
-- foreign key: retention may prune the original before its replay, and the link then names a
-- job that is gone, which is what happened.
ALTER TABLE jobs ADD COLUMN retry_of INTEGER;
CREATE INDEX jobs_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;

-- Retention prunes finished jobs oldest first, by `finished_at`.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
