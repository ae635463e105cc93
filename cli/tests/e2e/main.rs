//! End-to-end tests: the real `wafer` binary on port 0, real components, real HTTP.

mod cli;
mod clients;
mod console;
mod crash;
mod deploy;
mod errors;
mod functions;
mod hostile;
mod limits;
mod p3;
mod queue;
mod sandbox;
mod schedules;
mod support;
mod traces;
mod versions;
