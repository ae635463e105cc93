//! A cluster's worker process (`wafer worker`): the worker of `wafer up` behind the worker API,
//! following the desired state in PostgreSQL.
//!
//! - **Following the store.** On every change notification, and every few seconds regardless,
//!   the node compares the records with what it runs: it installs every version traffic or a
//!   tag points at (fetching the component bytes from the database when its own cache lacks
//!   them, compiling once, keeping the artifact in its data directory), retires versions no
//!   longer served a few seconds after they stop being served (gateways may still pick them
//!   until they reload), removes deleted functions, keeps their queue consumers in step, and
//!   reports each version ready (or why not) for the gateway that changed it.
//! - **Membership.** It joins only once everything recorded is installed, so no gateway routes
//!   a call here that it cannot serve, and then renews its lease every second.
//! - **Draining.** On SIGTERM it leaves first (gateways stop routing here within moments),
//!   serves what still arrives for a short grace, then stops taking calls and messages,
//!   finishes those in flight, and settles every delivery before it exits.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use subtle::ConstantTimeEq;
use wafer_gateway::functions::deployment;
use wafer_gateway::record::Version;
use wafer_gateway::trigger::amqp::{DeliveryLedger, QueueTriggers};
use wafer_gateway::{ApiError, Store};
use wafer_worker::{Backend, LogEvent, LogQuery, Worker};

use crate::db::DbError;
use crate::membership::{Lease, Member};
use crate::store::PgStore;
use crate::wire;

/// How long a reconcile waits for a notification before it looks again anyway.
const RECONCILE: Duration = Duration::from_secs(5);
/// How long an unreferenced component stays in the local cache.
const CACHE_GRACE: Duration = Duration::from_secs(15 * 60);
/// How long a version stays installed after the records stop serving it: longer than a gateway
/// takes to reload the records, so that a call it routes by the old split still finds it.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

/// Settings of a worker process.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where gateways reach this worker.
    pub advertise: String,
    /// The token gateways send.
    pub token: String,
    /// The broker for queue triggers that name none.
    pub default_amqp_url: String,
    /// After leaving the cluster, how long calls that were already on their way are served.
    pub drain_grace: Duration,
    /// Largest component a gateway may send for compiling.
    pub max_upload: u64,
    /// The worker's data directory (its queue triggers count deliveries there).
    pub data_dir: std::path::PathBuf,
}

/// Why a worker process could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("failed to register the queue trigger's metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running worker process.
pub struct Node {
    worker: Worker,
    store: Arc<PgStore>,
    triggers: QueueTriggers,
    member: Member,
    config: NodeConfig,
    registry: prometheus::Registry,
    lease: tokio::sync::Mutex<Option<Lease>>,
    /// What this worker serves.
    installed: tokio::sync::Mutex<HashMap<String, Installed>>,
}

/// One function as this worker serves it.
#[derive(Clone, Debug, Default)]
struct Installed {
    versions: BTreeSet<u64>,
    /// The record revision its queue consumers follow.
    synced: u64,
    /// Versions the records no longer serve, and since when.
    unserved: HashMap<u64, Instant>,
}

impl Node {
    /// Installs everything recorded, then joins the cluster and follows the store.
    pub async fn start(
        store: Arc<PgStore>,
        worker: Worker,
        registry: prometheus::Registry,
        config: NodeConfig,
    ) -> Result<Arc<Node>, NodeError> {
        let triggers = QueueTriggers::new(
            Arc::new(worker.clone()),
            config.default_amqp_url.clone(),
            DeliveryLedger::open(config.data_dir.join("deliveries")),
            &registry,
        )?;
        let node = Arc::new(Node {
            member: Member {
                id: crate::membership::new_id(),
                url: config.advertise.clone(),
            },
            worker,
            store,
            triggers,
            config,
            registry,
            lease: tokio::sync::Mutex::new(None),
            installed: tokio::sync::Mutex::new(HashMap::new()),
        });
        if let Err(e) = node.reconcile().await {
            tracing::warn!(error = %e, "could not install every recorded function at start");
        }
        let lease = Lease::join(node.store.pool().clone(), node.member.clone()).await?;
        *node.lease.lock().await = Some(lease);
        // What was installed before joining is reported now (reports need a membership).
        let installed = node.installed.lock().await.clone();
        for (name, function) in installed {
            for version in function.versions {
                node.report(&name, version, Ok(())).await;
            }
        }
        tokio::spawn(follow(Arc::downgrade(&node)));
        tracing::info!(worker = %node.member.id, url = %node.member.url, "joined the cluster");
        Ok(node)
    }

    pub fn member(&self) -> &Member {
        &self.member
    }

    async fn report(&self, name: &str, version: u64, outcome: Result<(), String>) {
        if self.lease.lock().await.is_none() {
            return;
        }
        if let Err(e) = self
            .store
            .report(&self.member.id, name, version, outcome)
            .await
        {
            tracing::warn!(error = %e, function = name, "could not report to the cluster");
        }
    }

    /// Makes what this worker runs match the records; returns whether versions wait to be
    /// retired (so that the next look comes soon).
    async fn reconcile(&self) -> Result<bool, ApiError> {
        let records = self.store.load().await?;
        let mut installed = self.installed.lock().await;
        for record in &records {
            let function = installed.entry(record.name.clone()).or_default();
            let served = record.served();
            for &v in served.difference(&function.versions.clone()) {
                let Some(version) = record.version(v) else {
                    continue;
                };
                let outcome = self.install(&record.name, version).await;
                match &outcome {
                    Ok(()) => {
                        function.versions.insert(v);
                        tracing::info!(function = %record.name, version = v, "installed");
                    }
                    Err(why) => {
                        tracing::warn!(function = %record.name, version = v, error = %why, "could not install")
                    }
                }
                self.report(&record.name, v, outcome).await;
            }
            function.unserved.retain(|v, _| !served.contains(v));
            let now = Instant::now();
            for &v in function.versions.difference(&served) {
                function.unserved.entry(v).or_insert(now);
            }
            let due: Vec<u64> = function
                .unserved
                .iter()
                .filter(|&(_, since)| since.elapsed() >= RETIRE_GRACE)
                .map(|(&v, _)| v)
                .collect();
            for v in due {
                self.worker.retire(&record.name, v).await;
                function.versions.remove(&v);
                function.unserved.remove(&v);
                let _ = self
                    .store
                    .forget(&self.member.id, &record.name, Some(v))
                    .await;
                tracing::info!(function = %record.name, version = v, "retired");
            }
            if function.synced != record.revision
                && function.versions.contains(&record.primary().number)
            {
                match record.primary().manifest.validate(&record.name) {
                    Ok(spec) => {
                        self.triggers
                            .sync(&record.name, record.target(), record.route(), &spec.queues)
                            .await;
                        function.synced = record.revision;
                    }
                    Err(e) => {
                        tracing::warn!(function = %record.name, error = %e, "queue triggers not updated")
                    }
                }
            }
        }
        let wanted: HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
        let gone: Vec<String> = installed
            .keys()
            .filter(|name| !wanted.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            // Consumers stop first: deliveries in flight finish on the function before it goes.
            self.triggers.stop(&name).await;
            self.worker.remove(&name).await;
            installed.remove(&name);
            let _ = self.store.forget(&self.member.id, &name, None).await;
            tracing::info!(function = %name, "removed");
        }
        // Retiring needs another look once the grace is over, change or not.
        let retiring = installed.values().any(|f| !f.unserved.is_empty());
        drop(installed);
        let live = records
            .iter()
            .flat_map(|r| r.digests().map(str::to_string))
            .collect();
        if let Err(e) = self.worker.retain(live, CACHE_GRACE).await {
            tracing::debug!(error = %e, "could not clean the component cache");
        }
        Ok(retiring)
    }

    /// Installs one version: its component from the local cache or the database.
    async fn install(&self, name: &str, version: &Version) -> Result<(), String> {
        let deployment = deployment(name, version).map_err(|e| e.to_string())?;
        if !self.worker.is_stored(&version.digest) {
            let bytes = self
                .store
                .component(&version.digest)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("component {} is not in the database", version.digest))?;
            self.worker
                .prepare(Bytes::from(bytes))
                .await
                .map_err(|e| e.to_string())?;
        }
        self.worker
            .install(deployment)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Leaves the cluster, serves what is still on its way for the grace period, then stops
    /// consuming and settles every delivery in flight. The HTTP server stops after this.
    pub async fn drain(&self) {
        if let Some(lease) = self.lease.lock().await.take()
            && let Err(e) = lease.leave().await
        {
            tracing::warn!(error = %e, "could not leave the cluster cleanly; the lease will lapse");
        }
        tracing::info!(grace = ?self.config.drain_grace, "left the cluster; draining");
        tokio::time::sleep(self.config.drain_grace).await;
        self.triggers.shutdown().await;
    }

    /// Refuses calls from now on (after the HTTP server has finished those in flight).
    pub fn stop(&self) {
        self.worker.begin_shutdown();
    }
}

/// Reconciles on every change and every [`RECONCILE`] until the node is gone.
async fn follow(node: std::sync::Weak<Node>) {
    let Some(mut changes) = node.upgrade().map(|n| n.store.changes()) else {
        return;
    };
    let mut wait = RECONCILE;
    loop {
        let _ = tokio::time::timeout(wait, changes.changed()).await;
        let Some(node) = node.upgrade() else {
            return;
        };
        if node.lease.lock().await.is_none() {
            // Draining: nothing new is installed.
            continue;
        }
        wait = match node.reconcile().await {
            Ok(true) => RETIRE_GRACE / 4,
            Ok(false) => RECONCILE,
            Err(e) => {
                tracing::warn!(error = %e, "could not follow the cluster's functions");
                RECONCILE
            }
        };
    }
}

/// The worker API (see `wire`), plus the open health and metrics endpoints.
pub fn router(node: Arc<Node>) -> Router {
    let max_upload = usize::try_from(node.config.max_upload).unwrap_or(usize::MAX);
    let api = Router::new()
        .route(wire::INVOKE, any(invoke))
        .route(
            wire::PREPARE,
            post(prepare).layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/_wafer/worker/v1/functions/{name}", get(status))
        .route("/_wafer/worker/v1/functions/{name}/logs", get(logs))
        .route("/_wafer/worker/v1/functions/{name}/stats", get(stats))
        .route("/_wafer/worker/v1/functions/{name}/queues", get(queues))
        .route_layer(middleware::from_fn_with_state(node.clone(), require_token));
    Router::new()
        .route("/_wafer/healthz", get(healthz))
        .route("/_wafer/metrics", get(metrics))
        .merge(api)
        .layer(DefaultBodyLimit::disable())
        .with_state(node)
}

/// Only the cluster's gateways may use the worker API.
async fn require_token(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let expected = node.config.token.as_bytes();
    let given = request
        .headers()
        .get(wire::TOKEN)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    if expected.is_empty() || !bool::from(given.ct_eq(expected)) {
        let error = format!(
            "missing or invalid cluster token: send `{}: <token>`",
            wire::TOKEN
        );
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-wafer-error", HeaderValue::from_static("unauthorized"));
        return response;
    }
    next.run(request).await
}

async fn invoke(State(node): State<Arc<Node>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let function = parts
        .headers
        .remove(wire::FUNCTION)
        .and_then(|v| v.to_str().ok().map(str::to_string));
    let uri = parts
        .headers
        .remove(wire::URI)
        .and_then(|v| v.to_str().ok().and_then(|u| u.parse().ok()));
    let version = parts
        .headers
        .remove(wire::VERSION)
        .and_then(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
    parts.headers.remove(wire::TOKEN);
    let (Some(function), Some(version), Some(uri)) = (function, version, uri) else {
        return ApiError::BadRequest(format!(
            "a call needs the `{}`, `{}` and `{}` headers",
            wire::FUNCTION,
            wire::VERSION,
            wire::URI
        ))
        .into_response();
    };
    parts.uri = uri;
    let body = body.map_err(Into::into).boxed_unsync();
    match node
        .worker
        .invoke(
            &function,
            version,
            wafer_worker::Request::from_parts(parts, body),
        )
        .await
    {
        Ok(response) => {
            let mut response = response.map(Body::new);
            response.headers_mut().remove(wire::PLATFORM_ERROR);
            response.headers_mut().remove(wire::START);
            let start = response
                .extensions()
                .get::<wafer_worker::CallStart>()
                .copied();
            if let Some(value) =
                start.and_then(|s| HeaderValue::from_str(&wire::start_header(&s)).ok())
            {
                response.headers_mut().insert(wire::START, value);
            }
            response
        }
        Err(error) => platform_error(error),
    }
}

/// A platform error as the gateway reads it: the usual status and headers, with the typed
/// error itself as the body.
fn platform_error(error: wafer_worker::InvokeError) -> Response {
    let body = wire::encode_invoke_error(&error);
    let (parts, _) = ApiError::from(error).into_response().into_parts();
    let mut response = Response::from_parts(parts, Body::from(body));
    let headers = response.headers_mut();
    headers.insert(wire::PLATFORM_ERROR, HeaderValue::from_static("1"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    response
}

async fn prepare(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match node.worker.prepare(body).await {
        Ok(digest) => Json(serde_json::json!({ "digest": digest })).into_response(),
        Err(error) => {
            let status = match error {
                wafer_worker::DeployError::Invalid(_) | wafer_worker::DeployError::Limits(_) => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, Json(wire::WireDeployError::from(&error))).into_response()
        }
    }
}

async fn status(State(node): State<Arc<Node>>, Path(name): Path<String>) -> Response {
    match node.worker.status(&name).await {
        Some(status) => Json(status).into_response(),
        None => {
            ApiError::NotFound(format!("`{name}` is not deployed on this worker")).into_response()
        }
    }
}

async fn stats(State(node): State<Arc<Node>>, Path(name): Path<String>) -> Response {
    match node.worker.stats(&name).await {
        Some(stats) => Json(stats).into_response(),
        None => {
            ApiError::NotFound(format!("`{name}` is not deployed on this worker")).into_response()
        }
    }
}

/// This worker's consumers of the function's queues (none if it has no queue triggers here).
async fn queues(State(node): State<Arc<Node>>, Path(name): Path<String>) -> Response {
    Json(node.triggers.queues(&name).await).into_response()
}

#[derive(serde::Deserialize)]
struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Response {
    let query = LogQuery {
        tail: query.tail.unwrap_or(100),
        follow: query.follow,
    };
    let Some(lines) = node.worker.logs(&name, query).await else {
        return ApiError::NotFound(format!("no logs for `{name}` on this worker")).into_response();
    };
    let worker = node.member.id.clone();
    let lines = lines.map(move |mut event| {
        if let LogEvent::Line(line) = &mut event {
            line.worker = Some(worker.clone());
        }
        let mut text = serde_json::to_string(&event).unwrap_or_default();
        text.push('\n');
        Ok::<_, std::convert::Infallible>(text)
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn healthz(State(node): State<Arc<Node>>) -> Response {
    let worker = node.worker.health().await;
    let joined = node.lease.lock().await.is_some();
    let status = if worker.shutting_down || !joined {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({
        "status": if joined { "ok" } else { "draining" },
        "id": node.member.id,
        "url": node.member.url,
        "worker": worker,
        "queue_triggers": node.triggers.status(),
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&node.registry.gather())
        .unwrap_or_else(|e| format!("# failed to encode metrics: {e}\n"));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
