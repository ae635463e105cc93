//! End-to-end tests: the real `wafer` binary on port 0, real components, real HTTP.

mod deploy;
mod errors;
mod functions;
mod limits;
mod queue;
mod sandbox;
mod support;
