//! The axum app (admin API, console, health, metrics, function traffic) and serving it until shutdown,
//! with the limits that keep one client from hurting the others: a cap on connections, a time
//! limit for reading request headers, and an idle limit between request body chunks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

use crate::state::{ConnectionLimits, Gateway};
use crate::{admin, console, trigger};

/// The largest request head (request line and headers) read, in bytes.
const MAX_HEAD: usize = 64 << 10;

/// The whole app: `/_wafer/...` for the platform, everything else routed to functions.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let idle = gateway.config.connections.body_idle_timeout;
    admin::routes(gateway.clone())
        .merge(console::routes())
        .fallback(route)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::map_request(
            move |request: Request| async move {
                request.map(|body| Body::new(IdleTimeout::new(body, idle)))
            },
        ))
        .with_state(gateway)
}

/// Function traffic: everything outside `/_wafer/`, to the function routed at its path.
async fn route(State(gateway): State<Arc<Gateway>>, request: Request) -> axum::response::Response {
    let routes = gateway.functions.routes();
    let backend = gateway.backend().as_ref();
    trigger::http::handle(&routes, backend, gateway.config.max_request_body, request).await
}

/// Serves `gateway` on `listener` until `shutdown` resolves. Then, at the same time: HTTP stops
/// accepting connections and finishes the requests in flight, and queue consumers stop taking
/// messages and settle the ones in flight. Callers bound the wait (see `wafer up`).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, stopped) = watch::channel(false);
    let limits = gateway.config.connections.clone();
    let http = accept_loop(listener, app(gateway.clone()), limits, stopped.clone());
    let mut queue_stop = stopped;
    let queues = async {
        let _ = queue_stop.wait_for(|s| *s).await;
        if let Some(triggers) = &gateway.functions.triggers {
            triggers.shutdown().await;
        }
    };
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    let ((), (), ()) = tokio::join!(http, queues, signal);
    gateway.backend().begin_shutdown();
    Ok(())
}

/// Serves any app on `listener` under `limits` until `shutdown` resolves; then stops accepting
/// and finishes the requests in flight. (A worker's own API is served this way too.)
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stopping, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    accept_loop(listener, app, limits, stopped).await;
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(app);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Request heads (line and headers) beyond 64 KiB are refused.
        .max_buf_size(MAX_HEAD);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, limit = limits.max_connections, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        // Without TCP_NODELAY a response whose head and body leave in separate writes waits
        // out Nagle's algorithm against the client's delayed ACK: 40 ms per call.
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service.clone())
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A request body that fails when the client sends nothing for `idle`.
struct IdleTimeout {
    inner: Body,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleTimeout {
    fn new(inner: Body, idle: Duration) -> IdleTimeout {
        IdleTimeout {
            inner,
            idle,
            timer: None,
        }
    }
}

impl http_body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.timer = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(timer.as_mut().poll(cx));
                this.timer = None;
                Poll::Ready(Some(Err(axum::Error::new(format!(
                    "the request body sent nothing for {idle:?}"
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
