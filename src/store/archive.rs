//! The audit archive: Artifact audit records kept verbatim, one hash chain per stream (module,
//! repository), so that an altered, removed or reordered row is found by [`Store::verify_audit`].
//!
//! Each row's hash is SHA-256 (lower-case hex) over, joined by `\n`: the previous row's hash in
//! the stream (64 zeros for the first), the module, the repository id, the record id, the fetch
//! time in Unix milliseconds, and the record's JSON text exactly as the API sent it. The stream's
//! newest hash is also kept in `audit_streams`, so removing the newest rows is noticed as well.
//!
//! A page is written in one transaction together with the job's checkpoint; records already in
//! the archive (same stream and record id) are left as they are, which makes a walk that sees a
//! record twice, because new records shifted the pages, harmless.

use std::io::Write;

use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Backend, Error, OnBackend, Store};
use crate::{now_ms, JobId};

/// The `prev_hash` of a stream's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record to archive.
#[derive(Clone, Debug)]
pub struct NewRecord<'a> {
    pub record_id: String,
    /// The record's `time`, if readable, as `YYYY-MM-DD HH:MM:SS`.
    pub record_time: Option<String>,
    /// The JSON object exactly as the API sent it.
    pub raw: &'a str,
}

/// A stream's chain head and completeness mark.
#[derive(Clone, Debug)]
pub struct StreamState {
    pub head_seq: i64,
    pub head_hash: String,
    pub records: i64,
    /// Every record older than the one at this archive position is in the archive.
    pub complete_seq: i64,
}

/// What writing one page did.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageWrite {
    /// Records newly archived.
    pub inserted: usize,
    /// The lowest archive position among records of the page that were already archived.
    pub min_existing_seq: Option<i64>,
}

/// The first place a chain does not hold.
#[derive(Clone, Debug, Serialize)]
pub struct BrokenLink {
    pub module: String,
    pub repo: String,
    pub seq: Option<i64>,
    pub record_id: Option<String>,
    pub reason: String,
}

/// What `verify_audit` found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub streams: u64,
    pub records: u64,
    pub broken: Option<BrokenLink>,
}

/// Computes a record's chain hash.
pub fn chain_hash(
    prev: &str,
    module: &str,
    repo: &str,
    record_id: &str,
    fetched_at: i64,
    raw: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [prev, module, repo, record_id] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    h.update(fetched_at.to_string().as_bytes());
    h.update(b"\n");
    h.update(raw.as_bytes());
    hex::encode(h.finalize())
}

/// Filters for [`Store::export_audit`].
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    pub repo: Option<String>,
    /// Records whose `time` is at or after this `YYYY-MM-DD[ HH:MM:SS]`.
    pub since: Option<String>,
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// The `AuditDO` fields, in the CSV's column order after the archive's own columns.
pub const CSV_RECORD_FIELDS: [&str; 12] = [
    "id",
    "module",
    "operation",
    "time",
    "info",
    "data",
    "reason",
    "userAgent",
    "operator",
    "operatorNickName",
    "operatorTenantName",
    "ipSource",
];

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Store {
    /// The chain head and completeness mark of a stream (a fresh stream when none is stored).
    pub async fn audit_stream(&self, module: &str, repo: &str) -> Result<StreamState, Error> {
        let row = sqlx::query(
            "SELECT head_seq, head_hash, records, complete_seq FROM audit_streams \
             WHERE module = $1 AND repo = $2",
        )
        .bind(module)
        .bind(repo)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => StreamState {
                head_seq: r.try_get("head_seq")?,
                head_hash: r.try_get("head_hash")?,
                records: r.try_get("records")?,
                complete_seq: r.try_get("complete_seq")?,
            },
            None => StreamState {
                head_seq: 0,
                head_hash: GENESIS.to_string(),
                records: 0,
                complete_seq: 0,
            },
        })
    }

    /// Archives one page of a stream (records not yet archived, chained in page order) and saves
    /// the job's checkpoint, in one transaction.
    pub async fn archive_page(
        &self,
        job_id: JobId,
        module: &str,
        repo: &str,
        records: &[NewRecord<'_>],
        checkpoint: &serde_json::Value,
    ) -> Result<PageWrite, Error> {
        // Streams walked in parallel write one page each at a time; SQLite takes one writer at
        // a time anyway, and a transaction waiting for its lock in SQLite's busy handler sleeps
        // in steps of up to 100 ms, leaving the lock idle meanwhile. Waiting in turn here
        // instead hands the lock on as soon as it is free.
        // (On PostgreSQL, pages of different streams are written at once: no turn.)
        let _turn = match self.backend {
            Backend::Sqlite => Some(self.archive_turn.lock().await),
            Backend::Postgres => None,
        };
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            // One writer per stream across every instance: the chain's head is read and
            // extended under a lock on the stream, held until this transaction ends.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("audit_stream:{module}:{repo}"))
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query(
            "UPDATE jobs SET checkpoint = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'running' AND owner = $4",
        )
        .bind(checkpoint.to_string())
        .bind(now)
        .bind(job_id)
        .bind(self.instance())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::LostOwnership(job_id));
        }
        let mut out = PageWrite::default();
        if records.is_empty() {
            tx.commit().await?;
            return Ok(out);
        }
        // Which of the page's records are archived already (one statement for the page).
        let placeholders = super::placeholders(records.len(), 3);
        let sql = format!(
            "SELECT record_id, seq FROM audit_archive WHERE module = $1 AND repo = $2 \
             AND record_id IN ({placeholders})"
        );
        // Dynamic only in the number of placeholders.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(module)
            .bind(repo);
        for r in records {
            q = q.bind(&r.record_id);
        }
        let mut existing = std::collections::HashSet::new();
        for row in q.fetch_all(&mut *tx).await? {
            let id: String = row.try_get("record_id")?;
            let seq: i64 = row.try_get("seq")?;
            out.min_existing_seq = Some(out.min_existing_seq.map_or(seq, |m: i64| m.min(seq)));
            existing.insert(id);
        }
        let head: Option<(String, i64)> = sqlx::query_as(
            "SELECT head_hash, records FROM audit_streams WHERE module = $1 AND repo = $2",
        )
        .bind(module)
        .bind(repo)
        .fetch_optional(&mut *tx)
        .await?;
        let (mut prev, count) = head.unwrap_or_else(|| (GENESIS.to_string(), 0));
        let fresh: Vec<&NewRecord> = {
            let mut seen = std::collections::HashSet::new();
            records
                .iter()
                .filter(|r| !existing.contains(&r.record_id) && seen.insert(r.record_id.as_str()))
                .collect()
        };
        if fresh.is_empty() {
            tx.commit().await?;
            return Ok(out);
        }
        // One multi-row INSERT per page: far cheaper than a statement per record.
        let sql = format!(
            "INSERT INTO audit_archive (module, repo, record_id, record_time, record, fetched_at, \
               job_id, prev_hash, hash) VALUES {} RETURNING seq",
            super::value_rows_on(tx.backend(), fresh.len(), 9, 1)
        );
        // Dynamic only in the number of placeholder rows.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in &fresh {
            let hash = chain_hash(&prev, module, repo, &r.record_id, now, r.raw);
            q = q
                .bind(module)
                .bind(repo)
                .bind(&r.record_id)
                .bind(&r.record_time)
                .bind(r.raw)
                .bind(now)
                .bind(job_id)
                .bind(prev)
                .bind(hash.clone());
            prev = hash;
        }
        // The page's last row is the new head: the highest seq it was given.
        let head_seq: i64 = q
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>("seq"))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        sqlx::query(
            "INSERT INTO audit_streams (module, repo, head_seq, head_hash, records, complete_seq, \
               updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6) \
             ON CONFLICT (module, repo) DO UPDATE SET head_seq = excluded.head_seq, \
               head_hash = excluded.head_hash, records = excluded.records, \
               updated_at = excluded.updated_at",
        )
        .bind(module)
        .bind(repo)
        .bind(head_seq)
        .bind(&prev)
        .bind(count + fresh.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        out.inserted = fresh.len();
        Ok(out)
    }

    /// Marks a stream complete up to its current head (a walk reached the records a previous
    /// complete walk had, or the log's end); returns the new mark.
    pub async fn audit_mark_complete(&self, module: &str, repo: &str) -> Result<i64, Error> {
        sqlx::query(
            "UPDATE audit_streams SET complete_seq = head_seq, updated_at = $1 \
             WHERE module = $2 AND repo = $3",
        )
        .bind(now_ms())
        .bind(module)
        .bind(repo)
        .execute(&self.pool)
        .await?;
        Ok(self.audit_stream(module, repo).await?.complete_seq)
    }

    /// The record ids of a stream in archive order (for tests and checks).
    pub async fn audit_record_ids(&self, module: &str, repo: &str) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT record_id FROM audit_archive WHERE module = $1 AND repo = $2 ORDER BY seq",
        )
        .bind(module)
        .bind(repo)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Recomputes every chain, row by row without loading the archive, and reports the first
    /// row that does not hold: a changed row (its hash), a removed or reordered row (the link),
    /// or removed newest rows (the stream's head).
    pub async fn verify_audit(&self) -> Result<Verification, Error> {
        let mut rows = sqlx::query(
            "SELECT seq, module, repo, record_id, record, fetched_at, prev_hash, hash \
             FROM audit_archive ORDER BY module, repo, seq",
        )
        .fetch(&self.pool);
        let mut v = Verification {
            streams: 0,
            records: 0,
            broken: None,
        };
        let mut current: Option<(String, String)> = None;
        let mut visited = std::collections::HashSet::new();
        let mut expected_prev = GENESIS.to_string();
        let mut last_seq = 0i64;
        let heads: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT module, repo, head_hash, head_seq FROM audit_streams ORDER BY module, repo",
        )
        .fetch_all(&self.pool)
        .await?;
        let head_of = |m: &str, r: &str| {
            heads
                .iter()
                .find(|(hm, hr, _, _)| hm == m && hr == r)
                .map(|(_, _, h, s)| (h.clone(), *s))
        };
        let check_head = |stream: &(String, String), prev: &str, last: i64| -> Option<BrokenLink> {
            match head_of(&stream.0, &stream.1) {
                Some((h, s)) if h == prev && s == last => None,
                _ => Some(BrokenLink {
                    module: stream.0.clone(),
                    repo: stream.1.clone(),
                    seq: Some(last),
                    record_id: None,
                    reason: "the stream's newest rows do not match its recorded head (rows removed after it)".into(),
                }),
            }
        };
        while let Some(row) = rows.try_next().await? {
            let module: String = row.try_get("module")?;
            let repo: String = row.try_get("repo")?;
            let seq: i64 = row.try_get("seq")?;
            let stream = (module, repo);
            if current.as_ref() != Some(&stream) {
                if let Some(prev_stream) = &current {
                    if let Some(b) = check_head(prev_stream, &expected_prev, last_seq) {
                        v.broken = Some(b);
                        return Ok(v);
                    }
                }
                current = Some(stream.clone());
                visited.insert(stream.clone());
                expected_prev = GENESIS.to_string();
                v.streams += 1;
            }
            let record_id: String = row.try_get("record_id")?;
            let record: String = row.try_get("record")?;
            let fetched_at: i64 = row.try_get("fetched_at")?;
            let prev_hash: String = row.try_get("prev_hash")?;
            let hash: String = row.try_get("hash")?;
            let broken = |reason: &str| BrokenLink {
                module: stream.0.clone(),
                repo: stream.1.clone(),
                seq: Some(seq),
                record_id: Some(record_id.clone()),
                reason: reason.to_string(),
            };
            if prev_hash != expected_prev {
                v.broken = Some(broken(
                    "its prev_hash is not the previous row's hash (a row before it was removed, inserted or reordered)",
                ));
                return Ok(v);
            }
            let computed = chain_hash(
                &prev_hash, &stream.0, &stream.1, &record_id, fetched_at, &record,
            );
            if computed != hash {
                v.broken = Some(broken(
                    "its content does not match its hash (the row was altered)",
                ));
                return Ok(v);
            }
            expected_prev = hash;
            last_seq = seq;
            v.records += 1;
        }
        if let Some(stream) = &current {
            if let Some(b) = check_head(stream, &expected_prev, last_seq) {
                v.broken = Some(b);
                return Ok(v);
            }
        }
        // A stream whose rows are all gone still has its head.
        if let Some((m, r, _, _)) = heads
            .iter()
            .find(|(m, r, _, s)| *s > 0 && !visited.contains(&(m.clone(), r.clone())))
        {
            v.broken = Some(BrokenLink {
                module: m.clone(),
                repo: r.clone(),
                seq: None,
                record_id: None,
                reason: "the stream has a recorded head but no rows".into(),
            });
        }
        Ok(v)
    }

    /// Streams the archive (filtered) to `out`, oldest archived first; returns the rows written.
    pub async fn export_audit(
        &self,
        filter: &ExportFilter,
        format: ExportFormat,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, ExportError> {
        let mut rows = sqlx::query(
            "SELECT seq, module, repo, record_id, record_time, record, fetched_at, prev_hash, hash \
             FROM audit_archive WHERE ($1 IS NULL OR repo = $2) AND ($3 IS NULL OR record_time >= $4) \
             ORDER BY seq",
        )
        .bind(&filter.repo)
        .bind(&filter.repo)
        .bind(&filter.since)
        .bind(&filter.since)
        .fetch(&self.pool);
        if format == ExportFormat::Csv {
            let mut header = vec!["seq", "archive_module", "archive_repo", "fetched_at"];
            header.extend(CSV_RECORD_FIELDS);
            header.extend(["prev_hash", "hash"]);
            writeln!(out, "{}", header.join(","))?;
        }
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await.map_err(Error::from)? {
            let seq: i64 = row.try_get("seq").map_err(Error::from)?;
            let module: String = row.try_get("module").map_err(Error::from)?;
            let repo: String = row.try_get("repo").map_err(Error::from)?;
            let record: String = row.try_get("record").map_err(Error::from)?;
            let fetched_at: i64 = row.try_get("fetched_at").map_err(Error::from)?;
            let prev_hash: String = row.try_get("prev_hash").map_err(Error::from)?;
            let hash: String = row.try_get("hash").map_err(Error::from)?;
            match format {
                ExportFormat::Jsonl => {
                    // The record goes out as archived, byte for byte.
                    let raw = serde_json::value::RawValue::from_string(record)
                        .map_err(|e| ExportError::Record(seq, e.to_string()))?;
                    let line = serde_json::json!({
                        "seq": seq,
                        "module": module,
                        "repo": repo,
                        "fetched_at": crate::rfc3339(fetched_at),
                        "prev_hash": prev_hash,
                        "hash": hash,
                        "record": raw,
                    });
                    writeln!(out, "{line}")?;
                }
                ExportFormat::Csv => {
                    let v: serde_json::Value = serde_json::from_str(&record)
                        .map_err(|e| ExportError::Record(seq, e.to_string()))?;
                    let mut cells = vec![
                        seq.to_string(),
                        csv_cell(&module),
                        csv_cell(&repo),
                        crate::rfc3339(fetched_at),
                    ];
                    for f in CSV_RECORD_FIELDS {
                        let cell = match v.get(f) {
                            None | Some(serde_json::Value::Null) => String::new(),
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        };
                        cells.push(csv_cell(&cell));
                    }
                    cells.push(prev_hash);
                    cells.push(hash);
                    writeln!(out, "{}", cells.join(","))?;
                }
            }
            n += 1;
        }
        out.flush()?;
        Ok(n)
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] Error),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("archived record at seq {0} is not valid JSON: {1}")]
    Record(i64, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_hash_covers_every_part() {
        let base = chain_hash(GENESIS, "file", "r", "1", 5, "{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, chain_hash(GENESIS, "file", "r", "1", 5, "{ }"));
        assert_ne!(base, chain_hash(GENESIS, "file", "r", "2", 5, "{}"));
        assert_ne!(base, chain_hash(GENESIS, "file", "r", "1", 6, "{}"));
        assert_ne!(base, chain_hash(GENESIS, "repository", "r", "1", 5, "{}"));
        assert_ne!(base, chain_hash(&base, "file", "r", "1", 5, "{}"));
        // Field boundaries matter: moving text between parts changes the hash.
        assert_ne!(
            chain_hash(GENESIS, "file", "ab", "c", 5, "{}"),
            chain_hash(GENESIS, "file", "a", "bc", 5, "{}")
        );
    }

    #[test]
    fn csv_cells_are_quoted_when_needed() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
