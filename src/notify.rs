//! systemd's service notifications, for a unit with `Type=notify`: `READY=1` once the daemon
//! is up, `STATUS=` lines now and then, `STOPPING=1` when the drain starts, and `WATCHDOG=1`
//! while the engine's claim loop keeps going round (so a wedged engine gets restarted).
//!
//! Everything here does nothing when `NOTIFY_SOCKET` is unset (tests, the demo, plain runs), and
//! a failed send is logged, never an error: the daemon works the same without a manager.
//! It is not for deciding anything: it only reports what the daemon and the engine show.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::Heartbeat;

/// How often a changed status line is sent when the watchdog does not ask for more.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// True when a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// The watchdog period systemd asks for (`WATCHDOG_USEC`, for this process), if any.
pub fn watchdog() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

fn send(state: &[NotifyState]) -> bool {
    if !enabled() {
        return false;
    }
    match sd_notify::notify(state) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cannot notify the service manager");
            false
        }
    }
}

/// `READY=1` with a first status line: the store is open, recovery ran, ingress is started.
pub fn ready(status: &str) {
    if enabled() && !send(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!("cannot tell the service manager that the daemon is ready");
    }
}

/// `STOPPING=1`: the drain has started.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: waiting for running jobs"),
    ]);
}

/// A heartbeat for the engine when a manager listens: marked often enough for the watchdog
/// (a quarter of its period) or for the status lines.
pub fn heartbeat() -> Option<Heartbeat> {
    if !enabled() {
        return None;
    }
    let every = watchdog().map_or(STATUS_EVERY, |w| w / 4).min(STATUS_EVERY);
    Some(Heartbeat::new(every))
}

/// Until `stop`: pings the watchdog (if asked for) while `heartbeat` is fresh, and sends the
/// line `status` builds (from the jobs in flight) whenever it changes. A heartbeat older than half the watchdog period
/// means the engine loop is stuck: the pings stop, and systemd restarts the service.
pub fn spawn_supervisor(
    heartbeat: Heartbeat,
    status: impl Fn(usize) -> String + Send + 'static,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let watchdog = watchdog();
    let tick = watchdog.map_or(STATUS_EVERY, |w| w / 2).min(STATUS_EVERY);
    tokio::spawn(async move {
        let mut last_status = String::new();
        let mut stalled = false;
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let age = heartbeat.age();
            let fresh = watchdog.is_none_or(|w| engine_alive(age, w));
            if let Some(w) = watchdog {
                if fresh {
                    send(&[NotifyState::Watchdog]);
                } else if !stalled {
                    tracing::error!(
                        engine_silent_s = age.as_secs_f64(),
                        watchdog_s = w.as_secs_f64(),
                        "the engine loop has stopped going round; the watchdog is no longer fed and the service manager will restart the daemon"
                    );
                }
            }
            stalled = !fresh;
            let line = if stalled {
                format!("engine loop stalled for {}s", age.as_secs())
            } else {
                status(heartbeat.in_flight())
            };
            if line != last_status {
                send(&[NotifyState::Status(&line)]);
                last_status = line;
            }
        }
    })
}

/// Whether an engine heartbeat `age` old still earns a watchdog ping: the loop marks it every
/// quarter period, so half a period is one missed mark of slack on a busy machine.
fn engine_alive(age: Duration, watchdog: Duration) -> bool {
    age <= watchdog / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heartbeat_ages_until_the_loop_marks_it() {
        let hb = Heartbeat::new(Duration::from_secs(15));
        assert_eq!(hb.age(), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(hb.age(), Duration::from_secs(40));
        assert_eq!(hb.in_flight(), 0);
    }

    #[test]
    fn a_silent_engine_stops_the_pings_after_half_the_watchdog_period() {
        let w = Duration::from_secs(60);
        assert!(engine_alive(Duration::ZERO, w));
        assert!(engine_alive(Duration::from_secs(30), w));
        assert!(!engine_alive(Duration::from_secs(31), w));
    }

    #[test]
    fn nothing_is_sent_without_a_notify_socket() {
        if enabled() {
            return;
        }
        assert!(heartbeat().is_none());
        assert!(watchdog().is_none());
        assert!(!send(&[NotifyState::Ready]));
    }
}
