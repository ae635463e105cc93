//! The in-process [`Backend`]: the worker's state (engine, linkers, code cache, functions,
//! capacity), installing and retiring versions, loading evicted code back before a call, and the
//! reaper that scales idle functions to zero.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::broadcast::error::RecvError;

use crate::backend::{
    Backend, Deployment, FunctionStatus, Installed, LogEvent, LogQuery, LogStream, Request,
    Response, WorkerHealth,
};
use crate::code::{Code, Linkers};
use crate::compile::{self, Compiled, Components};
use crate::engine::{self, EngineConfig, EpochTicker};
use crate::error::{DeployError, InvokeError, WorkerError};
use crate::function::Function;
use crate::gather::gather;
use crate::limits::{Capacity, Lanes};
use crate::logs::{LogSink, Logs, Stream};
use crate::metrics::Metrics;
use crate::stats::CallStats;

/// Worker settings. [`WorkerConfig::new`] states the defaults.
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
    /// 512 MiB of compiled code kept in memory by default.
    pub const DEFAULT_CODE_MEMORY: u64 = 512 << 20;
    /// Code idle for 10 minutes may be dropped by default.
    pub const DEFAULT_CODE_IDLE: Duration = Duration::from_secs(600);

    /// Settings with wafer's defaults.
    pub fn new(data_dir: PathBuf, registry: prometheus::Registry) -> WorkerConfig {
        WorkerConfig {
            data_dir,
            engine: EngineConfig::default(),
            registry,
            code_memory: Self::DEFAULT_CODE_MEMORY,
            code_idle: Self::DEFAULT_CODE_IDLE,
        }
    }
}

/// The versions of one function served here.
type Versions = Arc<[Arc<Function>]>;

/// The in-process worker.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

/// What the worker holds; private to this module (functions get their [`Capacity`] instead).
struct Inner {
    linkers: Linkers,
    /// The baseline tier's linkers, where compilation is tiered (see `engine`).
    baseline_linkers: Option<Linkers>,
    components: Components,
    /// Digests whose baseline code is being compiled again with Cranelift.
    optimizing: std::sync::Mutex<HashSet<String>>,
    /// Each function's versions served here, oldest first (replaced whole on a change).
    functions: DashMap<Arc<str>, Versions>,
    logs: Logs,
    metrics: Metrics,
    capacity: Arc<Capacity>,
    engine_config: EngineConfig,
    code_memory: u64,
    code_idle: Duration,
    pooling: bool,
    shutting_down: AtomicBool,
    /// Where the calls of functions with a hostile standing run (see `fair`).
    low_priority: &'static tokio::runtime::Handle,
    /// Advances the engine's epoch while it lives.
    _ticker: EpochTicker,
}

impl Worker {
    /// Creates the engine, opens the data directory and starts the background reaper. Must be
    /// called inside a tokio runtime.
    pub fn new(config: WorkerConfig) -> Result<Worker, WorkerError> {
        let (engine, pooling) = engine::new_engine(&config.engine)?;
        let baseline = engine::new_baseline_engine(&config.engine, pooling)?;
        let link = |engine: &wasmtime::Engine| {
            Linkers::new(engine)
                .map_err(|e| WorkerError::Engine(format!("failed to link WASI: {e:#}")))
        };
        let linkers = link(&engine)?;
        let baseline_linkers = baseline.as_ref().map(link).transpose()?;
        let io = |context: &str| {
            let context = context.to_string();
            move |source| WorkerError::Io { context, source }
        };
        let components = Components::open(
            &engine,
            baseline.as_ref(),
            config.engine.compiler,
            &config.data_dir,
        )
        .map_err(io(&format!("failed to open {}", config.data_dir.display())))?;
        let unwritten = prometheus::IntCounter::new(
            "wafer_log_lines_unwritten_total",
            "Function log lines that did not reach the disk (full or read-only, or the writer fell behind); they are still shown from memory",
        )?;
        config.registry.register(Box::new(unwritten.clone()))?;
        let logs = Logs::new(Some(config.data_dir.join("logs")), unwritten)
            .map_err(io("failed to open the logs directory"))?;
        let engines: Vec<&wasmtime::Engine> = std::iter::once(&engine).chain(&baseline).collect();
        let ticker = EpochTicker::start(&engines)?;
        let metrics = Metrics::new(&config.registry)?;
        let low_priority = crate::fair::low_priority().map_err(WorkerError::Engine)?;
        let inner = Arc::new_cyclic(|inner: &Weak<Inner>| {
            let inner = inner.clone();
            let evict = move || inner.upgrade().is_some_and(|w| w.evict_longest_idle());
            Inner {
                capacity: Arc::new(Capacity::new(
                    config.engine.max_instances,
                    Lanes::for_this_machine(),
                    ticker.demand(),
                    evict,
                )),
                _ticker: ticker,
                linkers,
                baseline_linkers,
                components,
                optimizing: std::sync::Mutex::new(HashSet::new()),
                functions: DashMap::new(),
                logs,
                metrics,
                engine_config: config.engine,
                code_memory: config.code_memory,
                code_idle: config.code_idle,
                pooling,
                shutting_down: AtomicBool::new(false),
                low_priority,
            }
        });
        tokio::spawn(reap(Arc::downgrade(&inner)));
        Ok(Worker { inner })
    }
}

impl Worker {
    /// Whether the component with `digest` is stored (and compiled) here already, so that
    /// preparing it needs no bytes.
    pub fn is_stored(&self, digest: &str) -> bool {
        self.inner.components.cached(digest).is_some()
    }
}

impl Inner {
    /// Every function version served here.
    fn every_version(&self) -> Vec<Arc<Function>> {
        self.functions
            .iter()
            .flat_map(|versions| versions.value().iter().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Drops the longest-idle warm instance of any function, to make room for a cold start.
    fn evict_longest_idle(&self) -> bool {
        let oldest = self
            .every_version()
            .into_iter()
            .filter_map(|f| f.pool.oldest_evictable().map(|t| (t, f.clone())))
            .min_by_key(|(t, _)| *t);
        oldest.is_some_and(|(_, f)| f.pool.evict_oldest())
    }

    /// The function's code, loaded back from its on-disk artifact if it was evicted (mapped and
    /// linked again: milliseconds, no compilation).
    async fn code_for(self: &Arc<Self>, function: &Arc<Function>) -> Result<Code, InvokeError> {
        if let Some(code) = function.loaded_code() {
            return Ok(code);
        }
        let _loading = function.loading.lock().await;
        if let Some(code) = function.loaded_code() {
            return Ok(code);
        }
        let (inner, digest) = (self.clone(), function.digest.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let compiled = inner.components.load(&digest)?;
            Ok((inner.link(&digest, &compiled)?, compiled.image_bytes()))
        })
        .await
        .unwrap_or_else(|e| Err(DeployError::Internal(e.to_string())));
        let (code, code_bytes) = loaded.map_err(|e| {
            function.refused(InvokeError::Instantiate {
                function: function.name.to_string(),
                reason: format!("loading its compiled code back failed: {e}"),
            })
        })?;
        function.set_code(code.clone(), code_bytes);
        self.metrics.code_bytes.add(code_bytes as i64);
        function.metrics.code_reloaded.inc();
        tracing::debug!(function = %function.name, "compiled code loaded back");
        Ok(code)
    }

    /// Drops from memory the compiled code of functions idle for `code_idle` with no instances,
    /// least recently used first, until the code in memory fits `code_memory`. Functions with
    /// `min_instances` keep theirs.
    fn evict_idle_code(&self) -> usize {
        let mut total = self.metrics.code_bytes.get().max(0) as u64;
        if total <= self.code_memory {
            return 0;
        }
        let now = crate::time::now_ms();
        let idle_ms = self.code_idle.as_millis() as u64;
        let every = self.every_version();
        let mut idle: Vec<Arc<Function>> = every
            .iter()
            .filter(|f| {
                f.config.limits.min_instances == 0
                    && now.saturating_sub(f.last_used_ms()) >= idle_ms
                    && f.pool.counts() == (0, 0)
            })
            .cloned()
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
            total = total.saturating_sub(f.code_bytes() as u64);
            self.metrics.code_bytes.sub(f.code_bytes() as i64);
            f.metrics.code_evicted.inc();
            let shared_digest = every
                .iter()
                .any(|g| g.digest == f.digest && g.loaded_code().is_some());
            if !shared_digest {
                self.components.forget(&f.digest);
            }
            tracing::debug!(function = %f.name, bytes = f.code_bytes(), "evicted idle compiled code");
            evicted += 1;
        }
        evicted
    }

    /// Accounts for a function version leaving (deleted or replaced).
    fn retire(&self, function: &Function) {
        function.pool.drain();
        if function.evict_code() {
            self.metrics.code_bytes.sub(function.code_bytes() as i64);
        }
    }

    /// Pre-links compiled code with the linkers of the engine that compiled it. Baseline code is
    /// also queued to be compiled again with Cranelift (once per digest).
    fn link(self: &Arc<Self>, digest: &str, compiled: &Compiled) -> Result<Code, DeployError> {
        let code = self.linkers_for(compiled).link(compiled)?;
        if self.components.is_baseline(compiled) {
            self.optimize_later(digest);
        }
        Ok(code)
    }

    fn linkers_for(&self, compiled: &Compiled) -> &Linkers {
        match &self.baseline_linkers {
            Some(baseline) if self.components.is_baseline(compiled) => baseline,
            _ => &self.linkers,
        }
    }

    /// Compiles the baseline code of `digest` again with Cranelift on a thread of its own (at a
    /// low priority, see `compile::Components::optimize`), then moves every function running it
    /// onto the optimized code.
    fn optimize_later(self: &Arc<Self>, digest: &str) {
        if !self.optimizing.lock().unwrap().insert(digest.to_string()) {
            return;
        }
        let (inner, digest) = (Arc::downgrade(self), digest.to_string());
        let spawned = std::thread::Builder::new()
            .name("wafer-optimize".into())
            .spawn(move || {
                let started = Instant::now();
                let Some(compiled) = inner.upgrade().map(|inner| inner.components.optimize(&digest)) else {
                    return;
                };
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                match compiled {
                    Ok(compiled) => {
                        inner.move_to_optimized(&digest, &compiled, Some(started.elapsed()));
                        inner.optimizing.lock().unwrap().remove(&digest);
                    }
                    // Left in `optimizing`: a compile that failed once fails again, so it is
                    // not retried before a restart.
                    Err(e) => {
                        tracing::warn!(digest, error = %e, "optimizing baseline code failed; it keeps serving");
                        for f in inner.every_version().iter().filter(|f| f.digest == digest) {
                            f.logs.push(
                                Stream::Wafer,
                                format!("compiling the optimized code failed, so the function keeps running its baseline (Winch) code: {e}"),
                            );
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a thread to optimize code; it stays on the baseline tier");
        }
    }

    /// Moves every version running the baseline code of `digest` onto its optimized code: new
    /// calls and instances use it, and the baseline instances are dropped as they go idle.
    fn move_to_optimized(&self, digest: &str, compiled: &Compiled, took: Option<Duration>) {
        let code = match self.linkers.link(compiled) {
            Ok(code) => code,
            Err(e) => {
                tracing::warn!(digest, error = %e, "optimized code failed to link");
                return;
            }
        };
        let bytes = compiled.image_bytes();
        for f in self.every_version().iter().filter(|f| f.digest == digest) {
            let on_baseline = f
                .loaded_code()
                .is_some_and(|c| self.components.is_baseline_engine(c.engine()));
            if !on_baseline {
                continue;
            }
            let before = f.code_bytes();
            if f.replace_code(code.clone(), bytes) {
                self.metrics.code_bytes.add(bytes as i64 - before as i64);
                let after = took.map_or(String::new(), |took| {
                    format!(
                        " after {:.1} s of compiling in the background",
                        took.as_secs_f64()
                    )
                });
                f.logs.push(
                    Stream::Wafer,
                    format!("optimized code (Cranelift) is ready{after}; new instances run it"),
                );
            }
        }
    }

    /// Where tiering is on: moves any version still on baseline code whose optimized code is
    /// ready (its code was loaded back while the optimized code arrived), and drops baseline
    /// instances that went idle after their function moved.
    fn finish_moves(&self) {
        if self.baseline_linkers.is_none() {
            return;
        }
        for f in self.every_version() {
            f.pool.sweep();
            let on_baseline = f
                .loaded_code()
                .is_some_and(|c| self.components.is_baseline_engine(c.engine()));
            if on_baseline && let Some(optimized) = self.components.optimized(&f.digest) {
                self.move_to_optimized(&f.digest, &optimized, None);
            }
        }
    }

    /// Checks that a deployment fits this worker. Blocking (it may load code from disk).
    fn check(&self, deployment: &Deployment) -> Result<Compiled, DeployError> {
        let limits = &deployment.config.limits;
        if limits.memory > self.engine_config.max_memory {
            return Err(DeployError::Limits(format!(
                "memory limit {} bytes is above this worker's maximum of {} bytes",
                limits.memory, self.engine_config.max_memory
            )));
        }
        let (_, max_instances) = self.capacity.instances();
        if limits.concurrency > max_instances {
            return Err(DeployError::Limits(format!(
                "concurrency {} is above this worker's maximum of {max_instances} instances",
                limits.concurrency
            )));
        }
        let compiled = self.components.load(&deployment.digest)?;
        if let Some(pages) = compiled.initial_memory_pages() {
            let bytes = pages.saturating_mul(64 << 10);
            if bytes > limits.memory {
                return Err(DeployError::Limits(format!(
                    "the component needs {bytes} bytes of memory at start, above the function's memory limit of {} bytes",
                    limits.memory
                )));
            }
        }
        Ok(compiled)
    }

    /// Starts serving a version: new calls go to it, calls running on the old one finish there.
    /// Blocking.
    fn install(self: &Arc<Self>, deployment: Deployment) -> Result<(), DeployError> {
        let compiled = self.check(&deployment)?;
        let code = self.link(&deployment.digest, &compiled)?;
        let baseline = self.components.is_baseline(&compiled);
        let code_bytes = compiled.image_bytes();
        let name: Arc<str> = Arc::from(deployment.name.as_str());
        let version = deployment.version;
        let function = Arc::new(Function::new(
            deployment,
            code,
            code_bytes,
            self.logs.sink(&name),
            self.metrics.function(&name, version),
            self.capacity.clone(),
        ));
        self.metrics.code_bytes.add(code_bytes as i64);
        let mut replaced = None;
        {
            let mut entry = self.functions.entry(name).or_insert_with(|| Arc::from([]));
            let mut versions: Vec<Arc<Function>> = entry.iter().cloned().collect();
            match versions.iter().position(|f| f.version == version) {
                Some(at) => replaced = Some(std::mem::replace(&mut versions[at], function.clone())),
                None => versions.push(function.clone()),
            }
            versions.sort_by_key(|f| f.version);
            *entry = versions.into();
        }
        if let Some(old) = replaced {
            self.retire(&old);
        }
        if baseline {
            function.logs.push(
                Stream::Wafer,
                "serving on baseline code (Winch) while Cranelift compiles optimized code in the background".to_string(),
            );
        }
        function.top_up();
        Ok(())
    }

    /// Stops serving one version; whether it was served.
    fn retire_version(&self, name: &str, version: u64) -> bool {
        let mut retired = None;
        if let Some(mut entry) = self.functions.get_mut(name) {
            let mut versions: Vec<Arc<Function>> = entry.iter().cloned().collect();
            if let Some(at) = versions.iter().position(|f| f.version == version) {
                retired = Some(versions.remove(at));
                *entry = versions.into();
            }
        }
        match retired {
            Some(old) => {
                self.retire(&old);
                self.metrics.remove_version(name, version);
                true
            }
            None => false,
        }
    }

    /// Validates and compiles `component` (or finds it compiled already) and stores it. Blocking.
    fn prepare(self: &Arc<Self>, component: &[u8]) -> Result<String, DeployError> {
        let digest = compile::digest(component);
        // Bytes seen before are compiled already (in memory or on disk).
        if let Some(compiled) = self.components.cached(&digest) {
            self.link(&digest, &compiled)?;
            return Ok(digest);
        }
        let compiled = self.components.compile_first(component)?;
        self.linkers_for(&compiled).link(&compiled)?;
        self.components.store(&digest, component, &compiled)?;
        // Only now: the background compile reads the stored bytes.
        if self.components.is_baseline(&compiled) {
            self.optimize_later(&digest);
        }
        Ok(digest)
    }

    fn status(&self, name: &str) -> Option<FunctionStatus> {
        let versions = self.functions.get(name)?.clone();
        let f = versions.last()?;
        let (idle, busy) = versions.iter().fold((0, 0), |(idle, busy), v| {
            let (i, b) = v.pool.counts();
            (idle + i, busy + b)
        });
        Some(FunctionStatus {
            version: f.version,
            digest: f.digest.clone(),
            versions: versions.iter().map(|v| v.version).collect(),
            interface: f.interface.to_string(),
            code_loaded: versions.iter().any(|v| v.loaded_code().is_some()),
            compiler: f
                .loaded_code()
                .map(|code| self.components.compiler_name(code.engine()).to_string()),
            instances_idle: idle,
            instances_busy: busy,
            fresh_instance_per_call: f.pool.fresh_only(),
            cold_starts: f.metrics.cold_starts.get(),
            warm_starts: f.metrics.warm_starts.get(),
            invocations_ok: f.metrics.ok.get(),
            invocations_failed: f.metrics.failures(),
            last_call_ms: f.last_call_ms(),
        })
    }

    fn log_sink(&self, name: &str) -> Option<Arc<LogSink>> {
        self.functions
            .get(name)
            .and_then(|versions| versions.last().map(|f| f.logs.clone()))
            .or_else(|| self.logs.get(name))
    }
}

impl Backend for Worker {
    fn invoke(
        &self,
        function: &str,
        version: u64,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, InvokeError>> {
        let inner = self.inner.clone();
        let found = match self.inner.functions.get(function) {
            None => Err(InvokeError::NotFound(function.to_string())),
            Some(versions) => versions
                .iter()
                .find(|f| f.version == version)
                .cloned()
                .ok_or_else(|| InvokeError::NoVersion {
                    function: function.to_string(),
                    version,
                }),
        };
        let low = found.as_ref().is_ok_and(|f| f.standing.is_low());
        let call = async move {
            if inner.shutting_down.load(Ordering::Relaxed) {
                return Err(InvokeError::ShuttingDown);
            }
            let function = found?;
            function.touch();
            let code = inner.code_for(&function).await?;
            Ok(gather(function.invoke(code, request).await?).await)
        };
        if !low {
            return Box::pin(call);
        }
        // The whole call, and whatever it spawns (the rest of a body, a 0.3 instance), runs on
        // the low-priority threads; a caller that goes away leaves it to finish there.
        let running = self.inner.low_priority.spawn(call);
        let name = function.to_string();
        Box::pin(async move {
            running
                .await
                .unwrap_or_else(|_panic| Err(InvokeError::inside_wafer(&name)))
        })
    }

    fn prepare(&self, component: Bytes) -> BoxFuture<'static, Result<String, DeployError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.prepare(&component))
                .await
                .map_err(|e| DeployError::Internal(format!("compilation task failed: {e}")))?
        })
    }

    fn install(
        &self,
        deployment: Deployment,
    ) -> BoxFuture<'static, Result<Installed, DeployError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.install(deployment))
                .await
                .map_err(|e| DeployError::Internal(format!("install task failed: {e}")))??;
            Ok(Installed::default())
        })
    }

    fn retire(&self, function: &str, version: u64) -> BoxFuture<'static, bool> {
        Box::pin(std::future::ready(
            self.inner.retire_version(function, version),
        ))
    }

    fn remove(&self, function: &str) -> BoxFuture<'static, bool> {
        let removed = match self.inner.functions.remove(function) {
            Some((name, versions)) => {
                for old in versions.iter() {
                    self.inner.retire(old);
                    self.inner.metrics.remove_version(&name, old.version);
                }
                self.inner.logs.remove(&name);
                self.inner.metrics.remove(&name);
                true
            }
            None => false,
        };
        Box::pin(std::future::ready(removed))
    }

    fn status(&self, function: &str) -> BoxFuture<'static, Option<FunctionStatus>> {
        Box::pin(std::future::ready(self.inner.status(function)))
    }

    fn stats(&self, function: &str) -> BoxFuture<'static, Option<CallStats>> {
        let stats = self
            .inner
            .functions
            .contains_key(function)
            .then(|| self.inner.metrics.stats(function))
            .flatten();
        Box::pin(std::future::ready(stats))
    }

    fn logs(&self, function: &str, query: LogQuery) -> BoxFuture<'static, Option<LogStream>> {
        Box::pin(std::future::ready(
            self.inner
                .log_sink(function)
                .map(|sink| read_logs(&sink, query)),
        ))
    }

    fn retain(
        &self,
        live: HashSet<String>,
        grace: Duration,
    ) -> BoxFuture<'static, Result<usize, DeployError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                inner
                    .components
                    .retain(&live, grace)
                    .map_err(DeployError::io("failed to remove unused components"))
            })
            .await
            .map_err(|e| DeployError::Internal(format!("cleanup task failed: {e}")))?
        })
    }

    fn health(&self) -> BoxFuture<'static, WorkerHealth> {
        let (live, max) = self.inner.capacity.instances();
        Box::pin(std::future::ready(WorkerHealth {
            pooling: self.inner.pooling,
            instances_live: live,
            instances_max: max,
            functions: self.inner.functions.len(),
            shutting_down: self.inner.shutting_down.load(Ordering::Relaxed),
            workers: Vec::new(),
        }))
    }

    fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }
}

/// The last `query.tail` lines of a log and, when following, the lines written after them. The
/// follower subscribes before the backlog is read, so that no line falls between the two; it
/// holds no reference to the sink, so a deleted function's follow ends.
fn read_logs(sink: &LogSink, query: LogQuery) -> LogStream {
    let follow = query.follow.then(|| sink.subscribe());
    let backlog = sink.tail(query.tail);
    let backlog = futures::stream::iter(backlog.into_iter().map(LogEvent::Line));
    let live = futures::stream::unfold(follow, |rx| async move {
        let mut rx = rx?;
        let event = match rx.recv().await {
            Ok(line) => LogEvent::Line(line),
            Err(RecvError::Lagged(n)) => LogEvent::Skipped(n),
            Err(RecvError::Closed) => return None,
        };
        Some((event, Some(rx)))
    });
    backlog.chain(live).boxed()
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
async fn reap(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut freed_last_round = false;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = Instant::now();
        let functions = inner.every_version();
        let mut dropped = 0;
        for function in functions {
            let reaped = function.pool.reap(now);
            if reaped > 0 {
                tracing::debug!(function = %function.name, reaped, "dropped idle instances");
                dropped += reaped;
            }
            // Also retries a minimum that could not be reached (instance budget full).
            function.top_up();
        }
        let evicted = inner.evict_idle_code();
        inner.finish_moves();
        // Again on the next round: a wasi:http 0.3 instance's store is dropped by its driver
        // task a moment after the pool lets go of it.
        if dropped > 0 || evicted > 0 || freed_last_round {
            release_freed_heap();
        }
        freed_last_round = dropped > 0 || evicted > 0;
    }
}
