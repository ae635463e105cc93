//! One wasi:http 0.2 instance: its store, its bindings, and serving one request on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::backend::Request;
use crate::host::{Host, body_error};
use crate::limits::{CallClock, Slot};
use crate::metrics::FunctionMetrics;

/// What the guest answered: a response head (its body still streaming) or a wasi:http error.
pub(crate) type GuestResponse = Result<hyper::Response<HyperOutgoingBody>, ErrorCode>;

pub(crate) struct P2Instance {
    store: Store<Host>,
    proxy: Proxy,
    /// Calls served so far, counting the one in progress.
    pub(crate) calls: u32,
    /// When the instance last went back to the pool.
    pub(crate) idle_since: Instant,
    /// Whether the current call has set its response; shared with the response callback.
    responded: Arc<AtomicBool>,
    clock: CallClock,
    /// Whether the last call ran on the CPU past the short-call budget.
    ran_long: bool,
    /// Where the instance reports how many calls it served when it is dropped.
    calls_served: prometheus::Histogram,
    _slot: Slot,
}

impl Drop for P2Instance {
    fn drop(&mut self) {
        self.calls_served.observe(f64::from(self.calls));
    }
}

impl P2Instance {
    /// Instantiates a pre-linked component in `store` (built with `clock` installed): a cold
    /// start, or a pre-warm.
    pub(crate) async fn start(
        pre: &ProxyPre<Host>,
        mut store: Store<Host>,
        clock: CallClock,
        slot: Slot,
        metrics: &FunctionMetrics,
    ) -> wasmtime::Result<P2Instance> {
        let proxy = pre.instantiate_async(&mut store).await?;
        Ok(P2Instance {
            store,
            proxy,
            calls: 0,
            idle_since: Instant::now(),
            responded: Arc::new(AtomicBool::new(false)),
            clock,
            ran_long: false,
            calls_served: metrics.instance_calls.clone(),
            _slot: slot,
        })
    }

    /// The engine its code was compiled by.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        self.store.engine()
    }

    /// Serves `request`. The response head goes to `respond` as soon as the guest sets it; this
    /// returns when the guest's handler returns (after it has written the body).
    pub(crate) async fn handle(
        &mut self,
        request: Request,
        respond: oneshot::Sender<GuestResponse>,
        log_budget: u64,
    ) -> wasmtime::Result<()> {
        self.calls += 1;
        self.responded.store(false, Ordering::Relaxed);
        self.store.data().output_budget.reset(log_budget);
        self.store.set_epoch_deadline(1);
        self.clock.restart();
        self.store.data_mut().carry_trace(request.headers());
        let request = request.map(|body| body.map_err(body_error));
        let mut http = self.store.data_mut().http();
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let responded = self.responded.clone();
        let outparam = http.new_response_outparam_from_callback(move |response| {
            responded.store(true, Ordering::Relaxed);
            if let Err(Ok(unwanted)) = respond.send(response) {
                // The caller went away (a client that hung up): drain the body so that the guest
                // can still finish its call, as it would on Lambda.
                tokio::spawn(async move {
                    let mut body = unwanted.into_body();
                    while let Some(Ok(_)) = body.frame().await {}
                });
            }
        })?;
        let result = self
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut self.store, request, outparam)
            .await;
        self.ran_long = self.clock.ran_long();
        // A warm instance waiting in the pool must not keep a CPU lane.
        self.clock.restart();
        result
    }

    /// Whether the last call ran on the CPU past the short-call budget.
    pub(crate) fn ran_long(&self) -> bool {
        self.ran_long
    }

    /// Whether the last call set a response.
    pub(crate) fn responded(&self) -> bool {
        self.responded.load(Ordering::Relaxed)
    }

    /// Whether the last failure was the store's memory limit.
    pub(crate) fn hit_memory_limit(&self) -> bool {
        self.store.data().hit_memory_limit()
    }
}
