//! `run`: the daemon under signals: SIGTERM/SIGINT drain (and tell systemd `STOPPING=1`), a
//! second one exits at once, SIGHUP reloads.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs the daemon until SIGTERM or SIGINT, then drains it (see [`crate::daemon::run`]).
///
/// - A second SIGTERM or SIGINT during the drain exits at once, with 128 + the signal's number
///   as a shell reports a process that signal ended: 143 for SIGTERM, 130 for SIGINT. Nothing
///   more is written: jobs still running stay `running` in the store, exactly as after SIGKILL,
///   and the next start re-queues them (a `remote_mirror` job that had started its sync resumes
///   from its checkpoint).
/// - SIGHUP reloads the schedules and `logging.level` from the same file (`--config`, or
///   `CODEARTS_SYNCD_CONFIG`), and the listener's TLS certificate; see
///   [`crate::daemon::Reload`].
pub(super) async fn run_daemon(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    /// Exit statuses of a second shutdown signal: 128 + SIGINT (2), 128 + SIGTERM (15).
    const EXIT_SECOND_SIGINT: i32 = 130;
    const EXIT_SECOND_SIGTERM: i32 = 143;

    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<()>(1);

    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Registered before anything else runs: from here on SIGHUP no longer ends the process.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (name, status) = tokio::select! {
                    Some(()) = term.recv() => ("SIGTERM", EXIT_SECOND_SIGTERM),
                    Some(()) = int.recv() => ("SIGINT", EXIT_SECOND_SIGINT),
                    Some(()) = hup.recv() => {
                        if shutdown.is_cancelled() {
                            tracing::info!("SIGHUP ignored: shutting down");
                        } else {
                            // A full channel means a reload is already pending; it reads the
                            // file as it is then, so this request is served by it.
                            let _ = reload_tx.try_send(());
                        }
                        continue;
                    }
                    else => break,
                };
                if !shutdown.is_cancelled() {
                    tracing::info!(
                        signal = name,
                        "shutdown signal received: no new jobs will be claimed; send SIGTERM or SIGINT again to exit at once"
                    );
                    crate::notify::stopping();
                    shutdown.cancel();
                } else {
                    tracing::warn!(
                        signal = name,
                        exit_status = status,
                        "second shutdown signal: exiting now without waiting for running jobs; they stay recorded as running and are re-queued at the next start (on a shared store, by any instance once store.lease has passed)"
                    );
                    std::process::exit(status);
                }
            }
        });
    }
    #[cfg(not(unix))]
    {
        drop(reload_tx);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received: no new jobs will be claimed; press Ctrl-C again to exit at once");
            shutdown.cancel();
            let _ = tokio::signal::ctrl_c().await;
            tracing::warn!(
                "second shutdown signal: exiting now; running jobs are re-queued at the next start (on a shared store, by any instance once store.lease has passed)"
            );
            std::process::exit(EXIT_SECOND_SIGINT);
        });
    }

    let reload = crate::daemon::Reload {
        path,
        requests: reload_rx,
    };
    crate::daemon::run(cfg, shutdown, Some(reload))
        .await
        .map_err(|e| match e {
            // The store's own error, so that the exit status can tell an unusable store.
            crate::daemon::Error::Store(e) => anyhow::Error::new(e),
            e => anyhow::Error::new(e),
        })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
