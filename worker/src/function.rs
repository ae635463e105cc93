//! One deployed function version: its configuration, its code (which can be evicted and loaded
//! back), its pool, logs and metrics; the one dispatch from a call to its call path; pre-warming
//! up to `min_instances`; and the bookkeeping every call path shares.
//!
//! The call paths, one per kind of code, each with the same steps (admit, take or start an
//! instance, run under the timeout, record the outcome, return or discard the instance):
//! - `p2`: wasi:http 0.2, an instance lent to one call, the call polled inline;
//! - `p3`: wasi:http 0.3, a call joining an instance that takes many at once;
//! - `cgi`: a WASI 0.1 command, a fresh instance per call.

mod cgi;
mod p2;
mod p3;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::Store;

use crate::backend::{Deployment, FunctionConfig, Request, Response};
use crate::code::Code;
use crate::error::InvokeError;
use crate::fair::Standing;
use crate::host::Host;
use crate::instance::{P2Instance, P3Instance};
use crate::limits::{CallClock, Capacity};
use crate::logs::{LogSink, Stream};
use crate::metrics::FunctionMetrics;
use crate::pool::Pool;

pub(crate) struct Function {
    pub(crate) name: Arc<str>,
    pub(crate) version: u64,
    pub(crate) digest: String,
    /// The pre-linked code; `None` once evicted after a long idle, until the next call loads it
    /// back from its on-disk artifact (see `worker`).
    code: Mutex<Option<Code>>,
    /// What the code exports (known also while it is evicted).
    pub(crate) interface: &'static str,
    /// Bytes of the code image while loaded (it changes when optimized code replaces baseline).
    code_bytes: AtomicUsize,
    /// Held while the code is being loaded back, so that concurrent calls load it once.
    pub(crate) loading: tokio::sync::Mutex<()>,
    /// Milliseconds since the Unix epoch when this version was installed.
    installed_ms: u64,
    pub(crate) config: FunctionConfig,
    pub(crate) logs: Arc<LogSink>,
    pub(crate) pool: Pool,
    pub(crate) metrics: FunctionMetrics,
    /// Milliseconds since the Unix epoch of the last call's start (0: never called).
    last_call_ms: AtomicU64,
    /// What its instances take from the worker.
    capacity: Arc<Capacity>,
    /// Whether its recent calls were hostile to their neighbours, which puts its calls on
    /// low-priority threads (see `fair`).
    pub(crate) standing: Arc<Standing>,
}

impl Function {
    pub(crate) fn new(
        deployment: Deployment,
        code: Code,
        code_bytes: usize,
        logs: Arc<LogSink>,
        metrics: FunctionMetrics,
        capacity: Arc<Capacity>,
    ) -> Function {
        let limits = deployment.config.limits.clone();
        let name: Arc<str> = Arc::from(deployment.name.as_str());
        let standing = Standing::new(name.clone(), logs.clone());
        Function {
            pool: Pool::new(
                limits,
                metrics.clone(),
                capacity.demand(),
                code.concurrent(),
            ),
            interface: code.interface(),
            code: Mutex::new(Some(code)),
            code_bytes: AtomicUsize::new(code_bytes),
            loading: tokio::sync::Mutex::new(()),
            installed_ms: crate::time::now_ms(),
            logs,
            name,
            version: deployment.version,
            digest: deployment.digest,
            config: deployment.config,
            metrics,
            last_call_ms: AtomicU64::new(0),
            capacity,
            standing,
        }
    }

    /// Runs one call on `code`, through the call path its kind takes. Resolves when the guest
    /// has set its response head; the body streams on while the guest writes it.
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        code: Code,
        request: Request,
    ) -> Result<Response, InvokeError> {
        match code {
            Code::P2(pre) => p2::invoke(self, &pre, request).await,
            Code::P3(pre) => p3::invoke(self, &pre, request).await,
            Code::Cgi(pre) => cgi::invoke(self, &pre, request).await,
        }
    }

    /// Notes that a call starts now.
    pub(crate) fn touch(&self) {
        self.last_call_ms
            .store(crate::time::now_ms(), Ordering::Relaxed);
    }

    /// When the function was last called (ms since the epoch), if ever.
    pub(crate) fn last_call_ms(&self) -> Option<u64> {
        let last = self.last_call_ms.load(Ordering::Relaxed);
        (last > 0).then_some(last)
    }

    /// When the function was last called, or installed if it never was (ms since the epoch).
    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_call_ms
            .load(Ordering::Relaxed)
            .max(self.installed_ms)
    }

    /// The code, if it is in memory.
    pub(crate) fn loaded_code(&self) -> Option<Code> {
        self.code.lock().unwrap().clone()
    }

    /// Puts code loaded back from disk in place.
    pub(crate) fn set_code(&self, code: Code, code_bytes: usize) {
        let mut held = self.code.lock().unwrap();
        *held = Some(code);
        self.code_bytes.store(code_bytes, Ordering::Relaxed);
    }

    /// Bytes of the code image while loaded.
    pub(crate) fn code_bytes(&self) -> usize {
        self.code_bytes.load(Ordering::Relaxed)
    }

    /// Replaces loaded code with the same code from another compiler (optimized code replacing
    /// baseline code): new instances start from it, and instances of the old code are dropped
    /// as they go idle. Returns false if the code was evicted meanwhile (it loads the best code
    /// there is when it is next needed).
    pub(crate) fn replace_code(&self, code: Code, code_bytes: usize) -> bool {
        let mut held = self.code.lock().unwrap();
        if held.is_none() {
            return false;
        }
        // The pool first: once the new code shows, no old idle instance does.
        self.pool.renew(code.engine().clone());
        *held = Some(code);
        self.code_bytes.store(code_bytes, Ordering::Relaxed);
        true
    }

    /// Drops the code from memory; returns whether it was loaded.
    pub(crate) fn evict_code(&self) -> bool {
        self.code.lock().unwrap().take().is_some()
    }

    /// A fresh store for one of the function's component instances.
    fn store(&self, engine: &wasmtime::Engine, clock: &CallClock) -> Store<Host> {
        Host::store(engine, &self.config, &self.logs, clock)
    }

    /// Tops the pool up to `min_instances` in the background, if it is short and no top-up is
    /// running. Pre-warming takes only free slots of the worker's budget: it never evicts.
    pub(crate) fn top_up(self: &Arc<Self>) {
        let code = match self.loaded_code() {
            Some(Code::Cgi(_)) | None => return,
            Some(code) => code,
        };
        let short = self.pool.start_top_up();
        if short == 0 {
            return;
        }
        let function = self.clone();
        tokio::spawn(async move {
            let _running = function.capacity.running();
            for _ in 0..short {
                let Some(slot) = function.capacity.try_take_slot() else {
                    tracing::debug!(function = %function.name, "instance budget full; min_instances not reached");
                    break;
                };
                if let Err(reason) = function.prewarm(&code, slot).await {
                    let note = format!("pre-warming an instance failed: {reason}");
                    function.logs.push(Stream::Wafer, note);
                    break;
                }
            }
            function.pool.topped_up();
        });
    }

    /// Starts one instance in `slot` and adds it to the pool, idle.
    async fn prewarm(&self, code: &Code, slot: crate::limits::Slot) -> Result<(), String> {
        match code {
            Code::P2(pre) => {
                let clock = self.capacity.clock(Some(self.standing.clone()));
                let started = Instant::now();
                let store = self.store(pre.engine(), &clock);
                let instance = P2Instance::start(pre, store, clock, slot, &self.metrics)
                    .await
                    .map_err(|e| crate::error::trap_reason(&e))?;
                self.metrics.instantiated(started.elapsed());
                self.pool.add_prewarmed(instance);
            }
            Code::P3(pre) => {
                let clock = self.capacity.clock(None);
                let store = self.store(pre.engine(), &clock);
                let instance = P3Instance::spawn(pre, store, clock, slot, &self.metrics);
                instance.started().await.map_err(|failure| {
                    failure
                        .into_error(&self.name, self.config.limits.memory)
                        .to_string()
                })?;
                self.pool.add_prewarmed_p3(instance);
            }
            Code::Cgi(_) => {}
        }
        Ok(())
    }

    /// Records a call that succeeded. One that ran long on the CPU has had its hostile marks
    /// already (see `fair::Standing`), and gets no good one.
    fn succeeded(&self, started: Instant, ran_long: bool) {
        self.metrics.succeeded(started.elapsed());
        if !ran_long {
            self.standing.record(false);
        }
    }

    /// Records a failed call in the metrics and the function's log.
    fn failed(&self, error: InvokeError, started: Instant) -> InvokeError {
        self.metrics.ran_and_failed(&error, started.elapsed());
        self.logs.push(Stream::Wafer, error.to_string());
        tracing::debug!(function = %self.name, error = %error, "call failed");
        self.standing.record(error.is_hostile());
        error
    }

    /// Records a call that failed before it ran (not admitted, code not loaded): in the
    /// metrics only, so that a flood of refused calls does not flood the function's log.
    pub(crate) fn refused(&self, error: InvokeError) -> InvokeError {
        self.metrics.failed(&error);
        error
    }

    fn timed_out(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.name.to_string(),
            timeout: self.config.limits.timeout,
        }
    }
}
