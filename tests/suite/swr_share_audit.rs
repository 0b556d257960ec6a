//! `swr_share_audit` end to end: a snapshot stays complete while shares are added and removed
//! between the listing's pages; `swr shares` and `swr shares --changes` in table and JSON (an
//! added share, a removed one, a widened permission, a deadline moved to a later date, a passed
//! deadline); no snapshot yet; a repository name with a `/` (its access domains read with the `/`
//! sent as `$`); AK/SK; a 5xx and a 429 in the middle of the work are retried by the engine, the
//! API's error codes kept on the attempts, and the snapshot in the end is complete.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use codearts_syncd::api::{Client, Request, Service};
use codearts_syncd::ingress::Submitted;
use codearts_syncd::sim::{Fault, Route, ShareChange, ShareOp, SimConfig};
use codearts_syncd::JobId;
use reqwest::Method;
use serde_json::{json, Value};
use support::broker::{acfg, all_jobs, amqp_toml, cleanup, publish_raw, unique_tag};
use support::{spawn_app_aksk, spawn_app_with, text, with_server, TestApp};

const WAIT: Duration = Duration::from_secs(30);

async fn app() -> TestApp {
    spawn_app_with(SimConfig::default(), "").await
}

fn put(ns: &str, repo: &str, account: &str, permit: &str, deadline: &str) -> ShareChange {
    ShareChange {
        op: ShareOp::Put,
        namespace: ns.into(),
        repository: repo.into(),
        access_domain: account.into(),
        permit: Some(permit.into()),
        deadline: Some(deadline.into()),
        after_pages: None,
    }
}

fn remove(ns: &str, repo: &str, account: &str) -> ShareChange {
    ShareChange {
        op: ShareOp::Remove,
        namespace: ns.into(),
        repository: repo.into(),
        access_domain: account.into(),
        permit: None,
        deadline: None,
        after_pages: None,
    }
}

/// Runs one audit to its end (the daemon must be running) and returns the job.
async fn audit(app: &TestApp, params: Value) -> JobId {
    let id = app.submit("swr_share_audit", params).await;
    let job = app.wait_final(id, WAIT).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    id
}

/// The simulator's shares as `(namespace, repository, account, permit, deadline)`.
fn sim_shares(app: &TestApp) -> BTreeSet<(String, String, String, String, String)> {
    app.sim.swr_shares().into_iter().collect()
}

/// The latest snapshot's shares in the same shape.
async fn stored_shares(app: &TestApp) -> BTreeSet<(String, String, String, String, String)> {
    let snaps = app.store.latest_share_snapshots(1).await.unwrap();
    snaps[0]
        .shares
        .iter()
        .map(|s| {
            (
                s.namespace.clone(),
                s.repository.clone(),
                s.access_domain.clone(),
                s.permit.clone(),
                s.deadline.clone(),
            )
        })
        .collect()
}

/// `swr shares` with `args`; must exit 0.
fn shares_cli(app: &TestApp, args: &[&str]) -> String {
    let mut all = vec!["swr", "shares"];
    all.extend_from_slice(args);
    let out = app.cli(&all);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{all:?}: {stdout}{stderr}");
    stdout
}

#[tokio::test]
async fn snapshot_is_complete_when_shares_are_added_and_removed_between_pages() {
    let mut app = app().await;
    // Eight shared repositories, listed two per page.
    for i in 0..5 {
        app.sim.change_swr_share(put(
            "team-c",
            &format!("svc-{i}"),
            "partner-x",
            "read",
            "forever",
        ));
    }
    // While the first walk runs: after its first page a repository sorting before everything
    // (every later page shifts by one: a walk would see one entry twice and miss none, or the
    // other way round), after its third page the removal of one already listed (a walk would
    // skip the entry that moves into its place).
    let mut early = put("aaa", "first", "partner-z", "read", "forever");
    early.after_pages = Some(1);
    let mut late = remove("team-a", "api-server", "partner-x");
    late.after_pages = Some(3);
    let mut late2 = remove("team-a", "api-server", "partner-y");
    late2.after_pages = Some(3);
    for c in [early, late, late2] {
        app.sim.change_swr_share(c);
    }
    app.start();
    let id = audit(&app, json!({"page_size": 2})).await;
    app.stop().await;

    let job = app.job(id).await;
    let result = job.result.unwrap();
    assert!(
        result["walks"].as_u64().unwrap() >= 3,
        "the first walk saw the listing change, two later ones agreed: {result}"
    );
    let snaps = app.store.latest_share_snapshots(1).await.unwrap();
    let repos: BTreeSet<(String, String)> = snaps[0]
        .repos
        .iter()
        .map(|r| (r.namespace.clone(), r.repository.clone()))
        .collect();
    let want: BTreeSet<(String, String)> = sim_shares(&app)
        .into_iter()
        .map(|(ns, r, ..)| (ns, r))
        .collect();
    assert_eq!(repos, want, "every shared repository, once");
    assert!(repos.contains(&("aaa".into(), "first".into())));
    assert!(!repos.contains(&("team-a".into(), "api-server".into())));
    assert_eq!(stored_shares(&app).await, sim_shares(&app));
    assert_eq!(result["repositories"], repos.len());
    assert_eq!(result["shares"], sim_shares(&app).len());

    // Every listing request asked for `center=self` and a page of two.
    let listing: Vec<_> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.route == Route::SwrSharedRepos)
        .collect();
    assert!(listing.len() >= 3 * 4, "{} listing pages", listing.len());
    for c in &listing {
        let q = c.query.as_deref().unwrap_or("");
        assert!(q.contains("center=self") && q.contains("limit=2"), "{q}");
    }
}

#[tokio::test]
async fn changes_report_added_removed_widened_extended_and_passed() {
    let mut app = app().await;
    // A share whose deadline falls between the two snapshots.
    let deadline = Utc::now() + TimeDelta::seconds(6);
    let deadline_text = deadline.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    app.sim.change_swr_share(put(
        "team-b",
        "batch-worker",
        "short-term",
        "read",
        &deadline_text,
    ));
    app.start();
    let first = audit(&app, json!({})).await;
    let first_at = app.job(first).await.finished_at.unwrap();
    assert!(
        first_at < deadline.timestamp_millis(),
        "precondition: the first snapshot is taken before the deadline"
    );

    app.sim.change_swr_share(put(
        "team-b",
        "batch-worker",
        "partner-q",
        "read",
        "forever",
    ));
    app.sim
        .change_swr_share(remove("team-a", "web", "partner-x"));
    app.sim
        .change_swr_share(put("team-a", "api-server", "partner-x", "write", "forever"));
    // A deadline moved from one date to a later one, through the simulator's HTTP control.
    let seeded = sim_shares(&app)
        .into_iter()
        .find(|(_, repo, account, ..)| repo == "api-server" && account == "partner-y")
        .map(|(.., deadline)| deadline)
        .unwrap();
    let later = (Utc::now() + TimeDelta::days(200))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert!(
        seeded.as_str() < later.as_str(),
        "precondition: {seeded} is a date before {later}"
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/__sim/swr/shares", app.url))
        .body(
            json!({"op": "put", "namespace": "team-a", "repository": "api-server",
                   "access_domain": "partner-y", "permit": "read", "deadline": later})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    while Utc::now() <= deadline + TimeDelta::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    audit(&app, json!({})).await;
    app.stop().await;

    // JSON: parse it and look at each change.
    let v: Value = serde_json::from_str(&shares_cli(&app, &["--changes", "--json"])).unwrap();
    let changes = v["changes"].as_array().unwrap();
    let find = |change: &str, repo: &str, account: &str| {
        changes
            .iter()
            .find(|c| {
                c["change"] == change && c["repository"] == repo && c["access_domain"] == account
            })
            .unwrap_or_else(|| panic!("no {change} for {repo}/{account}: {v:#}"))
            .clone()
    };
    let added = find("added", "batch-worker", "partner-q");
    assert_eq!(added["namespace"], "team-b");
    assert!(added["before"].is_null());
    assert_eq!(added["after"]["permit"], "read");
    let removed = find("removed", "web", "partner-x");
    assert_eq!(removed["before"]["deadline"], "forever");
    assert!(removed["after"].is_null());
    let widened = find("permission_widened", "api-server", "partner-x");
    assert_eq!(widened["before"]["permit"], "read");
    assert_eq!(widened["after"]["permit"], "write");
    let passed = find("deadline_passed", "batch-worker", "short-term");
    assert_eq!(passed["after"]["deadline"], deadline_text.as_str());
    let extended = find("deadline_extended", "api-server", "partner-y");
    assert_eq!(extended["before"]["deadline"], seeded.as_str());
    assert_eq!(extended["after"]["deadline"], later.as_str());
    assert_eq!(changes.len(), 5, "nothing else changed: {v:#}");
    assert!(v["previous"]["id"].as_i64() < v["latest"]["id"].as_i64());

    // The same as a table.
    let table = shares_cli(&app, &["--changes"]);
    assert!(table.contains("CHANGE"), "{table}");
    for needle in [
        "added",
        "removed",
        "permission_widened",
        "deadline_passed",
        "team-b/batch-worker",
        "read until forever",
        "write until forever",
    ] {
        assert!(table.contains(needle), "{needle:?} in:\n{table}");
    }
    let line = table
        .lines()
        .find(|l| l.contains("deadline_extended"))
        .unwrap_or_else(|| panic!("{table}"));
    for needle in [
        "team-a/api-server".to_string(),
        "partner-y".to_string(),
        format!("read until {seeded}"),
        format!("read until {later}"),
    ] {
        assert!(line.contains(&needle), "{needle:?} in {line}");
    }

    // The latest snapshot: every share, the passed ones flagged.
    let v: Value = serde_json::from_str(&shares_cli(&app, &["--json"])).unwrap();
    let shares = v["shares"].as_array().unwrap();
    assert_eq!(shares.len(), sim_shares(&app).len());
    let flagged: BTreeSet<&str> = shares
        .iter()
        .filter(|s| s["deadline_passed"] == true)
        .map(|s| s["access_domain"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, BTreeSet::from(["old-vendor", "short-term"]));
    assert_eq!(v["snapshot"]["deadline_passed"], 2);
    let table = shares_cli(&app, &[]);
    let line = table
        .lines()
        .find(|l| l.contains("short-term"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("deadline passed"), "{line}");
    let line = table.lines().find(|l| l.contains("partner-q")).unwrap();
    assert!(!line.contains("deadline passed"), "{line}");
    assert!(table.contains("NAMESPACE/REPOSITORY"), "{table}");
}

#[tokio::test]
async fn a_repository_name_with_a_slash_is_read_through_its_dollar_path() {
    let mut app = app().await;
    // SWR's `ListRepoDomains` page asks for a `/` in a repository name to be sent as `$`; the
    // simulator finds no repository behind a `%2F` (as on its image-sync routes), so a path
    // encoded that way would leave these shares out as vanished.
    for (account, deadline) in [
        ("partner-x", "forever"),
        ("partner-z", "2030-01-01T00:00:00Z"),
    ] {
        app.sim
            .change_swr_share(put("team-a", "tools/builder", account, "read", deadline));
    }
    app.start();
    let id = audit(&app, json!({})).await;
    app.stop().await;

    let result = app.job(id).await.result.unwrap();
    assert_eq!(result["vanished"], json!([]), "{result}");
    let stored = stored_shares(&app).await;
    assert_eq!(stored, sim_shares(&app));
    let builder: Vec<&str> = stored
        .iter()
        .filter(|(ns, repo, ..)| ns == "team-a" && repo == "tools/builder")
        .map(|(_, _, account, ..)| account.as_str())
        .collect();
    assert_eq!(builder, ["partner-x", "partner-z"]);
    let paths: Vec<String> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.route == Route::SwrRepoDomains && c.path.contains("tools"))
        .map(|c| c.path)
        .collect();
    assert_eq!(
        paths,
        ["/v2/manage/namespaces/team-a/repositories/tools%24builder/access-domains"]
    );

    // The slash itself, encoded, names no repository.
    let client = Client::from_config(&app.cfg).unwrap();
    let slash = "/v2/manage/namespaces/team-a/repositories/tools%2Fbuilder/access-domains";
    match client
        .call(&Request::new(Service::Swr, Method::GET, slash))
        .await
    {
        Err(codearts_syncd::api::Error::Api {
            status, error_code, ..
        }) => assert_eq!((status, error_code.as_str()), (404, "SVCSTG.SWR.4041002")),
        other => panic!("{slash}: {other:?}"),
    }
}

#[tokio::test]
async fn no_snapshot_yet_and_only_one_say_so() {
    let mut app = app().await;
    let out = shares_cli(&app, &[]);
    assert!(out.contains("no SWR share snapshot yet"), "{out}");
    let v: Value = serde_json::from_str(&shares_cli(&app, &["--json"])).unwrap();
    assert!(v["snapshot"].is_null());
    let out = shares_cli(&app, &["--changes"]);
    assert!(out.contains("no SWR share snapshot yet"), "{out}");

    app.start();
    audit(&app, json!({})).await;
    app.stop().await;
    let out = shares_cli(&app, &["--changes"]);
    assert!(out.contains("only one SWR share snapshot"), "{out}");
    let v: Value = serde_json::from_str(&shares_cli(&app, &["--changes", "--json"])).unwrap();
    assert!(v["previous"].is_null());
    assert_eq!(v["latest"]["shares"], 4, "{v}");
    assert_eq!(v["changes"], json!([]));

    let help = app.cli(&["swr", "shares", "--help"]);
    let (help, _) = text(&help);
    for needle in [
        "deadline passed",
        "permission_widened",
        "--changes",
        "--json",
    ] {
        assert!(help.contains(needle), "{needle:?} in:\n{help}");
    }
}

#[tokio::test]
async fn unknown_parameters_are_rejected_at_ingress() {
    let app = app().await;
    for params in [json!({"namespace": "team-a"}), json!({"page_size": 0})] {
        match app
            .submit_raw("swr_share_audit", params.clone(), None)
            .await
        {
            Submitted::Rejected { .. } => {}
            other => panic!("{params}: expected a rejection, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn share_audit_runs_with_aksk_signatures() {
    let sim = SimConfig::default();
    let sk = sim.secret_key.clone();
    let mut app = spawn_app_aksk(sim, &sk, "").await;
    app.start();
    let id = audit(&app, json!({})).await;
    app.stop().await;
    assert_eq!(app.job(id).await.attempts, 1);
    assert_eq!(stored_shares(&app).await, sim_shares(&app));
    let swr: Vec<_> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| matches!(c.route, Route::SwrSharedRepos | Route::SwrRepoDomains))
        .collect();
    assert!(swr.iter().any(|c| c.route == Route::SwrRepoDomains));
    assert!(
        swr.iter().all(|c| c.auth == "aksk" && c.status == 200),
        "{swr:?}"
    );
    assert_eq!(app.sim.count(Route::IamToken), 0);
}

#[tokio::test]
async fn a_5xx_and_a_429_mid_audit_are_retried_and_the_snapshot_is_complete() {
    let mut app = app().await;
    // The second listing page answers 503; on the next attempt one repository's accounts
    // answer 429 with a Retry-After.
    app.sim.inject(Fault {
        route: Route::SwrSharedRepos,
        status: Some(503),
        skip: 1,
        times: 1,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::SwrRepoDomains,
        status: Some(429),
        retry_after: Some(1),
        times: 1,
        ..Fault::default()
    });
    app.start();
    let id = app.submit("swr_share_audit", json!({"page_size": 2})).await;
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[0].http_status, Some(503));
    assert_eq!(
        attempts[0].error_code.as_deref(),
        Some("SVCSTG.SWR.5001001")
    );
    assert_eq!(attempts[1].http_status, Some(429));
    assert_eq!(attempts[1].error_code.as_deref(), Some("APIGW.0308"));
    assert_eq!(stored_shares(&app).await, sim_shares(&app));
    // A failed attempt writes nothing: one snapshot, from the attempt that succeeded.
    let snaps = app.store.latest_share_snapshots(5).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].job_id, Some(id));
}

#[tokio::test]
async fn a_listing_that_never_settles_fails_the_attempt_and_is_retried() {
    let mut app = app().await;
    // Every walk of two pages sees a change after its first page, for six walks (one attempt).
    for i in 0..6u64 {
        let mut c = put("aaa", &format!("churn-{i}"), "partner-z", "read", "forever");
        c.after_pages = Some(1 + 2 * i);
        app.sim.change_swr_share(c);
    }
    app.start();
    let id = app.submit("swr_share_audit", json!({"page_size": 3})).await;
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let attempts = app.attempts(id).await;
    assert!(attempts.len() >= 2, "{attempts:?}");
    let first = attempts[0].error_msg.as_deref().unwrap_or("");
    assert!(first.contains("no two consecutive walks agreed"), "{first}");
    assert_eq!(stored_shares(&app).await, sim_shares(&app));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ingress_runs_a_share_audit() {
    let tag = unique_tag();
    let extra = format!(
        "{}\n[[schedules]]\nname = \"shares\"\ncron = \"*/2 * * * * *\"\nkind = \"swr_share_audit\"\nparams = {{ page_size = 2 }}\n",
        amqp_toml(&tag)
    );
    let mut app = spawn_app_with(SimConfig::default(), &extra).await;
    std::fs::write(app.dir.path().join("api-token"), "share-token-7").unwrap();
    let base = with_server(&mut app, "api_token = { file = \"api-token\" }");
    let amqp = acfg(&app);
    app.start();

    // AMQP: a valid message and one with an unknown parameter (rejected, recorded).
    publish_raw(
        &amqp,
        &[
            (
                json!({"kind": "swr_share_audit", "params": {}})
                    .to_string()
                    .into_bytes(),
                Some("s-1".into()),
            ),
            (
                json!({"kind": "swr_share_audit", "params": {"center": "self"}})
                    .to_string()
                    .into_bytes(),
                Some("s-2".into()),
            ),
        ],
    )
    .await;
    // The operator API.
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    let resp = loop {
        let r = client
            .post(format!("{base}/jobs"))
            .header("authorization", "Bearer share-token-7")
            .body(json!({"kind": "swr_share_audit", "params": {"page_size": 3}}).to_string())
            .send()
            .await;
        match r {
            Ok(r) => break r,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the operator API never came up: {e}"),
        }
    };
    assert_eq!(resp.status().as_u16(), 202);
    let api_job: Value = resp.json().await.unwrap();
    let api_job = api_job["id"].as_i64().unwrap();
    // The CLI, waiting for the outcome.
    let config = app.config_path();
    let out = tokio::task::spawn_blocking(move || {
        support::run_binary(
            &config,
            &["enqueue", "swr_share_audit", "--wait", "--timeout", "30s"],
            &[],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");

    assert_eq!(app.wait_final(api_job, WAIT).await.status, "succeeded");
    let deadline = std::time::Instant::now() + WAIT;
    let jobs = loop {
        let jobs: Vec<_> = all_jobs(&app.store)
            .await
            .into_iter()
            .filter(|j| j.kind == "swr_share_audit")
            .collect();
        let done = |source: &str| {
            jobs.iter()
                .any(|j| j.source == source && j.status == "succeeded")
        };
        if done("amqp") && done("cron") && done("cli") {
            break jobs;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.stop().await;
    cleanup(&amqp).await;
    let rejected: Vec<_> = jobs.iter().filter(|j| j.status == "rejected").collect();
    assert_eq!(rejected.len(), 1, "{jobs:?}");
    assert_eq!(rejected[0].source, "amqp");
    assert!(
        rejected[0]
            .error_msg
            .as_deref()
            .unwrap_or("")
            .contains("unknown parameter"),
        "{:?}",
        rejected[0]
    );
    assert_eq!(stored_shares(&app).await, sim_shares(&app));
}

#[tokio::test]
async fn the_simulator_control_changes_shares_over_http() {
    let app = app().await;
    let client = reqwest::Client::new();
    let control = format!("{}/__sim/swr/shares", app.url);
    let resp = client
        .post(&control)
        .body(
            json!([
                {"op": "put", "namespace": "ops", "repository": "tools", "access_domain": "auditor",
                 "permit": "read", "deadline": "2030-01-01T00:00:00Z"},
                {"op": "remove", "namespace": "team-a", "repository": "web", "access_domain": "partner-x"},
                {"op": "put", "namespace": "ops", "repository": "later", "access_domain": "auditor",
                 "after_pages": 1}
            ])
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bad = client
        .post(&control)
        .body("{\"op\": \"grant\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let listed: Value = client
        .get(&control)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let repos: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["namespace"].as_str().unwrap(),
                r["repository"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        repos,
        ["ops/tools", "team-a/api-server", "team-b/batch-worker"]
    );
    assert_eq!(
        listed[0]["domains"]["auditor"]["deadline"],
        "2030-01-01T00:00:00Z"
    );
    // The queued one arrives once the listing has answered a page.
    let client_api = Client::from_config(&app.cfg).unwrap();
    let page = client_api.list_shared_repos(0, 10).await.unwrap();
    assert_eq!(page.repos.len(), 3);
    let page = client_api.list_shared_repos(0, 10).await.unwrap();
    assert_eq!(page.repos.len(), 4);
    assert_eq!(page.repos[0].namespace, "ops");
    assert_eq!(page.repos[0].name, "later");
}
