//! Event sources: each turns its events into function calls through the router and the worker:
//! HTTP requests, queue messages, and the slots of schedules.

pub mod amqp;
pub mod http;
pub mod schedule;
