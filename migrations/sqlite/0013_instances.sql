-- Instances and ownership. A claimed job records the instance that claimed it, and every
-- instance keeps a heartbeat row, so that on a store several instances share (PostgreSQL) the
-- running jobs of an instance that stopped heartbeating can be taken over by the others. On
-- SQLite, one process owns the file and start-up recovery takes back everything.
ALTER TABLE jobs ADD COLUMN owner TEXT;
CREATE INDEX jobs_owner ON jobs (owner) WHERE status = 'running';

CREATE TABLE instances (
    id           TEXT    PRIMARY KEY,        -- host:pid:start (Unix ms)
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER                     -- set by a clean shutdown
);
