//! Per-function limits and the engine hooks that enforce them.
//!
//! Memory is enforced by [`Limiter`], a wasmtime `ResourceLimiter` installed in every store; time by
//! epoch interruption (the guest yields to tokio every tick, so a wall-clock `tokio::time::timeout`
//! can stop it even in a tight loop) plus that same timeout around host calls; concurrency by the
//! pool's semaphore (see [`crate::pool`]).

use std::time::Duration;

/// The limits one function runs under. `Default` states wafer's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory: u64,
    /// Wall-clock time one call may take, from instantiation to the end of the response body.
    pub timeout: Duration,
    /// Calls of this function that may run at once (for wasi:http 0.2, also the most instances).
    pub concurrency: u32,
    /// Calls that may wait for a free slot beyond `concurrency`; more are refused with 429.
    pub max_queued: u32,
    /// Calls one instance serves before it is dropped; 1 means a fresh instance per call.
    pub reuse: u32,
    /// How long an unused warm instance is kept before it is dropped (scale to zero).
    pub idle_timeout: Duration,
    /// Bytes of stdout plus stderr kept from one call; the rest is dropped with a marker line.
    pub log_bytes_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 128 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 16,
            max_queued: 64,
            reuse: 1000,
            idle_timeout: Duration::from_secs(60),
            log_bytes_per_call: 1 << 20,
        }
    }
}

/// Enforces [`Limits::memory`] inside a store and remembers whether it did, so that a trap caused
/// by the limit is reported as "memory limit exceeded" rather than as a bare trap.
pub(crate) struct Limiter {
    memory: usize,
    pub(crate) hit_memory_limit: bool,
}

impl Limiter {
    pub(crate) fn new(memory: u64) -> Limiter {
        Limiter {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            hit_memory_limit: false,
        }
    }
}

/// Tables hold function references; a component that needs more than this many is hostile or
/// broken, and each element costs host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit_memory_limit = true;
            // Trapping (rather than letting `memory.grow` return -1) gives the caller a clear
            // error instead of whatever the guest's allocator does on failure.
            wasmtime::bail!(
                "memory limit exceeded: tried to grow linear memory to {desired} bytes, limit is {} bytes",
                self.memory
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
