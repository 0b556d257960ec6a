//! `swr_image_sync` end to end against the simulator: per-tag outcomes, a failing tag and its
//! replay, `existed`, globs over a paged listing, the follow timeout, one sync per repository
//! and target, a lost start answer, AK/SK, and parameters refused at ingress.

use crate::support;

use std::time::Duration;

use codearts_syncd::ingress::Submitted;
use codearts_syncd::sim::swr::{SwrRequest, TagShift};
use codearts_syncd::sim::{Fault, Route, SimConfig};
use serde_json::{json, Value};
use support::{spawn_app_aksk, spawn_app_with, text, TestApp};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The `[swr]` section the tests run with.
pub(crate) fn swr_config(follow_timeout: &str) -> String {
    format!(
        "[swr]\nsync_regions = [\"ap-southeast-1\", \"cn-north-4\"]\npoll_interval = \"50ms\"\nfollow_timeout = \"{follow_timeout}\"\n"
    )
}

pub(crate) fn sim(sync_ms: u64) -> SimConfig {
    SimConfig {
        sync_duration: Duration::from_millis(sync_ms),
        ..SimConfig::default()
    }
}

pub(crate) async fn app() -> TestApp {
    spawn_app_with(sim(300), &swr_config("20s")).await
}

pub(crate) fn sync(repository: &str, tags: Value) -> Value {
    json!({
        "namespace": "demo-team",
        "repository": repository,
        "tags": tags,
        "remote_region_id": "ap-southeast-1",
        "remote_namespace": "demo-team-dr",
    })
}

/// The `imageTag` of every start the simulator received, in order.
pub(crate) fn started_tags(reqs: &[SwrRequest]) -> Vec<Vec<String>> {
    reqs.iter()
        .filter(|r| r.route == Route::SwrSyncStart)
        .map(|r| {
            let body = r.body.as_ref().expect("a start has a body");
            body["imageTag"]
                .as_array()
                .expect("imageTag is an array")
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// `jobs retry ID` from the CLI; the new job's id.
pub(crate) fn replay(app: &TestApp, id: i64) -> i64 {
    let out = app.cli(&["jobs", "retry", &id.to_string(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("JSON");
    answer["new_id"].as_i64().expect("new_id")
}

#[tokio::test]
async fn all_tags_succeed_and_each_outcome_is_recorded() {
    let mut app = app().await;
    let id = app
        .submit("swr_image_sync", sync("web", json!(["v1.0.1", "v1.1.0"])))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;

    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.clone().expect("a result");
    assert_eq!(strings(&r["succeeded"]), ["v1.0.1", "v1.1.0"]);
    assert_eq!(strings(&r["failed"]), Vec::<String>::new());
    assert_eq!(r["tags"]["v1.1.0"]["status"], "success");
    // The jid is the sync job ids, one per tag, as recorded per tag.
    let ids: Vec<i64> = r["sync_job_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let jid = job.jid.clone().expect("a jid");
    let mut from_jid: Vec<i64> = jid.split(',').map(|s| s.parse().unwrap()).collect();
    from_jid.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(from_jid, sorted);
    assert_eq!(
        r["tags"]["v1.0.1"]["sync_job_id"].as_i64(),
        Some(from_jid[0])
    );

    let reqs = app.sim.swr_requests();
    assert_eq!(started_tags(&reqs), vec![vec!["v1.0.1", "v1.1.0"]]);
    let body = reqs
        .iter()
        .find(|r| r.route == Route::SwrSyncStart)
        .and_then(|r| r.body.clone())
        .unwrap();
    assert_eq!(body["override"], false);
    assert_eq!(body["remoteRegionId"], "ap-southeast-1");
    assert_eq!(body["remoteNamespace"], "demo-team-dr");

    // What a user sees.
    let out = app.cli(&["jobs", "show", &id.to_string(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("JSON");
    let shown = if shown.get("job").is_some() {
        shown["job"].clone()
    } else {
        shown
    };
    assert_eq!(shown["jid"], jid.as_str());
    assert_eq!(shown["result"]["tags"]["v1.0.1"]["outcome"], "succeeded");
}

#[tokio::test]
async fn a_failing_tag_fails_the_job_and_a_replay_resends_only_that_tag() {
    let mut app = app().await;
    app.sim
        .swr_tag_outcome("demo-team", "web", "v1.1.0", Some("failed"));
    let id = app
        .submit(
            "swr_image_sync",
            sync("web", json!(["v1.0.1", "v1.1.0", "v2.0.0"])),
        )
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;

    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("SYNC_FAILED"));
    let msg = job.error_msg.clone().unwrap();
    assert!(msg.contains("v1.1.0 (failed)"), "{msg}");
    assert!(!msg.contains("v1.0.1") && !msg.contains("v2.0.0"), "{msg}");
    assert_eq!(
        job.attempts, 1,
        "a failed sync is not retried by the policy"
    );
    let r = job.result.clone().unwrap();
    assert_eq!(strings(&r["failed"]), ["v1.1.0"]);
    assert_eq!(strings(&r["succeeded"]), ["v1.0.1", "v2.0.0"]);
    assert_eq!(
        job.jid.as_deref().map(|j| j.split(',').count()),
        Some(3),
        "the failed job keeps its sync job ids: {job:?}"
    );

    // The cause is fixed; the operator replays the job.
    app.sim.swr_tag_outcome("demo-team", "web", "v1.1.0", None);
    let new_id = replay(&app, id);
    let replay = app.wait_final(new_id, WAIT).await;
    app.stop().await;

    assert_eq!(replay.status, "succeeded", "{replay:?}");
    let starts = started_tags(&app.sim.swr_requests());
    assert_eq!(
        starts,
        vec![
            vec!["v1.0.1", "v1.1.0", "v2.0.0"],
            vec!["v1.1.0"], // only the tag that did not succeed
        ]
    );
    let r = replay.result.unwrap();
    assert_eq!(strings(&r["succeeded"]), ["v1.0.1", "v1.1.0", "v2.0.0"]);
    assert_eq!(strings(&r["carried"]), ["v1.0.1", "v2.0.0"]);
    assert_eq!(r["tags"]["v1.0.1"]["carried_from"], id);
    assert_eq!(
        replay.jid.as_deref().map(|j| j.split(',').count()),
        Some(1),
        "the replay's own sync job only"
    );
}

#[tokio::test]
async fn a_tag_already_at_the_target_counts_as_done() {
    let mut app = app().await;
    // web:v1.0.0 is seeded at ap-southeast-1/demo-team-dr.
    let id = app
        .submit("swr_image_sync", sync("web", json!(["v1.0.0", "v1.0.1"])))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let r = job.result.unwrap();
    assert_eq!(strings(&r["existed"]), ["v1.0.0"]);
    assert_eq!(strings(&r["succeeded"]), ["v1.0.1"]);
    assert_eq!(r["tags"]["v1.0.0"]["status"], "existed");
}

#[tokio::test]
async fn a_glob_picks_the_matching_tags_across_pages() {
    let mut app = app().await;
    // `api` holds 250 tags; every fifth is `v1.N`, spread over the three pages of 100.
    let id = app
        .submit("swr_image_sync", sync("api", json!("v1.*")))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");

    let reqs = app.sim.swr_requests();
    let listings: Vec<&str> = reqs
        .iter()
        .filter(|r| r.route == Route::SwrTagList)
        .map(|r| r.query.as_str())
        .collect();
    // Walked twice: two walks that agree show the listing did not change meanwhile.
    let walk = [
        "limit=100&offset=0",
        "limit=100&offset=100",
        "limit=100&offset=200",
    ];
    assert_eq!(listings, [walk, walk].concat());
    let mut want: Vec<String> = (0..250)
        .filter(|i| i % 5 == 0)
        .map(|i| format!("v1.{i}"))
        .collect();
    let starts = started_tags(&reqs);
    assert_eq!(starts.len(), 1);
    let mut sent = starts[0].clone();
    sent.sort();
    want.sort();
    assert_eq!(sent, want);
    assert_eq!(sent.len(), 50);
    assert_eq!(
        job.result.unwrap()["succeeded"].as_array().unwrap().len(),
        50
    );
}

#[tokio::test]
async fn a_glob_stays_complete_when_tags_change_between_pages() {
    // After the first page, tags on it go (and one is pushed at the end): every later tag moves
    // up, so v1.100 (index 100) would be on a page already read. Two going change the total
    // during the walk; one going and one coming leave it at 250.
    let cases: [(&[&str], &[&str]); 2] =
        [(&["build-1", "build-2"], &[]), (&["build-1"], &["zz-new"])];
    for (remove, add_back) in cases {
        let mut app = app().await;
        app.sim.swr_shift_tags(TagShift {
            namespace: "demo-team".into(),
            repository: "api".into(),
            after_pages: 1,
            remove: remove.iter().map(|t| t.to_string()).collect(),
            add_front: vec![],
            add_back: add_back.iter().map(|t| t.to_string()).collect(),
        });
        let id = app
            .submit("swr_image_sync", sync("api", json!("v1.*")))
            .await;
        app.start();
        let job = app.wait_final(id, WAIT).await;
        app.stop().await;
        assert_eq!(job.status, "succeeded", "{remove:?}: {job:?}");
        let starts = started_tags(&app.sim.swr_requests());
        assert_eq!(starts.len(), 1, "{remove:?}");
        assert!(
            starts[0].contains(&"v1.100".to_string()),
            "{remove:?}: {:?}",
            starts[0]
        );
        assert_eq!(starts[0].len(), 50, "{remove:?}");
        let walks = app
            .sim
            .swr_requests()
            .iter()
            .filter(|r| r.route == Route::SwrTagList && r.query.ends_with("offset=0"))
            .count();
        assert_eq!(
            walks, 3,
            "{remove:?}: the first walk saw the change; two more agreed"
        );
    }
}

#[tokio::test]
async fn the_follow_timeout_ends_a_sync_that_never_finishes() {
    let mut app = spawn_app_with(sim(300), &swr_config("1s")).await;
    app.sim.swr_hang("demo-team", "web", true);
    let id = app
        .submit("swr_image_sync", sync("web", json!(["v1.0.1", "v2.0.0"])))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("SYNC_OUTCOME_UNKNOWN"));
    let msg = job.error_msg.unwrap();
    assert!(msg.contains("v1.0.1") && msg.contains("v2.0.0"), "{msg}");
    let r = job.result.unwrap();
    assert_eq!(strings(&r["unknown"]), ["v1.0.1", "v2.0.0"]);
    assert_eq!(r["tags"]["v1.0.1"]["status"], "running");
    assert!(job.jid.is_some(), "the sync job ids are kept");
    assert_eq!(started_tags(&app.sim.swr_requests()).len(), 1);
}

#[tokio::test]
async fn a_second_request_while_one_runs_joins_the_queued_follow_up() {
    let mut app = spawn_app_with(sim(1500), &swr_config("20s")).await;
    let params = sync("web", json!(["v1.0.1"]));
    let first = app.submit("swr_image_sync", params.clone()).await;
    app.start();
    app.wait_for(first, WAIT, |j| j.status == "following").await;

    // While it runs: one follow-up is queued, and every later identical request joins it.
    let second = app.submit("swr_image_sync", params.clone()).await;
    for _ in 0..3 {
        match app.submit_raw("swr_image_sync", params.clone(), None).await {
            Submitted::Coalesced(id) => assert_eq!(id, second),
            other => panic!("expected to join job {second}, got {other:?}"),
        }
    }
    // Another target is another lane: it runs meanwhile.
    let mut other = params.clone();
    other["remote_region_id"] = json!("cn-north-4");
    let other_id = app.submit("swr_image_sync", other).await;

    let a = app.wait_final(first, WAIT).await;
    let b = app.wait_final(second, WAIT).await;
    let c = app.wait_final(other_id, WAIT).await;
    app.stop().await;
    for j in [&a, &b, &c] {
        assert_eq!(j.status, "succeeded", "{j:?}");
    }
    assert!(
        b.started_at.unwrap() >= a.finished_at.unwrap(),
        "the follow-up starts once the first is done: {a:?} {b:?}"
    );
    assert!(
        c.started_at.unwrap() < a.finished_at.unwrap(),
        "another target does not wait: {a:?} {c:?}"
    );
    let bodies: Vec<Value> = app
        .sim
        .swr_requests()
        .into_iter()
        .filter(|r| r.route == Route::SwrSyncStart)
        .filter_map(|r| r.body)
        .collect();
    let to = |region: &str| {
        bodies
            .iter()
            .filter(|b| b["remoteRegionId"] == region)
            .count()
    };
    assert_eq!(to("ap-southeast-1"), 2, "five requests, two syncs");
    assert_eq!(to("cn-north-4"), 1);
}

#[tokio::test]
async fn a_start_whose_answer_was_lost_is_not_sent_again() {
    // SWR makes the sync jobs, and the answer never arrives: the connection drops, or the
    // gateway in front answers 504.
    let lost = [
        Fault {
            route: Route::SwrSyncStart,
            reset_after: true,
            times: 1,
            ..Fault::default()
        },
        Fault {
            route: Route::SwrSyncStart,
            status: Some(504),
            status_after: true,
            times: 1,
            ..Fault::default()
        },
    ];
    for fault in lost {
        let mut app = app().await;
        app.sim.inject(fault.clone());
        let id = app
            .submit("swr_image_sync", sync("web", json!(["v1.0.1", "v1.1.0"])))
            .await;
        app.start();
        let job = app.wait_final(id, WAIT).await;
        app.stop().await;
        assert_eq!(job.status, "succeeded", "{fault:?}: {job:?}");
        assert_eq!(job.attempts, 2, "the lost answer cost one attempt: {job:?}");
        assert_eq!(
            started_tags(&app.sim.swr_requests()).len(),
            1,
            "{fault:?}: the sync jobs of the lost start were found and followed"
        );
        assert_eq!(app.sim.swr_sync_jobs("demo-team", "web"), 2);
        let r = job.result.unwrap();
        assert_eq!(r["start_answer"], "lost");
        assert_eq!(strings(&r["succeeded"]), ["v1.0.1", "v1.1.0"]);
    }
}

#[tokio::test]
async fn an_image_sync_runs_with_aksk_signatures() {
    let cfg = sim(300);
    let sk = cfg.secret_key.clone();
    let mut app = spawn_app_aksk(cfg, &sk, &swr_config("20s")).await;
    // A repository with a path part: `/` goes out as `$` (percent-encoded).
    let id = app
        .submit("swr_image_sync", sync("tools/builder", json!("1.*")))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(strings(&job.result.unwrap()["succeeded"]), ["1.0", "1.1"]);
    assert_eq!(app.sim.count(Route::IamToken), 0, "no token with AK/SK");
    let swr: Vec<_> = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.route.is_swr())
        .collect();
    for route in [Route::SwrTagList, Route::SwrSyncStart, Route::SwrSyncJobs] {
        assert!(swr.iter().any(|c| c.route == route), "{route:?} called");
    }
    for c in &swr {
        assert_eq!(c.auth, "aksk", "{c:?}");
        assert_eq!(c.status, 200, "{c:?}");
        assert!(c.path.contains("/repos/tools%24builder/"), "{c:?}");
    }
}

#[tokio::test]
async fn bad_parameters_are_rejected_at_ingress_naming_them() {
    let app = app().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"namespace": "Demo", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr"}),
            "parameter `namespace`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "a//b", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr"}),
            "parameter `repository`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": [],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr"}),
            "parameter `tags`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1", "bad tag"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr"}),
            "parameter `tags[1]`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": "v1/*",
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr"}),
            "parameter `tags`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "eu-west-101", "remote_namespace": "dr"}),
            "parameter `remote_region_id`: \"eu-west-101\" is not one of the configured swr.sync_regions (ap-southeast-1, cn-north-4)",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "-dr"}),
            "parameter `remote_namespace`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr",
                   "overwrite": true}),
            "unknown parameter `overwrite`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1"}),
            "missing parameter `remote_namespace`",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr",
                   "follow_timeout": "0s"}),
            "parameter `follow_timeout`: must be above zero",
        ),
        (
            json!({"namespace": "demo-team", "repository": "web", "tags": ["v1"],
                   "remote_region_id": "ap-southeast-1", "remote_namespace": "dr",
                   "follow_timeout": "8d"}),
            "parameter `follow_timeout`: 8d is above the maximum of 7d",
        ),
    ];
    for (params, want) in cases {
        match app.submit_raw("swr_image_sync", params.clone(), None).await {
            Submitted::Rejected { reason, .. } => {
                assert!(reason.contains(want), "{params}: {reason:?} lacks {want:?}")
            }
            other => panic!("{params}: expected a rejection, got {other:?}"),
        }
    }
    // From the CLI, too, before anything is queued.
    let out = app.cli(&[
        "enqueue",
        "swr_image_sync",
        "--param",
        "namespace=demo-team",
        "--param",
        "repository=web",
        "--param",
        "tags=[\"v1\"]",
        "--param",
        "remote_region_id=mars-1",
        "--param",
        "remote_namespace=dr",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("remote_region_id") || stdout.contains("remote_region_id"),
        "{stdout}{stderr}"
    );
}

#[tokio::test]
async fn swr_errors_keep_their_code_and_transient_ones_are_retried() {
    let mut app = app().await;
    // Two 500s on the start, then a 429 on a poll: retried, and the sync is started once.
    app.sim.inject(Fault {
        route: Route::SwrSyncStart,
        status: Some(500),
        target_contains: Some("/repos/web/".into()),
        times: 2,
        ..Fault::default()
    });
    app.sim.inject(Fault {
        route: Route::SwrSyncJobs,
        status: Some(429),
        retry_after: Some(1),
        target_contains: Some("/repos/web/".into()),
        // Before the first poll: three baselines, each read before a start, and two looks
        // for sync jobs of the starts answered 500 (a 500 may come after SWR acted). The first
        // poll is throttled.
        skip: 5,
        times: 1,
        ..Fault::default()
    });
    let ok = app
        .submit("swr_image_sync", sync("web", json!(["v2.0.0"])))
        .await;
    // A repository that does not exist: final at once, SWR's error kept.
    let missing = app
        .submit("swr_image_sync", sync("nope", json!(["v1"])))
        .await;
    app.start();
    let ok = app.wait_final(ok, WAIT).await;
    let missing = app.wait_final(missing, WAIT).await;
    app.stop().await;

    assert_eq!(ok.status, "succeeded", "{ok:?}");
    assert_eq!(ok.attempts, 3, "two 500s cost two attempts: {ok:?}");
    let attempts = app.attempts(ok.id).await;
    assert_eq!(
        attempts[0].error_code.as_deref(),
        Some("SVCSTG.SWR.5001001")
    );
    assert_eq!(started_tags(&app.sim.swr_requests()).len(), 1);
    assert_eq!(app.sim.swr_sync_jobs("demo-team", "web"), 1);
    let throttled = app
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.route == Route::SwrSyncJobs && c.status == 429)
        .count();
    assert_eq!(throttled, 1, "the 429 was served and the poll repeated");

    assert_eq!(missing.status, "failed", "{missing:?}");
    assert_eq!(missing.attempts, 1);
    assert_eq!(missing.http_status, Some(404));
    assert_eq!(missing.error_code.as_deref(), Some("SVCSTG.SWR.4041002"));
    assert_eq!(missing.error_msg.as_deref(), Some("Repository not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_and_cron_take_image_syncs_validated_alike() {
    let mut app = app().await;
    std::fs::write(app.dir.path().join("api-token"), "op-token-5e1").unwrap();
    let base = support::with_server(&mut app, "api_token = { file = \"api-token\" }");
    app.start();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "listener never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{base}/jobs");
        async move {
            let resp = client
                .post(url)
                .header("authorization", "Bearer op-token-5e1")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, ok) = post(json!({"kind": "swr_image_sync",
                                   "params": sync("web", json!(["v1.0.1"]))}))
    .await;
    assert_eq!(
        (status, ok["outcome"].as_str()),
        (202, Some("queued")),
        "{ok}"
    );
    let mut bad_params = sync("web", json!(["v1.0.1"]));
    bad_params["remote_region_id"] = json!("eu-west-0");
    let (status, bad) = post(json!({"kind": "swr_image_sync", "params": bad_params})).await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("remote_region_id"),
        "{bad}"
    );
    let job = app.wait_final(ok["id"].as_i64().unwrap(), WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");

    // A schedule of this kind is checked when the configuration is.
    let mut config = std::fs::read_to_string(app.config_path()).unwrap();
    config.push_str(
        "\n[[schedules]]\nname = \"dr-copy\"\ncron = \"0 0 3 * * *\"\nkind = \"swr_image_sync\"\n\
         params = { namespace = \"demo-team\", repository = \"web\", tags = \"v*\", \
         remote_region_id = \"ap-southeast-9\", remote_namespace = \"demo-team-dr\" }\n",
    );
    std::fs::write(app.config_path(), config).unwrap();
    let out = app.cli(&["config", "check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("schedules.dr-copy.params") && stderr.contains("remote_region_id"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_replay_after_an_api_error_carries_the_finished_tags_and_follows_the_running_one() {
    let mut app = app().await;
    // v2.0.0's sync never ends; v1.0.1's succeeds.
    app.sim
        .swr_tag_outcome("demo-team", "web", "v2.0.0", Some("running"));
    let mut params = sync("web", json!(["v1.0.1", "v2.0.0"]));
    params["follow_timeout"] = json!("3s");
    let id = app.submit("swr_image_sync", params).await;
    app.start();
    app.wait_for(id, WAIT, |j| {
        j.checkpoint
            .as_ref()
            .is_some_and(|c| c["tags"]["v1.0.1"]["status"] == "success")
    })
    .await;
    // Then the account loses its permission: the next poll is a final 403.
    app.sim.inject(Fault {
        route: Route::SwrSyncJobs,
        status: Some(403),
        ..Fault::default()
    });
    let job = app.wait_final(id, WAIT).await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("SVCSTG.SWR.4031001"));

    app.sim.clear_faults();
    app.sim.swr_tag_outcome("demo-team", "web", "v2.0.0", None);
    let new_id = replay(&app, id);
    let replay = app.wait_final(new_id, WAIT).await;
    app.stop().await;
    // v2.0.0's sync is still running at SWR: the replay follows it (until its own follow
    // timeout here) and sends nothing again.
    assert_eq!(
        replay.error_code.as_deref(),
        Some("SYNC_OUTCOME_UNKNOWN"),
        "{replay:?}"
    );
    assert_eq!(
        started_tags(&app.sim.swr_requests()),
        vec![vec!["v1.0.1", "v2.0.0"]]
    );
    let r = replay.result.unwrap();
    assert_eq!(strings(&r["carried"]), ["v1.0.1"]);
    assert_eq!(strings(&r["followed"]), ["v2.0.0"]);
    assert_eq!(strings(&r["unknown"]), ["v2.0.0"]);
    assert_eq!(r["tags"]["v2.0.0"]["followed_from"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_message_runs_an_image_sync_and_a_bad_one_is_rejected() {
    use support::broker::{acfg, all_jobs, amqp_toml, cleanup, publish_raw, unique_tag};
    let tag = unique_tag();
    let extra = format!("{}\n{}", swr_config("20s"), amqp_toml(&tag));
    let mut app = spawn_app_with(sim(200), &extra).await;
    let amqp = acfg(&app);
    app.start();
    let good =
        json!({"kind": "swr_image_sync", "params": sync("web", json!(["v1.0.0", "v1.0.1"]))});
    let mut bad_params = sync("web", json!(["v1.0.0"]));
    bad_params["remote_region_id"] = json!("eu-west-101");
    let bad = json!({"kind": "swr_image_sync", "params": bad_params});
    publish_raw(
        &amqp,
        &[
            (good.to_string().into_bytes(), Some("img-1".into())),
            (bad.to_string().into_bytes(), Some("img-2".into())),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    let jobs = loop {
        let jobs = all_jobs(&app.store).await;
        let finished = jobs
            .iter()
            .filter(|j| j.status == "succeeded" || j.status == "rejected")
            .count();
        if finished == 2 {
            break jobs;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.stop().await;
    cleanup(&amqp).await;
    let by_status = |s: &str| -> Vec<_> { jobs.iter().filter(|j| j.status == s).collect() };
    let (done, rejected) = (by_status("succeeded"), by_status("rejected"));
    assert_eq!((done.len(), rejected.len()), (1, 1), "{jobs:?}");
    assert_eq!(done[0].source, "amqp");
    let result = done[0].result.as_ref().expect("a result");
    // The simulator seeds v1.0.0 at the target already: `existed`, which counts as done.
    assert_eq!(strings(&result["succeeded"]), ["v1.0.1"], "{result}");
    assert_eq!(strings(&result["existed"]), ["v1.0.0"], "{result}");
    assert!(done[0].jid.is_some(), "{:?}", done[0]);
    assert_eq!(rejected[0].source, "amqp");
    let why = rejected[0].error_msg.as_deref().unwrap_or("");
    assert!(why.contains("remote_region_id"), "{why}");
    // Only the valid message reached SWR.
    assert_eq!(
        started_tags(&app.sim.swr_requests()),
        [["v1.0.0", "v1.0.1"]]
    );
}

#[tokio::test]
async fn a_restart_while_following_resumes_the_same_sync_jobs() {
    // Syncs that take 2.5 s: long enough to stop the daemon in the middle of them.
    let mut app = spawn_app_with(sim(2500), &swr_config("20s")).await;
    let id = app
        .submit("swr_image_sync", sync("web", json!(["v1.0.1", "v2.0.0"])))
        .await;
    app.start();
    // Its sync job ids are known from the first poll on.
    let following = app
        .wait_for(id, WAIT, |j| j.status == "following" && j.jid.is_some())
        .await;
    let jid = following.jid.clone().unwrap();
    // The daemon stops while the syncs run; the syncs go on without it.
    app.stop().await;
    assert_eq!(app.job(id).await.status, "following");
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(
        job.jid.as_deref(),
        Some(jid.as_str()),
        "the same sync jobs, followed on"
    );
    assert_eq!(
        started_tags(&app.sim.swr_requests()),
        [["v1.0.1", "v2.0.0"]],
        "one start, never repeated by the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_and_the_cli_run_image_syncs() {
    let extra = format!(
        "{}\n[[schedules]]\nname = \"dr-copy\"\ncron = \"* * * * * *\"\nkind = \"swr_image_sync\"\n\
         params = {{ namespace = \"demo-team\", repository = \"tools/builder\", tags = \"1.*\", \
         remote_region_id = \"cn-north-4\", remote_namespace = \"demo-team\" }}\n",
        swr_config("20s")
    );
    let mut app = spawn_app_with(sim(200), &extra).await;
    app.start();
    // The CLI, from the binary, waiting for the outcome.
    let config = app.config_path();
    let out = tokio::task::spawn_blocking(move || {
        support::run_binary(
            &config,
            &[
                "enqueue",
                "swr_image_sync",
                "--param",
                "namespace=demo-team",
                "--param",
                "repository=web",
                "--param",
                "tags=[\"v1.0.1\", \"v2.0.0\"]",
                "--param",
                "remote_region_id=ap-southeast-1",
                "--param",
                "remote_namespace=demo-team-dr",
                "--wait",
                "--timeout",
                "30s",
            ],
            &[],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("succeeded"), "{stdout}");

    let deadline = std::time::Instant::now() + WAIT;
    let jobs = loop {
        let jobs: Vec<_> = support::broker::all_jobs(&app.store)
            .await
            .into_iter()
            .filter(|j| j.kind == "swr_image_sync")
            .collect();
        let done = |source: &str| {
            jobs.iter()
                .any(|j| j.source == source && j.status == "succeeded")
        };
        if done("cron") && done("cli") {
            break jobs;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    app.stop().await;
    let from_cron = jobs
        .iter()
        .find(|j| j.source == "cron" && j.status == "succeeded")
        .unwrap();
    let r = from_cron.result.as_ref().unwrap();
    assert_eq!(strings(&r["succeeded"]), ["1.0", "1.1"], "{r}");
    assert_eq!(r["remote_region_id"], "cn-north-4");
    // Every sync the schedule's jobs sent went to the schedule's target.
    for req in app.sim.swr_requests() {
        if req.route == Route::SwrSyncStart && req.path.contains("tools%24builder") {
            assert_eq!(req.body.as_ref().unwrap()["remoteRegionId"], "cn-north-4");
        }
    }
}
