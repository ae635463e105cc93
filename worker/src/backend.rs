//! The contract between the gateway and a worker: [`Backend`] and the plain data that crosses it.
//!
//! Nothing here is an in-process handle: requests and responses are HTTP messages with streamed
//! bodies, everything else is owned data (`Clone`, no `Arc` into the worker), and every method
//! returns a future. So the same contract can be served by the worker in this process
//! ([`crate::Worker`]) or by one on another host, over the network.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use http_body_util::BodyExt;

use crate::error::{DeployError, InvokeError};
use crate::limits::Limits;
use crate::logs::LogLine;
use crate::outbound::AllowedHosts;
use crate::stats::CallStats;

/// Errors inside streaming bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A streaming HTTP body, as it crosses the gateway/worker boundary.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
pub type Request = http::Request<Body>;
pub type Response = http::Response<Body>;

/// An empty body.
pub fn empty_body() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body holding `bytes`.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How a call started, in its response's extensions: on an instance started for it (`cold`,
/// with the time starting took where it is known) or on one already live. Only for a call
/// that is traced (its request carries a `traceparent`): for the others the extension map
/// would be an allocation per call that nothing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallStart {
    pub cold: bool,
    pub instantiate: Option<Duration>,
}

impl CallStart {
    /// Whether a call's response should say how it started.
    pub(crate) fn wanted(request: &Request) -> bool {
        request.headers().contains_key("traceparent")
    }

    /// Puts `self` on `response` if `wanted`.
    pub(crate) fn tell<B>(self, wanted: bool, response: &mut http::Response<B>) {
        if wanted {
            response.extensions_mut().insert(self);
        }
    }
}

/// Everything about a function that is not its code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionConfig {
    /// The guest's entire environment.
    pub env: Vec<(String, String)>,
    /// Hosts outbound HTTP may reach; empty denies all.
    pub allowed_outbound_hosts: AllowedHosts,
    pub limits: Limits,
    /// The route prefix the function is served under: CGI modules see it as `SCRIPT_NAME`
    /// and the rest of the path as `PATH_INFO`.
    pub route: String,
}

/// A function version to run: which code (by digest) under which configuration.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub name: String,
    pub version: u64,
    pub digest: String,
    pub config: FunctionConfig,
}

/// What a worker says about one deployed function.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FunctionStatus {
    /// The newest version served.
    pub version: u64,
    pub digest: String,
    /// Every version served, oldest first.
    #[serde(default)]
    pub versions: Vec<u64>,
    /// What the code exports: `wasi:http 0.2`, `wasi:http 0.3` or `wasi 0.1 command`.
    pub interface: String,
    /// Whether its compiled code is in memory (false: evicted after a long idle; the next call
    /// loads it back from disk).
    pub code_loaded: bool,
    /// Which compiler made the code in memory: `winch` (the baseline tier, while Cranelift
    /// compiles optimized code in the background) or `cranelift`; absent while evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler: Option<String>,
    pub instances_idle: usize,
    pub instances_busy: usize,
    /// Whether the function was switched to a fresh instance per call (reuse off or seen broken).
    pub fresh_instance_per_call: bool,
    /// Calls that had to instantiate (pre-warming for `min_instances` is not counted).
    pub cold_starts: u64,
    /// Calls served by an instance that was already live.
    pub warm_starts: u64,
    pub invocations_ok: u64,
    /// Calls that failed, of every kind (refused ones too).
    #[serde(default)]
    pub invocations_failed: u64,
    /// Milliseconds since the Unix epoch; absent if never called.
    pub last_call_ms: Option<u64>,
}

/// A worker's overall state, for health checks (for a cluster: all its workers together).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WorkerHealth {
    /// Whether the pooling allocator is in use (false: it fell back to on-demand allocation).
    pub pooling: bool,
    /// Live instances across all functions, and the most there may be.
    pub instances_live: u32,
    pub instances_max: u32,
    pub functions: usize,
    pub shutting_down: bool,
    /// Each worker, where there are several (a cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<MemberHealth>,
}

/// One worker of a cluster, as its gateway sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MemberHealth {
    pub id: String,
    pub url: String,
    /// `ready`, `unreachable` (its lease is live but it does not answer), or `draining`.
    pub state: String,
    pub instances_live: u32,
    pub functions: usize,
}

/// What an install achieved beyond "new calls reach the new version".
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Installed {
    /// Workers that had not installed it when the install stopped waiting (a cluster).
    pub slow: Vec<String>,
}

/// Which of a function's log lines to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogQuery {
    /// The most recent lines to start with.
    pub tail: usize,
    /// Whether to go on with new lines as they are written, until the reader stops reading.
    pub follow: bool,
}

/// What a log reader receives, oldest first.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEvent {
    Line(LogLine),
    /// A follower fell this many lines behind and they were skipped.
    Skipped(u64),
}

/// A function's log lines: the backlog, then (when following) new ones as they come.
pub type LogStream = BoxStream<'static, LogEvent>;

/// The one interface between the gateway and a worker.
///
/// An implementation serving a worker elsewhere must provide, for each method, what the
/// in-process [`crate::Worker`] does: `invoke` resolves once the response head is known and
/// streams both bodies (a request body the guest has not read yet must still be flowing);
/// its errors are the typed [`InvokeError`]s, which the gateway maps to statuses and the queue
/// trigger to ack, retry or dead-letter, so a transport failure must become one of them too.
/// `prepare` validates and compiles before it answers, so that a bad component is refused
/// before anything refers to it; `install` answers once new calls reach the new version;
/// `logs` follows until the stream is dropped.
pub trait Backend: Send + Sync + 'static {
    /// Calls `version` of `function` with `request`. Resolves with the response head once the
    /// guest sets it; the body streams on.
    fn invoke(
        &self,
        function: &str,
        version: u64,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, InvokeError>>;

    /// Validates and compiles a component and stores it; returns its digest. Deploys nothing.
    fn prepare(&self, component: Bytes) -> BoxFuture<'static, Result<String, DeployError>>;

    /// Starts serving a function version beside the function's other versions (replacing one
    /// of the same number, whose running calls finish on it).
    fn install(&self, deployment: Deployment)
    -> BoxFuture<'static, Result<Installed, DeployError>>;

    /// Stops serving one version of a function (calls running on it finish); resolves to
    /// whether it was served. Its compiled code stays stored, so installing it again is quick.
    fn retire(&self, function: &str, version: u64) -> BoxFuture<'static, bool>;

    /// Stops serving every version of a function and forgets its logs; resolves to whether it
    /// existed.
    fn remove(&self, function: &str) -> BoxFuture<'static, bool>;

    /// The function's state, if it is deployed here.
    fn status(&self, function: &str) -> BoxFuture<'static, Option<FunctionStatus>>;

    /// The function's last hour of calls, if it is deployed here.
    fn stats(&self, function: &str) -> BoxFuture<'static, Option<CallStats>>;

    /// The function's log lines, if it has any.
    fn logs(&self, function: &str, query: LogQuery) -> BoxFuture<'static, Option<LogStream>>;

    /// Deletes stored components whose digests are not in `live` and that were stored more than
    /// `grace` ago (so that a deploy in progress keeps the component it just prepared).
    fn retain(
        &self,
        live: HashSet<String>,
        grace: Duration,
    ) -> BoxFuture<'static, Result<usize, DeployError>>;

    fn health(&self) -> BoxFuture<'static, WorkerHealth>;

    /// Refuses new calls from now on; calls already running finish.
    fn begin_shutdown(&self);

    /// Whether this backend learns deployments from the gateway's store by itself (a cluster,
    /// whose workers read PostgreSQL): then the gateway commits a record first and `install`
    /// waits until the version is served, and nothing is installed at start.
    fn follows_store(&self) -> bool {
        false
    }
}
