//! wafer's gateway: HTTP in, function calls out, and the admin API.
//!
//! On the data path, event -> **gateway -> router** -> worker -> instance pool -> response: a
//! trigger ([`trigger::http`] for HTTP requests, [`trigger::amqp`] for queue messages) turns an
//! event into a call, the [`router`] picks the function by path, and the call goes to a worker
//! through [`wafer_worker::Backend`], the one interface between the two.
//!
//! Modules, from the outside in (each imports only modules below it; a module's own children,
//! like `trigger/amqp/delivery.rs`, count as part of it, while `trigger` is a folder of two):
//! - [`server`]: the axum app, serving it with graceful shutdown and client limits, and the
//!   fallback route that sends function traffic to [`trigger::http`];
//! - [`admin`]: the admin API (`/_wafer/v1/...`, bearer token), health/metrics, and its
//!   OpenAPI document ([`admin::document`]);
//! - `console`: the web console at `/_wafer/` (embedded assets; it reads the admin API);
//! - [`state`]: the shared state every handler gets ([`Gateway`]) and its settings;
//! - [`functions`]: deployed functions, deploys and deletes, the route table;
//! - [`store`]: where records live and the commit point ([`store::DiskStore`]: the data
//!   directory; a cluster's is in PostgreSQL);
//! - [`record`]: a function's versions, traffic split and tags, and the rules for changing them;
//! - [`manifest`]: `wafer.toml` parsing and validation into the worker's types;
//! - [`trigger`]: event sources: [`trigger::http`] (requests), [`trigger::amqp`] (RabbitMQ
//!   queues; its `config` is the `[[queue]]` section, its shape, defaults and rules),
//!   [`trigger::schedule`] (cron schedules, `[[schedule]]`, slots claimed in a ledger);
//! - [`trace`]: OpenTelemetry spans of calls, and the trace context they carry on;
//! - [`error`]: errors and their HTTP statuses, in one place;
//! - [`router`]: path -> function, longest prefix, lock-free, and which version takes a call;
//! - [`units`]: sizes and durations as written.
//!
//! The crate root only declares and re-exports (checked by `cli/tests/module_graph.rs`).

pub mod admin;
mod console;
pub mod error;
pub mod functions;
pub mod manifest;
pub mod record;
pub mod router;
pub mod server;
pub mod state;
pub mod store;
pub mod trace;
pub mod trigger;
pub mod units;

pub use error::{ApiError, OpenError};
pub use functions::Functions;
pub use manifest::Manifest;
pub use record::Record;
pub use server::serve;
pub use state::{ConnectionLimits, Gateway, GatewayConfig};
pub use store::{DiskStore, Store};
