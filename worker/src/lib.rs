//! wafer's worker: runs WebAssembly components exporting `wasi:http/incoming-handler` (0.2) or
//! `wasi:http/handler` (0.3), and WASI 0.1 commands CGI-style, from pooled, limited, warm
//! instances.
//!
//! It sits at the end of the data path, event -> gateway -> router -> **worker -> instance pool**
//! -> response. The gateway reaches it only through [`Backend`]: "invoke this function with this
//! request, get a response or an [`InvokeError`]", plus the control calls to deploy and remove
//! code. [`Worker`] is the in-process implementation; one on another host would implement the
//! same trait.
//!
//! Modules, in the order a call meets them (each imports only modules below it; a module's own
//! children, like `function/p2.rs`, count as part of it):
//! - `backend`: the contract, [`Backend`], and the data that crosses it;
//! - `worker`: [`Worker`], the in-process backend: installs versions, loads evicted code back,
//!   reaps idle instances;
//! - `gather`: a small response's head and body leave in one write;
//! - `function`: one deployed version, and the one dispatch to its call path: `function/p2.rs`
//!   (wasi:http 0.2), `function/p3.rs` (wasi:http 0.3), `function/cgi.rs` (WASI 0.1);
//! - `code`: what compiled code is (0.2, 0.3 or a command) and linking it;
//! - `pool`: admission, warm instances, and the instance lifecycle (read its docs);
//! - `instance`: one live store, `instance/p2.rs` lent to one call, `instance/p3.rs` shared;
//! - `cgi`: the CGI protocol (environment in, headers and body out), with no runtime in it;
//! - `host`: what a guest sees (store state, WASI sandbox), and building each kind of store;
//! - `outbound`: which hosts a guest's outbound HTTP may reach;
//! - `limits`: per-function limits, the worker's instance budget and CPU lanes, and the hooks
//!   that enforce them;
//! - `fair`: each function's standing, and the low-priority threads where the calls of one
//!   that keeps trapping, timing out or burning CPU run, behind everyone else's;
//! - [`compile`]: code by digest, validated, compiled once, cached on disk ([`disk`]: crash-safe
//!   files);
//! - [`engine`]: the one wasmtime `Engine` (pooling allocator, epoch ticker);
//! - `metrics`: Prometheus series; [`stats`]: each function's last hour of calls, for the
//!   console; [`logs`]: guest stdout/stderr, bounded; `error`: the typed
//!   errors and the one classification of guest failures; [`time`]: wall-clock milliseconds.
//!
//! Rules that keep this a one-way graph (checked by `cli/tests/module_graph.rs`): nothing
//! imports the crate root, which only declares and re-exports; a module never imports one
//! above it; a leaf never names `Function` or `Worker`.

mod backend;
mod cgi;
mod code;
pub mod compile;
pub mod disk;
pub mod engine;
mod error;
mod fair;
mod function;
mod gather;
mod host;
mod instance;
mod limits;
pub mod logs;
mod metrics;
mod outbound;
mod pool;
pub mod stats;
pub mod time;
mod worker;

pub use backend::{
    Backend, Body, BoxError, CallStart, Deployment, FunctionConfig, FunctionStatus, Installed,
    LogEvent, LogQuery, LogStream, MemberHealth, Request, Response, WorkerHealth, empty_body,
    full_body,
};
pub use engine::{Compiler, EngineConfig};
pub use error::{DeployError, InvokeError, WorkerError};
pub use limits::Limits;
pub use outbound::{AllowedHosts, TRACE_HEADERS};
pub use worker::{Worker, WorkerConfig};
