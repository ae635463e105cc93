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

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::disk;
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
    sources: PathBuf,
    compiled: PathBuf,
    engine_key: String,
    /// Compiled code in memory. It is shared, so every function and instance using the same
    /// bytes uses one copy.
    loaded: DashMap<String, Compiled>,
}

impl Components {
    pub(crate) fn open(engine: &Engine, dir: &Path) -> std::io::Result<Components> {
        let sources = dir.join("components");
        let compiled = dir.join("compiled");
        for d in [&sources, &compiled] {
            std::fs::create_dir_all(d)?;
            let removed = disk::remove_temporaries(d)?;
            if removed > 0 {
                tracing::info!(dir = %d.display(), removed, "removed temporary files left by a crash");
            }
        }
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Components {
            engine: engine.clone(),
            sources,
            compiled,
            engine_key: format!("{:016x}", hasher.finish()),
            loaded: DashMap::new(),
        })
    }

    fn source_path(&self, digest: &str) -> PathBuf {
        self.sources.join(format!("{digest}.wasm"))
    }

    fn artifact_path(&self, digest: &str, kind: Kind) -> PathBuf {
        self.compiled
            .join(format!("{digest}-{}.{}", self.engine_key, kind.extension()))
    }

    /// Compiles component or module bytes (CPU-heavy: call from a blocking thread). Nothing is
    /// stored.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Compiled, DeployError> {
        match detect_kind(bytes)? {
            Kind::Component => Component::new(&self.engine, bytes)
                .map(Compiled::Component)
                .map_err(|e| {
                    DeployError::Invalid(format!(
                        "the component failed to validate or compile: {e:#}"
                    ))
                }),
            Kind::Module => Module::new(&self.engine, bytes)
                .map(Compiled::Module)
                .map_err(|e| {
                    DeployError::Invalid(format!(
                        "the core module failed to validate or compile: {e:#}"
                    ))
                }),
        }
    }

    /// Stores the bytes and the compiled artifact of code that passed validation.
    pub(crate) fn store(
        &self,
        digest: &str,
        bytes: &[u8],
        compiled: &Compiled,
    ) -> Result<(), DeployError> {
        let source = self.source_path(digest);
        if !source.exists() {
            disk::atomic_write(&source, bytes).map_err(DeployError::io(format!(
                "failed to store {}",
                source.display()
            )))?;
        }
        let artifact = self.artifact_path(digest, compiled.kind());
        if !artifact.exists() {
            let code = compiled
                .serialize()
                .map_err(|e| DeployError::Internal(format!("failed to serialize: {e:#}")))?;
            disk::atomic_write(&artifact, &code).map_err(DeployError::io(format!(
                "failed to store {}",
                artifact.display()
            )))?;
        }
        self.loaded.insert(digest.to_string(), compiled.clone());
        Ok(())
    }

    /// The code with this digest if it is compiled already (in memory or on disk).
    pub(crate) fn cached(&self, digest: &str) -> Option<Compiled> {
        if let Some(compiled) = self.loaded.get(digest) {
            return Some(compiled.clone());
        }
        let on_disk = [Kind::Component, Kind::Module]
            .iter()
            .any(|kind| self.artifact_path(digest, *kind).exists());
        if !self.source_path(digest).exists() || !on_disk {
            return None;
        }
        self.load(digest).ok()
    }

    /// The code with this digest: from memory, else its artifact, else compiled again from its
    /// stored bytes (and the artifact rewritten). Blocking.
    pub(crate) fn load(&self, digest: &str) -> Result<Compiled, DeployError> {
        if let Some(compiled) = self.loaded.get(digest) {
            return Ok(compiled.clone());
        }
        for kind in [Kind::Component, Kind::Module] {
            let artifact = self.artifact_path(digest, kind);
            if !artifact.exists() {
                continue;
            }
            // SAFETY: the artifact was written by this worker (atomically, so never torn) from
            // code it compiled with an engine of the same compatibility hash.
            let loaded = match kind {
                Kind::Component => unsafe { Component::deserialize_file(&self.engine, &artifact) }
                    .map(Compiled::Component),
                Kind::Module => unsafe { Module::deserialize_file(&self.engine, &artifact) }
                    .map(Compiled::Module),
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
        let compiled = self.compile(&bytes)?;
        self.store(digest, &bytes, &compiled)?;
        Ok(compiled)
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
                let current = dir == &self.sources || name.contains(&self.engine_key);
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
