//! Limits, per function and worker-wide, and the hooks that enforce them.
//!
//! Memory is enforced by [`Limiter`], a wasmtime `ResourceLimiter` installed in every store; time by
//! epoch interruption (the guest yields to tokio every tick, so a wall-clock `tokio::time::timeout`
//! can stop it even in a tight loop) plus that same timeout around host calls; concurrency by the
//! pool's semaphore (see `pool`); CPU between long-running calls by [`Lanes`] (and between
//! functions by `fair`, whose standing the clock marks for CPU a call holds); live instances
//! across all functions by [`Slots`]. [`Capacity`] is what a call takes from the worker as a
//! whole: a slot, a CPU clock, and the epoch ticker's fast pace.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{CallHook, UpdateDeadline};

use crate::engine::{Demand, Running};
use crate::error::InvokeError;
use crate::fair::Standing;

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

/// What a worker's calls share: the instance budget, the CPU lanes and the epoch ticker's demand.
pub(crate) struct Capacity {
    slots: Arc<Slots>,
    lanes: Lanes,
    demand: Demand,
    /// Drops the longest-idle warm instance of any function, to free a slot; installed by the
    /// worker, which knows every function.
    evict: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Capacity {
    pub(crate) fn new(
        max_instances: u32,
        lanes: Lanes,
        demand: Demand,
        evict: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Capacity {
        Capacity {
            slots: Slots::new(max_instances),
            lanes,
            demand,
            evict: Box::new(evict),
        }
    }

    /// Takes a slot of the instance budget, evicting the longest-idle warm instance of any
    /// function if they are all taken.
    pub(crate) fn take_slot(&self, function: &str) -> Result<Slot, InvokeError> {
        if let Some(slot) = self.slots.try_take() {
            return Ok(slot);
        }
        (self.evict)();
        self.slots
            .try_take()
            .ok_or_else(|| InvokeError::NoCapacity {
                function: function.to_string(),
                slots: self.slots.max(),
            })
    }

    /// Takes a slot only if one is free (pre-warming never evicts).
    pub(crate) fn try_take_slot(&self) -> Option<Slot> {
        self.slots.try_take()
    }

    /// A clock for one new store, marking `standing` for CPU held past the short-call budget.
    pub(crate) fn clock(&self, standing: Option<Arc<Standing>>) -> CallClock {
        self.lanes.clock(standing)
    }

    /// Keeps the epoch ticking fast while the guard lives (a call or a pre-warm is running).
    pub(crate) fn running(&self) -> Running {
        self.demand.running()
    }

    /// The ticker's demand, for pools that admit calls.
    pub(crate) fn demand(&self) -> Demand {
        self.demand.clone()
    }

    /// Live instances, and the most there may be.
    pub(crate) fn instances(&self) -> (u32, u32) {
        (self.slots.live(), self.slots.max())
    }
}

/// The worker-wide count of live instances; each instance holds one [`Slot`].
pub(crate) struct Slots {
    live: AtomicU32,
    max: u32,
}

impl Slots {
    pub(crate) fn new(max: u32) -> Arc<Slots> {
        Arc::new(Slots {
            live: AtomicU32::new(0),
            max,
        })
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    pub(crate) fn live(&self) -> u32 {
        self.live.load(Ordering::Relaxed)
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// One live instance's claim on the worker's budget, returned on drop.
pub(crate) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Epoch ticks a call may run on the CPU before it counts as long-running (a tick is
/// [`crate::engine::EPOCH_TICK`]).
pub(crate) const SHORT_CALL_TICKS: u32 = 10;

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
    pub(crate) fn clock(&self, standing: Option<Arc<Standing>>) -> CallClock {
        CallClock(Arc::new(ClockState {
            standing,
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
    /// Marked hostile for each [`SHORT_CALL_TICKS`] a call runs past its short budget.
    standing: Option<Arc<Standing>>,
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
            if ticks.is_multiple_of(SHORT_CALL_TICKS)
                && let Some(standing) = &state.standing
            {
                standing.record(true);
            }
            // `yield_now` defers the wake-up until tokio has run its other tasks and polled for
            // I/O; a plain self-wake would let the guest run again at once from the LIFO slot.
            if ticks < SHORT_CALL_TICKS || crate::fair::on_low_thread() {
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
                        && !state.holding.load(Ordering::Relaxed)
                        && !crate::fair::on_low_thread() =>
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

    /// Whether the current call has run on the CPU past the short-call budget.
    pub(crate) fn ran_long(&self) -> bool {
        self.0.ticks.load(Ordering::Relaxed) >= SHORT_CALL_TICKS
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
    /// Set once a growth was refused: the trap that follows is the memory limit's.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn demand() -> (Demand, crate::engine::EpochTicker) {
        let ticker = crate::engine::EpochTicker::start(&[&wasmtime::Engine::default()]).unwrap();
        (ticker.demand(), ticker)
    }

    #[test]
    fn slots_bound_live_instances_and_come_back_on_drop() {
        let slots = Slots::new(2);
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.live(), 2);
        drop(a);
        assert_eq!(slots.live(), 1);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn a_full_budget_evicts_once_then_refuses() {
        let (demand, _ticker) = demand();
        let warm: Arc<Mutex<Option<Slot>>> = Arc::default();
        let evictions = Arc::new(AtomicU32::new(0));
        let capacity = Capacity::new(1, Lanes::new(1), demand, {
            let (warm, evictions) = (warm.clone(), evictions.clone());
            move || {
                evictions.fetch_add(1, Ordering::Relaxed);
                warm.lock().unwrap().take().is_some()
            }
        });
        *warm.lock().unwrap() = Some(capacity.take_slot("f").unwrap());
        assert!(
            capacity.try_take_slot().is_none(),
            "pre-warming never evicts"
        );
        let busy = capacity.take_slot("f").unwrap();
        assert_eq!(
            evictions.load(Ordering::Relaxed),
            1,
            "the idle one made room"
        );
        let refused = capacity.take_slot("g").err();
        assert!(
            matches!(&refused, Some(InvokeError::NoCapacity { function, slots: 1 }) if function == "g"),
            "{refused:?}"
        );
        drop(busy);
        assert_eq!(capacity.instances(), (0, 1));
    }

    #[test]
    fn the_memory_limit_refuses_growth_past_it_and_says_so() {
        use wasmtime::ResourceLimiter;
        let mut limiter = Limiter::new(64 << 10);
        assert!(limiter.memory_growing(0, 64 << 10, None).unwrap());
        assert!(!limiter.hit_memory_limit);
        assert!(limiter.memory_growing(64 << 10, 128 << 10, None).is_err());
        assert!(limiter.hit_memory_limit);
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_clock_gives_its_lane_back_when_its_call_restarts() {
        let lanes = Lanes::new(1);
        let clock = lanes.clock(None);
        let lane = lanes.0.clone().try_acquire_owned().unwrap();
        clock.0.hold(lane);
        assert_eq!(lanes.0.available_permits(), 0);
        clock.restart();
        assert_eq!(lanes.0.available_permits(), 1);
        assert_eq!(clock.0.ticks.load(Ordering::Relaxed), 0);
    }
}
