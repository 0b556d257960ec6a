-- Tables written by the Artifact job kinds: what a purge deleted, storage time series, and the
-- tamper-evident audit archive. Times are Unix milliseconds (UTC) unless a column says otherwise.

-- One row per recycle-bin item a purge job decided about: deleted, failed, skipped, or (dry run)
-- would_delete. A batch number groups the items sent in one DELETE /cloudartifact/v5/trashes.
CREATE TABLE purge_items (
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    batch       INTEGER,                     -- NULL for items never sent (skipped)
    item_id     TEXT    NOT NULL,            -- the repository id, as the API wants it in `id`
    format      TEXT    NOT NULL,
    uri         TEXT    NOT NULL,
    kind        TEXT    NOT NULL,            -- repository | file
    modified    TEXT,                        -- the modified time the API listed, verbatim
    outcome     TEXT    NOT NULL,            -- deleted | failed | skipped | would_delete
    message     TEXT,                        -- why it failed or was skipped
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, item_id, uri)
);

-- Storage snapshots: one row per storage_snapshot run, the total as the API reported it.
CREATE TABLE storage_snapshots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       INTEGER REFERENCES jobs (id),
    taken_at     INTEGER NOT NULL,
    formats      TEXT,                       -- the format_list asked for, NULL for all
    total_bytes  INTEGER NOT NULL,
    total_text   TEXT    NOT NULL,           -- `totalStorage` verbatim, e.g. "549.62 MB"
    total_count  INTEGER
);

-- Per-repository usage within a snapshot (`storageSummaryInfo` of the repository detail call).
CREATE TABLE storage_repo_usage (
    snapshot_id  INTEGER NOT NULL REFERENCES storage_snapshots (id),
    repo_id      TEXT    NOT NULL,
    format       TEXT,
    used_bytes   INTEGER NOT NULL,
    used_text    TEXT    NOT NULL,           -- `usedSpace` verbatim
    files_count  INTEGER,
    PRIMARY KEY (snapshot_id, repo_id)
);

-- The daily trend (`storageinfo/statistic`), one row per repository and day; '' is the whole
-- project. Later snapshots overwrite a day with what the API reports then.
CREATE TABLE storage_trend (
    repo_id      TEXT    NOT NULL,
    day          TEXT    NOT NULL,           -- `summaryDate`, YYYY-MM-DD
    used_bytes   INTEGER NOT NULL,           -- `usedSpaceLength`, exact
    used_text    TEXT    NOT NULL,           -- `usedSpace` verbatim
    files_count  INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (repo_id, day)
);

-- The audit archive. Every record is kept verbatim (`record`, the JSON object as the API sent
-- it) with its fetch time. `seq` is the archive order; within a stream (module, repo) each row
-- links to the previous row's hash, so an altered, removed or reordered row breaks the chain.
CREATE TABLE audit_archive (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    module       TEXT    NOT NULL,
    repo         TEXT    NOT NULL,
    record_id    TEXT    NOT NULL,
    record_time  TEXT,                       -- the record's `time`, normalised to YYYY-MM-DD HH:MM:SS
    record       TEXT    NOT NULL,
    fetched_at   INTEGER NOT NULL,
    job_id       INTEGER,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);
CREATE UNIQUE INDEX audit_archive_record ON audit_archive (module, repo, record_id);
CREATE INDEX audit_archive_stream ON audit_archive (module, repo, seq);

-- One row per stream: the chain's head (so removing the newest rows is noticed too) and how far
-- the archive is known to be complete (every record older than the one at `complete_seq` is in).
CREATE TABLE audit_streams (
    module        TEXT    NOT NULL,
    repo          TEXT    NOT NULL,
    head_seq      INTEGER NOT NULL DEFAULT 0,
    head_hash     TEXT    NOT NULL,
    records       INTEGER NOT NULL DEFAULT 0,
    complete_seq  INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (module, repo)
);
