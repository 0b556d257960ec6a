//! `storage_snapshot` end to end: exact byte counts for every size string the simulator sends,
//! the trend, `storage report` (text, JSON, SVG), parameters and transient failures.

use crate::support;

use std::time::Duration;

use codearts_syncd::sim::{Fault, Route, SimConfig};
use codearts_syncd::size::parse_size;
use serde_json::{json, Value};
use support::{spawn_app_with, text, TestApp};

const WAIT: Duration = Duration::from_secs(30);

async fn app() -> TestApp {
    spawn_app_with(SimConfig::default(), "").await
}

/// The unit a size string is written in, in bytes.
fn unit_of(text: &str) -> u64 {
    let i = ["B", "KB", "MB", "GB", "TB", "PB"]
        .iter()
        .position(|u| text.ends_with(&format!(" {u}")))
        .unwrap_or(0);
    1 << (10 * i)
}

#[tokio::test]
async fn storage_byte_counts_are_exact_for_every_size_string() {
    let mut app = app().await;
    let id = app
        .submit("storage_snapshot", json!({"trend_days": 10}))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");

    let snap = app
        .store
        .latest_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    let usage = app.sim.artifact_usage();
    assert_eq!(snap.repos.len(), usage.len());
    let mut units_seen = std::collections::HashSet::new();
    for (repo, exact, shown) in &usage {
        let row = snap.repos.iter().find(|r| &r.repo_id == repo).unwrap();
        assert_eq!(&row.used_text, shown, "the API's text is kept verbatim");
        // The text's exact value (1024-based, rounded to the byte) ...
        assert_eq!(row.used_bytes as u64, parse_size(shown).unwrap(), "{shown}");
        // ... which is the true size within the two decimals the API shows.
        let unit = unit_of(shown);
        assert!(
            (row.used_bytes as u64).abs_diff(*exact) <= unit / 200 + 1,
            "{shown}: stored {} for {exact} bytes",
            row.used_bytes
        );
        units_seen.insert(shown.rsplit(' ').next().unwrap().to_string());
    }
    assert!(
        usage.iter().any(|(_, _, s)| s == "0 MB")
            && usage.iter().any(|(_, _, s)| s.contains(','))
            && ["B", "KB", "MB", "GB"]
                .iter()
                .all(|u| units_seen.contains(*u)),
        "the seed covers zero, thousands separators and every unit: {usage:?}"
    );
    assert_eq!(
        snap.total_bytes as u64,
        parse_size(&snap.total_text).unwrap()
    );
    let true_total: u64 = usage.iter().map(|(_, b, _)| b).sum();
    assert!((snap.total_bytes as u64).abs_diff(true_total) <= unit_of(&snap.total_text) / 200 + 1);

    // The project trend: usedSpaceLength is exact and "" means nothing.
    let trend = app.store.storage_trend("", 10).await.unwrap();
    assert_eq!(trend.len(), 10);
    for t in &trend {
        if t.used_text.is_empty() {
            assert_eq!(t.used_bytes, 0);
        } else {
            let unit = unit_of(&t.used_text);
            let shown = parse_size(&t.used_text).unwrap();
            assert!(
                shown.abs_diff(t.used_bytes as u64) <= unit / 200 + 1,
                "{t:?}"
            );
        }
    }
    assert!(
        trend.iter().any(|t| t.used_text.is_empty()),
        "a day with nothing"
    );
    // Today's project total equals the sum of the repositories' true sizes.
    assert_eq!(trend.last().unwrap().used_bytes as u64, true_total);
    for (repo, _, _) in &usage {
        assert_eq!(app.store.storage_trend(repo, 10).await.unwrap().len(), 10);
    }
    let r = job.result.unwrap();
    assert_eq!(r["total_bytes"], snap.total_bytes);
    assert_eq!(r["repos"], usage.len());
}

#[tokio::test]
async fn storage_report_prints_the_snapshot_and_draws_the_trend() {
    let mut app = app().await;
    let repo = app.sim.artifact_repo_ids()[3].clone();
    let id = app.submit("storage_snapshot", json!({})).await;
    app.start();
    app.wait_final(id, WAIT).await;
    app.stop().await;
    let snap = app.store.latest_snapshot().await.unwrap().unwrap();

    let out = app.cli(&["storage", "report"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("({} bytes", snap.total_bytes)),
        "{stdout}"
    );
    assert!(stdout.contains(&repo));

    let out = app.cli(&[
        "storage", "report", "--repo", &repo, "--days", "5", "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["repos"].as_array().unwrap().len(), 1);
    assert_eq!(v["repos"][0]["repo_id"], repo.as_str());
    assert_eq!(v["trend"].as_array().unwrap().len(), 5);
    assert!(v["trend"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["repo_id"] == repo.as_str()));

    let svg = app.dir.path().join("trend.svg");
    let out = app.cli(&["storage", "report", "--svg", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg") && drawn.contains("<polyline"),
        "{}",
        &drawn[..200.min(drawn.len())]
    );
    assert!(drawn.contains("whole project"));

    let out = app.cli(&["storage", "report", "--repo", "no-such-repo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("no-such-repo"));
}

#[tokio::test]
async fn storage_report_without_a_snapshot_says_so() {
    let app = app().await;
    let out = app.cli(&["storage", "report"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("no storage snapshot yet"));
}

#[tokio::test]
async fn formats_and_repos_narrow_the_snapshot() {
    let mut app = app().await;
    let ids = app.sim.artifact_repo_ids();
    let a = app
        .submit(
            "storage_snapshot",
            json!({"repos": [ids[1], ids[2]], "trend_days": 3}),
        )
        .await;
    app.start();
    let job = app.wait_final(a, WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let snap = app.store.latest_snapshot().await.unwrap().unwrap();
    let mut got: Vec<&str> = snap.repos.iter().map(|r| r.repo_id.as_str()).collect();
    got.sort();
    let mut want = vec![ids[1].as_str(), ids[2].as_str()];
    want.sort();
    assert_eq!(got, want);

    let b = app
        .submit("storage_snapshot", json!({"formats": ["npm"]}))
        .await;
    let job = app.wait_final(b, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let snap = app.store.latest_snapshot().await.unwrap().unwrap();
    assert!(!snap.repos.is_empty());
    assert!(snap
        .repos
        .iter()
        .all(|r| r.format.as_deref() == Some("npm")));
    assert_eq!(snap.formats.as_deref(), Some("npm"));
}

#[tokio::test]
async fn storage_rides_out_token_expiry_429_and_resets() {
    let mut app = app().await;
    app.sim.inject(Fault {
        route: Route::Storage,
        status: Some(429),
        retry_after: Some(1),
        times: 1,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::ArtifactRepoShow,
        reset: true,
        skip: 2,
        times: 1,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::StorageTrend,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    let id = app.submit("storage_snapshot", json!({})).await;
    app.start();
    app.wait_for(id, WAIT, |j| j.attempts >= 1 && j.status == "queued")
        .await;
    app.sim.expire_tokens();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts[0].http_status, Some(429));
    assert_eq!(attempts[0].retry_delay_ms, Some(1000));
    let snap = app.store.latest_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.repos.len(), app.sim.artifact_repo_ids().len());
}

#[tokio::test]
async fn bad_storage_parameters_are_rejected_naming_them() {
    let app = app().await;
    for (params, needle) in [
        (json!({"trend_days": 0}), "trend_days"),
        (json!({"trend_days": "7"}), "trend_days"),
        (json!({"formats": ["zip"]}), "formats"),
        (json!({"repos": [""]}), "repos"),
        (json!({"in_project": true}), "unknown parameter"),
    ] {
        match app
            .submit_raw("storage_snapshot", params.clone(), None)
            .await
        {
            codearts_syncd::ingress::Submitted::Rejected { reason, .. } => {
                assert!(reason.contains(needle), "{params}: {reason}")
            }
            other => panic!("{params} was not rejected: {other:?}"),
        }
    }
}
