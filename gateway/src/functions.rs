//! The deployed functions: their records on disk, versions, and the route table.
//!
//! A deploy goes: validate the manifest -> the worker validates, compiles and stores the
//! component (content-addressed, before anything points at it) -> under the deploy lock, check
//! the route, install on the worker (the swap: new calls go to the new version, running calls
//! finish on the old) -> write the record atomically (the commit point) -> publish the new routes.
//! If the record cannot be written the worker is put back as it was. After a crash at any point
//! the record on disk names either the old version or the new one, and its component is stored.
//!
//! Records live in `<data>/functions/<name>.json`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wafer_worker::{Backend, Deployment, disk};

use crate::error::ApiError;
use crate::manifest::{FunctionSpec, Manifest};
use crate::router::{RouteTable, Router};
use crate::trigger::amqp::QueueTriggers;

/// How long a stored component is kept unreferenced: longer than any deploy takes from upload
/// to commit.
const GC_GRACE: Duration = Duration::from_secs(15 * 60);

/// What is stored about one deployed function.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub version: u64,
    /// sha256 of the component bytes.
    pub digest: String,
    pub route: String,
    pub deployed_at_ms: u64,
    /// The manifest it was deployed with (server side: without `component` and `build`).
    pub manifest: Manifest,
}

pub struct Functions {
    dir: PathBuf,
    backend: Arc<dyn Backend>,
    /// Queue consumers, kept in step with the records.
    pub triggers: QueueTriggers,
    records: RwLock<BTreeMap<String, Record>>,
    router: Router,
    /// Serializes the commit part of deploys and deletes (not compilation).
    deploy_lock: tokio::sync::Mutex<()>,
}

impl Functions {
    /// Opens `<data_dir>/functions`, installs every recorded function on the worker, and removes
    /// stored components no record uses.
    pub async fn open(
        data_dir: &Path,
        backend: Arc<dyn Backend>,
        triggers: QueueTriggers,
    ) -> Result<Functions, ApiError> {
        let dir = data_dir.join("functions");
        let records = read_records(&dir)?;
        let loaded = install_all(&*backend, &records).await;
        let live: HashSet<String> = records.values().map(|r| r.digest.clone()).collect();
        // Nothing is being deployed yet, so no grace period is needed.
        let removed = backend.retain(live, Duration::ZERO).await?;
        if removed > 0 {
            tracing::info!(removed, "removed stored components no function uses");
        }
        for (record, spec) in &loaded {
            triggers
                .sync(&record.name, record.version, &record.route, &spec.queues)
                .await;
        }
        let functions = Functions {
            dir,
            backend,
            triggers,
            records: RwLock::new(records),
            router: Router::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
        };
        functions.publish_routes();
        Ok(functions)
    }

    /// Deploys (creates or replaces) `name`. Returns the new record and whether it was new.
    pub async fn deploy(
        &self,
        name: &str,
        manifest: Manifest,
        component: Bytes,
    ) -> Result<(Record, bool), ApiError> {
        let spec = manifest.validate(name)?;
        let digest = self.backend.prepare(component).await?;

        let _guard = self.deploy_lock.lock().await;
        if let Some(owner) = self.router.load().owner(&spec.route)
            && **owner != *name
        {
            return Err(ApiError::Conflict(format!(
                "route {} already belongs to function `{owner}`",
                spec.route
            )));
        }
        let previous = self.get(name);
        let record = Record {
            name: name.to_string(),
            version: previous.as_ref().map_or(1, |r| r.version + 1),
            digest,
            route: spec.route.clone(),
            deployed_at_ms: wafer_worker::time::now_ms(),
            manifest: manifest.server_side(),
        };
        self.backend.install(deployment(&spec, &record)).await?;
        if let Err(e) = self.write_record(&record) {
            // Put the worker back as the disk says it is.
            match &previous {
                Some(old) => {
                    if let Ok(old_spec) = old.manifest.validate(name) {
                        let _ = self.backend.install(deployment(&old_spec, old)).await;
                    }
                }
                None => {
                    self.backend.remove(name).await;
                }
            }
            return Err(e);
        }
        self.records
            .write()
            .unwrap()
            .insert(name.to_string(), record.clone());
        self.publish_routes();
        self.triggers
            .sync(name, record.version, &record.route, &spec.queues)
            .await;
        if previous
            .as_ref()
            .is_some_and(|old| old.digest != record.digest)
        {
            self.collect_garbage().await;
        }
        tracing::info!(function = name, version = record.version, route = %record.route, "deployed");
        Ok((record, previous.is_none()))
    }

    /// Deletes `name`; returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, ApiError> {
        let _guard = self.deploy_lock.lock().await;
        if self.get(name).is_none() {
            return Ok(false);
        }
        let path = self.record_path(name);
        std::fs::remove_file(&path)
            .and_then(|()| disk::sync_dir(&self.dir))
            .map_err(ApiError::storage(format!(
                "failed to remove {}",
                path.display()
            )))?;
        self.records.write().unwrap().remove(name);
        self.publish_routes();
        // Consumers stop first: deliveries in flight finish on the function before it goes.
        self.triggers.stop(name).await;
        self.backend.remove(name).await;
        self.collect_garbage().await;
        tracing::info!(function = name, "deleted");
        Ok(true)
    }

    /// Deletes stored components no record uses. Called under the deploy lock; components
    /// prepared in the last [`GC_GRACE`] are kept, as a deploy may be about to use them.
    async fn collect_garbage(&self) {
        let live = self
            .records
            .read()
            .unwrap()
            .values()
            .map(|r| r.digest.clone())
            .collect();
        match self.backend.retain(live, GC_GRACE).await {
            Ok(0) => {}
            Ok(removed) => tracing::debug!(removed, "removed unused components"),
            Err(e) => tracing::warn!(error = %e, "failed to remove unused components"),
        }
    }

    pub fn len(&self) -> usize {
        self.records.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, name: &str) -> Option<Record> {
        self.records.read().unwrap().get(name).cloned()
    }

    pub fn list(&self) -> Vec<Record> {
        self.records.read().unwrap().values().cloned().collect()
    }

    /// The live route table (a snapshot, taken without a lock).
    pub fn routes(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.router.load()
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn publish_routes(&self) {
        let records = self.records.read().unwrap();
        self.router.store(RouteTable::new(
            records
                .values()
                .map(|r| (r.route.as_str(), r.name.as_str())),
        ));
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn write_record(&self, record: &Record) -> Result<(), ApiError> {
        let path = self.record_path(&record.name);
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        disk::atomic_write(&path, &json).map_err(ApiError::storage(format!(
            "failed to write {}",
            path.display()
        )))
    }
}

fn deployment(spec: &FunctionSpec, record: &Record) -> Deployment {
    Deployment {
        name: record.name.clone(),
        version: record.version,
        digest: record.digest.clone(),
        config: spec.config.clone(),
    }
}

/// Reads every record in `dir` (created if missing, crash leftovers removed); an unreadable
/// record is logged and skipped.
fn read_records(dir: &Path) -> Result<BTreeMap<String, Record>, ApiError> {
    let failed = |what: &str| ApiError::storage(format!("failed to {what} {}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed("create"))?;
    disk::remove_temporaries(dir).map_err(failed("clean"))?;
    let mut records = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(failed("read"))? {
        let path = entry.map_err(failed("read"))?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match read_record(&path) {
            Ok(record) => {
                records.insert(record.name.clone(), record);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "skipping unreadable function record")
            }
        }
    }
    Ok(records)
}

/// Installs every recorded function on the backend; returns those that loaded. One that does
/// not stays recorded but is not served.
async fn install_all(
    backend: &dyn Backend,
    records: &BTreeMap<String, Record>,
) -> Vec<(Record, FunctionSpec)> {
    let mut loaded = Vec::new();
    for record in records.values() {
        let started = std::time::Instant::now();
        let result = match record.manifest.validate(&record.name) {
            Ok(spec) => backend
                .install(deployment(&spec, record))
                .await
                .map(|()| spec)
                .map_err(ApiError::from),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(spec) => {
                tracing::info!(function = %record.name, version = record.version, elapsed = ?started.elapsed(), "function loaded");
                loaded.push((record.clone(), spec));
            }
            Err(e) => {
                tracing::error!(function = %record.name, error = %e, "function could not be loaded; it stays recorded but is not served")
            }
        }
    }
    loaded
}

fn read_record(path: &Path) -> Result<Record, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem != record.name {
        return Err(format!(
            "record names `{}` but is stored as `{stem}`",
            record.name
        ));
    }
    Ok(record)
}
