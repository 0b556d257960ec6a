//! `swr_image_sync` when an earlier try did not end cleanly: a replay of a sync that outlived
//! the follow timeout, a replay of a replay that recorded nothing, a start answered by a gateway
//! error after SWR acted, and a tag listing that changes without its total changing.

use crate::support;

use std::time::Duration;

use codearts_syncd::sim::swr::{SwrRequest, TagShift};
use codearts_syncd::sim::{Fault, Route, SimConfig};
use serde_json::{json, Value};
use support::{spawn_app_with, text, TestApp};

const WAIT: Duration = Duration::from_secs(30);

fn swr_config(follow_timeout: &str) -> String {
    format!(
        "[swr]\nsync_regions = [\"ap-southeast-1\", \"cn-north-4\"]\npoll_interval = \"50ms\"\nfollow_timeout = \"{follow_timeout}\"\n"
    )
}

async fn app(follow_timeout: &str) -> TestApp {
    let sim = SimConfig {
        sync_duration: Duration::from_millis(300),
        ..SimConfig::default()
    };
    spawn_app_with(sim, &swr_config(follow_timeout)).await
}

fn sync(repository: &str, tags: Value) -> Value {
    json!({
        "namespace": "demo-team",
        "repository": repository,
        "tags": tags,
        "remote_region_id": "ap-southeast-1",
        "remote_namespace": "demo-team-dr",
    })
}

/// The `imageTag` of every start SWR received, in order.
fn started_tags(reqs: &[SwrRequest]) -> Vec<Vec<String>> {
    reqs.iter()
        .filter(|r| r.route == Route::SwrSyncStart)
        .map(|r| {
            r.body.as_ref().expect("a start has a body")["imageTag"]
                .as_array()
                .expect("imageTag is an array")
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// `jobs retry ID` from the CLI; the new job's id.
fn replay(app: &TestApp, id: i64) -> i64 {
    let out = app.cli(&["jobs", "retry", &id.to_string(), "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).expect("JSON");
    answer["new_id"].as_i64().expect("new_id")
}

#[tokio::test]
async fn a_replay_of_a_sync_past_its_follow_timeout_follows_its_sync_jobs_instead_of_sending_again()
{
    let mut app = app("20s").await;
    // The syncs take longer than this job follows them.
    app.sim.swr_hang("demo-team", "web", true);
    let mut params = sync("web", json!(["v1.0.1", "v2.0.0"]));
    params["follow_timeout"] = json!("1s");
    let id = app.submit("swr_image_sync", params).await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("SYNC_OUTCOME_UNKNOWN"));
    assert!(
        job.error_msg.as_deref().unwrap().contains("(1s)"),
        "the job's own follow_timeout: {job:?}"
    );
    let first_jid = job.jid.clone().expect("the sync job ids are kept");

    // The syncs finish after all; the operator replays the job.
    app.sim.swr_hang("demo-team", "web", false);
    let new_id = replay(&app, id);
    let again = app.wait_final(new_id, WAIT).await;
    app.stop().await;
    assert_eq!(again.status, "succeeded", "{again:?}");
    assert_eq!(
        started_tags(&app.sim.swr_requests()),
        vec![vec!["v1.0.1", "v2.0.0"]],
        "nothing was sent a second time"
    );
    assert_eq!(app.sim.swr_sync_jobs("demo-team", "web"), 2);
    let r = again.result.unwrap();
    assert_eq!(strings(&r["succeeded"]), ["v1.0.1", "v2.0.0"]);
    assert_eq!(strings(&r["followed"]), ["v1.0.1", "v2.0.0"]);
    assert_eq!(r["tags"]["v1.0.1"]["followed_from"], id);
    assert_eq!(
        again.jid.as_deref(),
        Some(first_jid.as_str()),
        "the same sync jobs"
    );
}

#[tokio::test]
async fn a_replay_of_a_replay_that_recorded_nothing_carries_what_the_first_job_finished() {
    let mut app = app("20s").await;
    app.sim
        .swr_tag_outcome("demo-team", "web", "v1.1.0", Some("failed"));
    let first = app
        .submit("swr_image_sync", sync("web", json!(["v1.0.1", "v1.1.0"])))
        .await;
    app.start();
    let job = app.wait_final(first, WAIT).await;
    assert_eq!(job.status, "failed", "{job:?}");

    // The first replay ends on a refusal before it starts anything: it records no tag.
    app.sim.inject(Fault {
        route: Route::SwrSyncJobs,
        status: Some(403),
        times: 1,
        ..Fault::default()
    });
    let second = replay(&app, first);
    let job = app.wait_final(second, WAIT).await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.http_status, Some(403), "{job:?}");
    assert_eq!(started_tags(&app.sim.swr_requests()).len(), 1);

    // Fixed; the replay of the replay sends only the tag the first job did not finish.
    app.sim.swr_tag_outcome("demo-team", "web", "v1.1.0", None);
    let third = replay(&app, second);
    let job = app.wait_final(third, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(
        started_tags(&app.sim.swr_requests()),
        vec![vec!["v1.0.1", "v1.1.0"], vec!["v1.1.0"]]
    );
    let r = job.result.unwrap();
    assert_eq!(strings(&r["carried"]), ["v1.0.1"]);
    assert_eq!(r["tags"]["v1.0.1"]["carried_from"], first);
}

#[tokio::test]
async fn a_gateway_error_after_swr_acted_is_not_answered_by_a_second_start() {
    let mut app = app("20s").await;
    // SWR makes the sync jobs; the gateway in front answers 504.
    app.sim.inject(Fault {
        route: Route::SwrSyncStart,
        status: Some(504),
        status_after: true,
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit("swr_image_sync", sync("web", json!(["v1.0.1", "v1.1.0"])))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert_eq!(job.attempts, 2, "the 504 cost one attempt: {job:?}");
    assert_eq!(started_tags(&app.sim.swr_requests()).len(), 1);
    assert_eq!(app.sim.swr_sync_jobs("demo-team", "web"), 2);
    let r = job.result.unwrap();
    assert_eq!(r["start_answer"], "lost");
    assert_eq!(strings(&r["succeeded"]), ["v1.0.1", "v1.1.0"]);
}

#[tokio::test]
async fn a_glob_stays_complete_when_a_tag_goes_and_another_comes_between_pages() {
    let mut app = app("20s").await;
    // After the first page, `build-1` (on it) goes and `zz-new` is pushed at the end: the
    // total stays 250, and v1.100 moves up onto the page already read.
    app.sim.swr_shift_tags(TagShift {
        namespace: "demo-team".into(),
        repository: "api".into(),
        after_pages: 1,
        remove: vec!["build-1".into()],
        add_front: vec![],
        add_back: vec!["zz-new".into()],
    });
    let id = app
        .submit("swr_image_sync", sync("api", json!("v1.*")))
        .await;
    app.start();
    let job = app.wait_final(id, WAIT).await;
    app.stop().await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    let starts = started_tags(&app.sim.swr_requests());
    assert_eq!(starts.len(), 1);
    assert!(starts[0].contains(&"v1.100".to_string()), "{:?}", starts[0]);
    assert_eq!(starts[0].len(), 50);
    let walks = app
        .sim
        .swr_requests()
        .iter()
        .filter(|r| r.route == Route::SwrTagList && r.query.ends_with("offset=0"))
        .count();
    assert_eq!(walks, 3, "walked until two walks agreed");
}
