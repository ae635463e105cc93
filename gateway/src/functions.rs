//! The deployed functions: their records (in a [`Store`]), versions, and the route table.
//!
//! A deploy goes: validate the manifest -> the backend validates, compiles and stores the
//! component (content-addressed, before anything points at it) -> under the deploy lock, check
//! the route -> install and commit -> publish the new routes. With a backend of its own (`wafer
//! up`) the version is installed first (the swap: new calls go to it, running calls finish on
//! the old) and the record written after (the commit point; if it cannot be written the backend
//! is put back as it was). With a backend that follows the store (a cluster, whose workers read
//! PostgreSQL) the record is committed first and the install waits until the workers serve it;
//! if they cannot, the record is put back. Either way, after a crash at any point the record
//! names the old version or the new one, and its component is stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use wafer_worker::{Backend, Deployment};

use crate::error::ApiError;
use crate::manifest::{FunctionSpec, Manifest};
use crate::router::{RouteTable, Router};
pub use crate::store::Record;
use crate::store::Store;
use crate::trigger::amqp::QueueTriggers;

/// How long a stored component is kept unreferenced: longer than any deploy takes from upload
/// to commit.
const GC_GRACE: Duration = Duration::from_secs(15 * 60);

/// What a deploy did.
#[derive(Clone, Debug)]
pub struct Deployed {
    pub record: Record,
    /// Whether the function is new.
    pub created: bool,
    /// Workers (of a cluster) still installing it when the deploy stopped waiting for them.
    pub slow_workers: Vec<String>,
}

pub struct Functions {
    store: Arc<dyn Store>,
    backend: Arc<dyn Backend>,
    /// Queue consumers, kept in step with the records; `None` where workers run them (a
    /// cluster's gateway).
    pub triggers: Option<QueueTriggers>,
    records: RwLock<BTreeMap<String, Record>>,
    /// Counts this process's own changes to `records`, so that a reload read before one of
    /// them does not undo it.
    changed_here: std::sync::atomic::AtomicU64,
    router: Router,
    /// Serializes the commit part of deploys and deletes (not compilation).
    deploy_lock: tokio::sync::Mutex<()>,
}

impl Functions {
    /// Loads the records; with a backend of its own, installs every function on it (and starts
    /// its queue consumers) and removes stored components no record uses.
    pub async fn open(
        store: Arc<dyn Store>,
        backend: Arc<dyn Backend>,
        triggers: Option<QueueTriggers>,
    ) -> Result<Functions, ApiError> {
        let records: BTreeMap<String, Record> = store
            .load()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        if !backend.follows_store() {
            let loaded = install_all(&*backend, &records).await;
            let live: HashSet<String> = records.values().map(|r| r.digest.clone()).collect();
            // Nothing is being deployed yet, so no grace period is needed.
            let removed = backend.retain(live, Duration::ZERO).await?;
            if removed > 0 {
                tracing::info!(removed, "removed stored components no function uses");
            }
            if let Some(triggers) = &triggers {
                for (record, spec) in &loaded {
                    triggers
                        .sync(&record.name, record.version, &record.route, &spec.queues)
                        .await;
                }
            }
        }
        let functions = Functions {
            store,
            backend,
            triggers,
            records: RwLock::new(records),
            changed_here: std::sync::atomic::AtomicU64::new(0),
            router: Router::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
        };
        functions.publish_routes();
        Ok(functions)
    }

    /// Reloads the records from the store after another process changed them (routes included).
    /// Needs no lock: a reload that raced one of this process's own changes is read again.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        use std::sync::atomic::Ordering;
        loop {
            let before = self.changed_here.load(Ordering::Acquire);
            let records = self.store.load().await?;
            let mut current = self.records.write().unwrap();
            if self.changed_here.load(Ordering::Acquire) != before {
                continue;
            }
            *current = records.into_iter().map(|r| (r.name.clone(), r)).collect();
            drop(current);
            self.publish_routes();
            return Ok(());
        }
    }

    /// The store's change signal (see [`Store::changes`]).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.changes()
    }

    /// Deploys (creates or replaces) `name`.
    pub async fn deploy(
        &self,
        name: &str,
        manifest: Manifest,
        component: Bytes,
    ) -> Result<Deployed, ApiError> {
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
        let installed = if self.backend.follows_store() {
            self.store.commit(&record).await?;
            match self.backend.install(deployment(&spec, &record)).await {
                Ok(installed) => installed,
                Err(e) => {
                    self.store.restore(name, previous.as_ref()).await?;
                    return Err(e.into());
                }
            }
        } else {
            let installed = self.backend.install(deployment(&spec, &record)).await?;
            if let Err(e) = self.store.commit(&record).await {
                self.put_back(name, previous.as_ref()).await;
                return Err(e);
            }
            installed
        };
        self.records
            .write()
            .unwrap()
            .insert(name.to_string(), record.clone());
        self.changed_here
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.publish_routes();
        if let Some(triggers) = &self.triggers {
            triggers
                .sync(name, record.version, &record.route, &spec.queues)
                .await;
        }
        if previous
            .as_ref()
            .is_some_and(|old| old.digest != record.digest)
        {
            self.collect_garbage().await;
        }
        tracing::info!(function = name, version = record.version, route = %record.route, "deployed");
        Ok(Deployed {
            record,
            created: previous.is_none(),
            slow_workers: installed.slow,
        })
    }

    /// Puts the backend back as the store says it is, after a record could not be written.
    async fn put_back(&self, name: &str, previous: Option<&Record>) {
        match previous {
            Some(old) => {
                if let Ok(old_spec) = old.manifest.validate(name) {
                    let _ = self.backend.install(deployment(&old_spec, old)).await;
                }
            }
            None => {
                self.backend.remove(name).await;
            }
        }
    }

    /// Deletes `name`; returns whether it existed.
    pub async fn delete(&self, name: &str) -> Result<bool, ApiError> {
        let _guard = self.deploy_lock.lock().await;
        if self.get(name).is_none() {
            return Ok(false);
        }
        self.store.delete(name).await?;
        self.records.write().unwrap().remove(name);
        self.changed_here
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.publish_routes();
        // Consumers stop first: deliveries in flight finish on the function before it goes.
        if let Some(triggers) = &self.triggers {
            triggers.stop(name).await;
        }
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
}

/// What the backend runs for a record.
pub fn deployment(spec: &FunctionSpec, record: &Record) -> Deployment {
    Deployment {
        name: record.name.clone(),
        version: record.version,
        digest: record.digest.clone(),
        config: spec.config.clone(),
    }
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
                .map(|_| spec)
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
