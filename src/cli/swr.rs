//! `swr shares`: what swr_share_audit jobs recorded — the latest snapshot of what this account
//! shares in SWR, or (`--changes`) what changed since the snapshot before it. The comparison is
//! pure ([`compare`]) so that `demo` shows the same report.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::cli::render::render_table;
use crate::config::Config;
use crate::jobs::swr_share_audit::{deadline_passed, deadline_time};
use crate::rfc3339;
use crate::store::swr_shares::{ShareRow, ShareSnapshot};
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum SwrCommand {
    /// What this account shares in SWR, as the latest swr_share_audit snapshot recorded it.
    #[command(long_about = SHARES_ABOUT)]
    Shares(SharesArgs),
}

const SHARES_ABOUT: &str = "\
What this account shares in SWR, as the latest swr_share_audit snapshot recorded it: one row per
repository and account it is shared with (NAMESPACE/REPOSITORY, ACCOUNT, PERMIT, DEADLINE). FLAG
says `deadline passed` when the share's deadline is before now but the service still lists it
(SWR keeps an expired share until someone removes it); `forever` never passes. A shared
repository with no account listed shows `(none)`.

--changes compares the latest snapshot with the one before it and prints one row per change:
  added                a share the earlier snapshot did not have
  removed              a share the later snapshot no longer has
  permission_widened   the permit grants more (read < write < manage)
  permission_narrowed  the permit grants less
  permission_changed   a different permit that is not ranked
  deadline_extended    a later deadline (or `forever` now)
  deadline_shortened   an earlier deadline (or a date instead of `forever`)
  deadline_changed     a different deadline that does not parse as a time
  deadline_passed      the deadline was ahead when the earlier snapshot was taken and is behind
                       the later one, and the share is still listed

With no snapshot yet (or only one, for --changes) it says so and exits 0; --json then prints
`null` for the missing snapshot. Take a snapshot with `codearts-syncd enqueue swr_share_audit`
(or a schedule); snapshots are kept when retention prunes old jobs.";

#[derive(Args, Debug)]
pub struct SharesArgs {
    /// What changed since the previous snapshot, instead of the latest snapshot itself.
    #[arg(long)]
    pub changes: bool,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One change between two snapshots.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ShareChange {
    pub change: &'static str,
    pub namespace: String,
    pub repository: String,
    pub access_domain: String,
    /// The share in the earlier snapshot (`None` when added).
    pub before: Option<Terms>,
    /// The share in the later snapshot (`None` when removed).
    pub after: Option<Terms>,
}

/// What a share grants and until when.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Terms {
    pub permit: String,
    pub deadline: String,
}

impl From<&ShareRow> for Terms {
    fn from(s: &ShareRow) -> Terms {
        Terms {
            permit: s.permit.clone(),
            deadline: s.deadline.clone(),
        }
    }
}

/// How much a permit grants; `None` for one not ranked.
fn permit_rank(p: &str) -> Option<u8> {
    match p.to_ascii_lowercase().as_str() {
        "read" => Some(1),
        "write" => Some(2),
        "manage" => Some(3),
        _ => None,
    }
}

type Key = (String, String, String);

fn key(s: &ShareRow) -> Key {
    (
        s.namespace.clone(),
        s.repository.clone(),
        s.access_domain.clone(),
    )
}

/// The changes from `before` to `after`, in (namespace, repository, account) order.
pub fn compare(before: &ShareSnapshot, after: &ShareSnapshot) -> Vec<ShareChange> {
    use std::collections::BTreeMap;
    let old: BTreeMap<Key, &ShareRow> = before.shares.iter().map(|s| (key(s), s)).collect();
    let new: BTreeMap<Key, &ShareRow> = after.shares.iter().map(|s| (key(s), s)).collect();
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let (then, now) = (at(before.taken_at), at(after.taken_at));
    let mut keys: Vec<&Key> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        let (o, n) = (old.get(k).copied(), new.get(k).copied());
        let mut push = |change| {
            out.push(ShareChange {
                change,
                namespace: k.0.clone(),
                repository: k.1.clone(),
                access_domain: k.2.clone(),
                before: o.map(Terms::from),
                after: n.map(Terms::from),
            })
        };
        let (o, n) = match (o, n) {
            (None, Some(_)) => {
                push("added");
                continue;
            }
            (Some(_), None) => {
                push("removed");
                continue;
            }
            (Some(o), Some(n)) => (o, n),
            (None, None) => continue,
        };
        if o.permit != n.permit {
            push(match (permit_rank(&o.permit), permit_rank(&n.permit)) {
                (Some(a), Some(b)) if b > a => "permission_widened",
                (Some(a), Some(b)) if b < a => "permission_narrowed",
                _ => "permission_changed",
            });
        }
        if o.deadline != n.deadline {
            let forever = |d: &str| d.trim().eq_ignore_ascii_case("forever");
            let change = match (deadline_time(&o.deadline), deadline_time(&n.deadline)) {
                (Some(a), Some(b)) if b > a => "deadline_extended",
                (Some(a), Some(b)) if b < a => "deadline_shortened",
                (Some(_), None) if forever(&n.deadline) => "deadline_extended",
                (None, Some(_)) if forever(&o.deadline) => "deadline_shortened",
                _ => "deadline_changed",
            };
            push(change);
        }
        if deadline_passed(&n.deadline, now) && !deadline_passed(&n.deadline, then) {
            push("deadline_passed");
        }
    }
    out
}

fn head(s: &ShareSnapshot, now: DateTime<Utc>) -> serde_json::Value {
    json!({
        "id": s.id,
        "job_id": s.job_id,
        "taken_at": rfc3339(s.taken_at),
        "walks": s.walks,
        "repositories": s.repos.len(),
        "shares": s.shares.len(),
        "deadline_passed": s.shares.iter().filter(|x| deadline_passed(&x.deadline, now)).count(),
    })
}

pub(super) async fn shares(cfg: &Config, args: SharesArgs) -> anyhow::Result<u8> {
    let store = Store::open_existing(&cfg.store).await?;
    let snaps = store.latest_share_snapshots(2).await?;
    store.close().await;
    let now = Utc::now();
    if args.changes {
        print!("{}", changes_report(&snaps, args.json, now)?);
    } else {
        print!("{}", latest_report(snaps.first(), args.json, now)?);
    }
    Ok(0)
}

/// The latest snapshot as text or JSON.
pub fn latest_report(
    snap: Option<&ShareSnapshot>,
    as_json: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let Some(s) = snap else {
        return Ok(if as_json {
            format!(
                "{}\n",
                serde_json::to_string_pretty(&json!({"snapshot": null, "shares": []}))?
            )
        } else {
            "no SWR share snapshot yet: run a swr_share_audit job first \
             (codearts-syncd enqueue swr_share_audit)\n"
                .to_string()
        });
    };
    if as_json {
        let shares: Vec<_> = s
            .shares
            .iter()
            .map(|x| {
                let mut v = serde_json::to_value(x).unwrap_or_default();
                v["deadline_passed"] = json!(deadline_passed(&x.deadline, now));
                v
            })
            .collect();
        let v = json!({"snapshot": head(s, now), "repositories": s.repos, "shares": shares});
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let passed = s
        .shares
        .iter()
        .filter(|x| deadline_passed(&x.deadline, now))
        .count();
    let mut out = format!(
        "snapshot {} taken {}: {} repositories shared, {} shares, {} past their deadline\n\n",
        s.id,
        rfc3339(s.taken_at),
        s.repos.len(),
        s.shares.len(),
        passed
    );
    let mut rows: Vec<[String; 5]> = s
        .shares
        .iter()
        .map(|x| {
            [
                format!("{}/{}", x.namespace, x.repository),
                x.access_domain.clone(),
                x.permit.clone(),
                x.deadline.clone(),
                if deadline_passed(&x.deadline, now) {
                    "deadline passed".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    for r in &s.repos {
        if !s
            .shares
            .iter()
            .any(|x| x.namespace == r.namespace && x.repository == r.repository)
        {
            rows.push([
                format!("{}/{}", r.namespace, r.repository),
                "(none)".into(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
    }
    rows.sort();
    out.push_str(&render_table(
        &[
            "NAMESPACE/REPOSITORY",
            "ACCOUNT",
            "PERMIT",
            "DEADLINE",
            "FLAG",
        ],
        &rows,
    ));
    Ok(out)
}

/// What changed between the two newest snapshots (`snaps` newest first), as text or JSON.
pub fn changes_report(
    snaps: &[ShareSnapshot],
    as_json: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let (latest, previous) = (snaps.first(), snaps.get(1));
    let (Some(latest), Some(previous)) = (latest, previous) else {
        return Ok(if as_json {
            let v = json!({
                "previous": null,
                "latest": latest.map(|s| head(s, now)),
                "changes": [],
            });
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        } else if let Some(s) = latest {
            format!(
                "only one SWR share snapshot so far ({} taken {}); --changes compares two: run \
                 swr_share_audit again\n",
                s.id,
                rfc3339(s.taken_at)
            )
        } else {
            "no SWR share snapshot yet: run a swr_share_audit job first (twice, for --changes)\n"
                .to_string()
        });
    };
    let changes = compare(previous, latest);
    if as_json {
        let v = json!({
            "previous": head(previous, now),
            "latest": head(latest, now),
            "changes": changes,
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut out = format!(
        "changes from snapshot {} ({}) to snapshot {} ({}): {}\n",
        previous.id,
        rfc3339(previous.taken_at),
        latest.id,
        rfc3339(latest.taken_at),
        changes.len()
    );
    if changes.is_empty() {
        out.push_str("no share added, removed or changed\n");
        return Ok(out);
    }
    let terms = |t: &Option<Terms>| {
        t.as_ref().map_or("-".to_string(), |t| {
            format!("{} until {}", t.permit, t.deadline)
        })
    };
    let rows: Vec<[String; 5]> = changes
        .iter()
        .map(|c| {
            [
                c.change.to_string(),
                format!("{}/{}", c.namespace, c.repository),
                c.access_domain.clone(),
                terms(&c.before),
                terms(&c.after),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render_table(
        &[
            "CHANGE",
            "NAMESPACE/REPOSITORY",
            "ACCOUNT",
            "BEFORE",
            "AFTER",
        ],
        &rows,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use crate::cli::swr::compare;
    use crate::store::swr_shares::{ShareRow, ShareSnapshot};

    fn share(ns: &str, account: &str, permit: &str, deadline: &str) -> ShareRow {
        ShareRow {
            namespace: ns.into(),
            repository: "app".into(),
            access_domain: account.into(),
            permit: permit.into(),
            deadline: deadline.into(),
            status: None,
            description: None,
            creator_name: None,
            created: None,
            updated: None,
        }
    }

    fn snap(id: i64, taken: &str, shares: Vec<ShareRow>) -> ShareSnapshot {
        ShareSnapshot {
            id,
            job_id: None,
            taken_at: DateTime::parse_from_rfc3339(taken)
                .unwrap()
                .timestamp_millis(),
            walks: 2,
            repos: Vec::new(),
            shares,
        }
    }

    #[test]
    fn every_kind_of_change_is_named() {
        let before = snap(
            1,
            "2026-01-01T00:00:00Z",
            vec![
                share("a", "gone", "read", "forever"),
                share("a", "wider", "read", "forever"),
                share("a", "narrower", "manage", "forever"),
                share("a", "later", "read", "2026-03-01T00:00:00Z"),
                share("a", "sooner", "read", "forever"),
                share("a", "moved-later", "read", "2026-03-01T00:00:00Z"),
                share("a", "moved-earlier", "read", "2026-09-01T00:00:00Z"),
                share("a", "expires", "read", "2026-01-15T00:00:00Z"),
                share("a", "expired-long-ago", "read", "2025-01-01T00:00:00Z"),
            ],
        );
        let after = snap(
            2,
            "2026-02-01T00:00:00Z",
            vec![
                share("a", "new", "read", "forever"),
                share("a", "wider", "write", "forever"),
                share("a", "narrower", "read", "forever"),
                share("a", "later", "read", "forever"),
                share("a", "sooner", "read", "2026-06-01T00:00:00Z"),
                share("a", "moved-later", "read", "2026-09-01T00:00:00Z"),
                share("a", "moved-earlier", "read", "2026-04-01T00:00:00Z"),
                share("a", "expires", "read", "2026-01-15T00:00:00Z"),
                share("a", "expired-long-ago", "read", "2025-01-01T00:00:00Z"),
            ],
        );
        let got: Vec<(String, &str)> = compare(&before, &after)
            .into_iter()
            .map(|c| (c.access_domain, c.change))
            .collect();
        let want = [
            ("expires", "deadline_passed"),
            ("gone", "removed"),
            ("later", "deadline_extended"),
            ("moved-earlier", "deadline_shortened"),
            ("moved-later", "deadline_extended"),
            ("narrower", "permission_narrowed"),
            ("new", "added"),
            ("sooner", "deadline_shortened"),
            ("wider", "permission_widened"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, c)| (a.to_string(), *c))
                .collect::<Vec<_>>()
        );
    }
}
