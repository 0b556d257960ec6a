//! A replay of an `swr_image_sync` job: what it takes over from the job it replays.

use serde_json::Value;

use super::{Checkpoint, Starting, DONE, FAILED};
use crate::jobs::{Ctx, RunError};
use crate::now_ms;

/// A replay takes over what the job it replays got to, so that nothing finished is sent again
/// and no sync still running at SWR is doubled:
/// - a tag finished there (`success`/`existed`) is carried as done;
/// - a tag whose sync job was still unfinished there (the follow timeout or an API error ended
///   that job) is followed by its sync job id, not sent again;
/// - a tag sent there whose sync job was never seen (or in a start whose answer was lost) is
///   looked for first, like after a lost answer, and sent again only if none is found;
/// - a tag that failed there, or was never sent, is sent.
///
/// A replayed job that ended before it recorded any tag (an error before its first start) says
/// nothing, so the job it replayed in turn is read instead.
pub(super) async fn carry_over(
    ctx: &Ctx,
    mut prev_id: i64,
    cp: &mut Checkpoint,
) -> Result<(), RunError> {
    // Replays of replays that recorded nothing, followed back at most this far.
    const MAX_CHAIN: usize = 100;
    for _ in 0..MAX_CHAIN {
        let Some(prev) = ctx.store.get(prev_id).await? else {
            return Ok(());
        };
        let mut before: Checkpoint = prev
            .checkpoint
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        // The result is written last: its statuses and sync job ids are the newest.
        if let Some(tags) = prev
            .result
            .as_ref()
            .and_then(|r| r.get("tags"))
            .and_then(Value::as_object)
        {
            for (tag, r) in tags {
                let t = before.tags.entry(tag.clone()).or_default();
                if let Some(status) = r.get("status").and_then(Value::as_str) {
                    t.status = Some(status.to_string());
                }
                if let Some(id) = r.get("sync_job_id").and_then(Value::as_i64) {
                    t.sync_job_id = Some(id);
                }
                if let Some(from) = r.get("carried_from").and_then(Value::as_i64) {
                    t.carried_from = Some(from);
                }
            }
        }
        if before.tags.is_empty() {
            match prev.retry_of {
                Some(id) => {
                    prev_id = id;
                    continue;
                }
                None => return Ok(()),
            }
        }
        let lost: &[String] = before.starting.as_ref().map_or(&[], |st| &st.tags);
        let mut look_for: Vec<(String, i64)> = Vec::new();
        for (tag, state) in cp.tags.iter_mut() {
            let Some(b) = before.tags.get(tag) else {
                continue;
            };
            let status = b.status.as_deref();
            if status.is_some_and(|s| DONE.contains(&s)) {
                state.status = b.status.clone();
                state.sync_job_id = b.sync_job_id;
                state.carried_from = Some(b.carried_from.unwrap_or(prev_id));
            } else if status.is_some_and(|s| FAILED.contains(&s)) {
                // Failed there: sent again.
            } else if let Some(id) = b.sync_job_id {
                state.sent = true;
                state.sync_job_id = Some(id);
                state.baseline = id - 1;
                state.status = b.status.clone();
                state.followed_from = Some(b.followed_from.unwrap_or(prev_id));
            } else if b.sent || lost.contains(tag) {
                let baseline = match &before.starting {
                    Some(st) if lost.contains(tag) => st.baseline,
                    _ => b.baseline,
                };
                look_for.push((tag.clone(), baseline));
            }
        }
        if !look_for.is_empty() {
            cp.starting = Some(Starting {
                at: now_ms(),
                baseline: look_for.iter().map(|(_, b)| *b).min().unwrap_or(0),
                tags: look_for.into_iter().map(|(t, _)| t).collect(),
            });
        }
        return Ok(());
    }
    Ok(())
}
