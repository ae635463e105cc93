//! Event sources: each turns its events into function calls through the router and the worker.

pub mod amqp;
pub mod http;
pub mod schedule;
