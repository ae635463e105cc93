//! wafer as a cluster, tried as a user would: `wafer gateway` and `wafer worker` processes on
//! distinct loopback addresses, a real PostgreSQL (a database per test) and RabbitMQ, real
//! components, the CLI and plain HTTP.

#[allow(dead_code, unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod e2e;
mod support;

mod calls;
mod failures;
