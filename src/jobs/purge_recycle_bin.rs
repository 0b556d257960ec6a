//! `purge_recycle_bin`: delete what is in the CodeArts Artifact recycle bin, in batches, and
//! record every item deleted (or, with `dry_run`, every item that would be).
//!
//! Listing: the repositories in the recycle bin (`…/repositories?is_recycle_bin=true`, every
//! page). A trashed repository is one item (`uri` = `{id}/`); an active repository listed there
//! holds trashed files, found by walking its recycle-bin file tree. Filters: `formats`,
//! `older_than` (by the modified time the API lists, written in UTC+8, the service's zone),
//! `include_pattern` (a glob over the item's `uri`); then the oldest `max_items` are kept.
//!
//! The plan is written to the store with the job's checkpoint before the first delete; each
//! batch's outcome is written when the API has answered. An answer that leaves an item's fate
//! open (a failure reported for a batch that may have been sent before, or counts that do not
//! name every failure) is settled by a fresh listing: gone means deleted, present means failed. A transient failure ends the attempt
//! (the engine retries it later) and the next attempt continues with the pending batches only,
//! so an item confirmed deleted is never sent again, after a retry or a restart alike.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{artifact_scope, parse_params, Ctx, ParamError, RunError, Step};
use crate::api::artifact::{DeleteResult, Repository, Scope, TrashItem};
use crate::config::Config;
use crate::store::purge::{ItemOutcome, PlannedItem, PurgeItemRow};
use crate::store::{ErrorInfo, JobRow};

/// Formats the API knows (the SDK's list for the trash item's `format`).
pub const FORMATS: [&str; 14] = [
    "maven2",
    "docker",
    "npm",
    "go",
    "pypi",
    "rpm",
    "composer",
    "debian",
    "conan",
    "nuget",
    "docker2",
    "cocoapods",
    "ohpm",
    "generic",
];

/// The default blast-radius cap per run.
pub const DEFAULT_MAX_ITEMS: u32 = 1000;
/// The highest `max_items` accepted.
pub const MAX_MAX_ITEMS: u32 = 100_000;
/// Repositories asked for per listing page.
const LIST_PAGE_SIZE: u32 = 100;
/// How deep a recycle-bin file tree is walked.
const MAX_TREE_DEPTH: usize = 32;

/// Parameters of a `purge_recycle_bin` job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Only these formats (default: all).
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// Only items last modified longer ago than this (`30d`).
    #[serde(default, with = "humantime_serde")]
    pub older_than: Option<Duration>,
    /// Only items whose `uri` matches this glob (`*` within a path segment, `**` across; see
    /// [`compile_pattern`]).
    #[serde(default)]
    pub include_pattern: Option<String>,
    /// Record what would go; delete nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// At most this many items per run (default 1000).
    #[serde(default = "default_max_items")]
    pub max_items: u32,
}

fn default_max_items() -> u32 {
    DEFAULT_MAX_ITEMS
}

/// Parses and checks parameters against the configuration.
pub fn parse(params: &Value, cfg: &Config) -> Result<Params, ParamError> {
    let p: Params = parse_params(params)?;
    artifact_scope(cfg)?;
    if let Some(formats) = &p.formats {
        if formats.is_empty() {
            return Err(ParamError(
                "parameter `formats`: must not be empty (leave it out for all formats)".into(),
            ));
        }
        for f in formats {
            if !FORMATS.contains(&f.as_str()) {
                return Err(ParamError(format!(
                    "parameter `formats`: unknown format {f:?} (known: {})",
                    FORMATS.join(", ")
                )));
            }
        }
    }
    if p.max_items == 0 || p.max_items > MAX_MAX_ITEMS {
        return Err(ParamError(format!(
            "parameter `max_items`: {} is out of range 1..={MAX_MAX_ITEMS}",
            p.max_items
        )));
    }
    if let Some(pattern) = p.include_pattern.as_deref() {
        if pattern.is_empty() {
            return Err(ParamError(
                "parameter `include_pattern`: must not be empty".into(),
            ));
        }
        compile_pattern(pattern)?;
    }
    if p.older_than.is_some_and(|d| d.is_zero()) {
        return Err(ParamError(
            "parameter `older_than`: must be above zero".into(),
        ));
    }
    if let Some(d) = p.older_than.filter(|d| *d > MAX_OLDER_THAN) {
        return Err(ParamError(format!(
            "parameter `older_than`: {} is above the maximum of {}",
            crate::config::show_duration(d),
            crate::config::show_duration(MAX_OLDER_THAN)
        )));
    }
    Ok(p)
}

/// The longest `older_than` accepted: ten years (nothing in a recycle bin is older).
pub const MAX_OLDER_THAN: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Validates parameters at ingress.
pub fn validate(params: &Value, cfg: &Config) -> Result<(), ParamError> {
    parse(params, cfg).map(|_| ())
}

/// Compiles an `include_pattern` (globset's syntax, matched against the whole `uri`): `*` and
/// `?` never cross a `/`; `**` as a whole path segment (`**/`, `/**/`, `/**`, or alone) spans
/// any number of segments; `[abc]`, `[!a-z]`, `{jar,pom}` and `\` escapes as usual. An invalid
/// pattern is an error naming the parser's reason, so it is rejected at ingress instead of
/// matching nothing.
pub fn compile_pattern(pattern: &str) -> Result<GlobMatcher, ParamError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| {
            ParamError(format!(
                "parameter `include_pattern`: invalid glob {pattern:?}: {}",
                e.kind()
            ))
        })
}

/// True when `text` matches the glob `pattern` (see [`compile_pattern`]); an invalid pattern
/// matches nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    compile_pattern(pattern).is_ok_and(|m| m.is_match(text))
}

/// Parses the API's `yyyy-MM-dd HH:mm:ss` (UTC+8) into Unix milliseconds.
fn modified_ms(text: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    let tz = chrono::FixedOffset::east_opt(8 * 3600)?;
    tz.from_local_datetime(&naive)
        .single()
        .map(|t| t.timestamp_millis())
}

/// One item found in the recycle bin.
#[derive(Clone, Debug)]
struct Found {
    item: TrashItem,
    kind: &'static str,
    modified: Option<String>,
}

/// Lists every item in the recycle bin, browsing only repositories of the wanted formats.
async fn list_bin(ctx: &Ctx, scope: &Scope, p: &Params) -> Result<(Vec<Found>, usize), RunError> {
    let mut repos: Vec<Repository> = Vec::new();
    let mut page = 1;
    loop {
        let got = ctx
            .api
            .list_repositories(scope, true, page, LIST_PAGE_SIZE)
            .await?
            .result;
        let n = got.repositories.len();
        repos.extend(got.repositories);
        if n == 0 || n < LIST_PAGE_SIZE as usize || repos.len() as i64 >= got.total {
            break;
        }
        page += 1;
    }
    let mut found = Vec::new();
    let mut other_formats = 0usize;
    for repo in &repos {
        let (Some(id), Some(format)) = (repo.repo_id(), repo.format.as_deref()) else {
            tracing::warn!(
                ?repo,
                "recycle-bin listing has a repository without id or format; left alone"
            );
            continue;
        };
        if p.formats
            .as_ref()
            .is_some_and(|f| !f.iter().any(|x| x == format))
        {
            other_formats += 1;
            continue;
        }
        if repo.status.as_deref() == Some("trash") {
            found.push(Found {
                item: TrashItem {
                    id: id.to_string(),
                    format: format.to_string(),
                    uri: format!("{id}/"),
                    status: "trash".into(),
                },
                kind: "repository",
                modified: repo.modified_time.clone(),
            });
            continue;
        }
        // An active repository in the listing holds trashed files: walk its recycle-bin tree.
        let mut stack = vec![("/".to_string(), 0usize)];
        while let Some((path, depth)) = stack.pop() {
            let tree = ctx.api.file_tree(scope, id, &path, true).await?.result;
            for node in tree.children {
                let Some(full) = node.path.clone() else {
                    continue;
                };
                if node.folder {
                    if depth + 1 < MAX_TREE_DEPTH {
                        let rel = full.strip_prefix(&format!("{id}/")).unwrap_or(&full);
                        stack.push((format!("/{rel}"), depth + 1));
                    }
                    continue;
                }
                found.push(Found {
                    item: TrashItem {
                        id: id.to_string(),
                        format: format.to_string(),
                        uri: full,
                        status: "trash".into(),
                    },
                    kind: "file",
                    modified: node.modified.clone(),
                });
            }
        }
    }
    Ok((found, other_formats))
}

/// Decides every found item: skipped (with why), or a batch number (pending / would_delete).
fn plan(found: Vec<Found>, p: &Params, batch_size: usize, now_ms: i64) -> Vec<PlannedItem> {
    let cutoff = p.older_than.map(|d| now_ms - d.as_millis() as i64);
    let mut planned = Vec::new();
    let mut eligible: Vec<(i64, Found)> = Vec::new();
    // Compiled once; `parse` has checked it, so an error here matches nothing, as before.
    let include = p.include_pattern.as_deref().map(compile_pattern);
    for f in found {
        let skip = |why: String, f: &Found| PlannedItem {
            batch: None,
            item_id: f.item.id.clone(),
            format: f.item.format.clone(),
            uri: f.item.uri.clone(),
            kind: f.kind.to_string(),
            modified: f.modified.clone(),
            outcome: "skipped".into(),
            message: Some(why),
        };
        let ms = f.modified.as_deref().and_then(modified_ms);
        if let Some(pattern) = &p.include_pattern {
            if !include
                .as_ref()
                .is_some_and(|m| m.as_ref().is_ok_and(|m| m.is_match(&f.item.uri)))
            {
                planned.push(skip(
                    format!("does not match include_pattern {pattern:?}"),
                    &f,
                ));
                continue;
            }
        }
        if let Some(cutoff) = cutoff {
            match ms {
                Some(t) if t <= cutoff => {}
                Some(_) => {
                    planned.push(skip("modified more recently than older_than".into(), &f));
                    continue;
                }
                None => {
                    planned.push(skip(
                        "no readable modified time to compare with older_than".into(),
                        &f,
                    ));
                    continue;
                }
            }
        }
        eligible.push((ms.unwrap_or(i64::MAX), f));
    }
    // The oldest go first, so the cap keeps the most overdue items.
    eligible.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.item.uri.cmp(&b.1.item.uri)));
    let outcome = if p.dry_run { "would_delete" } else { "pending" };
    for (i, (_, f)) in eligible.into_iter().enumerate() {
        let over = i >= p.max_items as usize;
        planned.push(PlannedItem {
            batch: (!over).then_some((i / batch_size) as i64 + 1),
            item_id: f.item.id,
            format: f.item.format,
            uri: f.item.uri,
            kind: f.kind.to_string(),
            modified: f.modified,
            outcome: if over { "skipped" } else { outcome }.into(),
            message: over.then(|| format!("beyond max_items ({})", p.max_items)),
        });
    }
    planned
}

/// Which items of a sent batch the API's answer says failed. When the batch may have been sent
/// before (`resent`), a failure may be an item that send deleted: it is left unconfirmed.
fn outcomes(batch: &[PurgeItemRow], result: &DeleteResult, resent: bool) -> Vec<ItemOutcome> {
    let out = |r: &PurgeItemRow, outcome: &str, message: Option<String>| ItemOutcome {
        uri: r.uri.clone(),
        item_id: r.item_id.clone(),
        outcome: outcome.into(),
        message,
    };
    match result {
        DeleteResult::Success => batch.iter().map(|r| out(r, "deleted", None)).collect(),
        DeleteResult::Counts {
            success_num,
            failed_num,
            failed_messages,
        } => {
            // The API names failed items only in its messages; match them by uri, as a whole
            // word (`repo/` must not match a message about `repo/a.jar`).
            let names = |m: &str, uri: &str| {
                m.match_indices(uri).any(|(at, _)| {
                    let before = m[..at].chars().next_back();
                    let after = m[at + uri.len()..].chars().next();
                    let edge = |c: Option<char>| {
                        c.is_none_or(|c| {
                            c.is_whitespace()
                                || matches!(c, ':' | ',' | '"' | '\'' | '(' | ')' | '[' | ']')
                        })
                    };
                    edge(before) && edge(after)
                })
            };
            let failed_msg = |uri: &str| failed_messages.iter().find(|m| names(m, uri)).cloned();
            let named: Vec<Option<String>> = batch.iter().map(|r| failed_msg(&r.uri)).collect();
            let named_count = named.iter().filter(|m| m.is_some()).count() as i64;
            let attributed =
                named_count == *failed_num && *success_num + *failed_num == batch.len() as i64;
            batch
                .iter()
                .zip(named)
                .map(|(r, msg)| match msg {
                    Some(m) if resent => out(
                        r,
                        "unconfirmed",
                        Some(format!("{m} (an earlier send of this batch got no answer)")),
                    ),
                    Some(m) => out(r, "failed", Some(m)),
                    None if attributed => out(r, "deleted", None),
                    None => out(
                        r,
                        "unconfirmed",
                        Some(format!(
                            "the API reported {success_num} deleted and {failed_num} failed of {} without naming them all",
                            batch.len()
                        )),
                    ),
                })
                .collect()
        }
    }
}

/// Lists and plans (first attempt), then deletes the pending batches.
pub async fn run(ctx: &Ctx, job: &JobRow) -> Result<Step, RunError> {
    let p = parse(&job.params, &ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let scope = artifact_scope(&ctx.config).map_err(|e| RunError::Invalid(e.0))?;
    let planned_already = job
        .checkpoint
        .as_ref()
        .and_then(|c| c.get("planned"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut listed = job
        .checkpoint
        .as_ref()
        .and_then(|c| c.get("listed"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut cp = job.checkpoint.clone().unwrap_or(Value::Null);
    if !planned_already {
        let (found, other_formats) = list_bin(ctx, &scope, &p).await?;
        listed = found.len() as u64;
        let items = plan(
            found,
            &p,
            ctx.config.purge_recycle_bin.batch_size,
            crate::now_ms(),
        );
        let batches = items.iter().filter_map(|i| i.batch).max().unwrap_or(0);
        tracing::info!(
            listed,
            batches,
            other_formats,
            dry_run = p.dry_run,
            "recycle-bin purge planned"
        );
        cp = json!({
            "planned": true,
            "listed": listed,
            "batches": batches,
            "other_formats": other_formats,
            "sent": [],
        });
        ctx.store.purge_plan(job.id, &items, &cp).await?;
    }
    // Batches an earlier attempt sent without recording the answer.
    let sent_before: Vec<i64> = cp
        .get("sent")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();

    let mut last_trace = None;
    for (batch, rows) in ctx.store.purge_pending(job.id).await? {
        let items: Vec<TrashItem> = rows
            .iter()
            .map(|r| TrashItem {
                id: r.item_id.clone(),
                format: r.format.clone(),
                uri: r.uri.clone(),
                status: "trash".into(),
            })
            .collect();
        // Noted before sending, so that after a crash the answer to a repeat is read knowing
        // the first send may have gone through.
        if let Some(sent) = cp.get_mut("sent").and_then(Value::as_array_mut) {
            if !sent.contains(&json!(batch)) {
                sent.push(json!(batch));
                ctx.store.checkpoint(job.id, Some(&cp), None).await?;
            }
        }
        let (answer, resent) = ctx.api.delete_trashes(&items).await?;
        let resent = resent || sent_before.contains(&batch);
        let done = outcomes(&rows, &answer.result, resent);
        ctx.store.purge_batch_done(job.id, batch, &done).await?;
        tracing::info!(
            batch,
            items = rows.len(),
            resent,
            "recycle-bin batch answered"
        );
        last_trace = answer.trace_id;
    }

    // Items whose fate the answers left open: a fresh listing says whether they are gone.
    let open_items = ctx.store.purge_items_with(job.id, "unconfirmed").await?;
    if !open_items.is_empty() {
        let (still, _) = list_bin(ctx, &scope, &p).await?;
        let present: std::collections::HashSet<&str> =
            still.iter().map(|f| f.item.uri.as_str()).collect();
        let resolved: Vec<ItemOutcome> = open_items
            .iter()
            .map(|r| {
                let was = r.message.clone().unwrap_or_default();
                let (outcome, message) = if present.contains(r.uri.as_str()) {
                    (
                        "failed",
                        format!("still in the recycle bin after the delete: {was}"),
                    )
                } else {
                    (
                        "deleted",
                        format!("gone from the recycle bin (checked by a fresh listing): {was}"),
                    )
                };
                ItemOutcome {
                    uri: r.uri.clone(),
                    item_id: r.item_id.clone(),
                    outcome: outcome.into(),
                    message: Some(message),
                }
            })
            .collect();
        ctx.store.purge_resolve(job.id, &resolved).await?;
    }

    let counts = ctx.store.purge_counts(job.id).await?;
    let n = |o: &str| counts.iter().find(|(k, _)| k == o).map_or(0, |(_, v)| *v);
    let batches = ctx
        .store
        .purge_items(job.id)
        .await?
        .iter()
        .filter_map(|r| r.batch)
        .max()
        .unwrap_or(0);
    let result = json!({
        "dry_run": p.dry_run,
        "listed": listed,
        "deleted": n("deleted"),
        "failed": n("failed"),
        "unconfirmed": n("unconfirmed"),
        "skipped": n("skipped"),
        "would_delete": n("would_delete"),
        "batches": batches,
    });
    if n("failed") > 0 || n("unconfirmed") > 0 {
        return Ok(Step::Fail {
            error: ErrorInfo {
                error_code: Some("PURGE_INCOMPLETE".into()),
                error_msg: format!(
                    "{} item(s) could not be deleted and {} not confirmed; see the purge record",
                    n("failed"),
                    n("unconfirmed")
                ),
                trace_id: last_trace,
                ..Default::default()
            },
            result,
        });
    }
    Ok(Step::Done {
        jid: None,
        trace_id: last_trace,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob_match("**/*.jar", "repo/com/a/x.jar"));
        assert!(!glob_match("**/*.jar", "repo/com/a/x.jar.sha1"));
        assert!(glob_match("repo/*/x.bin", "repo/com/x.bin"));
        assert!(!glob_match("repo/*/x.bin", "repo/com/a/x.bin"));
        assert!(glob_match("repo/?/x", "repo/a/x"));
        assert!(!glob_match("repo/?/x", "repo//x"));
        assert!(glob_match("*", "abc"));
        assert!(!glob_match("*", "a/b"));
        assert!(glob_match("**", "a/b"));
        assert!(glob_match("repo/**/x.bin", "repo/x.bin"));
        assert!(glob_match("repo/*.{jar,pom}", "repo/a.pom"));
        assert!(!glob_match("repo/[!a]*", "repo/abc"));
    }

    #[test]
    fn invalid_globs_are_rejected_with_the_parsers_reason() {
        for (pattern, reason) in [
            ("[abc", "unclosed character class; missing ']'"),
            ("repo/{a,b", "unclosed alternate group; missing '}'"),
            ("[z-a]", "invalid range; 'z' > 'a'"),
        ] {
            let e = compile_pattern(pattern).unwrap_err().0;
            assert!(
                e.starts_with("parameter `include_pattern`: invalid glob") && e.contains(reason),
                "{pattern}: {e}"
            );
            assert!(!glob_match(pattern, "repo/a"));
        }
    }

    #[test]
    fn modified_times_are_read_in_utc_plus_8() {
        let ms = modified_ms("2023-11-29 09:54:22").unwrap();
        assert_eq!(
            crate::rfc3339(ms),
            "2023-11-29T01:54:22.000Z",
            "the service writes its local time (UTC+8)"
        );
        assert_eq!(modified_ms("29/11/2023"), None);
    }

    fn row(uri: &str) -> PurgeItemRow {
        PurgeItemRow {
            batch: Some(1),
            item_id: "r".into(),
            format: "npm".into(),
            uri: uri.into(),
            kind: "file".into(),
            modified: None,
            outcome: "pending".into(),
            message: None,
        }
    }

    #[test]
    fn counts_answers_are_attributed_by_uri() {
        let batch = [row("r/a"), row("r/b"), row("r/")];
        let res = DeleteResult::Counts {
            success_num: 2,
            failed_num: 1,
            failed_messages: vec!["r/b: locked".into()],
        };
        let o = outcomes(&batch, &res, false);
        let got: Vec<&str> = o.iter().map(|x| x.outcome.as_str()).collect();
        assert_eq!(got, ["deleted", "failed", "deleted"]);
        assert_eq!(o[1].message.as_deref(), Some("r/b: locked"));
        // Failures the messages do not name leave the rest unconfirmed, never guessed deleted.
        let res = DeleteResult::Counts {
            success_num: 1,
            failed_num: 2,
            failed_messages: vec!["r/b: locked".into()],
        };
        let got: Vec<String> = outcomes(&batch, &res, false)
            .into_iter()
            .map(|x| x.outcome)
            .collect();
        assert_eq!(got, ["unconfirmed", "failed", "unconfirmed"]);
        let got: Vec<String> = outcomes(&batch, &DeleteResult::Success, false)
            .into_iter()
            .map(|x| x.outcome)
            .collect();
        assert_eq!(got, ["deleted", "deleted", "deleted"]);
    }
}
