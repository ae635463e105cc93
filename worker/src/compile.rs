//! Code by digest (components, and WASI 0.1 modules for CGI functions): validate, compile
//! once, and keep both the bytes and the compiled artifact on disk so that a restart loads
//! machine code instead of compiling again.
//!
//! Layout under the worker's data directory:
//! - `components/<sha256>.wasm`: the uploaded bytes, written before any record points at them;
//! - `compiled/<sha256>-<engine>.<kind>.cwasm`: wasmtime's serialized artifact, keyed by the
//!   bytes' digest and the engine's precompile compatibility hash, so an upgrade or a changed engine
//!   setting misses the cache instead of loading incompatible code. Artifacts are only ever
//!   files this worker wrote itself (deserializing is `unsafe` for anything else).
//!
//! With tiered compilation there are two engines, so two kinds of artifact: the baseline one
//! (Winch), written in the background just after a deploy, and the optimized one (Cranelift)
//! that replaces it when the background compile is done. A restart loads the optimized artifact if there is one.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::disk;
use crate::engine::Compiler;
use crate::error::DeployError;

/// The hex sha256 of component bytes: how functions refer to their code.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What kind of code a function is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A component (exporting `wasi:http/incoming-handler` 0.2 or `wasi:http/handler` 0.3).
    Component,
    /// A WASI 0.1 command module, run CGI-style (see `cgi`).
    Module,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Component => "component.cwasm",
            Kind::Module => "module.cwasm",
        }
    }
}

/// Compiled code of either kind (cheap to clone: the code is shared).
#[derive(Clone)]
pub(crate) enum Compiled {
    Component(Component),
    Module(Module),
}

impl Compiled {
    fn kind(&self) -> Kind {
        match self {
            Compiled::Component(_) => Kind::Component,
            Compiled::Module(_) => Kind::Module,
        }
    }

    /// The engine that compiled it: the only one it runs on.
    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Compiled::Component(c) => c.engine(),
            Compiled::Module(m) => m.engine(),
        }
    }

    /// Bytes of machine code and data the compiled image holds in memory.
    pub(crate) fn image_bytes(&self) -> usize {
        let range = match self {
            Compiled::Component(c) => c.image_range(),
            Compiled::Module(m) => m.image_range(),
        };
        range.end as usize - range.start as usize
    }

    /// Wasm pages the code's memories need at start, at most (so the least memory limit that
    /// lets it start), if known.
    pub(crate) fn initial_memory_pages(&self) -> Option<u64> {
        match self {
            Compiled::Component(c) => c
                .resources_required()
                .and_then(|r| r.max_initial_memory_size),
            Compiled::Module(m) => m.resources_required().max_initial_memory_size,
        }
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Compiled::Component(c) => c.serialize(),
            Compiled::Module(m) => m.serialize(),
        }
    }
}

/// Tells components from core modules, and rejects anything else, saying what it is instead.
pub fn detect_kind(bytes: &[u8]) -> Result<Kind, DeployError> {
    if wasmparser::Parser::is_component(bytes) {
        return Ok(Kind::Component);
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Ok(Kind::Module);
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(DeployError::Invalid(format!(
        "not a WebAssembly binary: expected the magic bytes 00 61 73 6d, got [{}] ({} bytes in all)",
        head.join(" "),
        bytes.len()
    )))
}

pub(crate) struct Components {
    engine: Engine,
    /// The baseline tier's engine, where compilation is tiered.
    baseline: Option<Engine>,
    /// Which compiler the main engine is (Cranelift, or Winch alone).
    compiler: Compiler,
    sources: PathBuf,
    compiled: PathBuf,
    engine_key: String,
    baseline_key: String,
    /// Compiled code in memory, the best tier there is. It is shared, so every function and
    /// instance using the same bytes uses one copy.
    loaded: DashMap<String, Compiled>,
}

/// The name an engine's artifacts carry.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl Components {
    pub(crate) fn open(
        engine: &Engine,
        baseline: Option<&Engine>,
        compiler: Compiler,
        dir: &Path,
    ) -> std::io::Result<Components> {
        let sources = dir.join("components");
        let compiled = dir.join("compiled");
        for d in [&sources, &compiled] {
            std::fs::create_dir_all(d)?;
            let removed = disk::remove_temporaries(d)?;
            if removed > 0 {
                tracing::info!(dir = %d.display(), removed, "removed temporary files left by a crash");
            }
        }
        Ok(Components {
            engine: engine.clone(),
            baseline: baseline.cloned(),
            compiler,
            sources,
            compiled,
            engine_key: engine_key(engine),
            baseline_key: baseline.map(engine_key).unwrap_or_default(),
            loaded: DashMap::new(),
        })
    }

    /// Whether `compiled` is baseline code, to be replaced by optimized code when it is ready.
    pub(crate) fn is_baseline(&self, compiled: &Compiled) -> bool {
        self.is_baseline_engine(compiled.engine())
    }

    pub(crate) fn is_baseline_engine(&self, engine: &Engine) -> bool {
        self.baseline
            .as_ref()
            .is_some_and(|baseline| Engine::same(baseline, engine))
    }

    /// Which compiler made code that runs on `engine`, as `wafer list` shows it.
    pub(crate) fn compiler_name(&self, engine: &Engine) -> &'static str {
        if self.is_baseline_engine(engine) || self.compiler == Compiler::Winch {
            "winch"
        } else {
            "cranelift"
        }
    }

    fn source_path(&self, digest: &str) -> PathBuf {
        self.sources.join(format!("{digest}.wasm"))
    }

    fn artifact_path(&self, digest: &str, kind: Kind, baseline: bool) -> PathBuf {
        let key = if baseline {
            &self.baseline_key
        } else {
            &self.engine_key
        };
        self.compiled
            .join(format!("{digest}-{key}.{}", kind.extension()))
    }

    /// Where the artifacts of `digest` may be, the optimized one first.
    fn artifacts(&self, digest: &str) -> Vec<(PathBuf, Kind, &Engine)> {
        let mut engines = vec![(&self.engine, false)];
        if let Some(baseline) = &self.baseline {
            engines.push((baseline, true));
        }
        engines
            .into_iter()
            .flat_map(|(engine, baseline)| {
                [Kind::Component, Kind::Module]
                    .map(|kind| (self.artifact_path(digest, kind, baseline), kind, engine))
            })
            .collect()
    }

    /// Compiles bytes the fastest way that keeps every limit: with the baseline compiler if the
    /// code is big enough to be worth it, else (or if Winch refuses the code: tail calls,
    /// exceptions, SIMD it does not implement) with Cranelift. CPU-heavy: call from a blocking
    /// thread. Nothing is stored.
    pub(crate) fn compile_first(&self, bytes: &[u8]) -> Result<Compiled, DeployError> {
        if let Some(baseline) = &self.baseline
            && bytes.len() >= Compiler::TIER_ABOVE
        {
            match compile_with(baseline, bytes) {
                Ok(compiled) => return Ok(compiled),
                Err(e) => tracing::info!(
                    error = %e,
                    "the baseline compiler refused the code; compiling it with Cranelift"
                ),
            }
        }
        self.compile(bytes)
    }

    /// Compiles component or module bytes with the main engine (CPU-heavy: call from a blocking
    /// thread). Nothing is stored.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Compiled, DeployError> {
        compile_with(&self.engine, bytes)
    }

    /// Compiles the stored bytes of baseline code with Cranelift, on low-priority threads so
    /// that calls keep their CPU, and stores the artifact (the baseline one is deleted). If the
    /// disk refuses the artifact the code is still returned: it serves from memory, and a
    /// restart compiles it again.
    pub(crate) fn optimize(&self, digest: &str) -> Result<Compiled, DeployError> {
        // First the baseline artifact a deploy left unwritten, so that a restart during the
        // optimizing compile serves at once.
        let held = self.loaded.get(digest).map(|held| held.clone());
        if let Some(baseline) = held.filter(|held| self.is_baseline(held))
            && let Err(e) = self.store_artifact(digest, &baseline)
        {
            tracing::warn!(digest, error = %e, "baseline code could not be stored; a restart compiles it again");
        }
        let bytes = self.read_source(digest)?;
        let compiled = match optimizer() {
            Some(pool) => pool.install(|| self.compile(&bytes))?,
            None => self.compile(&bytes)?,
        };
        if let Err(e) = self.store(digest, &bytes, &compiled) {
            tracing::warn!(digest, error = %e, "optimized code could not be stored; it serves from memory");
            self.loaded.insert(digest.to_string(), compiled.clone());
        }
        Ok(compiled)
    }

    fn read_source(&self, digest: &str) -> Result<Vec<u8>, DeployError> {
        let source = self.source_path(digest);
        let bytes = match std::fs::read(&source) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DeployError::UnknownComponent(digest.to_string()));
            }
            Err(e) => {
                return Err(DeployError::io(format!(
                    "failed to read {}",
                    source.display()
                ))(e));
            }
        };
        if self::digest(&bytes) != digest {
            return Err(DeployError::Internal(format!(
                "stored component {} does not match its digest",
                source.display()
            )));
        }
        Ok(bytes)
    }
}

/// Compiles component or module bytes with `engine`.
fn compile_with(engine: &Engine, bytes: &[u8]) -> Result<Compiled, DeployError> {
    match detect_kind(bytes)? {
        Kind::Component => Component::new(engine, bytes)
            .map(Compiled::Component)
            .map_err(|e| {
                DeployError::Invalid(format!(
                    "the component failed to validate or compile: {e:#}"
                ))
            }),
        Kind::Module => Module::new(engine, bytes)
            .map(Compiled::Module)
            .map_err(|e| {
                DeployError::Invalid(format!(
                    "the core module failed to validate or compile: {e:#}"
                ))
            }),
    }
}

/// The threads that compile optimized code in the background: as many as there are cores, at a
/// low priority (nice 10: about a tenth of a core where calls want it all, every idle cycle
/// otherwise), so that a compile of many seconds takes little from calls yet also finishes on a
/// busy machine (at nice 19 it would get 1.5% and could take a quarter of an hour). wasmtime
/// compiles functions in parallel on the rayon pool it is run in. `None` if the threads could
/// not be started (the compile then runs on wasmtime's usual pool).
fn optimizer() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("wafer-optimize-{i}"))
            .start_handler(|_| {
                // SAFETY: setpriority has no memory preconditions; on Linux, `who` 0 with
                // PRIO_PROCESS is the calling thread alone.
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                }
            })
            .build()
            .inspect_err(|e| tracing::warn!(error = %e, "could not start the optimizer's low-priority threads"))
            .ok()
    })
    .as_ref()
}

impl Components {
    /// Stores the bytes and the compiled artifact of code that passed validation, and holds the
    /// code in memory. Baseline code's artifact is left to [`Self::optimize`], which writes it in
    /// the background before it compiles: a deploy need not wait for 50 MB of code that only a
    /// restart in the next seconds would read.
    pub(crate) fn store(
        &self,
        digest: &str,
        bytes: &[u8],
        compiled: &Compiled,
    ) -> Result<(), DeployError> {
        self.store_source(digest, bytes)?;
        if !self.is_baseline(compiled) {
            self.store_artifact(digest, compiled)?;
        }
        self.hold(digest, compiled);
        Ok(())
    }

    fn store_source(&self, digest: &str, bytes: &[u8]) -> Result<(), DeployError> {
        let source = self.source_path(digest);
        if !source.exists() {
            disk::atomic_write(&source, bytes).map_err(DeployError::io(format!(
                "failed to store {}",
                source.display()
            )))?;
        }
        Ok(())
    }

    fn store_artifact(&self, digest: &str, compiled: &Compiled) -> Result<(), DeployError> {
        let baseline = self.is_baseline(compiled);
        let artifact = self.artifact_path(digest, compiled.kind(), baseline);
        if !artifact.exists() {
            let code = compiled
                .serialize()
                .map_err(|e| DeployError::Internal(format!("failed to serialize: {e:#}")))?;
            disk::atomic_write(&artifact, &code).map_err(DeployError::io(format!(
                "failed to store {}",
                artifact.display()
            )))?;
        }
        if !baseline && self.baseline.is_some() {
            // The optimized artifact supersedes the baseline one.
            let _ = std::fs::remove_file(self.artifact_path(digest, compiled.kind(), true));
        }
        Ok(())
    }

    /// Keeps `compiled` as the code in memory for `digest`, but never replaces optimized code
    /// with baseline code.
    fn hold(&self, digest: &str, compiled: &Compiled) {
        let baseline = self.is_baseline(compiled);
        self.loaded
            .entry(digest.to_string())
            .and_modify(|held| {
                if !baseline || self.is_baseline(held) {
                    *held = compiled.clone();
                }
            })
            .or_insert_with(|| compiled.clone());
    }

    /// The code with this digest if it is compiled already (in memory or on disk).
    pub(crate) fn cached(&self, digest: &str) -> Option<Compiled> {
        if let Some(compiled) = self.loaded.get(digest) {
            return Some(compiled.clone());
        }
        let on_disk = self
            .artifacts(digest)
            .iter()
            .any(|(path, _, _)| path.exists());
        if !self.source_path(digest).exists() || !on_disk {
            return None;
        }
        self.load(digest).ok()
    }

    /// The code with this digest: from memory, else its artifact (the optimized one first), else
    /// compiled again from its stored bytes (and the artifact rewritten). Blocking.
    pub(crate) fn load(&self, digest: &str) -> Result<Compiled, DeployError> {
        if let Some(compiled) = self.loaded.get(digest) {
            return Ok(compiled.clone());
        }
        for (artifact, kind, engine) in self.artifacts(digest) {
            if !artifact.exists() {
                continue;
            }
            // SAFETY: the artifact was written by this worker (atomically, so never torn) from
            // code it compiled with an engine of the same compatibility hash.
            let loaded = match kind {
                Kind::Component => unsafe { Component::deserialize_file(engine, &artifact) }
                    .map(Compiled::Component),
                Kind::Module => {
                    unsafe { Module::deserialize_file(engine, &artifact) }.map(Compiled::Module)
                }
            };
            match loaded {
                Ok(compiled) => {
                    self.loaded.insert(digest.to_string(), compiled.clone());
                    return Ok(compiled);
                }
                Err(e) => {
                    tracing::warn!(
                        path = %artifact.display(),
                        error = %format!("{e:#}"),
                        "compiled artifact unusable; compiling again"
                    );
                    let _ = std::fs::remove_file(&artifact);
                }
            }
        }
        let bytes = self.read_source(digest)?;
        let compiled = self.compile_first(&bytes)?;
        self.store(digest, &bytes, &compiled)?;
        Ok(compiled)
    }

    /// The optimized code with this digest, if it is in memory.
    pub(crate) fn optimized(&self, digest: &str) -> Option<Compiled> {
        self.loaded
            .get(digest)
            .filter(|compiled| !self.is_baseline(compiled))
            .map(|compiled| compiled.clone())
    }

    /// Drops the in-memory copy of code (its artifact stays on disk for [`Components::load`]).
    pub(crate) fn forget(&self, digest: &str) {
        self.loaded.remove(digest);
    }

    /// Forgets and deletes every component whose digest is not in `live` and whose files are
    /// older than `grace` (a component prepared for a deploy still in progress is newer).
    pub(crate) fn retain(&self, live: &HashSet<String>, grace: Duration) -> std::io::Result<usize> {
        self.loaded.retain(|digest, _| live.contains(digest));
        let now = SystemTime::now();
        let mut removed = 0;
        for dir in [&self.sources, &self.compiled] {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let digest = name.split(['.', '-']).next().unwrap_or("");
                let current = dir == &self.sources
                    || name.contains(&self.engine_key)
                    || (self.baseline.is_some() && name.contains(&self.baseline_key));
                let age = entry
                    .metadata()?
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if (!live.contains(digest) || !current) && age >= grace {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
