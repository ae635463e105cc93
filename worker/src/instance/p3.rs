//! One wasi:http 0.3 instance (a component exporting `wasi:http/handler`): it runs its store's
//! event loop in a task of its own and serves several calls at once.
//!
//! A 0.2 handler owns its instance for the whole call, so the pool lends an instance to one call
//! at a time. A 0.3 handler is an async export: while one call waits (on a timer, on outbound
//! HTTP, on its request body) the same instance can take another. So a 0.3 instance is a driver
//! task that owns the `Store` and runs `run_concurrent`, and a [`P3Instance`] handle that the pool
//! and the calls on it share. Calls reach the driver over a channel; each gets its response (or
//! why there is none) on a oneshot. Requests and responses are converted by wasmtime-wasi-http's
//! own `Prepared`, the code `wasmtime serve` runs, so bodies stream both ways.
//!
//! A handle exists from the moment an instance is needed: the driver instantiates, and calls
//! that arrive meanwhile queue on the handle instead of each starting an instance of their own.
//! The instance lives as long as someone holds its handle: the pool while it is warm, and every
//! call on it until its response body has been sent. When the last handle goes, the driver drops
//! the store, also if a guest is spinning inside it (the stop signal is polled outside the event
//! loop, which a busy guest blocks). A trap ends the instance and every call on it; a call that
//! times out takes its instance out of the pool, so no new call lands on it.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot, watch};
use wasmtime::component::Accessor;
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{Prepared, Proxy};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use crate::backend::Request;
use crate::error::{InvokeError, trap_reason};
use crate::host::{Host, body_error};
use crate::limits::{CallClock, Slot};
use crate::metrics::FunctionMetrics;

/// What the guest answered: a response head, its body streaming from the instance.
pub(crate) type P3Response = http::Response<wasmtime_wasi_http::WasiBody>;

/// Why a call on a 0.3 instance produced no response.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// The handler returned a wasi:http `error-code`; the instance is fine.
    Guest(String),
    /// The instance trapped (this call or another one on it): it is gone.
    Trap(String),
    /// The instance hit the function's memory limit: it is gone.
    MemoryLimit,
    /// Instantiation failed (the component's start code trapped, or a pool limit refused it).
    Instantiate(String),
    /// The instance stopped without saying why (its driver ended).
    Stopped,
}

impl Failure {
    /// The error the call that saw this failure answers with.
    pub(crate) fn into_error(self, function: &str, memory_limit: u64) -> InvokeError {
        let function = function.to_string();
        match self {
            Failure::Guest(reason) => InvokeError::Guest { function, reason },
            Failure::Trap(reason) => InvokeError::Trap { function, reason },
            Failure::MemoryLimit => InvokeError::MemoryLimit {
                function,
                limit: memory_limit,
            },
            Failure::Instantiate(reason) => InvokeError::Instantiate { function, reason },
            Failure::Stopped => InvokeError::Trap {
                function,
                reason: "the instance stopped (another call on it failed or timed out)".to_string(),
            },
        }
    }
}

/// Where an instance is in its life, as its driver publishes it.
#[derive(Clone, Debug)]
enum State {
    Starting,
    Running,
    Ended(Failure),
}

/// One call handed to the driver.
struct Job {
    request: Request,
    log_budget: u64,
    respond: oneshot::Sender<Result<P3Response, Failure>>,
}

/// A live 0.3 instance, shared by the pool and the calls running on it.
pub(crate) struct P3Instance {
    jobs: mpsc::UnboundedSender<Job>,
    state: watch::Receiver<State>,
    /// The engine its code was compiled by.
    engine: wasmtime::Engine,
    /// Dropped with the last handle: tells the driver to drop the store.
    _stop: oneshot::Sender<()>,
}

impl P3Instance {
    /// Starts instantiating a pre-linked component in `store` (built with `clock` installed): a
    /// cold start, or a pre-warm. Returns at once; calls made before instantiation is done wait
    /// for it.
    pub(crate) fn spawn(
        pre: &ServicePre<Host>,
        store: Store<Host>,
        clock: CallClock,
        slot: Slot,
        metrics: &FunctionMetrics,
    ) -> Arc<P3Instance> {
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(State::Starting);
        let (stop, stop_rx) = oneshot::channel();
        let engine = store.engine().clone();
        let driver = Driver {
            store,
            clock,
            calls_served: metrics.instance_calls.clone(),
            metrics: metrics.clone(),
            _slot: slot,
        };
        tokio::spawn(driver.run(pre.clone(), jobs_rx, stop_rx, state_tx));
        Arc::new(P3Instance {
            jobs,
            state,
            engine,
            _stop: stop,
        })
    }

    /// The engine its code was compiled by.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Waits until the instance has started; the error says why it could not.
    pub(crate) async fn started(&self) -> Result<(), Failure> {
        let mut state = self.state.clone();
        let state = state
            .wait_for(|s| !matches!(s, State::Starting))
            .await
            .map(|s| s.clone());
        match state {
            Ok(State::Ended(failure)) => Err(failure),
            Ok(_) => Ok(()),
            Err(_) => Err(Failure::Stopped),
        }
    }

    /// Runs one call on this instance. Resolves when the guest has returned its response head.
    pub(crate) async fn call(
        &self,
        request: Request,
        log_budget: u64,
    ) -> Result<P3Response, Failure> {
        let (respond, response) = oneshot::channel();
        let job = Job {
            request,
            log_budget,
            respond,
        };
        if self.jobs.send(job).is_err() {
            return Err(self.why_stopped().await);
        }
        match response.await {
            Ok(result) => result,
            Err(_) => Err(self.why_stopped().await),
        }
    }

    /// Why the driver dropped a call: the error it ended with, which it publishes right after
    /// its event loop (or instantiation) returns.
    async fn why_stopped(&self) -> Failure {
        let mut state = self.state.clone();
        match state.wait_for(|s| matches!(s, State::Ended(_))).await {
            Ok(state) => match &*state {
                State::Ended(failure) => failure.clone(),
                _ => Failure::Stopped,
            },
            Err(_) => Failure::Stopped,
        }
    }
}

/// The task that owns a 0.3 instance's store.
struct Driver {
    store: Store<Host>,
    clock: CallClock,
    calls_served: prometheus::Histogram,
    metrics: FunctionMetrics,
    _slot: Slot,
}

impl Driver {
    async fn run(
        mut self,
        pre: ServicePre<Host>,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        stop: oneshot::Receiver<()>,
        state: watch::Sender<State>,
    ) {
        let started = std::time::Instant::now();
        let proxy = match pre.instantiate_async(&mut self.store).await {
            Ok(service) => Proxy::P3(service),
            Err(error) => {
                state.send_replace(State::Ended(Failure::Instantiate(trap_reason(&error))));
                return;
            }
        };
        self.metrics.instantiated(started.elapsed());
        state.send_replace(State::Running);
        let proxy = &proxy;
        let clock = &self.clock;
        let mut served = 0u32;
        let served_ref = &mut served;
        let event_loop = self.store.run_concurrent(async |accessor| {
            let mut calls = FuturesUnordered::new();
            loop {
                tokio::select! {
                    job = jobs.recv() => {
                        let Some(job) = job else { return Ok(()) };
                        if calls.is_empty() {
                            // The instance was idle: a fresh short-call budget, no lane.
                            clock.restart();
                        }
                        *served_ref += 1;
                        calls.push(call(accessor, proxy, job));
                    }
                    Some(result) = calls.next(), if !calls.is_empty() => result?,
                }
            }
        });
        // The stop signal is polled here, outside the event loop: a guest spinning in it keeps
        // the loop from seeing its job channel close, but not this select.
        let ended = tokio::select! {
            ended = event_loop => ended.and_then(|inner| inner),
            _ = stop => Ok(()),
        };
        self.calls_served.observe(f64::from(served));
        if let Err(error) = ended {
            let failure = if self.store.data().hit_memory_limit() {
                Failure::MemoryLimit
            } else {
                Failure::Trap(trap_reason(&error))
            };
            tracing::debug!(error = ?error, "wasi:http 0.3 instance ended");
            state.send_replace(State::Ended(failure));
        }
    }
}

/// Runs one call inside the store's event loop and sends its outcome. An error returned here is
/// one that poisons the instance (a trap) and ends the event loop.
async fn call(accessor: &Accessor<Host>, proxy: &Proxy, job: Job) -> wasmtime::Result<()> {
    let Job {
        request,
        log_budget,
        respond,
    } = job;
    let request = request.map(|body| body.map_err(body_error).boxed_unsync());
    let (tx, rx) = futures::channel::oneshot::channel();
    let prepared = accessor.with(|mut access| {
        access.data_mut().output_budget.reset(log_budget);
        let mut store = access.as_context_mut();
        store.set_epoch_deadline(1);
        Prepared::new(store, proxy, request, <Host as WasiHttpView>::http, tx)
    });
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            let _ = respond.send(Err(Failure::Trap(trap_reason(&e))));
            return Ok(());
        }
    };
    // Time limits are the caller's (it stops waiting) and the handle's (dropping the last one
    // drops the store), so the call itself never expires here.
    let ran = prepared.run(accessor, std::future::pending()).await;
    let outcome = match rx.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => match error.downcast_ref::<ErrorCode>() {
            Some(code) => Err(Failure::Guest(format!("{code:?}"))),
            None => {
                let failure = if accessor.with(|mut a| a.data_mut().hit_memory_limit()) {
                    Failure::MemoryLimit
                } else {
                    Failure::Trap(trap_reason(&error))
                };
                let _ = respond.send(Err(failure));
                // The guest trapped: the instance must not run anything else.
                return Err(error);
            }
        },
        Err(_) => Err(Failure::Stopped),
    };
    let _ = respond.send(outcome);
    ran.map(|_sent| ())
}
