//! What a guest sees of the host: the state of its store, its WASI sandbox, and the one place
//! each kind of store is built, with the memory limit and the CPU clock installed.
//!
//! Every instance gets all of WASI 0.2 (components built by Rust std, componentize-js and
//! componentize-py import `wasi:cli/*`, `wasi:filesystem/*` and `wasi:sockets/*` even when they
//! only serve HTTP) but the sandbox leaves those imports empty: no preopened directories, no
//! sockets, no name lookups, no host environment. The guest's environment holds exactly the
//! function's configured variables; outbound HTTP reaches only the hosts the function allows
//! (see [`crate::outbound`]).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::backend::{BoxError, FunctionConfig};
use crate::limits::{CallClock, Limiter};
use crate::logs::{GuestOutput, LogSink, OutputBudget, Stream};
use crate::outbound::OutboundPolicy;

/// The `T` of a component's `Store<T>`: one instance's host-side state.
pub(crate) struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    pub(crate) limiter: Limiter,
    /// Shared with the instance's stdout/stderr; reset at the start of every call.
    pub(crate) output_budget: Arc<OutputBudget>,
}

/// Live resources (fields, streams, requests, pollables...) one instance may hold. Each is
/// host memory the guest's memory limit does not count, so a guest that makes them and never
/// drops them is stopped here (the call traps) rather than at wasmtime's default of a million.
/// Real components hold tens to hundreds (a wasi:http call needs about ten).
const MAX_RESOURCES: usize = 4096;
/// The largest header block a guest may build or receive, so that [`MAX_RESOURCES`] of them
/// bound what an instance can hold (256 MiB at worst). Requests from clients are held to the
/// same 64 KiB by the gateway.
const MAX_FIELDS_BYTES: usize = 64 << 10;

impl Host {
    /// Takes the trace context of the call now starting, for the guest's outbound requests.
    pub(crate) fn carry_trace(&mut self, headers: &http::HeaderMap) {
        self.outbound.carry_trace(headers);
    }

    /// A fresh store for one instance of a function's component.
    pub(crate) fn store(
        engine: &Engine,
        config: &FunctionConfig,
        logs: &Arc<LogSink>,
        clock: &CallClock,
    ) -> Store<Host> {
        let output_budget = Arc::new(OutputBudget::default());
        let output = |stream| GuestOutput {
            sink: logs.clone(),
            stream,
            budget: output_budget.clone(),
        };
        let mut wasi = sandbox();
        wasi.envs(&config.env)
            .stdout(output(Stream::Stdout))
            .stderr(output(Stream::Stderr));
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let host = Host {
            table,
            wasi: wasi.build(),
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(MAX_FIELDS_BYTES);
                http
            },
            outbound: OutboundPolicy::new(config.allowed_outbound_hosts.clone()),
            limiter: Limiter::new(config.limits.memory),
            output_budget,
        };
        let mut store = Store::new(engine, host);
        store.limiter(|host| &mut host.limiter);
        clock.install(&mut store);
        store
    }

    /// Whether the store's last failure was its memory limit.
    pub(crate) fn hit_memory_limit(&self) -> bool {
        self.limiter.hit_memory_limit
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The `T` of a WASI 0.1 module's `Store<T>` (a CGI call).
pub(crate) struct CgiHost {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

impl CgiHost {
    /// A fresh store for one CGI call; `io` adds the call's environment and stdio to the
    /// sandboxed WASI context.
    pub(crate) fn store(
        engine: &Engine,
        memory: u64,
        clock: &CallClock,
        io: impl FnOnce(&mut WasiCtxBuilder),
    ) -> Store<CgiHost> {
        let mut wasi = sandbox();
        io(&mut wasi);
        let host = CgiHost {
            wasi: wasi.build_p1(),
            limiter: Limiter::new(memory),
        };
        let mut store = Store::new(engine, host);
        store.limiter(|host| &mut host.limiter);
        clock.install(&mut store);
        store
    }

    /// Adds WASI 0.1 to the linker modules are instantiated from.
    pub(crate) fn add_to_linker(linker: &mut wasmtime::Linker<CgiHost>) -> wasmtime::Result<()> {
        wasmtime_wasi::p1::add_to_linker_async(linker, |host: &mut CgiHost| &mut host.wasi)
    }

    /// Whether the store's last failure was its memory limit.
    pub(crate) fn hit_memory_limit(&self) -> bool {
        self.limiter.hit_memory_limit
    }
}

/// A WASI context with nothing of the host in it: no sockets, no name lookups, no files, no
/// environment (the callers add the function's own).
fn sandbox() -> WasiCtxBuilder {
    let mut wasi = WasiCtx::builder();
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    wasi
}

/// Maps a request body error (a client that went away, a body over the gateway's limit) to the
/// wasi:http error the guest sees when reading.
pub(crate) fn body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.is::<http_body_util::LengthLimitError>() {
        wasmtime_wasi_http::Error::HttpRequestBodySize(None)
    } else {
        wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
    }
}
