-- SWR share audits (swr_share_audit): one snapshot per run of what this account shares, the
-- repositories it listed and, for each, the accounts it is shared with. Times are Unix
-- milliseconds (UTC); the API's own strings (deadline, created, updated) are kept verbatim.
-- Snapshots are kept when retention prunes the job that took them (job_id becomes NULL).

CREATE TABLE swr_share_snapshots (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id         INTEGER REFERENCES jobs (id),
    taken_at       INTEGER NOT NULL,
    repositories   INTEGER NOT NULL,             -- shared repositories in the snapshot
    shares         INTEGER NOT NULL,             -- (repository, account) pairs
    walks          INTEGER NOT NULL              -- listing walks it took for two to agree
);

-- The repositories the shared listing (`center=self`) returned.
CREATE TABLE swr_shared_repos (
    snapshot_id    INTEGER NOT NULL REFERENCES swr_share_snapshots (id),
    namespace      TEXT    NOT NULL,
    repository     TEXT    NOT NULL,
    path           TEXT,
    num_images     INTEGER,
    updated_at     TEXT,                          -- verbatim
    PRIMARY KEY (snapshot_id, namespace, repository)
);

-- One row per account a repository is shared with (`access-domains`).
CREATE TABLE swr_shares (
    snapshot_id    INTEGER NOT NULL REFERENCES swr_share_snapshots (id),
    namespace      TEXT    NOT NULL,
    repository     TEXT    NOT NULL,
    access_domain  TEXT    NOT NULL,
    permit         TEXT    NOT NULL,
    deadline       TEXT    NOT NULL,              -- `forever` or a UTC time, verbatim
    status         INTEGER,                       -- the API's `status`: 1 valid, 0 expired
    description    TEXT,
    creator_name   TEXT,
    created        TEXT,
    updated        TEXT,
    PRIMARY KEY (snapshot_id, namespace, repository, access_domain)
);
