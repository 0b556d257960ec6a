//! How jobs are shown: the JSON views of `jobs list --json` / `jobs show --json` and the human
//! tables that `jobs` and `demo` print.

use serde::Serialize;
use serde_json::Value;

use crate::store::{AttemptRow, JobRow};
use crate::{rfc3339, Status};

/// A job as `jobs list --json` and `jobs show --json` print it (times RFC 3339, UTC).
#[derive(Serialize)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    pub source: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub jid: Option<String>,
    pub trace_id: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub next_run_at: Option<String>,
    pub params: Value,
    pub result: Option<Value>,
    pub idempotency_key: Option<String>,
    pub schedule: Option<String>,
    /// A cron job's slot: the instant its tick was scheduled for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The job this one replays (`jobs retry`).
    pub retry_of: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
    /// The submissions this job served (`jobs show`): its own, and any that joined it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<Vec<RequestView>>,
    /// For `purge_recycle_bin` jobs in `jobs show`: every item and what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_items: Option<Vec<crate::store::purge::PurgeItemRow>>,
}

/// One submission served by a job.
#[derive(Serialize)]
pub struct RequestView {
    pub source: String,
    pub key: Option<String>,
    /// `new`, `coalesced` or `rejected`.
    pub outcome: String,
}

/// One attempt as printed.
#[derive(Serialize)]
pub struct AttemptView {
    pub attempt: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub retry_delay_ms: Option<i64>,
}

impl From<&JobRow> for JobView {
    fn from(j: &JobRow) -> JobView {
        let waiting = matches!(j.status(), Some(Status::Queued | Status::Following));
        JobView {
            id: j.id,
            kind: j.kind.clone(),
            source: j.source.clone(),
            status: j.status.clone(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            jid: j.jid.clone(),
            trace_id: j.trace_id.clone(),
            http_status: j.http_status,
            error_code: j.error_code.clone(),
            error_msg: j.error_msg.clone(),
            created_at: rfc3339(j.created_at),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
            next_run_at: waiting.then(|| rfc3339(j.next_run_at)),
            params: j.params.clone(),
            result: j.result.clone(),
            idempotency_key: j.idempotency_key.clone(),
            schedule: j.schedule.clone(),
            slot: j.slot.map(crate::rfc3339),
            retry_of: j.retry_of,
            attempt_log: None,
            requests: None,
            purge_items: None,
        }
    }
}

impl From<&AttemptRow> for AttemptView {
    fn from(a: &AttemptRow) -> AttemptView {
        AttemptView {
            attempt: a.attempt,
            started_at: rfc3339(a.started_at),
            finished_at: a.finished_at.map(rfc3339),
            outcome: a.outcome.clone(),
            http_status: a.http_status,
            error_code: a.error_code.clone(),
            error_msg: a.error_msg.clone(),
            retry_delay_ms: a.retry_delay_ms,
        }
    }
}

/// The human table of jobs.
pub fn table(jobs: &[JobView]) -> String {
    let header = [
        "ID",
        "KIND",
        "SOURCE",
        "STATUS",
        "ATTEMPTS",
        "CREATED",
        "JID / ERROR",
    ];
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|j| {
            let detail = match (&j.jid, &j.error_code) {
                (_, Some(code)) if j.status != "succeeded" => format!(
                    "{code}: {}",
                    j.error_msg
                        .as_deref()
                        .unwrap_or("")
                        .chars()
                        .take(80)
                        .collect::<String>()
                ),
                (Some(jid), _) => short_jid(jid),
                _ if j.result.as_ref().and_then(|r| r.get("start_answer"))
                    == Some(&Value::from("lost")) =>
                {
                    "jid unknown: the start's answer was lost".to_string()
                }
                _ => String::new(),
            };
            [
                j.id.to_string(),
                j.kind.clone(),
                j.source.clone(),
                j.status.clone(),
                format!("{}/{}", j.attempts, j.max_attempts),
                j.created_at.clone(),
                detail,
            ]
        })
        .collect();
    render_table(&header, &rows)
}

/// A jid for the table: a list of many ids (an image sync's sync jobs, one per tag) shows its
/// first three and how many there are; `jobs show` has them all.
fn short_jid(jid: &str) -> String {
    const SHOWN: usize = 3;
    let ids: Vec<&str> = jid.split(',').collect();
    if ids.len() <= SHOWN + 1 {
        return jid.to_string();
    }
    format!("{},… ({} in all)", ids[..SHOWN].join(","), ids.len())
}

/// Renders rows under a header with columns padded to their widest cell.
pub fn render_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// A job with its attempts, the requests it served and (for a purge) its items: what
/// `jobs show --json` prints and the operator API's `GET /jobs/{id}` answers.
pub async fn job_detail(
    store: &crate::store::Store,
    job: &JobRow,
) -> Result<JobView, crate::store::Error> {
    let mut view = JobView::from(job);
    let attempts = store.attempts(job.id).await?;
    view.attempt_log = Some(attempts.iter().map(AttemptView::from).collect());
    view.requests = Some(
        store
            .requests_of(job.id)
            .await?
            .into_iter()
            .map(|(source, key, outcome)| RequestView {
                source,
                key,
                outcome,
            })
            .collect(),
    );
    if job.kind == crate::jobs::JobKind::PurgeRecycleBin.as_str() {
        view.purge_items = Some(store.purge_items(job.id).await?);
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use crate::cli::render::short_jid;

    #[test]
    fn a_long_list_of_ids_is_cut_short_in_the_table() {
        assert_eq!(short_jid("3ebef843-947f"), "3ebef843-947f");
        assert_eq!(short_jid("1,2,3,4"), "1,2,3,4");
        assert_eq!(short_jid("1,2,3,4,5"), "1,2,3,… (5 in all)");
    }
}
