//! The gateway's [`Backend`] in a cluster: calls go straight to workers over HTTP, control goes
//! through PostgreSQL.
//!
//! - **Where a call goes.** The live workers in rendezvous order of the function's name: each
//!   function has a home worker (its instances stay warm there), and a call spills to the next
//!   worker when this gateway already has `concurrency` calls of the function running on the
//!   first, or when the first answers "overloaded". A busy function spreads; a quiet one stays
//!   on one worker.
//! - **When a worker fails.** A request that never left (connection refused, connection gone
//!   before it was written) goes to the next worker, body and all, and the failed worker is out
//!   of this gateway's routing at once, for a few seconds or until its lease lapses. A call that
//!   had reached the worker answers 502 `worker_lost`. With no live worker: 503 `no_workers`.
//!   Nothing waits past the function's timeout (plus a margin for the hop).
//! - **Deploys.** `prepare` stores the bytes in PostgreSQL and has one worker compile them (a bad
//!   component is refused before anything refers to it); `install` waits until every live worker
//!   reports the new version ready (see [`RemoteConfig::deploy_timeout`]); workers learn of it
//!   from the store by themselves.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use dashmap::DashMap;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use wafer_gateway::Store;
use wafer_gateway::trigger::amqp::{QueueInfo, QueueReports};
use wafer_worker::stats::CallStats;
use wafer_worker::{
    Backend, Body, DeployError, Deployment, FunctionStatus, Installed, InvokeError, Limits,
    LogEvent, LogQuery, LogStream, MemberHealth, Request, Response, WorkerHealth, full_body,
};

use crate::connections::{Connections, SendError};
use crate::membership::{Member, Members};
use crate::store::PgStore;
use crate::wire;

/// Request bodies up to this size are kept, so that a call refused by a full worker can go to
/// the next one; larger ones stream straight through (and are not replayed).
const REPLAY_LIMIT: u64 = 1 << 20;
/// A worker that failed a connection is skipped this long (or until its lease lapses).
const DOWN_FOR: Duration = Duration::from_secs(5);
/// Time a call's hop may add to the function's timeout before the gateway gives up on it.
const HOP_MARGIN: Duration = Duration::from_secs(5);
/// How long a status, log or health question to one worker may take.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings of a cluster's gateway backend.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// The token workers require.
    pub token: String,
    /// How long a deploy waits for every live worker to serve the new version; the deploy
    /// answers then, naming the workers still installing it.
    pub deploy_timeout: Duration,
}

/// Calls and deploys over a cluster's workers.
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<PgStore>,
    members: Arc<Members>,
    connections: Connections,
    token: HeaderValue,
    deploy_timeout: Duration,
    /// Each function's limits (timeout, concurrency), from the store.
    limits: ArcSwap<HashMap<String, Limits>>,
    /// Calls this gateway has running, by worker and function.
    running: DashMap<(String, String), Arc<AtomicU32>>,
    /// Workers that failed a connection, until when they are skipped.
    down: DashMap<String, Instant>,
    shutting_down: AtomicBool,
}

impl RemoteBackend {
    pub async fn new(
        store: Arc<PgStore>,
        members: Arc<Members>,
        config: RemoteConfig,
    ) -> Result<RemoteBackend, wafer_gateway::ApiError> {
        let token = HeaderValue::from_str(&config.token).map_err(|_| {
            wafer_gateway::ApiError::BadRequest("the token must be printable ASCII".into())
        })?;
        let inner = Arc::new(Inner {
            store,
            members,
            connections: Connections::default(),
            token,
            deploy_timeout: config.deploy_timeout,
            limits: ArcSwap::from_pointee(HashMap::new()),
            running: DashMap::new(),
            down: DashMap::new(),
            shutting_down: AtomicBool::new(false),
        });
        inner.reload_limits().await?;
        tokio::spawn(follow_limits(Arc::downgrade(&inner)));
        Ok(RemoteBackend { inner })
    }
}

/// Reloads the functions' limits whenever the store changes.
async fn follow_limits(inner: std::sync::Weak<Inner>) {
    let Some(mut changes) = inner.upgrade().map(|i| i.store.changes()) else {
        return;
    };
    while changes.changed().await.is_ok() {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.reload_limits().await {
            tracing::debug!(error = %e, "could not reload function limits");
        }
    }
}

/// A request body, kept for another attempt where it can be.
enum Payload {
    Kept(Bytes),
    /// Sent once; back only if it never left.
    Stream(Option<Body>),
}

impl Payload {
    async fn new(body: Body) -> Result<Payload, InvokeError> {
        let size = http_body::Body::size_hint(&body).exact();
        if size.is_some_and(|n| n <= REPLAY_LIMIT) {
            let bytes = body
                .collect()
                .await
                .map_err(|e| InvokeError::Guest {
                    function: String::new(),
                    reason: format!("could not read the request body: {e}"),
                })?
                .to_bytes();
            return Ok(Payload::Kept(bytes));
        }
        Ok(Payload::Stream(Some(body)))
    }

    fn take(&mut self) -> Option<Body> {
        match self {
            Payload::Kept(bytes) => Some(full_body(bytes.clone())),
            Payload::Stream(body) => body.take(),
        }
    }

    fn put_back(&mut self, body: Body) {
        if let Payload::Stream(slot) = self {
            *slot = Some(body);
        }
    }
}

impl Inner {
    async fn reload_limits(&self) -> Result<(), wafer_gateway::ApiError> {
        let records = self.store.load().await?;
        let limits = records
            .iter()
            .filter_map(|r| {
                let spec = r.primary().manifest.validate(&r.name).ok()?;
                Some((r.name.clone(), spec.config.limits))
            })
            .collect();
        self.limits.store(Arc::new(limits));
        Ok(())
    }

    /// The live workers not known to be down, in the order `key`'s work should try them.
    fn candidates(&self, key: &str) -> Vec<Member> {
        let live = self.members.live();
        let now = Instant::now();
        self.down.retain(|_, until| *until > now);
        live.order(key)
            .into_iter()
            .filter(|m| !self.down.contains_key(&m.id))
            .cloned()
            .collect()
    }

    fn mark_down(&self, member: &Member, why: &str) {
        tracing::warn!(worker = %member.id, url = %member.url, %why, "worker unreachable; routing around it");
        self.down
            .insert(member.id.clone(), Instant::now() + DOWN_FOR);
        self.connections.forget(addr(&member.url));
    }

    fn counter(&self, worker: &str, function: &str) -> Arc<AtomicU32> {
        self.running
            .entry((worker.to_string(), function.to_string()))
            .or_default()
            .clone()
    }

    async fn invoke(
        &self,
        function: String,
        version: u64,
        request: Request,
    ) -> Result<Response, InvokeError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(InvokeError::ShuttingDown);
        }
        let limits = self
            .limits
            .load()
            .get(&function)
            .cloned()
            .unwrap_or_default();
        let order = self.candidates(&function);
        if order.is_empty() {
            return Err(InvokeError::NoWorkers { function });
        }
        let (parts, body) = request.into_parts();
        let mut payload = Payload::new(body).await.map_err(|e| match e {
            InvokeError::Guest { reason, .. } => InvokeError::Guest {
                function: function.clone(),
                reason,
            },
            other => other,
        })?;
        // The first worker where this gateway runs fewer than `concurrency` calls of the
        // function goes first (the place is claimed at once, so calls arriving together spread);
        // the others follow in their order, for retries and spills.
        let claimed = order.iter().position(|m| {
            let counter = self.counter(&m.id, &function);
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n < limits.concurrency).then_some(n + 1)
                })
                .is_ok()
        });
        let mut order = order;
        if let Some(i) = claimed {
            let first = order.remove(i);
            order.insert(0, first);
        }
        let mut refused = None;
        let attempts = order.len();
        for (i, member) in order.iter().enumerate() {
            let counter = self.counter(&member.id, &function);
            // The claimed place is counted already; any other attempt counts now.
            let running = if i == 0 && claimed.is_some() {
                Running(counter)
            } else {
                Running::enter(counter)
            };
            let Some(body) = payload.take() else { break };
            let request = self.to_worker(&function, version, &parts, body);
            let deadline = limits.timeout + HOP_MARGIN;
            let sent =
                tokio::time::timeout(deadline, self.connections.send(addr(&member.url), request))
                    .await;
            let response = match sent {
                Err(_elapsed) => {
                    return Err(InvokeError::Timeout {
                        function,
                        timeout: limits.timeout,
                    });
                }
                Ok(Err(SendError::NotSent(request, why))) => {
                    self.mark_down(member, &why);
                    payload.put_back(request.into_body());
                    continue;
                }
                Ok(Err(SendError::Lost(why))) => {
                    self.mark_down(member, &why);
                    return Err(InvokeError::WorkerLost {
                        function,
                        worker: member.id.clone(),
                    });
                }
                Ok(Ok(response)) => response,
            };
            if response.headers().contains_key(wire::PLATFORM_ERROR) {
                let error = platform_error(&function, member, response).await;
                let spill = matches!(
                    error,
                    InvokeError::Overloaded { .. }
                        | InvokeError::ShuttingDown
                        | InvokeError::NoCapacity { .. }
                        // Not installed there yet (or retired already): another may have it.
                        | InvokeError::NoVersion { .. }
                );
                if spill && i + 1 < attempts {
                    refused = Some(error);
                    continue;
                }
                return Err(error);
            }
            let served_by = HeaderValue::from_str(&member.id).ok();
            let mut response = response.map(|body| {
                Tracked {
                    inner: body,
                    _running: running,
                }
                .boxed_unsync()
            });
            if let Some(id) = served_by {
                response.headers_mut().insert(wire::SERVED_BY, id);
            }
            let start = response.headers_mut().remove(wire::START);
            if let Some(start) = start.and_then(|v| wire::parse_start(v.to_str().ok()?)) {
                response.extensions_mut().insert(start);
            }
            return Ok(response);
        }
        Err(refused.unwrap_or(InvokeError::NoWorkers { function }))
    }

    /// The call as the worker API takes it.
    fn to_worker(
        &self,
        function: &str,
        version: u64,
        parts: &http::request::Parts,
        body: Body,
    ) -> Request {
        let mut request = http::Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = http::Uri::from_static(wire::INVOKE);
        *request.headers_mut() = parts.headers.clone();
        let headers = request.headers_mut();
        if let Ok(name) = HeaderValue::from_str(function) {
            headers.insert(wire::FUNCTION, name);
        }
        headers.insert(wire::VERSION, HeaderValue::from(version));
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = HeaderValue::from_str(uri) {
            headers.insert(wire::URI, uri);
        }
        headers.insert(wire::TOKEN, self.token.clone());
        request
    }

    /// A control request to one worker: `GET`/`POST` `path` with `body`.
    async fn ask(
        &self,
        member: &Member,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let mut request = http::Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().map_err(|e| format!("bad path {path}: {e}"))?;
        let headers = request.headers_mut();
        headers.insert(wire::TOKEN, self.token.clone());
        if let Ok(host) = HeaderValue::from_str(addr(&member.url)) {
            headers.insert(http::header::HOST, host);
        }
        match self.connections.send(addr(&member.url), request).await {
            Ok(response) => Ok(response),
            Err(SendError::NotSent(_, why)) | Err(SendError::Lost(why)) => Err(why),
        }
    }

    /// A JSON answer from one worker, within [`QUESTION_TIMEOUT`].
    async fn ask_json<T: serde::de::DeserializeOwned>(
        &self,
        member: &Member,
        path: &str,
    ) -> Result<Option<T>, String> {
        let answer = tokio::time::timeout(
            QUESTION_TIMEOUT,
            self.ask(member, Method::GET, path, wafer_worker::empty_body()),
        )
        .await
        .map_err(|_| "no answer in time".to_string())??;
        if answer.status() == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    async fn prepare(&self, component: Bytes) -> Result<String, DeployError> {
        let digest = wafer_worker::compile::digest(&component);
        self.store
            .put_component(&digest, &component)
            .await
            .map_err(|e| DeployError::Unavailable(e.to_string()))?;
        for member in self.candidates(&digest) {
            let answer = self
                .ask(
                    &member,
                    Method::POST,
                    wire::PREPARE,
                    full_body(component.clone()),
                )
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(why) => {
                    self.mark_down(&member, &why);
                    continue;
                }
            };
            let ok = answer.status().is_success();
            let body = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| DeployError::Internal(e.to_string()))?
                .to_bytes();
            if ok {
                return Ok(digest);
            }
            let error: wire::WireDeployError = serde_json::from_slice(&body)
                .map_err(|_| DeployError::Internal(String::from_utf8_lossy(&body).into_owned()))?;
            return Err(error.into());
        }
        Err(DeployError::Unavailable(
            "no worker is live to compile the component: start a `wafer worker` on this cluster's database".into(),
        ))
    }

    async fn install(&self, deployment: Deployment) -> Result<Installed, DeployError> {
        let deadline = Instant::now() + self.deploy_timeout;
        let mut ready = self.store.ready_signal();
        loop {
            let readiness = self
                .store
                .readiness(&deployment.name, deployment.version)
                .await
                .map_err(|e| DeployError::Unavailable(e.to_string()))?;
            if let Some((worker, error)) = readiness.failed.first() {
                return Err(DeployError::Invalid(format!(
                    "worker {worker} could not install version {} of `{}`: {error}",
                    deployment.version, deployment.name
                )));
            }
            if readiness.waiting.is_empty() {
                return Ok(Installed::default());
            }
            if Instant::now() >= deadline {
                tracing::warn!(function = %deployment.name, slow = ?readiness.waiting, "deploy answered before every worker was ready");
                return Ok(Installed {
                    slow: readiness.waiting,
                });
            }
            // A worker's report wakes this at once; the poll covers a missed one.
            let _ = tokio::time::timeout(Duration::from_millis(250), ready.changed()).await;
        }
    }

    async fn status(&self, function: &str) -> Option<FunctionStatus> {
        let path = wire::function_path(function);
        let members = self.members.live().members.clone();
        let answers = futures::future::join_all(
            members
                .iter()
                .map(|m| self.ask_json::<FunctionStatus>(m, &path)),
        )
        .await;
        answers
            .into_iter()
            .filter_map(|a| a.ok().flatten())
            .reduce(|mut sum, s| {
                sum.version = sum.version.max(s.version);
                sum.code_loaded |= s.code_loaded;
                // The slowest tier any worker still runs.
                if s.compiler.as_deref() == Some("winch") || sum.compiler.is_none() {
                    sum.compiler = s.compiler;
                }
                sum.instances_idle += s.instances_idle;
                sum.instances_busy += s.instances_busy;
                sum.fresh_instance_per_call |= s.fresh_instance_per_call;
                sum.cold_starts += s.cold_starts;
                sum.warm_starts += s.warm_starts;
                sum.invocations_ok += s.invocations_ok;
                sum.invocations_failed += s.invocations_failed;
                sum.last_call_ms = sum.last_call_ms.max(s.last_call_ms);
                sum
            })
    }

    /// Every worker's buckets, added up.
    async fn stats(&self, function: &str) -> Option<CallStats> {
        let path = format!("{}/stats", wire::function_path(function));
        let members = self.members.live().members.clone();
        let answers =
            futures::future::join_all(members.iter().map(|m| self.ask_json::<CallStats>(m, &path)))
                .await;
        answers
            .into_iter()
            .filter_map(|a| a.ok().flatten())
            .reduce(|mut sum, s| {
                sum.merge(&s);
                sum
            })
    }

    /// Every worker's consumers of the function's queues, each marked with its worker. A
    /// worker that does not answer is left out (the workers' health shows it unreachable).
    async fn queues(&self, function: &str) -> Vec<QueueInfo> {
        let path = format!("{}/queues", wire::function_path(function));
        let members = self.members.live().members.clone();
        let answers = futures::future::join_all(
            members
                .iter()
                .map(|m| self.ask_json::<Vec<QueueInfo>>(m, &path)),
        )
        .await;
        let mut all = Vec::new();
        for (member, answer) in members.iter().zip(answers) {
            match answer {
                Ok(infos) => all.extend(infos.into_iter().flatten().map(|info| QueueInfo {
                    worker: Some(member.url.clone()),
                    ..info
                })),
                Err(why) => tracing::debug!(worker = %member.url, %why, "no queue report"),
            }
        }
        all
    }

    async fn logs(&self, function: &str, query: LogQuery) -> Option<LogStream> {
        let members = self.members.live().members.clone();
        let path = |tail: usize, follow: bool| {
            format!(
                "{}/logs?tail={tail}&follow={follow}",
                wire::function_path(function)
            )
        };
        // Followers first, then the backlog: no line falls between the two (one may come
        // twice, and is dropped below).
        let mut follows = Vec::new();
        if query.follow {
            for member in &members {
                if let Ok(answer) = self
                    .ask(
                        member,
                        Method::GET,
                        &path(0, true),
                        wafer_worker::empty_body(),
                    )
                    .await
                {
                    follows.push(lines(answer.into_body()));
                }
            }
        }
        let mut backlog = Vec::new();
        let mut found = false;
        for member in &members {
            let answer = tokio::time::timeout(
                QUESTION_TIMEOUT,
                self.ask(
                    member,
                    Method::GET,
                    &path(query.tail, false),
                    wafer_worker::empty_body(),
                ),
            )
            .await;
            let Ok(Ok(answer)) = answer else { continue };
            if answer.status() == http::StatusCode::NOT_FOUND {
                continue;
            }
            found = true;
            backlog.extend(lines(answer.into_body()).collect::<Vec<_>>().await);
        }
        if !found && follows.is_empty() {
            return None;
        }
        let time = |e: &LogEvent| match e {
            LogEvent::Line(line) => line.time_ms,
            LogEvent::Skipped(_) => 0,
        };
        backlog.sort_by_key(time);
        let skip = backlog.len().saturating_sub(query.tail);
        let backlog: Vec<LogEvent> = backlog.into_iter().skip(skip).collect();
        let seen: HashSet<(u64, String)> = backlog
            .iter()
            .filter_map(|e| match e {
                LogEvent::Line(l) => Some((l.time_ms, l.text.clone())),
                LogEvent::Skipped(_) => None,
            })
            .collect();
        let live = futures::stream::select_all(follows).filter(move |e| {
            let again =
                matches!(e, LogEvent::Line(l) if seen.contains(&(l.time_ms, l.text.clone())));
            std::future::ready(!again)
        });
        Some(futures::stream::iter(backlog).chain(live).boxed())
    }

    async fn health(&self) -> WorkerHealth {
        let live = self.members.live();
        let lapsed: HashSet<&str> = live.lapsed.iter().map(|m| m.id.as_str()).collect();
        let members: Vec<Member> = live.members.iter().chain(&live.lapsed).cloned().collect();
        let answers = futures::future::join_all(
            members
                .iter()
                .map(|m| self.ask_json::<serde_json::Value>(m, "/_wafer/healthz")),
        )
        .await;
        let mut health = WorkerHealth {
            pooling: true,
            instances_live: 0,
            instances_max: 0,
            functions: 0,
            shutting_down: self.shutting_down.load(Ordering::Relaxed),
            workers: Vec::new(),
        };
        for (member, answer) in members.iter().zip(answers) {
            let worker: Option<WorkerHealth> = answer
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_value(v["worker"].clone()).ok());
            let state = match &worker {
                None if lapsed.contains(member.id.as_str()) => "lease lapsed",
                None => "unreachable",
                Some(w) if w.shutting_down => "draining",
                Some(_) if lapsed.contains(member.id.as_str()) => "ready (lease lapsed)",
                Some(_) => "ready",
            };
            if let Some(w) = &worker {
                health.pooling &= w.pooling;
                health.instances_live += w.instances_live;
                health.instances_max += w.instances_max;
                health.functions = health.functions.max(w.functions);
            }
            health.workers.push(MemberHealth {
                id: member.id.clone(),
                url: member.url.clone(),
                state: state.to_string(),
                instances_live: worker.as_ref().map_or(0, |w| w.instances_live),
                functions: worker.as_ref().map_or(0, |w| w.functions),
            });
        }
        health
    }
}

/// The platform error a worker answered with, as the worker's own typed value.
async fn platform_error(
    function: &str,
    member: &Member,
    response: http::Response<hyper::body::Incoming>,
) -> InvokeError {
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    match body.ok().and_then(|b| wire::decode_invoke_error(&b)) {
        Some(error) => error,
        None => InvokeError::WorkerLost {
            function: function.to_string(),
            worker: member.id.clone(),
        },
    }
}

/// JSON lines of log events from a worker.
fn lines(body: hyper::body::Incoming) -> futures::stream::BoxStream<'static, LogEvent> {
    let bytes = http_body_util::BodyStream::new(body)
        .try_filter_map(|frame| std::future::ready(Ok(frame.into_data().ok())))
        .map_err(std::io::Error::other);
    let reader = tokio_util_lines(bytes);
    reader.boxed()
}

/// Splits a byte stream into lines and parses each as a [`LogEvent`]; others are skipped.
fn tokio_util_lines(
    bytes: impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> impl futures::Stream<Item = LogEvent> + Send + 'static {
    futures::stream::unfold(
        (Box::pin(bytes), Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, mut ended)| async move {
            loop {
                if let Some(at) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=at).collect();
                    if let Ok(event) = serde_json::from_slice::<LogEvent>(&line) {
                        return Some((event, (bytes, buffer, ended)));
                    }
                    continue;
                }
                if ended {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    _ => ended = true,
                }
            }
        },
    )
}

/// `host:port` of a worker URL (`http://host:port`).
fn addr(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// A call this gateway has running on a worker; counted until its response body ends.
struct Running(Arc<AtomicU32>);

impl Running {
    fn enter(counter: Arc<AtomicU32>) -> Running {
        counter.fetch_add(1, Ordering::Relaxed);
        Running(counter)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's response body, holding the call's place in the running count.
struct Tracked {
    inner: hyper::body::Incoming,
    _running: Running,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = wafer_worker::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| format!("the worker's response broke off: {e}").into())
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl QueueReports for RemoteBackend {
    fn queues(&self, function: &str) -> BoxFuture<'static, Vec<QueueInfo>> {
        let (inner, function) = (self.inner.clone(), function.to_string());
        Box::pin(async move { inner.queues(&function).await })
    }
}

impl Backend for RemoteBackend {
    fn invoke(
        &self,
        function: &str,
        version: u64,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, InvokeError>> {
        let (inner, function) = (self.inner.clone(), function.to_string());
        Box::pin(async move { inner.invoke(function, version, request).await })
    }

    fn prepare(&self, component: Bytes) -> BoxFuture<'static, Result<String, DeployError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.prepare(component).await })
    }

    fn install(
        &self,
        deployment: Deployment,
    ) -> BoxFuture<'static, Result<Installed, DeployError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.install(deployment).await })
    }

    /// Workers follow the store: once the record stops serving a version, they retire it.
    fn retire(&self, _function: &str, _version: u64) -> BoxFuture<'static, bool> {
        Box::pin(std::future::ready(true))
    }

    /// Workers follow the store: once the record is gone, they stop serving it.
    fn remove(&self, _function: &str) -> BoxFuture<'static, bool> {
        Box::pin(std::future::ready(true))
    }

    fn status(&self, function: &str) -> BoxFuture<'static, Option<FunctionStatus>> {
        let (inner, function) = (self.inner.clone(), function.to_string());
        Box::pin(async move { inner.status(&function).await })
    }

    fn stats(&self, function: &str) -> BoxFuture<'static, Option<CallStats>> {
        let (inner, function) = (self.inner.clone(), function.to_string());
        Box::pin(async move { inner.stats(&function).await })
    }

    fn logs(&self, function: &str, query: LogQuery) -> BoxFuture<'static, Option<LogStream>> {
        let (inner, function) = (self.inner.clone(), function.to_string());
        Box::pin(async move { inner.logs(&function, query).await })
    }

    fn retain(
        &self,
        live: HashSet<String>,
        grace: Duration,
    ) -> BoxFuture<'static, Result<usize, DeployError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner
                .store
                .retain_components(&live, grace)
                .await
                .map_err(|e| DeployError::Unavailable(e.to_string()))
        })
    }

    fn health(&self) -> BoxFuture<'static, WorkerHealth> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.health().await })
    }

    fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }

    fn follows_store(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn worker_addresses() {
        assert_eq!(super::addr("http://127.0.0.2:8081"), "127.0.0.2:8081");
        assert_eq!(super::addr("http://w1:80/"), "w1:80");
        assert_eq!(super::addr("10.0.0.1:9"), "10.0.0.1:9");
    }
}
