//! Per-function limits and the engine hooks that enforce them.
//!
//! Memory is enforced by [`Limiter`], a wasmtime `ResourceLimiter` installed in every store; time by
//! epoch interruption (the guest yields to tokio every tick, so a wall-clock `tokio::time::timeout`
//! can stop it even in a tight loop) plus that same timeout around host calls; concurrency by the
//! pool's semaphore (see [`crate::pool`]); CPU between long-running calls by [`Lanes`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{CallHook, UpdateDeadline};

/// The limits one function runs under. `Default` states wafer's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory one instance may grow to, in bytes.
    pub memory: u64,
    /// Wall-clock time one call may take, from instantiation to the end of the response body.
    pub timeout: Duration,
    /// Calls of this function that may run at once (for wasi:http 0.2, also the most instances).
    pub concurrency: u32,
    /// Most live instances of this function; `None`: as many as `concurrency` needs.
    pub max_instances: Option<u32>,
    /// Calls one wasi:http 0.3 instance takes at once (0.2 instances always take one).
    pub instance_concurrency: u32,
    /// Calls that may wait for a free slot beyond `concurrency`; more are refused with 429.
    pub max_queued: u32,
    /// Calls one instance serves before it is dropped; 1 means a fresh instance per call.
    pub reuse: u32,
    /// How long an unused warm instance is kept before it is dropped (scale to zero).
    pub idle_timeout: Duration,
    /// Instances kept live even when idle, pre-warmed at deploy and after a restart (Lambda's
    /// provisioned concurrency); at most `concurrency`.
    pub min_instances: u32,
    /// Bytes of stdout plus stderr kept from one call; the rest is dropped with a marker line.
    pub log_bytes_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 128 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 16,
            max_instances: None,
            instance_concurrency: 16,
            max_queued: 64,
            reuse: 1000,
            idle_timeout: Duration::from_secs(60),
            min_instances: 0,
            log_bytes_per_call: 1 << 20,
        }
    }
}

/// Epoch ticks a call may run on the CPU before it counts as long-running (a tick is
/// [`crate::engine::EPOCH_TICK`]).
const SHORT_CALL_TICKS: u32 = 10;

/// CPU lanes for long-running calls, worker-wide.
///
/// Every running guest yields to tokio at each epoch tick. That alone lets a guest spinning on
/// the CPU share its thread, but with as many spinners as cores a short call still waits behind
/// them for its turn. So a call that has run for [`SHORT_CALL_TICKS`] must hold a lane to go on,
/// and there is one lane fewer than there are cores: long calls take turns (FIFO, a tick each)
/// on the lanes, and the last core always has room for short calls and the gateway's I/O.
#[derive(Clone)]
pub(crate) struct Lanes(Arc<Semaphore>);

impl Lanes {
    pub(crate) fn new(lanes: usize) -> Lanes {
        Lanes(Arc::new(Semaphore::new(lanes.max(1))))
    }

    /// Lanes for this machine: one fewer than its cores, at least one.
    pub(crate) fn for_this_machine() -> Lanes {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Lanes::new(cores.saturating_sub(1))
    }

    /// A clock for one store.
    pub(crate) fn clock(&self) -> CallClock {
        CallClock(Arc::new(ClockState {
            lanes: self.0.clone(),
            ticks: AtomicU32::new(0),
            holding: AtomicBool::new(false),
            lane: Mutex::new(None),
        }))
    }
}

/// Counts the ticks one store's current call has run, and holds its lane once it is long.
#[derive(Clone)]
pub(crate) struct CallClock(Arc<ClockState>);

struct ClockState {
    lanes: Arc<Semaphore>,
    ticks: AtomicU32,
    /// Whether `lane` is (probably) set: checked without the lock on every host call.
    holding: AtomicBool,
    lane: Mutex<Option<OwnedSemaphorePermit>>,
}

impl ClockState {
    fn hold(&self, lane: OwnedSemaphorePermit) {
        *self.lane.lock().unwrap_or_else(|e| e.into_inner()) = Some(lane);
        self.holding.store(true, Ordering::Relaxed);
    }

    /// Runs on every host call: a plain load first, so calls without a lane pay no atomic swap.
    fn release(&self) {
        if self.holding.load(Ordering::Relaxed) && self.holding.swap(false, Ordering::Relaxed) {
            self.lane.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }
}

impl CallClock {
    /// Installs the clock's hooks in `store`. At every epoch tick the guest yields; once the call
    /// is long it also gives up its lane and queues for one again, so long calls take turns.
    /// Entering a host call gives the lane up too (a guest waiting on I/O does not keep a lane it
    /// is not using), and coming back takes one again, at once if one is free, else by waiting
    /// at the next epoch check.
    pub(crate) fn install<T: 'static>(&self, store: &mut wasmtime::Store<T>) {
        let state = self.0.clone();
        store.epoch_deadline_callback(move |_| {
            let ticks = state.ticks.fetch_add(1, Ordering::Relaxed) + 1;
            // `yield_now` defers the wake-up until tokio has run its other tasks and polled for
            // I/O; a plain self-wake would let the guest run again at once from the LIFO slot.
            if ticks < SHORT_CALL_TICKS {
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ));
            }
            let state = state.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    state.release();
                    tokio::task::yield_now().await;
                    if let Ok(lane) = state.lanes.clone().acquire_owned().await {
                        state.hold(lane);
                    }
                }),
            ))
        });
        let state = self.0.clone();
        store.call_hook(move |mut store, hook| {
            match hook {
                CallHook::CallingHost => state.release(),
                CallHook::ReturningFromHost
                    if state.ticks.load(Ordering::Relaxed) >= SHORT_CALL_TICKS
                        && !state.holding.load(Ordering::Relaxed) =>
                {
                    // A free lane is taken only if no long call is queued for one (tokio's
                    // semaphore hands released permits to waiters first).
                    match state.lanes.clone().try_acquire_owned() {
                        Ok(lane) => state.hold(lane),
                        Err(_) => store.set_epoch_deadline(0),
                    }
                }
                _ => {}
            }
            Ok(())
        });
        store.set_epoch_deadline(1);
    }

    /// Starts a new call on the store: a fresh short-call budget, no lane.
    pub(crate) fn restart(&self) {
        self.0.ticks.store(0, Ordering::Relaxed);
        self.0.release();
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
