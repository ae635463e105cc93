//! The axum app (admin API, health, metrics, function traffic) and serving it until shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

use crate::{Gateway, admin, trigger};

/// The whole app: `/_wafer/...` for the platform, everything else routed to functions.
pub fn app(gateway: Arc<Gateway>) -> Router {
    admin::routes(gateway.clone())
        .fallback(trigger::http::handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(gateway)
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops accepting connections and
/// waits for in-flight requests. Callers bound the wait (see `wafer up`).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let backend = gateway.backend().clone();
    let app = app(gateway);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            backend.begin_shutdown();
        })
        .await
}
