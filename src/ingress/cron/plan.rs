//! When a schedule fires, as pure functions of the clock: its slots (the instants its cron
//! expression names in its time zone, computed afresh for each one so a DST change is never
//! frozen in), and which slots a wake-up must fire, given what was dealt with before and the
//! misfire policy. No I/O here, so every rule is tested with exact instants.
//!
//! DST, as `croner` resolves it (the Open Cron Pattern Specification's rules), for a schedule in
//! a zone that changes its offset:
//! - a local time that does not exist (the skipped hour, spring): a fixed-time schedule
//!   (`0 30 2 * * *`) fires once, at the first valid second after the gap (03:00 local); an
//!   interval schedule (`0 */15 * * * *`) has no ticks in the gap;
//! - a local time that occurs twice (the repeated hour, autumn): a fixed-time schedule fires
//!   once, at the first occurrence; an interval schedule fires in both.

use std::collections::VecDeque;

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::{Cron, JobType};

/// At most this many slots are walked one by one in one wake-up; beyond it (a schedule every
/// second, down for days) the walk jumps to the last [`JUMP_BACK_MS`] before the on-time window
/// and counts the rest as missed without naming them.
const MAX_WALK: usize = 100_000;
const JUMP_BACK_MS: i64 = 3 * 3600 * 1000;

/// A schedule's cron expression in its time zone.
#[derive(Clone, Debug)]
pub struct Plan {
    cron: Cron,
    tz: Tz,
    /// An interval schedule fires in both occurrences of a repeated hour; a fixed-time one once.
    interval: bool,
}

impl Plan {
    /// Parses a six-field (seconds first) expression; the error reads after the quoted
    /// expression.
    pub fn parse(expr: &str, tz: Tz) -> Result<Plan, String> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| format!("is not a valid cron expression: {e}"))?;
        let interval = matches!(cron.determine_job_type(), JobType::IntervalWildcard);
        Ok(Plan { cron, tz, interval })
    }

    /// The slots strictly after `after_ms` (Unix ms), in order.
    pub fn slots_after(&self, after_ms: i64) -> Slots {
        Slots {
            plan: self.clone(),
            // The first whole second after `after_ms`.
            cursor: after_ms.div_euclid(1000) * 1000 + 1000,
            peeked: None,
        }
    }

    /// The next `n` slots after `after_ms`.
    pub fn next(&self, after_ms: i64, n: usize) -> Vec<i64> {
        self.slots_after(after_ms).take(n).collect()
    }

    /// The first slot at or after `from_ms` (a whole second). `croner` resolves the skipped
    /// and the repeated local hour in the zone; what it finds is checked against the same
    /// search at the fixed UTC offsets in force at `from_ms` and at the found instant, which
    /// yields an interval schedule's ticks in the second occurrence of a repeated hour (and
    /// a search that starts inside that second occurrence).
    fn first_from(&self, from_ms: i64) -> Option<i64> {
        let at = Utc.timestamp_millis_opt(from_ms).single()?;
        let offset_at = |ms: i64| -> Option<FixedOffset> {
            Some(
                Utc.timestamp_millis_opt(ms)
                    .single()?
                    .with_timezone(&self.tz)
                    .offset()
                    .fix(),
            )
        };
        let zoned = self
            .cron
            .find_next_occurrence(&at.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.timestamp_millis())
            .filter(|ms| *ms >= from_ms);
        let mut best = zoned;
        let mut consider = |off: FixedOffset| {
            let found = self
                .cron
                .find_next_occurrence(&at.with_timezone(&off), true)
                .ok()
                .map(|d: DateTime<FixedOffset>| d.timestamp_millis());
            // Valid only where that offset is the zone's own.
            if let Some(ms) = found.filter(|ms| *ms >= from_ms && offset_at(*ms) == Some(off)) {
                best = Some(best.map_or(ms, |b| b.min(ms)));
            }
        };
        if self.interval {
            if let Some(off) = offset_at(from_ms) {
                consider(off);
            }
            if let Some(off) = zoned.and_then(offset_at) {
                consider(off);
            }
        }
        best
    }
}

/// A schedule's slots after some instant, as Unix ms, in order.
pub struct Slots {
    plan: Plan,
    /// Where the search for the next slot starts (inclusive, a whole second).
    cursor: i64,
    peeked: Option<i64>,
}

impl Slots {
    /// The next slot, without taking it.
    pub fn peek(&mut self) -> Option<i64> {
        if self.peeked.is_none() {
            self.peeked = self.pull();
        }
        self.peeked
    }

    fn pull(&mut self) -> Option<i64> {
        let slot = self.plan.first_from(self.cursor)?;
        self.cursor = slot + 1000;
        Some(slot)
    }
}

impl Iterator for Slots {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        self.peeked.take().or_else(|| self.pull())
    }
}

/// What one wake-up fires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Slots to fire, in order: the misfired ones the policy makes up, then the on-time ones.
    pub fire: Vec<Fire>,
    /// Misfired slots not made up (skipped by the policy).
    pub dropped: u64,
    /// The walk jumped over slots it did not count: `dropped` is a lower bound.
    pub uncounted: bool,
    /// The earliest and latest misfired slot, when there were any.
    pub missed_span: Option<(i64, i64)>,
    /// The latest slot dealt with (fired or dropped); `None` when no slot was due.
    pub upto: Option<i64>,
}

/// One slot to fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fire {
    pub slot: i64,
    /// A misfired slot made up by the policy (found later than the grace after its slot).
    pub makeup: bool,
}

/// The slots of `slots` due at `now`: each one no later than `now`. A slot at least
/// `now - grace_ms` is on time and fires; an older one is a misfire, and only the latest
/// `makeup_limit` misfires fire (0: none, `skip`; 1: `run_once`; n: `catch_up`). Consumes the due
/// slots from `slots`, which then continues after them.
pub fn due(plan: &Plan, slots: &mut Slots, now: i64, grace_ms: i64, makeup_limit: usize) -> Due {
    let mut out = Due::default();
    let on_time_from = now.saturating_sub(grace_ms);
    let mut makeup: VecDeque<i64> = VecDeque::new();
    let mut on_time = Vec::new();
    let mut missed = 0u64;
    let mut walked = 0usize;
    while let Some(slot) = slots.peek().filter(|s| *s <= now) {
        slots.next();
        out.upto = Some(slot);
        if slot >= on_time_from {
            on_time.push(slot);
            continue;
        }
        missed += 1;
        out.missed_span = Some(match out.missed_span {
            None => (slot, slot),
            Some((first, _)) => (first, slot),
        });
        if makeup_limit > 0 {
            if makeup.len() == makeup_limit {
                makeup.pop_front();
            }
            makeup.push_back(slot);
        }
        walked += 1;
        if walked == MAX_WALK {
            // Too many to walk: continue close to the on-time window. What lies between is
            // missed; how many exactly is not counted.
            let resume = on_time_from.saturating_sub(JUMP_BACK_MS).max(slot);
            *slots = plan.slots_after(resume);
            out.uncounted |= resume > slot;
            walked = 0;
        }
    }
    out.dropped = missed - makeup.len() as u64;
    out.fire = makeup
        .into_iter()
        .map(|slot| Fire { slot, makeup: true })
        .chain(on_time.into_iter().map(|slot| Fire {
            slot,
            makeup: false,
        }))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn show(ms: &[i64]) -> Vec<String> {
        ms.iter()
            .map(|m| {
                Utc.timestamp_millis_opt(*m)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            })
            .collect()
    }

    fn berlin(expr: &str) -> Plan {
        Plan::parse(expr, chrono_tz::Europe::Berlin).unwrap()
    }

    #[test]
    fn a_fixed_time_in_the_skipped_hour_fires_once_right_after_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let p = berlin("0 30 2 * * *");
        let got = p.next(utc("2026-03-28T00:00:00Z"), 3);
        assert_eq!(
            show(&got),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 02:30 does not exist: 03:00 CEST
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_repeated_hour_fires_once_at_the_first() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC).
        let p = berlin("0 30 2 * * *");
        let got = p.next(utc("2026-10-24T00:00:00Z"), 3);
        assert_eq!(
            show(&got),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST); not again at 01:30 UTC
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
    }

    #[test]
    fn an_hourly_schedule_skips_the_missing_hour_and_fires_in_both_repeated_ones() {
        let p = berlin("0 0 * * * *");
        let spring = p.next(utc("2026-03-29T00:30:00Z"), 2);
        // 01:00 CET (00:00 UTC) was before; 02:00 local does not exist; next is 03:00 CEST.
        assert_eq!(
            show(&spring),
            ["2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
        );
        let autumn = p.next(utc("2026-10-24T23:30:00Z"), 4);
        assert_eq!(
            show(&autumn),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET, the repeated hour
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-25T03:00:00Z",
            ]
        );
    }

    #[test]
    fn a_quarter_hourly_schedule_fires_in_order_through_the_repeated_hour() {
        let p = berlin("0 */15 * * * *");
        let got = p.next(utc("2026-10-24T23:50:00Z"), 10);
        assert_eq!(
            show(&got),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:15:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:45:00Z",
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T01:45:00Z",
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-25T02:15:00Z",
            ]
        );
        let spring = p.next(utc("2026-03-29T00:40:00Z"), 3);
        // 01:45 CET, then the gap (02:00-02:59 local) has no ticks, then 03:00 CEST.
        assert_eq!(
            show(&spring),
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z"
            ]
        );
    }

    #[test]
    fn continuing_inside_the_repeated_hour_still_yields_its_second_occurrence() {
        // A restart right after the first 02:00 of the repeated hour, and one inside the second.
        let p = berlin("0 0 * * * *");
        let got = p.next(utc("2026-10-25T00:00:00Z"), 2);
        assert_eq!(show(&got), ["2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]);
        let q = berlin("0 */15 * * * *");
        let got = q.next(utc("2026-10-25T01:10:00Z"), 2);
        assert_eq!(show(&got), ["2026-10-25T01:15:00Z", "2026-10-25T01:30:00Z"]);
    }

    #[test]
    fn the_offset_is_not_frozen_when_the_plan_is_made() {
        // Made in winter, asked about summer: 03:30 local is 01:30 UTC in summer.
        let p = berlin("0 30 3 * * *");
        let got = p.next(utc("2026-07-01T12:00:00Z"), 1);
        assert_eq!(show(&got), ["2026-07-02T01:30:00Z"]);
    }

    fn every_second() -> Plan {
        Plan::parse("* * * * * *", chrono_tz::UTC).unwrap()
    }

    #[test]
    fn on_time_slots_fire_whatever_the_policy() {
        let p = every_second();
        let t0 = utc("2026-01-01T00:00:00Z");
        let mut slots = p.slots_after(t0);
        let d = due(&p, &mut slots, t0 + 2_500, 5_000, 0);
        assert_eq!(
            d.fire,
            [
                Fire {
                    slot: t0 + 1000,
                    makeup: false
                },
                Fire {
                    slot: t0 + 2000,
                    makeup: false
                }
            ]
        );
        assert_eq!((d.dropped, d.upto), (0, Some(t0 + 2000)));
        assert_eq!(slots.peek(), Some(t0 + 3000));
    }

    #[test]
    fn misfires_follow_the_policy() {
        let p = Plan::parse("*/10 * * * * *", chrono_tz::UTC).unwrap();
        let t0 = utc("2026-01-01T00:00:00Z");
        // Down from t0 to t0+45s: slots 10, 20, 30, 40 missed with a grace of 2 s.
        let now = t0 + 45_000;
        let run = |limit| due(&p, &mut p.slots_after(t0), now, 2_000, limit);
        let skip = run(0);
        assert!(skip.fire.is_empty());
        assert_eq!(skip.dropped, 4);
        assert_eq!(skip.upto, Some(t0 + 40_000));
        assert_eq!(skip.missed_span, Some((t0 + 10_000, t0 + 40_000)));
        let once = run(1);
        assert_eq!(
            once.fire,
            [Fire {
                slot: t0 + 40_000,
                makeup: true
            }]
        );
        assert_eq!(once.dropped, 3);
        let catch_up = run(5);
        assert_eq!(catch_up.fire.len(), 4);
        assert!(catch_up.fire.iter().all(|f| f.makeup));
        assert_eq!(catch_up.fire[0].slot, t0 + 10_000, "oldest first");
        assert_eq!(catch_up.dropped, 0);
        let two = run(2);
        assert_eq!(
            two.fire.iter().map(|f| f.slot).collect::<Vec<_>>(),
            [t0 + 30_000, t0 + 40_000],
            "the latest ones"
        );
    }

    #[test]
    fn nothing_due_before_the_first_slot() {
        let p = every_second();
        let t0 = utc("2026-01-01T00:00:00Z");
        let d = due(&p, &mut p.slots_after(t0), t0 + 999, 1000, 1);
        assert_eq!(d, Due::default());
    }

    #[test]
    fn a_huge_backlog_is_not_walked_slot_by_slot() {
        let p = every_second();
        let t0 = utc("2026-01-01T00:00:00Z");
        let now = t0 + 30 * 24 * 3600 * 1000; // a month of per-second slots
        let d = due(&p, &mut p.slots_after(t0), now, 1000, 3);
        let slots: Vec<_> = d.fire.iter().map(|f| (f.slot - now, f.makeup)).collect();
        assert_eq!(
            slots,
            [
                (-4000, true),
                (-3000, true),
                (-2000, true),
                (-1000, false),
                (0, false)
            ],
            "the latest 3 misfires made up, then the 2 on-time slots"
        );
        assert_eq!(d.upto, Some(now));
        assert!(d.dropped > 100_000);
        assert!(d.uncounted, "the count is a lower bound");
    }
}
