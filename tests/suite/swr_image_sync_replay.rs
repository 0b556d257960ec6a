//! `swr_image_sync` when an earlier try did not end cleanly: a replay of a sync that outlived
//! the follow timeout, and a replay of a replay that recorded nothing.

use codearts_syncd::sim::{Fault, Route};
use serde_json::json;

use crate::swr_image_sync::{app, replay, started_tags, strings, sync, WAIT};

#[tokio::test]
async fn a_replay_of_a_sync_past_its_follow_timeout_follows_its_sync_jobs_instead_of_sending_again()
{
    let mut app = app().await;
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
    let mut app = app().await;
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
