//! wafer on many hosts: any number of gateways and workers as separate processes, sharing one
//! PostgreSQL (desired state, membership) and the RabbitMQ of their queue triggers; calls go
//! from a gateway straight to a worker over HTTP. `wafer up` uses none of this.
//!
//! Modules, from the outside in (each imports only modules below it):
//! - `node`: a worker process (`wafer worker`): the worker API, following the store, draining;
//! - `remote`: a gateway's backend (`wafer gateway`): routing calls to workers, deploys through
//!   the store;
//! - `connections`: keep-alive HTTP connections from a gateway to its workers;
//! - `membership`: worker leases, and a gateway's view of the live workers;
//! - `store`: records, components and readiness in PostgreSQL;
//! - `wire`: the worker API's paths, headers and error encoding, shared by both sides;
//! - `db`: connecting, migrations, notification channels.

pub mod connections;
pub mod db;
pub mod membership;
pub mod node;
pub mod remote;
pub mod store;
pub mod wire;

pub use db::{DbError, connect};
pub use membership::{Lease, Member, Members};
pub use node::{Node, NodeConfig, NodeError};
pub use remote::{RemoteBackend, RemoteConfig};
pub use store::PgStore;
