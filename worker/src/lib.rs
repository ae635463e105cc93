//! wafer's worker: runs WebAssembly components exporting `wasi:http/incoming-handler` (0.2) or
//! `wasi:http/handler` (0.3) from pooled, limited, warm instances.
//!
//! It sits at the end of the data path, event -> gateway -> router -> **worker -> instance pool**
//! -> response. The gateway reaches it only through [`Backend`]: "invoke this function with this
//! request, get a response or an [`InvokeError`]", plus the control calls to deploy and remove
//! code. [`Worker`] is the in-process implementation; a remote one would implement the same trait.
//!
//! Modules, in the order a call meets them:
//! - [`engine`]: the one wasmtime `Engine` (pooling allocator, epoch ticker);
//! - [`compile`]: components by digest, validated, compiled once, cached on disk;
//! - `function`: a deployed version and how one call runs on it;
//! - [`pool`]: admission, warm instances, and the instance lifecycle (read its docs);
//! - `instance`: one store and serving one request on it (wasi:http 0.2);
//! - `service`: one store serving many requests at once (wasi:http 0.3);
//! - `host`: what a guest sees (WASI sandbox, outbound HTTP policy);
//! - `limits`: the limits and the hooks that enforce them;
//! - [`logs`]: guest stdout/stderr, bounded; `metrics`: Prometheus series.

mod cgi;
pub mod compile;
pub mod disk;
pub mod engine;
mod error;
mod function;
mod host;
mod instance;
mod limits;
pub mod logs;
mod metrics;
pub mod pool;
mod service;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

pub use engine::EngineConfig;
pub use error::{DeployError, InvokeError, WorkerError};
pub use function::FunctionConfig;
pub use host::AllowedHosts;
pub use limits::Limits;

use compile::{Compiled, Components};
use function::{Code, Function};
use host::Host;
use logs::{LogSink, Logs};
use metrics::Metrics;
use pool::{Pool, Slots};

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

/// A function version to run: which code (by digest) under which configuration.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub name: String,
    pub version: u64,
    pub digest: String,
    pub config: FunctionConfig,
}

/// What a worker says about one deployed function.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FunctionStatus {
    pub version: u64,
    pub digest: String,
    /// What the code exports: `wasi:http 0.2`, `wasi:http 0.3` or `wasi 0.1 command`.
    pub interface: &'static str,
    /// Whether its compiled code is in memory (false: evicted after a long idle; the next call
    /// loads it back from disk).
    pub code_loaded: bool,
    pub instances_idle: usize,
    pub instances_busy: usize,
    /// Whether the function was switched to a fresh instance per call (reuse off or seen broken).
    pub fresh_instance_per_call: bool,
    /// Calls that had to instantiate (pre-warming for `min_instances` is not counted).
    pub cold_starts: u64,
    /// Calls served by an instance that was already live.
    pub warm_starts: u64,
    pub invocations_ok: u64,
    /// Milliseconds since the Unix epoch; absent if never called.
    pub last_call_ms: Option<u64>,
}

/// A worker's overall state, for health checks.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkerHealth {
    /// Whether the pooling allocator is in use (false: it fell back to on-demand allocation).
    pub pooling: bool,
    /// Live instances across all functions, and the most there may be.
    pub instances_live: u32,
    pub instances_max: u32,
    pub functions: usize,
    pub shutting_down: bool,
}

/// The one interface between the gateway and a worker.
pub trait Backend: Send + Sync + 'static {
    /// Calls `function` with `request`. Resolves with the response head once the guest sets it;
    /// the body streams on.
    fn invoke(
        &self,
        function: &str,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, InvokeError>>;

    /// Validates and compiles a component and stores it; returns its digest. Deploys nothing.
    fn prepare(&self, component: Bytes) -> BoxFuture<'static, Result<String, DeployError>>;

    /// Starts serving a function version (replacing the running one, whose calls finish on it).
    fn install(&self, deployment: Deployment) -> BoxFuture<'static, Result<(), DeployError>>;

    /// Stops serving a function and forgets its logs; returns whether it existed.
    fn remove(&self, function: &str) -> bool;

    fn status(&self, function: &str) -> Option<FunctionStatus>;

    /// The function's log (recent lines and followers).
    fn logs(&self, function: &str) -> Option<Arc<LogSink>>;

    /// Deletes stored components whose digests are not in `live` and that were stored more than
    /// `grace` ago (so that a deploy in progress keeps the component it just prepared).
    fn retain(
        &self,
        live: HashSet<String>,
        grace: Duration,
    ) -> BoxFuture<'static, Result<usize, DeployError>>;

    fn health(&self) -> WorkerHealth;

    /// Refuses new calls from now on; calls already running finish.
    fn begin_shutdown(&self);
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Holds `components/`, `compiled/` and `logs/`.
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    /// Where the worker registers its metrics.
    pub registry: prometheus::Registry,
    /// Compiled code kept in memory, in bytes: above it, the code of functions idle for
    /// `code_idle` (and with no instances) is dropped, least recently used first, and loaded
    /// back from its on-disk artifact on the next call.
    pub code_memory: u64,
    pub code_idle: Duration,
}

impl WorkerConfig {
    /// Settings with wafer's defaults: 512 MiB of code in memory, evicted after 10 minutes idle.
    pub fn new(data_dir: PathBuf, registry: prometheus::Registry) -> WorkerConfig {
        WorkerConfig {
            data_dir,
            engine: EngineConfig::default(),
            registry,
            code_memory: 512 << 20,
            code_idle: Duration::from_secs(600),
        }
    }
}

/// The in-process worker.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    engine: Engine,
    linker: Linker<Host>,
    cgi_linker: wasmtime::Linker<cgi::CgiHost>,
    components: Components,
    functions: DashMap<Arc<str>, Arc<Function>>,
    logs: Logs,
    metrics: Metrics,
    pub(crate) slots: Arc<Slots>,
    pub(crate) lanes: limits::Lanes,
    engine_config: EngineConfig,
    code_memory: u64,
    code_idle: Duration,
    pooling: bool,
    shutting_down: AtomicBool,
    pub(crate) ticker: engine::EpochTicker,
}

impl Worker {
    /// Creates the engine, opens the data directory and starts the background reaper. Must be
    /// called inside a tokio runtime.
    pub fn new(config: WorkerConfig) -> Result<Worker, WorkerError> {
        let (engine, pooling) = engine::new_engine(&config.engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| wasmtime_wasi::p3::add_to_linker(&mut linker))
            .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker))
            .map_err(|e| WorkerError::Engine(format!("failed to link WASI: {e:#}")))?;
        let mut cgi_linker = wasmtime::Linker::new(&engine);
        cgi::add_to_linker(&mut cgi_linker)
            .map_err(|e| WorkerError::Engine(format!("failed to link WASI 0.1: {e:#}")))?;
        let io = |context: &str| {
            let context = context.to_string();
            move |source| WorkerError::Io { context, source }
        };
        let components = Components::open(&engine, &config.data_dir)
            .map_err(io(&format!("failed to open {}", config.data_dir.display())))?;
        let logs = Logs::new(Some(config.data_dir.join("logs")))
            .map_err(io("failed to open the logs directory"))?;
        let shared = Arc::new(Shared {
            ticker: engine::EpochTicker::start(&engine)?,
            linker,
            cgi_linker,
            components,
            functions: DashMap::new(),
            logs,
            metrics: Metrics::new(&config.registry)?,
            slots: Slots::new(config.engine.max_instances),
            lanes: limits::Lanes::for_this_machine(),
            engine_config: config.engine,
            code_memory: config.code_memory,
            code_idle: config.code_idle,
            pooling,
            shutting_down: AtomicBool::new(false),
            engine,
        });
        tokio::spawn(reap(Arc::downgrade(&shared)));
        Ok(Worker { shared })
    }
}

impl Shared {
    /// Drops the longest-idle warm instance of any function, to make room for a cold start.
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let oldest = self
            .functions
            .iter()
            .filter_map(|f| f.pool.oldest_evictable().map(|t| (t, f.clone())))
            .min_by_key(|(t, _)| *t);
        oldest.is_some_and(|(_, f)| f.pool.evict_oldest())
    }

    /// Takes a slot of the worker's instance budget, evicting the longest-idle warm instance of
    /// any function if they are all taken.
    pub(crate) fn take_slot(&self, function: &str) -> Result<pool::Slot, InvokeError> {
        if let Some(slot) = self.slots.try_take() {
            return Ok(slot);
        }
        self.evict_longest_idle();
        self.slots
            .try_take()
            .ok_or_else(|| InvokeError::NoCapacity {
                function: function.to_string(),
                slots: self.slots.max(),
            })
    }

    /// Loads a function's code back after it was evicted. Blocking.
    fn load_code(&self, digest: &str) -> Result<Code, DeployError> {
        self.link(&self.components.load(digest)?)
    }

    /// Drops from memory the compiled code of functions idle for `code_idle` with no instances,
    /// least recently used first, until the code in memory fits `code_memory`. Functions with
    /// `min_instances` keep theirs.
    fn evict_idle_code(&self) -> usize {
        let mut total = self.metrics.code_bytes.get().max(0) as u64;
        if total <= self.code_memory {
            return 0;
        }
        let now = function::now_ms();
        let idle_ms = self.code_idle.as_millis() as u64;
        let mut idle: Vec<Arc<Function>> = self
            .functions
            .iter()
            .filter(|f| {
                f.config.limits.min_instances == 0
                    && now.saturating_sub(f.last_used_ms()) >= idle_ms
                    && f.pool.counts() == (0, 0)
            })
            .map(|f| f.clone())
            .collect();
        idle.sort_by_key(|f| f.last_used_ms());
        let mut evicted = 0;
        for f in idle {
            if total <= self.code_memory {
                break;
            }
            if !f.evict_code() {
                continue;
            }
            total = total.saturating_sub(f.code_bytes as u64);
            self.metrics.code_bytes.sub(f.code_bytes as i64);
            f.metrics.code_evicted.inc();
            let shared_digest = self
                .functions
                .iter()
                .any(|g| g.digest == f.digest && g.loaded_code().is_some());
            if !shared_digest {
                self.components.forget(&f.digest);
            }
            tracing::debug!(function = %f.name, bytes = f.code_bytes, "evicted idle compiled code");
            evicted += 1;
        }
        evicted
    }

    /// Accounts for a function version leaving (deleted or replaced).
    fn retire(&self, function: &Function) {
        function.pool.drain();
        if function.evict_code() {
            self.metrics.code_bytes.sub(function.code_bytes as i64);
        }
    }

    /// Pre-links compiled code: resolves every import once, checks the exports.
    fn link(&self, compiled: &Compiled) -> Result<Code, DeployError> {
        match compiled {
            Compiled::Component(component) => self.link_component(component),
            Compiled::Module(module) => {
                cgi::check_command(module).map_err(DeployError::Invalid)?;
                self.cgi_linker
                    .instantiate_pre(module)
                    .map(Code::Cgi)
                    .map_err(|e| {
                        DeployError::Invalid(format!(
                            "the core module imports something wafer does not provide (wafer provides WASI 0.1, `wasi_snapshot_preview1`): {e:#}"
                        ))
                    })
            }
        }
    }

    /// Links a component and finds its handler: `wasi:http/incoming-handler` 0.2 (the proxy
    /// world) or `wasi:http/handler` 0.3 (the service world).
    fn link_component(&self, component: &Component) -> Result<Code, DeployError> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            DeployError::Invalid(format!(
                "the component imports something wafer does not provide (wafer provides WASI 0.2 and 0.3, wasi:http 0.2 and 0.3): {e:#}"
            ))
        })?;
        let p2_error = match ProxyPre::new(pre.clone()) {
            Ok(proxy) => return Ok(Code::Http(proxy)),
            Err(e) => e,
        };
        if let Ok(service) = ServicePre::new(pre) {
            return Ok(Code::Service(service));
        }
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        Err(DeployError::Invalid(format!(
            "the component exports neither `wasi:http/incoming-handler` (0.2.x) nor `wasi:http/handler` (0.3.x); it exports {}: {p2_error:#}",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        )))
    }

    fn install(self: &Arc<Self>, deployment: Deployment) -> Result<(), DeployError> {
        let limits = &deployment.config.limits;
        if limits.memory > self.engine_config.max_memory {
            return Err(DeployError::Limits(format!(
                "memory limit {} bytes is above this worker's maximum of {} bytes",
                limits.memory, self.engine_config.max_memory
            )));
        }
        if limits.concurrency > self.slots.max() {
            return Err(DeployError::Limits(format!(
                "concurrency {} is above this worker's maximum of {} instances",
                limits.concurrency,
                self.slots.max()
            )));
        }
        let compiled = self.components.load(&deployment.digest)?;
        let initial_pages = match &compiled {
            Compiled::Component(component) => component
                .resources_required()
                .and_then(|r| r.max_initial_memory_size),
            Compiled::Module(module) => module.resources_required().max_initial_memory_size,
        };
        if let Some(pages) = initial_pages {
            let bytes = pages.saturating_mul(64 << 10);
            if bytes > limits.memory {
                return Err(DeployError::Limits(format!(
                    "the component needs {bytes} bytes of memory at start, above the function's memory limit of {} bytes",
                    limits.memory
                )));
            }
        }
        let code = self.link(&compiled)?;
        let code_bytes = compiled.image_bytes();
        let name: Arc<str> = Arc::from(deployment.name.as_str());
        let metrics = self.metrics.function(&name);
        let function = Arc::new(Function {
            pool: Pool::new(
                limits.clone(),
                metrics.clone(),
                self.ticker.demand(),
                matches!(code, Code::Service(_)),
            ),
            interface: code.interface(),
            code: std::sync::Mutex::new(Some(code)),
            code_bytes,
            loading: tokio::sync::Mutex::new(()),
            installed_ms: function::now_ms(),
            logs: self.logs.sink(&name),
            name: name.clone(),
            version: deployment.version,
            digest: deployment.digest,
            config: deployment.config,
            metrics,
            last_call_ms: AtomicU64::new(0),
        });
        self.metrics.code_bytes.add(code_bytes as i64);
        if let Some(old) = self.functions.insert(name, function.clone()) {
            self.retire(&old);
        }
        function.top_up(self);
        Ok(())
    }
}

impl Backend for Worker {
    fn invoke(
        &self,
        function: &str,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, InvokeError>> {
        let shared = self.shared.clone();
        let found = self.shared.functions.get(function).map(|f| f.clone());
        let missing = found.is_none().then(|| function.to_string());
        Box::pin(async move {
            if shared.shutting_down.load(Ordering::Relaxed) {
                return Err(InvokeError::ShuttingDown);
            }
            match found {
                Some(function) => Ok(gather(function.invoke(&shared, request).await?).await),
                None => Err(InvokeError::NotFound(missing.unwrap_or_default())),
            }
        })
    }

    fn prepare(&self, component: Bytes) -> BoxFuture<'static, Result<String, DeployError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let digest = compile::digest(&component);
                // Bytes seen before are compiled already (in memory or on disk).
                if let Some(compiled) = shared.components.cached(&digest) {
                    shared.link(&compiled)?;
                    return Ok(digest);
                }
                let compiled = shared.components.compile(&component)?;
                shared.link(&compiled)?;
                shared.components.store(&digest, &component, &compiled)?;
                Ok(digest)
            })
            .await
            .map_err(|e| DeployError::Internal(format!("compilation task failed: {e}")))?
        })
    }

    fn install(&self, deployment: Deployment) -> BoxFuture<'static, Result<(), DeployError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || shared.install(deployment))
                .await
                .map_err(|e| DeployError::Internal(format!("install task failed: {e}")))?
        })
    }

    fn remove(&self, function: &str) -> bool {
        let Some((name, old)) = self.shared.functions.remove(function) else {
            return false;
        };
        self.shared.retire(&old);
        self.shared.logs.remove(&name);
        self.shared.metrics.remove(&name);
        true
    }

    fn status(&self, function: &str) -> Option<FunctionStatus> {
        let f = self.shared.functions.get(function)?.clone();
        let (idle, busy) = f.pool.counts();
        let last = f.last_call_ms.load(Ordering::Relaxed);
        Some(FunctionStatus {
            version: f.version,
            digest: f.digest.clone(),
            interface: f.interface,
            code_loaded: f.loaded_code().is_some(),
            instances_idle: idle,
            instances_busy: busy,
            fresh_instance_per_call: f.pool.fresh_only(),
            cold_starts: f.metrics.cold_starts.get(),
            warm_starts: f.metrics.warm_starts.get(),
            invocations_ok: f.metrics.ok.get(),
            last_call_ms: (last > 0).then_some(last),
        })
    }

    fn logs(&self, function: &str) -> Option<Arc<LogSink>> {
        self.shared
            .functions
            .get(function)
            .map(|f| f.logs.clone())
            .or_else(|| self.shared.logs.get(function))
    }

    fn health(&self) -> WorkerHealth {
        WorkerHealth {
            pooling: self.shared.pooling,
            instances_live: self.shared.slots.live(),
            instances_max: self.shared.slots.max(),
            functions: self.shared.functions.len(),
            shutting_down: self.shared.shutting_down.load(Ordering::Relaxed),
        }
    }

    fn begin_shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
    }

    fn retain(
        &self,
        live: HashSet<String>,
        grace: Duration,
    ) -> BoxFuture<'static, Result<usize, DeployError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                shared
                    .components
                    .retain(&live, grace)
                    .map_err(DeployError::io("failed to remove unused components"))
            })
            .await
            .map_err(|e| DeployError::Internal(format!("cleanup task failed: {e}")))?
        })
    }
}

/// How long a response head waits for its body.
const GATHER_WAIT: Duration = Duration::from_millis(1);
/// Body bytes gathered before the head is sent.
const GATHER_BYTES: usize = 64 << 10;

/// Gathers the start of a response body (for up to [`GATHER_WAIT`] and [`GATHER_BYTES`]), so
/// that the head and a short body leave in one write, with a `Content-Length` when the body is
/// complete. A guest sets its response head before it writes the body; sent as they come, head,
/// chunk and end of a small response are three writes, and on a loopback or LAN connection each
/// costs a packet and wakes the client. A body that takes longer streams as before.
async fn gather(response: Response) -> Response {
    use futures::StreamExt;
    let (parts, mut body) = response.into_parts();
    let deadline = tokio::time::Instant::now() + GATHER_WAIT;
    let mut frames = Vec::new();
    let mut size = 0;
    let ended = loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => break false,
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => {
                size += frame.data_ref().map_or(0, |d| d.len());
                frames.push(Ok(frame));
                if size >= GATHER_BYTES {
                    break false;
                }
            }
            Ok(Some(Err(e))) => {
                frames.push(Err(e));
                break true;
            }
        }
    };
    if frames.is_empty() && !ended {
        return Response::from_parts(parts, body);
    }
    if ended && frames.iter().all(|f| f.as_ref().is_ok_and(|f| f.is_data())) {
        let mut chunks = frames
            .into_iter()
            .flatten()
            .filter_map(|frame| frame.into_data().ok());
        // Usually one chunk, passed on as it is; several are joined.
        let bytes = match (chunks.next(), chunks.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) => only,
            (Some(first), Some(second)) => {
                let mut joined = bytes::BytesMut::with_capacity(size);
                for chunk in [first, second].into_iter().chain(chunks) {
                    joined.extend_from_slice(&chunk);
                }
                joined.freeze()
            }
        };
        return Response::from_parts(parts, full_body(bytes));
    }
    let gathered = futures::stream::iter(frames);
    let body = if ended {
        http_body_util::StreamBody::new(gathered.boxed())
    } else {
        let rest = http_body_util::BodyStream::new(body);
        http_body_util::StreamBody::new(gathered.chain(rest).boxed())
    };
    Response::from_parts(parts, body.boxed_unsync())
}

/// Hands memory freed by dropped instances (their stores, tables of host resources) back to the
/// OS. Linear memories and stacks are decommitted by the pooling allocator itself; glibc's
/// allocator keeps freed heap pages until asked, so scale to zero would not show in RSS.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only releases free memory at the allocator's discretion; it is
        // thread-safe and has no preconditions.
        unsafe { libc::malloc_trim(0) };
    });
}

/// Drops expired warm instances (and idle code over the budget) once a second, until the worker
/// is gone.
async fn reap(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut freed_last_round = false;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let functions: Vec<_> = shared.functions.iter().map(|f| f.clone()).collect();
        let mut dropped = 0;
        for function in functions {
            let reaped = function.pool.reap(now);
            if reaped > 0 {
                tracing::debug!(function = %function.name, reaped, "dropped idle instances");
                dropped += reaped;
            }
            // Also retries a minimum that could not be reached (instance budget full).
            function.top_up(&shared);
        }
        let evicted = shared.evict_idle_code();
        // Again on the next round: a wasi:http 0.3 instance's store is dropped by its driver
        // task a moment after the pool lets go of it.
        if dropped > 0 || evicted > 0 || freed_last_round {
            release_freed_heap();
        }
        freed_last_round = dropped > 0 || evicted > 0;
    }
}
