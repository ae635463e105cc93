//! Components by digest: validate, compile once, and keep both the bytes and the compiled
//! artifact on disk so that a restart loads machine code instead of compiling again.
//!
//! Layout under the worker's data directory:
//! - `components/<sha256>.wasm`: the uploaded bytes, written before any record points at them;
//! - `compiled/<sha256>-<engine>.cwasm`: wasmtime's serialized artifact, keyed by the bytes'
//!   digest and the engine's precompile compatibility hash, so an upgrade or a changed engine
//!   setting misses the cache instead of loading incompatible code. Artifacts are only ever
//!   files this worker wrote itself (deserializing is `unsafe` for anything else).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::disk;
use crate::error::DeployError;

/// The hex sha256 of component bytes: how functions refer to their code.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Rejects anything that is not a WebAssembly component, naming what it is instead.
pub fn check_is_component(bytes: &[u8]) -> Result<(), DeployError> {
    if wasmparser::Parser::is_component(bytes) {
        return Ok(());
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(DeployError::Invalid(
            "this is a core WebAssembly module, not a component: wafer runs components that export \
             wasi:http/incoming-handler (build for --target wasm32-wasip2, or wrap a module with \
             `wasm-tools component new`)"
                .into(),
        ));
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
    /// Compiled components in memory. A `Component` shares its code, so every function and
    /// instance using the same bytes uses one copy.
    loaded: DashMap<String, Component>,
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

    fn artifact_path(&self, digest: &str) -> PathBuf {
        self.compiled
            .join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Compiles component bytes (CPU-heavy: call from a blocking thread). Nothing is stored.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Component, DeployError> {
        check_is_component(bytes)?;
        Component::new(&self.engine, bytes).map_err(|e| {
            DeployError::Invalid(format!(
                "the component failed to validate or compile: {e:#}"
            ))
        })
    }

    /// Stores the bytes and the compiled artifact of a component that passed validation.
    pub(crate) fn store(
        &self,
        digest: &str,
        bytes: &[u8],
        component: &Component,
    ) -> Result<(), DeployError> {
        let source = self.source_path(digest);
        if !source.exists() {
            disk::atomic_write(&source, bytes).map_err(DeployError::io(format!(
                "failed to store {}",
                source.display()
            )))?;
        }
        let artifact = self.artifact_path(digest);
        if !artifact.exists() {
            let code = component
                .serialize()
                .map_err(|e| DeployError::Internal(format!("failed to serialize: {e:#}")))?;
            disk::atomic_write(&artifact, &code).map_err(DeployError::io(format!(
                "failed to store {}",
                artifact.display()
            )))?;
        }
        self.loaded.insert(digest.to_string(), component.clone());
        Ok(())
    }

    /// The component with this digest if it is compiled already (in memory or on disk).
    pub(crate) fn cached(&self, digest: &str) -> Option<Component> {
        if let Some(component) = self.loaded.get(digest) {
            return Some(component.clone());
        }
        if !self.source_path(digest).exists() || !self.artifact_path(digest).exists() {
            return None;
        }
        self.load(digest).ok()
    }

    /// The component with this digest: from memory, else its artifact, else compiled again from
    /// its stored bytes (and the artifact rewritten). Blocking.
    pub(crate) fn load(&self, digest: &str) -> Result<Component, DeployError> {
        if let Some(component) = self.loaded.get(digest) {
            return Ok(component.clone());
        }
        let artifact = self.artifact_path(digest);
        if artifact.exists() {
            // SAFETY: the artifact was written by this worker (atomically, so never torn) from a
            // component it compiled with an engine of the same compatibility hash.
            match unsafe { Component::deserialize_file(&self.engine, &artifact) } {
                Ok(component) => {
                    self.loaded.insert(digest.to_string(), component.clone());
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    path = %artifact.display(),
                    error = %format!("{e:#}"),
                    "compiled artifact unusable; compiling again"
                ),
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
        let component = self.compile(&bytes)?;
        let _ = std::fs::remove_file(&artifact);
        self.store(digest, &bytes, &component)?;
        Ok(component)
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
