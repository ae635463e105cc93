//! Live instances: one store each, with the function's component instantiated in it.
//!
//! The two kinds differ in how calls share them, which is why the pool keeps them apart:
//! - [`P2Instance`] (wasi:http 0.2, `incoming-handler`): lent to one call at a time, back to the
//!   pool when the call ends well;
//! - [`P3Instance`] (wasi:http 0.3, `handler`): a driver task that owns the store and takes many
//!   calls at once, shared by the pool and the calls on it.
//!
//! WASI 0.1 commands have no instance that outlives a call (see `function::cgi`).

mod p2;
mod p3;

pub(crate) use p2::{GuestResponse, P2Instance};
pub(crate) use p3::P3Instance;
