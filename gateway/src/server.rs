//! The axum app (admin API, health, metrics, function traffic) and serving it until shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::{Gateway, admin, trigger};

/// The whole app: `/_wafer/...` for the platform, everything else routed to functions.
pub fn app(gateway: Arc<Gateway>) -> Router {
    admin::routes(gateway.clone())
        .fallback(trigger::http::handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(gateway)
}

/// Serves `gateway` on `listener` until `shutdown` resolves. Then, at the same time: HTTP stops
/// accepting connections and finishes the requests in flight, and queue consumers stop taking
/// messages and settle the ones in flight. Callers bound the wait (see `wafer up`).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let app = app(gateway.clone());
    let mut http_stop = stopped.clone();
    // Without TCP_NODELAY a response whose head and body leave in separate writes waits out
    // Nagle's algorithm against the client's delayed ACK: 40 ms per call.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "failed to set TCP_NODELAY");
        }
    });
    let http = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|s| *s).await;
    });
    let mut queue_stop = stopped;
    let queues = async {
        let _ = queue_stop.wait_for(|s| *s).await;
        gateway.functions.triggers.shutdown().await;
    };
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let (result, (), ()) = tokio::join!(http, queues, signal);
    gateway.backend().begin_shutdown();
    result
}
