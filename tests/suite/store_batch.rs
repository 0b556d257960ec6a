//! A batch of submissions (an AMQP delivery batch, a group of webhooks) is written with a few
//! multi-row statements. Whatever the batch holds, the outcome must be exactly what inserting
//! its jobs one by one gives: the same ids, the same duplicates and joins, the same requests.

use crate::support;

use codearts_syncd::store::{Inserted, NewJob};
use codearts_syncd::{Source, Status};
use sqlx::Row;
use support::*;

fn job(params: &str, key: Option<&str>, coalesce: bool) -> NewJob {
    NewJob {
        kind: "remote_mirror".into(),
        params: params.into(),
        source: Source::Amqp,
        schedule: None,
        status: Status::Queued,
        max_attempts: 3,
        idempotency_key: key.map(str::to_string),
        error_code: None,
        error_msg: None,
        coalesce,
        slot: None,
        lane: None,
    }
}

fn rejected(raw: &str, key: Option<&str>) -> NewJob {
    NewJob {
        status: Status::Rejected,
        error_code: Some("invalid_message".into()),
        error_msg: Some("not JSON".into()),
        ..job(raw, key, false)
    }
}

fn p(n: u32) -> String {
    format!(r#"{{"repository_id":{n}}}"#)
}

/// The store's jobs and requests as comparable text.
async fn contents(app: &TestApp) -> (Vec<String>, Vec<String>) {
    let db = app.raw_db().await;
    let jobs = sqlx::query(
        "SELECT id, kind, params, source, status, idempotency_key FROM jobs ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        format!(
            "{} {} {} {} {} {:?}",
            r.get::<i64, _>("id"),
            r.get::<String, _>("kind"),
            r.get::<String, _>("params"),
            r.get::<String, _>("source"),
            r.get::<String, _>("status"),
            r.get::<Option<String>, _>("idempotency_key"),
        )
    })
    .collect();
    let mut requests: Vec<String> =
        sqlx::query("SELECT job_id, source, idem_key, outcome FROM requests")
            .fetch_all(&db)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {}",
                    r.get::<i64, _>("job_id"),
                    r.get::<String, _>("source"),
                    r.get::<Option<String>, _>("idem_key"),
                    r.get::<String, _>("outcome"),
                )
            })
            .collect();
    requests.sort();
    db.close().await;
    (jobs, requests)
}

#[tokio::test]
async fn a_batch_records_what_one_by_one_inserts_record() {
    let one_by_one = spawn_app().await;
    let batched = spawn_app().await;
    // Already in both stores: a queued job to join, and a job holding a key.
    let seed = [job(&p(1), None, true), job(&p(2), Some("seed-key"), true)];
    for app in [&one_by_one, &batched] {
        for j in &seed {
            assert!(matches!(
                app.store.insert(j).await.unwrap(),
                Inserted::New(_)
            ));
        }
    }
    let (a, b) = (1, 2);
    let batch = vec![
        job(&p(3), Some("seed-key"), true), // a stored key
        job(&p(1), Some("k1"), true),       // joins a stored job, and takes k1 for it
        job(&p(9), Some("k1"), true),       // k1, taken by the join above
        job(&p(4), None, true),             // new
        job(&p(4), Some("k2"), true),       // joins the new one above
        job(&p(5), Some("k2"), true),       // k2, taken by that join
        rejected("{not json", Some("k3")),  // recorded; a rejection holds no key
        job(&p(6), Some("k3"), true),       // so k3 is free: new
        job(&p(7), Some("k3"), true),       // k3, now taken
        job(&p(8), None, false),            // new, not joining anything
        job(&p(8), None, true),             // joins it: queued, same kind and parameters
        job(&p(10), Some("k4"), false),
        job(&p(11), None, true),
        job(&p(12), None, true),
    ];
    let mut sequential = Vec::new();
    for j in &batch {
        sequential.push(one_by_one.store.insert(j).await.unwrap());
    }
    let together = batched.store.insert_many(&batch).await.unwrap();
    assert_eq!(together, sequential, "outcomes, job by job");
    // The cases above are what the test is about: check that they happened.
    use Inserted::*;
    let new = |i: usize| match sequential[i] {
        New(id) => id,
        other => panic!("job {i} was expected new: {other:?}"),
    };
    assert_eq!(sequential[0], Duplicate(b));
    assert_eq!(sequential[1], Coalesced(a));
    assert_eq!(sequential[2], Duplicate(a));
    assert_eq!(sequential[4], Coalesced(new(3)));
    assert_eq!(sequential[5], Duplicate(new(3)));
    let _ = new(6);
    assert_eq!(sequential[8], Duplicate(new(7)));
    assert_eq!(sequential[10], Coalesced(new(9)));
    let _ = (new(11), new(12), new(13));
    assert_eq!(contents(&batched).await, contents(&one_by_one).await);
}

#[tokio::test]
async fn a_large_batch_is_split_across_statements_and_keeps_its_order() {
    let one_by_one = spawn_app().await;
    let batched = spawn_app().await;
    // More rows than one statement carries, with keys repeating across the split.
    let batch: Vec<NewJob> = (0..1_203u32)
        .map(|i| {
            let key = format!("key-{}", i % 700);
            job(&p(i % 900), Some(&key), i % 3 == 0)
        })
        .collect();
    let mut sequential = Vec::new();
    for j in &batch {
        sequential.push(one_by_one.store.insert(j).await.unwrap());
    }
    let together = batched.store.insert_many(&batch).await.unwrap();
    assert_eq!(together, sequential);
    let dups = sequential
        .iter()
        .filter(|i| matches!(i, Inserted::Duplicate(_)))
        .count();
    assert_eq!(dups, 503, "keys 0..503 come twice");
    assert_eq!(contents(&batched).await, contents(&one_by_one).await);
}
