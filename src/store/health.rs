//! Whether the store can write, as the daemon's write paths observe it.
//!
//! Every write the daemon depends on (inserting deliveries, claiming, settling outcomes,
//! checkpoints) reports its result here. The first failure that may pass (a full disk, an I/O
//! error) is logged once at ERROR; while it lasts, a reminder follows once a minute; the first
//! success afterwards logs that the store recovered and for how long it could not write.
//! Readers use [`Health::is_failing`] to stop taking new work meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a lasting failure is logged again.
const REMINDER: Duration = Duration::from_secs(60);

/// The store's write health; shared by every clone of a [`super::Store`].
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicBool,
    state: Mutex<Episode>,
}

#[derive(Debug, Default)]
struct Episode {
    since: Option<Instant>,
    last_logged: Option<Instant>,
    failures: u64,
}

impl Health {
    /// True from a transient write failure until the next successful write.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// How long writes have been failing, if they are.
    pub fn failing_for(&self) -> Option<Duration> {
        self.lock().since.map(|s| s.elapsed())
    }

    /// Records a successful write.
    pub fn ok(&self) {
        if !self.failing.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut st = self.lock();
        if let Some(since) = st.since.take() {
            tracing::warn!(
                after_s = since.elapsed().as_secs_f64().round(),
                failed_writes = st.failures,
                "store is writable again; resuming"
            );
        }
        st.failures = 0;
        st.last_logged = None;
    }

    /// Records a write that failed for a reason that may pass; logs once, then once a minute.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        self.failing.store(true, Ordering::Release);
        let mut st = self.lock();
        let now = Instant::now();
        st.failures += 1;
        let since = *st.since.get_or_insert(now);
        match st.last_logged {
            None => {
                tracing::error!(
                    error = %error,
                    "store cannot write: no new work is taken and nothing is acknowledged; \
                     outcomes are kept in memory and written when it can"
                );
                st.last_logged = Some(now);
            }
            Some(at) if now.duration_since(at) >= REMINDER => {
                tracing::error!(
                    error = %error,
                    failing_for_s = now.duration_since(since).as_secs(),
                    failed_writes = st.failures,
                    "store still cannot write"
                );
                st.last_logged = Some(now);
            }
            Some(_) => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Episode> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
