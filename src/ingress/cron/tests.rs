//! The schedule loop against a paused tokio clock: exact instants, an hour in milliseconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::Misfire;
use crate::ingress::leader::Leader;

/// Wall time derived from tokio's (paused) clock: `base` at the test's start.
struct TestClock {
    base: i64,
    start: tokio::time::Instant,
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.base + self.start.elapsed().as_millis() as i64
    }
}

/// Records each firing as (slot, when it was recorded) and the last slot, like the store does.
#[derive(Clone, Default)]
struct Recorded {
    fired: Arc<Mutex<Vec<(i64, i64)>>>,
    last: Arc<Mutex<BTreeMap<String, i64>>>,
    clock: Arc<Mutex<Option<Arc<TestClock>>>>,
}

impl Recorded {
    fn fired(&self) -> Vec<(i64, i64)> {
        self.fired.lock().unwrap().clone()
    }
}

impl Ticks for Recorded {
    async fn last_slot(&self, schedule: &str) -> Result<Option<i64>, store::Error> {
        Ok(self.last.lock().unwrap().get(schedule).copied())
    }

    async fn fire(&self, s: &Schedule, slot: i64, _behind: bool) -> Result<Fired, store::Error> {
        let now = self.clock.lock().unwrap().as_ref().unwrap().now_ms();
        let mut fired = self.fired.lock().unwrap();
        if fired.iter().any(|(s, _)| *s == slot) {
            return Ok(Fired::Already(0));
        }
        fired.push((slot, now));
        let mut last = self.last.lock().unwrap();
        let e = last.entry(s.name.clone()).or_insert(slot);
        *e = (*e).max(slot);
        Ok(Fired::Queued(fired.len() as i64))
    }

    async fn pass(&self, schedule: &str, slot: i64) -> Result<(), store::Error> {
        let mut last = self.last.lock().unwrap();
        let e = last.entry(schedule.to_string()).or_insert(slot);
        *e = (*e).max(slot);
        Ok(())
    }
}

fn schedule(cron: &str, tz: &str, misfire: Misfire, max_catch_up: Option<u32>) -> Schedule {
    Schedule {
        name: "s".into(),
        cron: cron.into(),
        timezone: tz.into(),
        kind: "storage_snapshot".into(),
        params: serde_json::json!({}),
        misfire,
        max_catch_up,
        misfire_grace: Duration::from_millis(500),
    }
}

fn utc(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_millis()
}

/// Runs `s` from `base` (wall time) for `run`, on the paused clock; returns the clock.
async fn run_for(
    s: &Schedule,
    rec: &Recorded,
    leader: Arc<dyn Leadership>,
    base: i64,
    run: Duration,
) -> Arc<TestClock> {
    let clock = Arc::new(TestClock {
        base,
        start: tokio::time::Instant::now(),
    });
    *rec.clock.lock().unwrap() = Some(clock.clone());
    let tz = s.timezone.parse().unwrap();
    let plan = Plan::parse(&s.cron, tz).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_schedule(
        s.clone(),
        plan,
        rec.clone(),
        leader,
        clock.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(run).await;
    stop.cancel();
    task.await.unwrap();
    clock
}

#[tokio::test(start_paused = true)]
async fn every_second_for_an_hour_fires_3600_times_each_on_its_slot() {
    let s = schedule("* * * * * *", "UTC", Misfire::RunOnce, None);
    let rec = Recorded::default();
    let base = utc("2026-06-01T00:00:00.250Z");
    run_for(
        &s,
        &rec,
        Arc::new(Leader::always()),
        base,
        Duration::from_secs(3600),
    )
    .await;
    let fired = rec.fired();
    assert_eq!(fired.len(), 3600);
    for (i, (slot, at)) in fired.iter().enumerate() {
        assert_eq!(
            *slot,
            utc("2026-06-01T00:00:01Z") + 1000 * i as i64,
            "no drift"
        );
        assert!(
            (0..100).contains(&(at - slot)),
            "tick {i} recorded {} ms after its slot",
            at - slot
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_berlin_schedule_fires_at_the_right_utc_instants_across_both_dst_changes() {
    let s = schedule("0 30 2 * * *", "Europe/Berlin", Misfire::RunOnce, None);
    for (from, expected) in [
        (
            "2026-03-27T12:00:00Z",
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ],
        ),
        (
            "2026-10-23T12:00:00Z",
            [
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ],
        ),
    ] {
        let rec = Recorded::default();
        let leader = Arc::new(Leader::always());
        run_for(
            &s,
            &rec,
            leader,
            utc(from),
            Duration::from_secs(3 * 24 * 3600),
        )
        .await;
        let slots: Vec<i64> = rec.fired().iter().map(|(s, _)| *s).collect();
        let expected: Vec<i64> = expected.iter().map(|e| utc(e)).collect();
        assert_eq!(slots, expected, "from {from}");
    }
}

/// Runs an every-2-seconds schedule for 10 s, stops for 5 s (two ticks, at +12 s and +14 s,
/// missed), and starts again for 3 s: the made-up firings are the ones with a slot in the gap.
async fn downtime(misfire: Misfire, max_catch_up: Option<u32>) -> Vec<i64> {
    let s = schedule("*/2 * * * * *", "UTC", misfire, max_catch_up);
    let rec = Recorded::default();
    let base = utc("2026-06-01T00:00:00.500Z");
    let leader: Arc<dyn Leadership> = Arc::new(Leader::always());
    run_for(&s, &rec, leader.clone(), base, Duration::from_secs(10)).await;
    let before = rec.fired().len();
    assert_eq!(before, 5, "slots +2 .. +10");
    // Down: the clock runs on, nothing runs.
    run_for(&s, &rec, leader, base + 15_000, Duration::from_secs(3)).await;
    let gap = (base + 10_000, base + 15_000);
    rec.fired()
        .iter()
        .filter(|(slot, _)| *slot > gap.0 && *slot < gap.1)
        .map(|(slot, _)| *slot)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn after_downtime_the_misfire_policy_decides_what_is_made_up() {
    let t = utc("2026-06-01T00:00:00Z");
    assert_eq!(downtime(Misfire::Skip, None).await, Vec::<i64>::new());
    assert_eq!(downtime(Misfire::RunOnce, None).await, [t + 14_000]);
    assert_eq!(
        downtime(Misfire::CatchUp, Some(5)).await,
        [t + 12_000, t + 14_000]
    );
    assert_eq!(downtime(Misfire::CatchUp, None).await, [t + 14_000]);
}

#[tokio::test(start_paused = true)]
async fn after_downtime_the_ticks_on_time_again_follow() {
    let s = schedule("*/2 * * * * *", "UTC", Misfire::Skip, None);
    let rec = Recorded::default();
    let base = utc("2026-06-01T00:00:00.500Z");
    let leader: Arc<dyn Leadership> = Arc::new(Leader::always());
    run_for(&s, &rec, leader.clone(), base, Duration::from_secs(4)).await;
    run_for(&s, &rec, leader, base + 9_000, Duration::from_secs(4)).await;
    let slots: Vec<i64> = rec.fired().iter().map(|(s, _)| *s - base + 500).collect();
    assert_eq!(slots, [2_000, 4_000, 10_000, 12_000]);
}

#[tokio::test(start_paused = true)]
async fn a_follower_leaves_ticks_to_the_leader_and_makes_up_those_after_its_evidence() {
    let s = schedule("* * * * * *", "UTC", Misfire::CatchUp, Some(10));
    let rec = Recorded::default();
    let base = utc("2026-06-01T00:00:00.500Z");
    let campaign = Leader::contender();
    let leader: Arc<dyn Leadership> = Arc::new(campaign.clone());
    // Another instance leads; this one sees evidence of it once a second until 5.2 s after
    // the start, then the other dies, and this one wins 8 s after the start.
    let evidence = {
        let campaign = campaign.clone();
        tokio::spawn(async move {
            for i in 0..=5 {
                campaign.saw_other(base + i * 1000 + 200);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(2000)).await;
            campaign.set(true);
        })
    };
    run_for(&s, &rec, leader, base, Duration::from_secs(10)).await;
    evidence.await.unwrap();
    let slots: Vec<i64> = rec.fired().iter().map(|(s, _)| *s - base + 500).collect();
    // Slots 1 .. 5 were the other's (the last evidence is after slot 5); 6 and 7 came due
    // with no leader known and are made up when this one wins; 8 .. 10 are on time.
    assert_eq!(slots, [6_000, 7_000, 8_000, 9_000, 10_000]);
}
