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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The scheduler's question: does this instance lead right now? Asked once per tick, so an
/// answer must be cheap and must not block.
pub trait Leadership: Send + Sync {
    /// True while this instance holds the leadership.
    fn is_leader(&self) -> bool;
}

/// A leadership flag shared between whoever campaigns for it (setting it) and the scheduler
/// (reading it). Clones share the flag.
#[derive(Clone, Debug)]
pub struct Leader(Arc<AtomicBool>);

impl Leader {
    /// The only instance: always leads.
    pub fn always() -> Leader {
        Leader(Arc::new(AtomicBool::new(true)))
    }

    /// Leads only once its campaign wins (see [`Leader::set`]).
    pub fn contender() -> Leader {
        Leader(Arc::new(AtomicBool::new(false)))
    }

    /// True while this instance holds the leadership.
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Records that the campaign won (`true`) or lost (`false`) the leadership; a change is
    /// logged once.
    pub fn set(&self, v: bool) {
        let was = self.0.swap(v, Ordering::SeqCst);
        if was != v {
            if v {
                tracing::info!("this instance is now the cron leader");
            } else {
                tracing::warn!("this instance is no longer the cron leader");
            }
        }
    }
}

impl Leadership for Leader {
    fn is_leader(&self) -> bool {
        Leader::is_leader(self)
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
    }

    #[test]
    fn the_scheduler_does_not_depend_on_the_broker() {
        let cron = include_str!("cron.rs");
        assert!(
            !cron.contains("amqp"),
            "src/ingress/cron.rs names the AMQP module; it should ask `Leadership` instead"
        );
    }
}
