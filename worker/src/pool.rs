//! Per-function instance pools: admission (permits and a bounded wait queue) and warm instances.
//!
//! # Instance lifecycle
//!
//! - **Admission.** A call first takes one of the function's `concurrency` permits. If none is
//!   free it waits, but only `max_queued` calls may wait and none longer than the function's
//!   timeout; the rest are refused at once as overloaded (HTTP 429 with `Retry-After`).
//! - **Warm or cold.** With a permit, the call takes the most recently used warm instance (LIFO,
//!   so the rest age out) or, if there is none, instantiates a fresh one from the function's
//!   pre-linked component: a cold start. A cold start also needs one of the worker's
//!   `max_instances` slots (`limits::Capacity`); when they are all taken, the longest-idle warm
//!   instance of any function is evicted to make room, and if no instance is idle the call fails
//!   with "no capacity".
//! - **Reuse.** An instance whose call returned normally after sending a response goes back to the
//!   pool: its globals and memory persist, as in Lambda. It is dropped instead after `reuse`
//!   calls, or if the function runs in fresh-instance mode.
//! - **Discard.** An instance that trapped, timed out, hit its memory limit, or returned without a
//!   response is always dropped, never reused: its store may be poisoned mid-call.
//! - **Broken reuse.** Some guests cannot serve a second request on one instance (componentize-js
//!   `fetch`-event handlers). If an instance fails on a reused call before the function has ever
//!   succeeded on one, the function switches to a fresh instance per call and says so in its logs;
//!   the failed request (kept, body and all up to 1 MiB, for calls on reused instances until
//!   reuse has worked once) is replayed on a fresh instance, so the caller sees only the good
//!   answer. Setting `reuse = 1` opts out of reuse up front.
//! - **Expiry.** Warm instances idle for longer than `idle_timeout` are dropped by the reaper; with
//!   none left the function has scaled to zero and its memory is back with the OS.
//! - **Concurrent reuse (wasi:http 0.3).** A 0.3 instance takes up to `instance_concurrency`
//!   calls at once (see `instance::p3`). A call goes to the most recently used instance with
//!   room, so calls pack onto few instances and the others go idle and expire; a new instance
//!   starts only when every live one is full, and is registered before the pool's lock is let
//!   go, so calls arriving together start one instance, not one each. `max_instances` caps live
//!   instances (0.2 and 0.3).
//! - **Another tier.** When optimized code replaces a function's baseline code (tiered
//!   compilation, see `engine`), idle instances of the old code are dropped, busy ones when
//!   their call ends, and 0.3 ones take no new calls: new instances start from the new code.
//! - **Minimum.** A function with `min_instances` (Lambda's provisioned concurrency) is topped up
//!   to that many live instances in the background: at deploy, after a restart, and whenever a
//!   call used one up (reuse limit, failure, fresh-instance mode, where pre-warmed instances serve
//!   one call each). Expiry and eviction stop at the minimum; pre-warming never evicts another
//!   function's instances, so under a full instance budget the minimum is best effort.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Engine;

use crate::engine::{Demand, Running};
use crate::error::InvokeError;
use crate::instance::{P2Instance, P3Instance};
use crate::limits::Limits;
use crate::metrics::FunctionMetrics;

/// What a failed call's discarded instance says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Discarded {
    /// The call failed; reuse is not to blame.
    Failed,
    /// It failed on a reused instance before reuse ever worked: the function now gets a fresh
    /// instance per call (`switched`: this failure is the one that switched it).
    ReuseBroke { switched: bool },
}

/// A call's admission: one of its function's concurrency permits. Dropping it (however the call
/// ends) frees the permit.
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    /// Keeps the epoch ticking fast while the call runs.
    _running: Running,
}

/// What a call that holds one instance of its own holds while it runs (wasi:http 0.2, CGI): its
/// admission and, for a warm start, an instance. Dropping it frees the permit and the busy count.
pub(crate) struct Lease {
    _admission: Admission,
    busy: prometheus::IntGauge,
    pub(crate) instance: Option<P2Instance>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.busy.dec();
    }
}

/// A live wasi:http 0.3 instance and what the pool tracks of it.
struct P3Entry {
    instance: Arc<P3Instance>,
    /// Calls running on it now.
    in_flight: u32,
    /// Calls it has taken, counting those running.
    calls: u32,
    idle_since: Instant,
}

/// One function version's instances.
pub(crate) struct Pool {
    permits: Arc<Semaphore>,
    /// How many permits there are: `concurrency`, capped by what `max_instances` can serve.
    permit_count: usize,
    queued: AtomicU32,
    /// Warm wasi:http 0.2 instances, each serving one call at a time.
    idle: Mutex<Vec<P2Instance>>,
    /// Live wasi:http 0.3 instances, idle or busy, least recently used first.
    p3: Mutex<Vec<P3Entry>>,
    limits: Limits,
    /// Set once a reused instance served a call: reuse works for this function.
    reuse_proven: AtomicBool,
    /// Set when reuse was seen to break: every call gets a fresh instance from then on.
    fresh_only: AtomicBool,
    /// Set when the pool was drained (its function deleted or replaced): no more pre-warming.
    drained: AtomicBool,
    /// Whether a task is instantiating instances up to `min_instances`.
    topping_up: AtomicBool,
    /// The engine of the function's code once it moved to optimized code: instances of any
    /// other engine are not kept.
    moved_to: OnceLock<Engine>,
    metrics: FunctionMetrics,
    demand: Demand,
}

impl Pool {
    /// A pool for a function whose instances serve one call at a time (`concurrent` false: WASI
    /// 0.1 and wasi:http 0.2) or up to `limits.instance_concurrency` (wasi:http 0.3).
    pub(crate) fn new(
        limits: Limits,
        metrics: FunctionMetrics,
        demand: Demand,
        concurrent: bool,
    ) -> Pool {
        let per_instance = if concurrent {
            limits.instance_concurrency.max(1)
        } else {
            1
        };
        let permit_count = limits.max_instances.map_or(limits.concurrency, |max| {
            limits.concurrency.min(max.saturating_mul(per_instance))
        }) as usize;
        Pool {
            demand,
            permits: Arc::new(Semaphore::new(permit_count)),
            permit_count,
            queued: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
            p3: Mutex::new(Vec::new()),
            fresh_only: AtomicBool::new(limits.reuse <= 1),
            drained: AtomicBool::new(false),
            topping_up: AtomicBool::new(false),
            moved_to: OnceLock::new(),
            reuse_proven: AtomicBool::new(false),
            limits,
            metrics,
        }
    }

    /// Admits a call, waiting in the bounded queue if needed.
    pub(crate) async fn admit(&self, function: &str) -> Result<Admission, InvokeError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.queue_wait.observe(0.0);
                permit
            }
            Err(_) => {
                let waiting = Instant::now();
                let permit = self.wait_for_permit(function).await?;
                self.metrics
                    .queue_wait
                    .observe(waiting.elapsed().as_secs_f64());
                permit
            }
        };
        Ok(Admission {
            _permit: permit,
            _running: self.demand.running(),
        })
    }

    /// Admits a call that needs an instance of its own (wasi:http 0.2, CGI) and hands it a warm
    /// 0.2 instance if there is one.
    pub(crate) async fn lease(&self, function: &str) -> Result<Lease, InvokeError> {
        let admission = self.admit(function).await?;
        let instance = {
            let mut idle = self.idle.lock().unwrap();
            // In fresh-instance mode only pre-warmed instances (never called) are in the pool.
            if self.fresh_only.load(Ordering::Relaxed) && idle.last().is_some_and(|i| i.calls > 0) {
                None
            } else {
                idle.pop()
            }
        };
        if instance.is_some() {
            self.metrics.idle.dec();
            self.metrics.warm_start();
        }
        self.metrics.busy.inc();
        Ok(Lease {
            _admission: admission,
            busy: self.metrics.busy.clone(),
            instance,
        })
    }

    async fn wait_for_permit(&self, function: &str) -> Result<OwnedSemaphorePermit, InvokeError> {
        let overloaded = |queued| InvokeError::Overloaded {
            function: function.to_string(),
            limit: self.limits.concurrency,
            queued,
            retry_after: Duration::from_secs(1),
        };
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let _leave = scopeguard(|| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        });
        if queued >= self.limits.max_queued {
            self.metrics.throttled.inc();
            return Err(overloaded(queued));
        }
        match tokio::time::timeout(self.limits.timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(InvokeError::ShuttingDown),
            Err(_elapsed) => {
                self.metrics.throttled.inc();
                Err(overloaded(queued + 1))
            }
        }
    }

    /// Returns an instance after a successful call, or drops it if it has served its share.
    pub(crate) fn release(&self, instance: P2Instance, reused: bool) {
        if reused {
            self.reuse_proven.store(true, Ordering::Relaxed);
        }
        if instance.calls >= self.limits.reuse
            || self.fresh_only.load(Ordering::Relaxed)
            || self.stale(instance.engine())
        {
            return;
        }
        self.idle.lock().unwrap().push(instance);
        self.metrics.idle.inc();
    }

    /// Accounts for an instance dropped after a failed call. A failure on a reused instance of
    /// a function that never proved reuse works blames reuse: the pool switches to a fresh
    /// instance per call (the first such failure does; the answer says which), and the caller
    /// may replay the request on one.
    pub(crate) fn discard(&self, reused: bool) -> Discarded {
        if !reused || self.reuse_proven.load(Ordering::Relaxed) {
            return Discarded::Failed;
        }
        let switched = !self.fresh_only.swap(true, Ordering::Relaxed);
        if switched {
            let dropped = std::mem::take(&mut *self.idle.lock().unwrap());
            self.metrics.idle.sub(dropped.len() as i64);
        }
        Discarded::ReuseBroke { switched }
    }

    /// Whether every call gets a fresh instance.
    pub(crate) fn fresh_only(&self) -> bool {
        self.fresh_only.load(Ordering::Relaxed)
    }

    /// Whether reuse is on but has not yet been seen to work.
    pub(crate) fn reuse_unproven(&self) -> bool {
        !self.reuse_proven.load(Ordering::Relaxed) && !self.fresh_only()
    }

    /// Drops warm instances idle for longer than the function's `idle_timeout`, down to its
    /// `min_instances`.
    pub(crate) fn reap(&self, now: Instant) -> usize {
        let expired_services = {
            let mut services = self.p3.lock().unwrap();
            let idle = services.iter().filter(|e| e.in_flight == 0).count();
            let keep = (self.limits.min_instances as usize).saturating_sub(services.len() - idle);
            let mut expirable = idle.saturating_sub(keep);
            let before = services.len();
            // Least recently used first, so the minimum keeps the most recently used.
            services.retain(|e| {
                let expired = expirable > 0
                    && e.in_flight == 0
                    && now.duration_since(e.idle_since) >= self.limits.idle_timeout;
                expirable -= usize::from(expired);
                !expired
            });
            before - services.len()
        };
        self.metrics.idle.sub(expired_services as i64);
        let expired: Vec<P2Instance> = {
            let mut idle = self.idle.lock().unwrap();
            let keep = (self.limits.min_instances as usize).saturating_sub(self.busy());
            // LIFO: the oldest are at the front.
            let n = idle
                .iter()
                .take_while(|i| now.duration_since(i.idle_since) >= self.limits.idle_timeout)
                .count()
                .min(idle.len().saturating_sub(keep));
            idle.drain(..n).collect()
        };
        self.metrics.idle.sub(expired.len() as i64);
        expired.len() + expired_services
    }

    /// When the longest-idle warm instance above the function's `min_instances` went idle.
    pub(crate) fn oldest_evictable(&self) -> Option<Instant> {
        {
            let services = self.p3.lock().unwrap();
            if !services.is_empty() {
                return (services.len() > self.limits.min_instances as usize)
                    .then(|| services.iter().find(|e| e.in_flight == 0))
                    .flatten()
                    .map(|e| e.idle_since);
            }
        }
        let idle = self.idle.lock().unwrap();
        let live = idle.len() + self.busy();
        (live > self.limits.min_instances as usize)
            .then(|| idle.first().map(|i| i.idle_since))
            .flatten()
    }

    /// Drops the longest-idle warm instance to free its slot for another function.
    pub(crate) fn evict_oldest(&self) -> bool {
        let evicted = {
            let mut services = self.p3.lock().unwrap();
            services
                .iter()
                .position(|e| e.in_flight == 0)
                .map(|i| services.remove(i))
                .is_some()
        } || {
            let mut idle = self.idle.lock().unwrap();
            (!idle.is_empty()).then(|| idle.remove(0)).is_some()
        };
        if evicted {
            self.metrics.idle.dec();
            self.metrics.evictions.inc();
        }
        evicted
    }

    /// Whether an instance of `engine` runs code the function has moved on from.
    fn stale(&self, engine: &Engine) -> bool {
        self.moved_to
            .get()
            .is_some_and(|current| !Engine::same(current, engine))
    }

    /// The function's code moved to `engine` (optimized code replaced baseline code): instances
    /// of other code are let go.
    pub(crate) fn renew(&self, engine: Engine) {
        let _ = self.moved_to.set(engine);
        self.sweep();
    }

    /// Drops idle instances of code the function moved on from, and keeps busy 0.3 ones from
    /// taking more calls (they leave when their last call ends). Also run by the reaper: an
    /// instance of the old code may have started while the code was being replaced.
    pub(crate) fn sweep(&self) {
        if self.moved_to.get().is_none() {
            return;
        }
        let dropped: Vec<P2Instance> = {
            let mut idle = self.idle.lock().unwrap();
            let (stale, kept) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| self.stale(i.engine()));
            *idle = kept;
            stale
        };
        self.metrics.idle.sub(dropped.len() as i64);
        let mut services = self.p3.lock().unwrap();
        let before = services.len();
        services.retain(|e| !(e.in_flight == 0 && self.stale(e.instance.engine())));
        self.metrics.idle.sub((before - services.len()) as i64);
        for entry in services.iter_mut() {
            if self.stale(entry.instance.engine()) {
                // Past its reuse limit: it takes no new call, and leaves when its last ends.
                entry.calls = u32::MAX;
            }
        }
    }

    /// Drops every warm instance (on delete or redeploy); busy ones finish and are dropped after.
    pub(crate) fn drain(&self) {
        self.fresh_only.store(true, Ordering::Relaxed);
        self.drained.store(true, Ordering::Relaxed);
        let dropped = std::mem::take(&mut *self.idle.lock().unwrap());
        self.metrics.idle.sub(dropped.len() as i64);
        let services = std::mem::take(&mut *self.p3.lock().unwrap());
        let busy = services.iter().filter(|e| e.in_flight > 0).count();
        self.metrics.busy.sub(busy as i64);
        self.metrics.idle.sub((services.len() - busy) as i64);
    }

    /// Idle and busy instances.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let services = self.p3.lock().unwrap();
        if !services.is_empty() {
            let busy = services.iter().filter(|e| e.in_flight > 0).count();
            return (services.len() - busy, busy);
        }
        drop(services);
        (self.idle.lock().unwrap().len(), self.busy())
    }

    /// Live instances: idle and busy.
    fn live(&self) -> usize {
        let (idle, busy) = self.counts();
        idle + busy
    }

    /// wasi:http 0.2 calls in progress, each on one instance.
    fn busy(&self) -> usize {
        self.permit_count - self.permits.available_permits()
    }

    /// How many instances short of `min_instances` the function is, if a top-up is not already
    /// running; the caller that gets a non-zero answer must call [`Pool::topped_up`] when done.
    pub(crate) fn start_top_up(&self) -> usize {
        let min = self.limits.min_instances as usize;
        if min == 0 || self.drained.load(Ordering::Relaxed) {
            return 0;
        }
        let short = min.saturating_sub(self.live());
        if short == 0 || self.topping_up.swap(true, Ordering::AcqRel) {
            return 0;
        }
        short
    }

    /// Adds a pre-warmed instance.
    pub(crate) fn add_prewarmed(&self, instance: P2Instance) {
        self.idle.lock().unwrap().push(instance);
        self.metrics.idle.inc();
    }

    /// Takes the most recently used wasi:http 0.3 instance that can take another call: calls are
    /// packed onto few instances, and the rest go idle and age out.
    pub(crate) fn checkout_p3(&self) -> Option<Arc<P3Instance>> {
        let mut services = self.p3.lock().unwrap();
        self.checkout_p3_locked(&mut services)
    }

    /// Like [`Pool::checkout_p3`], but when no instance has room `start` makes one, registered
    /// with this call on it before the lock is let go: calls that arrive together queue on one
    /// new instance instead of each starting one. Returns the instance and whether it is new.
    pub(crate) fn checkout_or_start_p3(
        &self,
        start: impl FnOnce() -> Arc<P3Instance>,
    ) -> (Arc<P3Instance>, bool) {
        let mut services = self.p3.lock().unwrap();
        if let Some(instance) = self.checkout_p3_locked(&mut services) {
            return (instance, false);
        }
        let instance = start();
        services.push(P3Entry {
            instance: instance.clone(),
            in_flight: 1,
            calls: 1,
            idle_since: Instant::now(),
        });
        self.metrics.busy.inc();
        (instance, true)
    }

    fn checkout_p3_locked(&self, services: &mut Vec<P3Entry>) -> Option<Arc<P3Instance>> {
        let per_instance = self.limits.instance_concurrency.max(1);
        let loads = services.iter().map(|e| (e.in_flight, e.calls));
        let i = pick_p3(loads, per_instance, self.limits.reuse)?;
        let mut entry = services.remove(i);
        if entry.in_flight == 0 {
            self.metrics.idle.dec();
            self.metrics.busy.inc();
        }
        entry.in_flight += 1;
        entry.calls += 1;
        let instance = entry.instance.clone();
        services.push(entry);
        self.metrics.warm_start();
        Some(instance)
    }

    /// Adds a pre-warmed wasi:http 0.3 instance.
    pub(crate) fn add_prewarmed_p3(&self, instance: Arc<P3Instance>) {
        self.p3.lock().unwrap().push(P3Entry {
            instance,
            in_flight: 0,
            calls: 0,
            idle_since: Instant::now(),
        });
        self.metrics.idle.inc();
    }

    /// Ends a call on a wasi:http 0.3 instance. `retire` takes the instance out of the pool (it
    /// failed, or a call on it timed out); one that has served its `reuse` calls leaves when its
    /// last call ends.
    pub(crate) fn finish_p3_call(&self, instance: &Arc<P3Instance>, retire: bool) {
        let mut services = self.p3.lock().unwrap();
        let Some(i) = services
            .iter()
            .position(|e| Arc::ptr_eq(&e.instance, instance))
        else {
            return;
        };
        let entry = &mut services[i];
        entry.in_flight -= 1;
        let now_idle = entry.in_flight == 0;
        if now_idle {
            entry.idle_since = Instant::now();
        }
        let remove = retire || (now_idle && entry.calls >= self.limits.reuse);
        match (now_idle, remove) {
            (true, false) => {
                self.metrics.busy.dec();
                self.metrics.idle.inc();
            }
            (_, true) => {
                services.remove(i);
                self.metrics.busy.dec();
            }
            (false, false) => {}
        }
    }

    /// Ends a top-up started by [`Pool::start_top_up`].
    pub(crate) fn topped_up(&self) {
        self.topping_up.store(false, Ordering::Release);
    }
}

/// Which wasi:http 0.3 instance takes the next call, given each one's `(in_flight, calls)`,
/// least recently used first: the most recently used one with room for another call and calls
/// left before its `reuse` limit.
fn pick_p3(
    loads: impl DoubleEndedIterator<Item = (u32, u32)> + ExactSizeIterator,
    per_instance: u32,
    reuse: u32,
) -> Option<usize> {
    let mut loads = loads;
    loads.rposition(|(in_flight, calls)| in_flight < per_instance && calls < reuse)
}

/// Runs `f` when dropped, also when the enclosing future is cancelled.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limits: Limits) -> (Pool, FunctionMetrics) {
        let metrics = crate::metrics::Metrics::new(&prometheus::Registry::new())
            .unwrap()
            .function("f", 1);
        let engine = wasmtime::Engine::default();
        let ticker = crate::engine::EpochTicker::start(&[&engine]).unwrap();
        let pool = Pool::new(limits, metrics.clone(), ticker.demand(), false);
        (pool, metrics)
    }

    #[tokio::test]
    async fn admission_queues_up_to_its_bound_and_refuses_the_rest() {
        let limits = Limits {
            concurrency: 2,
            max_queued: 1,
            ..Limits::default()
        };
        let (pool, metrics) = pool(limits);
        let pool = Arc::new(pool);
        let first = pool.admit("f").await.unwrap();
        let _second = pool.admit("f").await.unwrap();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.admit("f").await.map(drop) }
        });
        while pool.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.admit("f").await.err();
        assert!(
            matches!(refused, Some(InvokeError::Overloaded { queued: 1, .. })),
            "{refused:?}"
        );
        assert_eq!(metrics.throttled.get(), 1);
        drop(first);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_timeout_is_refused() {
        let limits = Limits {
            concurrency: 1,
            timeout: Duration::from_secs(5),
            ..Limits::default()
        };
        let (pool, metrics) = pool(limits);
        let _held = pool.admit("f").await.unwrap();
        let started = tokio::time::Instant::now();
        let refused = pool.admit("f").await;
        assert!(matches!(refused, Err(InvokeError::Overloaded { .. })));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(metrics.throttled.get(), 1);
        assert_eq!(pool.queued.load(Ordering::Acquire), 0, "left the queue");
    }

    #[test]
    fn p3_calls_pack_onto_the_most_recently_used_instance_with_room() {
        let pick = |loads: &[(u32, u32)], per_instance, reuse| {
            pick_p3(loads.iter().copied(), per_instance, reuse)
        };
        // Least recently used first: the last one with room wins.
        assert_eq!(pick(&[(0, 1), (2, 3), (1, 5)], 2, 1000), Some(2));
        assert_eq!(pick(&[(0, 1), (2, 3), (2, 5)], 2, 1000), Some(0));
        assert_eq!(pick(&[(2, 2), (2, 2)], 2, 1000), None, "all full");
        assert_eq!(pick(&[(0, 1000)], 16, 1000), None, "reuse used up");
        assert_eq!(pick(&[], 16, 1000), None);
    }

    #[tokio::test]
    async fn one_top_up_at_a_time_and_none_once_drained() {
        let (pool, _) = pool(Limits {
            min_instances: 2,
            ..Limits::default()
        });
        assert_eq!(pool.start_top_up(), 2);
        assert_eq!(pool.start_top_up(), 0, "one is running");
        pool.topped_up();
        assert_eq!(pool.start_top_up(), 2);
        pool.topped_up();
        pool.drain();
        assert_eq!(pool.start_top_up(), 0);
        let (pool, _) = self::pool(Limits::default());
        assert_eq!(pool.start_top_up(), 0, "no minimum");
    }

    #[tokio::test]
    async fn reuse_switches_to_fresh_instances_once_when_it_breaks_before_it_worked() {
        let (pool, _) = pool(Limits::default());
        assert!(pool.reuse_unproven());
        assert_eq!(
            pool.discard(false),
            Discarded::Failed,
            "a failure on a fresh instance says nothing"
        );
        assert_eq!(
            pool.discard(true),
            Discarded::ReuseBroke { switched: true },
            "the first failure on a reused one switches"
        );
        assert!(pool.fresh_only() && !pool.reuse_unproven());
        assert_eq!(
            pool.discard(true),
            Discarded::ReuseBroke { switched: false },
            "only once, though a call that was already on a reused instance is replayed too"
        );
        let (pool, _) = self::pool(Limits {
            reuse: 1,
            ..Limits::default()
        });
        assert!(pool.fresh_only(), "reuse = 1 is fresh-only from the start");
    }
}
