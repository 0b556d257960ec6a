//! Cron leadership: which instance's ticks submit jobs.
//!
//! Every instance runs the same schedules and every tick fires everywhere, but only the leader
//! submits, so a tick becomes one job however many instances run. The scheduler asks through
//! [`Leadership`] and knows nothing of how the leader is chosen. How it is chosen is decided
//! by the daemon:
//!
//! - alone (no AMQP): [`Leader::always`], the instance always leads;
//! - with AMQP: [`Leader::contender`], which the broker connection sets while it holds the
//!   exclusive consumer on the leader queue (see [`super::amqp`]).
//!
//! Another way to elect (a lease in a shared store, say) plugs in the same way: it campaigns
//! in its own task and calls [`Leader::set`] as it wins and loses, or implements
//! [`Leadership`] itself.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The scheduler's questions: does this instance lead right now, and when did it last see
/// another instance lead? Asked at each tick, so the answers must be cheap and must not block.
pub trait Leadership: Send + Sync {
    /// True while this instance holds the leadership.
    fn is_leader(&self) -> bool;

    /// When (Unix ms) this instance last had evidence that another instance held the
    /// leadership; `None` if never. A follower counts the ticks due up to then as fired by that
    /// instance; the ones after it, as missed if it then becomes the leader.
    fn other_led_at(&self) -> Option<i64> {
        None
    }

    /// Resolves at the next change of leadership (won or lost), so a new leader deals with
    /// what was missed at once instead of at its next tick. Never resolves by default.
    fn changed(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

/// A leadership flag shared between whoever campaigns for it (setting it) and the scheduler
/// (reading it). Clones share the flag.
#[derive(Clone, Debug)]
pub struct Leader(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    leading: AtomicBool,
    /// Unix ms of the last evidence that another instance leads; 0: none.
    other_at: AtomicI64,
    changed: Notify,
}

impl Leader {
    fn new(leading: bool) -> Leader {
        Leader(Arc::new(Inner {
            leading: AtomicBool::new(leading),
            other_at: AtomicI64::new(0),
            changed: Notify::new(),
        }))
    }

    /// The only instance: always leads.
    pub fn always() -> Leader {
        Leader::new(true)
    }

    /// Leads only once its campaign wins (see [`Leader::set`]).
    pub fn contender() -> Leader {
        Leader::new(false)
    }

    /// True while this instance holds the leadership.
    pub fn is_leader(&self) -> bool {
        self.0.leading.load(Ordering::SeqCst)
    }

    /// Records that the campaign won (`true`) or lost (`false`) the leadership; a change is
    /// logged once and wakes whoever waits in [`Leadership::changed`].
    pub fn set(&self, v: bool) {
        let was = self.0.leading.swap(v, Ordering::SeqCst);
        if was != v {
            if v {
                tracing::info!("this instance is now the cron leader");
            } else {
                tracing::warn!("this instance is no longer the cron leader");
            }
            self.0.changed.notify_waiters();
        }
    }

    /// Gives the leadership up because this instance is shutting down: as [`Leader::set`]
    /// with `false`, logged as the expected step it is, not as a loss.
    pub fn resign(&self) {
        if self.0.leading.swap(false, Ordering::SeqCst) {
            tracing::info!("cron leadership given up: shutting down");
            self.0.changed.notify_waiters();
        }
    }

    /// Records evidence, at `at_ms`, that another instance holds the leadership (the campaign
    /// was refused because it is taken).
    pub fn saw_other(&self, at_ms: i64) {
        self.0.other_at.fetch_max(at_ms, Ordering::SeqCst);
    }
}

impl Leadership for Leader {
    fn is_leader(&self) -> bool {
        Leader::is_leader(self)
    }

    fn other_led_at(&self) -> Option<i64> {
        Some(self.0.other_at.load(Ordering::SeqCst)).filter(|at| *at > 0)
    }

    fn changed(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.0.changed.notified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_instance_always_leads() {
        assert!(Leader::always().is_leader());
    }

    #[test]
    fn a_contender_leads_only_while_its_campaign_holds() {
        let campaign = Leader::contender();
        let scheduler: Arc<dyn Leadership> = Arc::new(campaign.clone());
        assert!(!scheduler.is_leader());
        campaign.set(true);
        assert!(scheduler.is_leader());
        campaign.set(false);
        assert!(!scheduler.is_leader());
        assert_eq!(scheduler.other_led_at(), None);
        campaign.saw_other(5);
        campaign.saw_other(3);
        assert_eq!(
            scheduler.other_led_at(),
            Some(5),
            "the latest evidence counts"
        );
    }

    #[test]
    fn the_scheduler_does_not_depend_on_the_broker() {
        let cron = include_str!("cron/mod.rs");
        assert!(
            !cron.contains("amqp"),
            "src/ingress/cron/mod.rs names the AMQP module; it should ask `Leadership` instead"
        );
    }
}
