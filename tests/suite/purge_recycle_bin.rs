//! `purge_recycle_bin` end to end against the simulator: batches, retries without re-sending,
//! dry runs, filters and caps, both shapes of the delete answer, and transient failures.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use codearts_syncd::ingress::Submitted;
use codearts_syncd::sim::artifact::DeleteResultShape;
use codearts_syncd::sim::{Fault, Route, SimConfig};
use serde_json::json;
use support::{spawn_app_with, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// Ten items per batch, so the seeded recycle bin (4 repositories, 24 files) takes 3 batches.
const BATCH_10: &str = "[purge_recycle_bin]\nbatch_size = 10\n";

async fn app() -> TestApp {
    spawn_app_with(SimConfig::default(), BATCH_10).await
}

fn counts(v: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for s in v {
        *m.entry(s.as_str()).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn purge_batches_survive_a_500_without_resending_deleted_items() {
    let mut app = app().await;
    let before = app.sim.trash_entries();
    assert_eq!(before.len(), 28, "the seeded recycle bin");
    // The second delete call fails; the first has already gone through.
    app.sim.inject(Fault {
        route: Route::TrashDelete,
        status: Some(500),
        skip: 1,
        times: 1,
        ..Fault::default()
    });
    let id = app.submit("purge_recycle_bin", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.attempts, 2, "the 500 cost one attempt");
    let r = job.result.clone().unwrap();
    assert_eq!(r["deleted"], 28);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["skipped"], 0);
    assert_eq!(r["batches"], 3);

    // Every item deleted exactly once, and none ever sent twice to the service.
    assert!(app.sim.trash_entries().is_empty());
    let deleted = app.sim.deleted_uris();
    assert_eq!(deleted.len(), 28);
    assert!(counts(&deleted).values().all(|n| *n == 1), "{deleted:?}");
    let sent = app.sim.delete_requests();
    assert_eq!(sent.len(), 28, "no item re-sent after the retry: {sent:?}");
    // Three batches reached the service; the fourth call was the 500.
    assert_eq!(app.sim.count(Route::TrashDelete), 4);

    // The record: every item deleted, in batches 1..=3 of at most 10.
    let items = app.store.purge_items(id).await.unwrap();
    assert_eq!(items.len(), 28);
    assert!(items.iter().all(|i| i.outcome == "deleted"), "{items:?}");
    let mut per_batch: HashMap<i64, usize> = HashMap::new();
    for i in &items {
        *per_batch.entry(i.batch.unwrap()).or_default() += 1;
    }
    assert_eq!(per_batch, HashMap::from([(1, 10), (2, 10), (3, 8)]));
    let expected: Vec<String> = before.iter().map(|e| e.uri.clone()).collect();
    let mut got: Vec<String> = items.iter().map(|i| i.uri.clone()).collect();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn dry_run_deletes_nothing_and_records_what_would_go() {
    let mut app = app().await;
    let before = app.sim.trash_entries();
    let id = app
        .submit("purge_recycle_bin", json!({"dry_run": true}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["would_delete"], 28);
    assert_eq!(r["deleted"], 0);
    assert_eq!(app.sim.count(Route::TrashDelete), 0);
    assert_eq!(app.sim.trash_entries(), before);
    let items = app.store.purge_items(id).await.unwrap();
    assert_eq!(items.len(), 28);
    assert!(items.iter().all(|i| i.outcome == "would_delete"));
    assert!(items.iter().all(|i| i.batch.is_some()));

    // What a user sees: `jobs show` lists every item with its batch and outcome.
    let out = app.cli(&["jobs", "show", &id.to_string(), "--json"]);
    let (stdout, stderr) = support::text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let listed = v["purge_items"].as_array().unwrap();
    assert_eq!(listed.len(), 28);
    assert!(listed.iter().all(|i| i["outcome"] == "would_delete"));
    let uris: std::collections::HashSet<&str> =
        listed.iter().map(|i| i["uri"].as_str().unwrap()).collect();
    assert!(before.iter().all(|e| uris.contains(e.uri.as_str())));
    let out = app.cli(&["jobs", "show", &id.to_string()]);
    let (stdout, _) = support::text(&out);
    assert!(
        stdout.contains("BATCH") && stdout.contains(&before[0].uri),
        "{stdout}"
    );
}

fn modified_ms(text: &str) -> i64 {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&naive)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn max_items_and_older_than_pick_the_oldest_eligible_items() {
    let mut app = app().await;
    let before = app.sim.trash_entries();
    let cutoff = chrono::Utc::now().timestamp_millis() - 60 * 86_400_000;
    let mut eligible: Vec<(i64, String)> = before
        .iter()
        .map(|e| (modified_ms(&e.modified), e.uri.clone()))
        .filter(|(t, _)| *t <= cutoff)
        .collect();
    eligible.sort();
    assert!(
        eligible.len() > 5 && eligible.len() < before.len(),
        "the seed spreads modified times around 60 days: {} of {}",
        eligible.len(),
        before.len()
    );
    let want: Vec<String> = eligible.iter().take(5).map(|(_, u)| u.clone()).collect();

    let id = app
        .submit(
            "purge_recycle_bin",
            json!({"older_than": "60d", "max_items": 5}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(r["deleted"], 5);
    assert_eq!(r["skipped"], before.len() - 5);
    let mut deleted = app.sim.deleted_uris();
    deleted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(deleted, want_sorted);
    let items = app.store.purge_items(id).await.unwrap();
    let capped = items
        .iter()
        .filter(|i| i.message.as_deref() == Some("beyond max_items (5)"))
        .count();
    assert_eq!(capped, eligible.len() - 5);
}

#[tokio::test]
async fn formats_and_include_pattern_narrow_the_purge() {
    let mut app = app().await;
    let before = app.sim.trash_entries();
    let want: Vec<String> = before
        .iter()
        .filter(|e| e.format == "maven2" && e.uri.ends_with(".bin"))
        .map(|e| e.uri.clone())
        .collect();
    assert!(!want.is_empty());
    let id = app
        .submit(
            "purge_recycle_bin",
            json!({"formats": ["maven2"], "include_pattern": "**/*.bin"}),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let mut deleted = app.sim.deleted_uris();
    deleted.sort();
    let mut want = want;
    want.sort();
    assert_eq!(deleted, want);
}

#[tokio::test]
async fn legacy_success_string_and_per_item_failures_are_both_understood() {
    // The vendor doc's answer: "result": "success".
    let mut app = app().await;
    app.sim.set_delete_result_shape(DeleteResultShape::Legacy);
    let id = app.submit("purge_recycle_bin", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.result.unwrap()["deleted"], 28);

    // The counts object with one item the service refuses.
    let mut app = app_with_counts().await;
    let locked = app.sim.trash_entries()[3].uri.clone();
    app.sim.lock_trash(&locked);
    let id = app.submit("purge_recycle_bin", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("PURGE_INCOMPLETE"));
    assert_eq!(job.attempts, 1, "a refused item is not retried");
    let r = job.result.unwrap();
    assert_eq!(r["deleted"], 27);
    assert_eq!(r["failed"], 1);
    let items = app.store.purge_items(id).await.unwrap();
    let bad = items.iter().find(|i| i.outcome == "failed").unwrap();
    assert_eq!(bad.uri, locked);
    assert!(
        bad.message.as_deref().unwrap().contains("locked"),
        "{bad:?}"
    );
    assert_eq!(app.sim.trash_entries().len(), 1);
}

async fn app_with_counts() -> TestApp {
    let app = app().await;
    app.sim.set_delete_result_shape(DeleteResultShape::Counts);
    app
}

#[tokio::test]
async fn purge_rides_out_token_expiry_429_and_resets() {
    let mut app = app().await;
    app.sim.expire_tokens();
    app.sim.inject(Fault {
        route: Route::ArtifactRepoList,
        status: Some(429),
        retry_after: Some(1),
        times: 1,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::ArtifactFileTree,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::TrashDelete,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    let id = app.submit("purge_recycle_bin", json!({})).await;
    app.start();
    // Expire the token again while the job is between attempts.
    app.wait_for(id, WAIT, |j| j.attempts >= 1).await;
    app.sim.expire_tokens();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts[0].http_status, Some(429));
    assert_eq!(
        attempts[0].retry_delay_ms,
        Some(1000),
        "Retry-After honoured"
    );
    assert_eq!(job.result.unwrap()["deleted"], 28);
    assert!(app.sim.trash_entries().is_empty());
    let deleted = app.sim.deleted_uris();
    assert!(counts(&deleted).values().all(|n| *n == 1));
}

#[tokio::test]
async fn bad_purge_parameters_are_rejected_naming_them() {
    let app = app().await;
    for (params, needle) in [
        (json!({"older_than": 30}), "older_than"),
        (json!({"older_than": "soon"}), "older_than"),
        (json!({"formats": ["tarball"]}), "formats"),
        (json!({"max_items": 0}), "max_items"),
        (json!({"batch": 3}), "unknown parameter"),
    ] {
        match app
            .submit_raw("purge_recycle_bin", params.clone(), None)
            .await
        {
            Submitted::Rejected { reason, .. } => {
                assert!(reason.contains(needle), "{params}: {reason}")
            }
            other => panic!("{params} was not rejected: {other:?}"),
        }
    }
}

#[tokio::test]
async fn artifact_kinds_need_the_tenant_and_project_ids() {
    let text = std::fs::read_to_string(app().await.config_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "x").unwrap();
    std::fs::write(dir.path().join("upstream-user"), "x").unwrap();
    std::fs::write(dir.path().join("upstream-password"), "x").unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("domain_id"))
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = codearts_syncd::config::Config::from_toml_str(&stripped, dir.path()).unwrap();
    let err = codearts_syncd::jobs::validate(
        codearts_syncd::jobs::JobKind::PurgeRecycleBin,
        &json!({}),
        &cfg,
    )
    .unwrap_err();
    assert!(err.0.contains("cloud.domain_id"), "{err}");
}

#[tokio::test]
async fn a_lost_answer_is_settled_by_a_fresh_listing_not_guessed() {
    let mut app = app().await;
    // The second batch is deleted, but its answer never arrives; the client sends it again
    // and hears that none of its items is in the recycle bin any more.
    app.sim.inject(Fault {
        route: Route::TrashDelete,
        reset_after: true,
        skip: 1,
        times: 1,
        ..Fault::default()
    });
    let id = app.submit("purge_recycle_bin", json!({})).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(r["deleted"], 28);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["unconfirmed"], 0);
    let deleted = app.sim.deleted_uris();
    assert!(counts(&deleted).values().all(|n| *n == 1));
    assert_eq!(deleted.len(), 28);
    let items = app.store.purge_items(id).await.unwrap();
    let checked: Vec<_> = items
        .iter()
        .filter(|i| {
            i.message
                .as_deref()
                .is_some_and(|m| m.starts_with("gone from the recycle bin"))
        })
        .collect();
    assert_eq!(checked.len(), 10, "the second batch, settled by listing");
    assert!(checked
        .iter()
        .all(|i| i.batch == Some(2) && i.outcome == "deleted"));
}

#[tokio::test]
async fn a_restart_mid_purge_never_resends_confirmed_items() {
    let mut app = app().await;
    // The second batch is slow, so the process dies while it is under way.
    app.sim.inject(Fault {
        route: Route::TrashDelete,
        delay_ms: Some(800),
        skip: 1,
        times: 1,
        ..Fault::default()
    });
    let id = app.submit("purge_recycle_bin", json!({})).await;
    app.start();
    let deadline = std::time::Instant::now() + WAIT;
    let first_batch = loop {
        let items = app.store.purge_items(id).await.unwrap();
        let done: Vec<String> = items
            .iter()
            .filter(|i| i.outcome == "deleted")
            .map(|i| i.uri.clone())
            .collect();
        if !done.is_empty() {
            break done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "batch 1 never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(first_batch.len(), 10);
    app.kill();
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.result.unwrap()["deleted"], 28);
    assert!(app.sim.trash_entries().is_empty());
    let deleted = app.sim.deleted_uris();
    assert!(counts(&deleted).values().all(|n| *n == 1));
    let sent = counts(&app.sim.delete_requests())
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<HashMap<String, usize>>();
    for uri in &first_batch {
        assert_eq!(
            sent.get(uri),
            Some(&1),
            "{uri} was sent again after the restart"
        );
    }
}
