//! The process's one wasmtime `Engine`: pooling allocator, epoch interruption, and the ticker.
//!
//! Pool sizing follows from two worker-wide settings, `max_instances` (live instances, warm or busy,
//! across all functions) and `max_memory` (the largest memory limit a function may ask for):
//!
//! - `total_component_instances = max_instances`: one slot per live instance; the worker's own
//!   instance budget (see `pool`) keeps instantiation from ever hitting the pool's limit.
//! - `total_core_instances`, `total_memories`, `total_tables`: a component is several core
//!   instances (Rust's wasip2 output has a few, componentize-py a dozen), so these are multiples.
//! - `max_memory_size = max_memory`: the slot size; per-function limits below it are enforced by
//!   the store's `ResourceLimiter`.
//! - `linear_memory_keep_resident`, `table_keep_resident`: left at 0, so a dropped instance's pages
//!   go back to the OS at once (scale to zero returns memory) while copy-on-write images keep
//!   re-instantiation cheap.
//! - `async_stack_zeroing` on, `async_stack_keep_resident` 0: the same for fiber stacks, which
//!   otherwise stay resident once touched (and would carry one tenant's bytes to the next).
//! - The epoch ticks every 1 ms while calls run, every 100 ms when none do (see `EpochTicker`).
//!
//! Reserving the pool's address space can fail (a `ulimit -v`, a sandbox that caps mappings); then
//! the engine falls back to on-demand allocation with small memory reservations, and says so.
//!
//! With tiered compilation (the default, see [`Compiler`]) a second engine compiles big code with
//! Winch, wasmtime's baseline compiler, so that it serves within two seconds of its deploy
//! (a 13 MB JavaScript component, on 2 cores) while Cranelift compiles it in the background. Code runs only on the engine that compiled it, so the
//! two engines have their own instances: the baseline one allocates on demand (its instances
//! live seconds, until the optimized code takes over) and takes its slots from the same instance
//! budget. Both have the same limits: epochs, stack depth, memory through the store's limiter.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

use crate::error::WorkerError;

/// How often the epoch advances. A running guest yields to tokio once per tick, and a timeout
/// is noticed within a tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Worker-wide engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Live instances (warm or busy) across all functions.
    pub max_instances: u32,
    /// The largest per-function memory limit this worker accepts, in bytes.
    pub max_memory: u64,
    /// Use the pooling allocator (falls back to on-demand if it cannot reserve memory).
    pub pooling: bool,
    /// Which compiler turns wasm into machine code.
    pub compiler: Compiler,
}

/// Which of wasmtime's compilers wafer uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compiler {
    /// Code of [`Compiler::TIER_ABOVE`] or more first compiles with Winch (fast to compile, slower
    /// code) and serves on it while Cranelift compiles it again in the background; new instances
    /// then run Cranelift's code. Smaller code compiles with Cranelift alone, in well under a
    /// second.
    #[default]
    Tiered,
    /// Cranelift alone: optimized code, compiled before the first call.
    Cranelift,
    /// Winch alone: the fastest deploys, slower code (a development loop, or tests of the
    /// baseline tier).
    Winch,
}

impl Compiler {
    /// Code this big or bigger starts on the baseline tier: Cranelift compiles about 2 MB of
    /// wasm a second on 2 cores (a 13 MB JavaScript component takes 6-7 s), Winch about 9.
    pub const TIER_ABOVE: usize = 1 << 20;

    pub fn parse(s: &str) -> Result<Compiler, String> {
        match s {
            "tiered" => Ok(Compiler::Tiered),
            "cranelift" => Ok(Compiler::Cranelift),
            "winch" => Ok(Compiler::Winch),
            other => Err(format!(
                "unknown compiler `{other}`: expected tiered, cranelift or winch"
            )),
        }
    }
}

impl std::fmt::Display for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiler::Tiered => "tiered",
            Compiler::Cranelift => "cranelift",
            Compiler::Winch => "winch",
        })
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_instances: 1000,
            max_memory: 4 << 30,
            pooling: true,
            compiler: Compiler::Tiered,
        }
    }
}

fn base_config(compiler: Strategy) -> Config {
    let mut config = Config::new();
    config.strategy(compiler);
    config.wasm_component_model(true);
    // wasi:http 0.3 handlers are async exports with streams and futures.
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    // Guests overflowing their stack trap cleanly at this depth; 1 MiB fits deep but sane recursion.
    config.max_wasm_stack(1 << 20);
    // Wasm 3.0's GC proposal stays off: wasmtime is built without its GC runtime, and in 48.0.8
    // a non-final (`sub`) function type, which the proposal lets a module declare, aborted the
    // whole process at its first `call_indirect` (GHSA-rc4p-x33f-vpr2). Refused at deploy now.
    config.wasm_gc(false);
    config
}

/// Builds the engine. Returns it and whether the pooling allocator is in use.
pub(crate) fn new_engine(settings: &EngineConfig) -> Result<(Engine, bool), WorkerError> {
    let strategy = match settings.compiler {
        Compiler::Winch => Strategy::Winch,
        Compiler::Tiered | Compiler::Cranelift => Strategy::Cranelift,
    };
    if settings.pooling {
        let mut config = base_config(strategy);
        let n = settings.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_memories_per_module(1)
            .max_tables_per_module(8)
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(64)
            .max_memory_size(usize::try_from(settings.max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(0)
            .table_keep_resident(0)
            .async_stack_keep_resident(0);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Without zeroing, pooled fiber stacks are never decommitted: after a burst of a thousand
        // instances their touched pages would stay resident forever, and scale to zero would not
        // give memory back. Zeroing (by decommit, with nothing kept resident) costs one madvise
        // when an instance is dropped, and no tenant's stack bytes reach the next.
        config.async_stack_zeroing(true);
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, true)),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "could not reserve memory for the pooling allocator; falling back to on-demand instance allocation (slower cold starts)"
            ),
        }
    }
    let mut config = base_config(strategy);
    small_reservations(&mut config);
    let engine = Engine::new(&config).map_err(|e| WorkerError::Engine(format!("{e:#}")))?;
    Ok((engine, false))
}

/// The usual reason pooling failed is a cap on address space, so reserve only what memories use
/// (they move when they grow, with explicit bounds checks) instead of 4 GiB each.
fn small_reservations(config: &mut Config) {
    config
        .memory_reservation(0)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(1 << 20);
}

/// The baseline tier's engine (Winch, on-demand allocation), where tiered compilation is on.
/// `pooling` says whether the main engine could reserve its pool: if not, address space is
/// capped here and this one reserves little too.
pub(crate) fn new_baseline_engine(
    settings: &EngineConfig,
    pooling: bool,
) -> Result<Option<Engine>, WorkerError> {
    if settings.compiler != Compiler::Tiered {
        return Ok(None);
    }
    let mut config = base_config(Strategy::Winch);
    if !pooling {
        small_reservations(&mut config);
    }
    Engine::new(&config)
        .map(Some)
        .map_err(|e| WorkerError::Engine(format!("the baseline compiler (Winch): {e:#}")))
}

/// After the last call ends, the ticker keeps its fast pace this long before it idles: calls
/// that follow one another (a client calling in a loop) then never pay for waking it.
const LINGER: Duration = Duration::from_millis(50);

/// While idle, how often the epoch still advances: a backstop for any guest code running outside
/// a [`Running`] guard, at a cost of ten wake-ups a second.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// Advances the engines' epochs every [`EPOCH_TICK`] while calls are running (see [`Demand`]),
/// and every [`IDLE_TICK`] otherwise, until dropped: an idle worker costs next to no CPU.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    demand: Demand,
}

/// Counts the calls (and pre-warming tasks) running guest code, and wakes the ticker when the
/// first one starts.
#[derive(Clone)]
pub(crate) struct Demand(Arc<DemandState>);

struct DemandState {
    running: AtomicUsize,
    ticker: OnceLock<std::thread::Thread>,
}

/// Held while guest code may run; see [`Demand::running`].
pub(crate) struct Running(Demand);

impl Demand {
    pub(crate) fn running(&self) -> Running {
        if self.0.running.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(ticker) = self.0.ticker.get()
        {
            ticker.unpark();
        }
        Running(self.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EpochTicker {
    pub(crate) fn start(engines: &[&Engine]) -> Result<EpochTicker, WorkerError> {
        let stop = Arc::new(AtomicBool::new(false));
        let demand = Demand(Arc::new(DemandState {
            running: AtomicUsize::new(0),
            ticker: OnceLock::new(),
        }));
        let weak: Vec<_> = engines.iter().map(|engine| engine.weak()).collect();
        let (flag, state) = (stop.clone(), demand.0.clone());
        let thread = std::thread::Builder::new()
            .name("wafer-epoch".into())
            .spawn(move || {
                let mut fast_until = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    if state.running.load(Ordering::Acquire) > 0 {
                        fast_until = Instant::now() + LINGER;
                    }
                    if Instant::now() < fast_until {
                        std::thread::sleep(EPOCH_TICK);
                    } else {
                        std::thread::park_timeout(IDLE_TICK);
                        if state.running.load(Ordering::Acquire) > 0 {
                            // Woken by a call that just started: its first tick is a full tick
                            // away, not now (an early tick would make it yield at once).
                            continue;
                        }
                    }
                    for engine in &weak {
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        }
                    }
                }
            })
            .map_err(|source| WorkerError::Io {
                context: "failed to start the epoch ticker thread".into(),
                source,
            })?;
        let _ = demand.0.ticker.set(thread.thread().clone());
        Ok(EpochTicker { stop, demand })
    }

    pub(crate) fn demand(&self) -> Demand {
        self.demand.clone()
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Engine, Store};

    use super::*;

    fn engine() -> Engine {
        let settings = EngineConfig {
            max_instances: 4,
            max_memory: 64 << 20,
            pooling: true,
            compiler: Compiler::Cranelift,
        };
        new_engine(&settings).unwrap().0
    }

    /// Calls the component's `run` export in a store of its own, in a task of its own, as every
    /// wafer call runs: `Err` if the call failed, or panicked inside that task.
    async fn run(engine: &Engine, component: &Component) -> Result<(), String> {
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = Linker::new(engine)
            .instantiate_async(&mut store, component)
            .await
            .map_err(|e| format!("instantiate: {e:?}"))?;
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .map_err(|e| format!("{e:?}"))?;
        let call = tokio::spawn(async move { run.call_async(&mut store, ()).await });
        match call.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("{error:?}")),
            Err(panic) => Err(format!("panicked: {panic}")),
        }
    }

    /// GHSA-xrvr-8678-5wp8 (fixed in 48.0.9): a component that cancels a stream copy on the
    /// wrong end corrupts wasmtime 48.0.8's stream state, and its next use reaches wasmtime's
    /// internal-bug report, which panics where wasmtime has debug assertions (this test build)
    /// and is an error in a release build. Either way only that call fails: the engine, and
    /// the next instance, go on.
    #[tokio::test]
    async fn a_component_cancelling_a_stream_copy_on_the_wrong_end_fails_only_its_call() {
        let engine = engine();
        let hostile =
            Component::new(&engine, include_str!("../tests/advisories/xrvr.wat")).unwrap();
        for _ in 0..2 {
            let failed = run(&engine, &hostile).await.unwrap_err();
            assert!(
                failed.contains("BUG") || failed.contains("cancel-write"),
                "{failed}"
            );
        }
        let fine = Component::new(
            &engine,
            r#"(component
                (core module $m (func (export "run")))
                (core instance $i (instantiate $m))
                (func (export "run") (canon lift (core func $i "run"))))"#,
        )
        .unwrap();
        run(&engine, &fine).await.unwrap();
    }
}
