//! Stopping a server process: the first SIGTERM or Ctrl-C drains (stop taking work, finish what
//! is in flight, within a bound), a second one exits at once.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Turns true at the first signal; a second signal exits the process (code 130).
pub fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections; finishing calls in flight");
        let _ = stop_tx.send(true);
        wait_for_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
    stop_rx
}

/// Runs `server` to its end, or gives up `drain` after the stop signal.
pub async fn serve_until_drained<E>(
    server: impl Future<Output = Result<(), E>>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), E> {
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(?drain, "calls still in flight after the drain timeout; exiting anyway");
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
