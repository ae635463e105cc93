//! The deployed functions: their records (in a [`Store`]), every change to them (deploys,
//! splits, rollbacks, tags, deletes), and the route table.
//!
//! A deploy goes: validate the manifest -> the backend validates, compiles and stores the
//! component (content-addressed, before anything points at it) -> under the deploy lock, the
//! record gains a version -> the change is applied. Every change is applied alike: versions that
//! become served (traffic or a tag points at them) are installed, the record is committed, the
//! routes and queue triggers follow, and versions no longer served are retired a moment later.
//! With a backend of its own (`wafer up`) the versions are installed first and the record
//! written after (the commit point; if it cannot be written they are retired again). With a
//! backend that follows the store (a cluster, whose workers read PostgreSQL) the record is
//! committed first and the install waits until the workers serve it; if they cannot, the record
//! is put back. Either way, after a crash at any point the record is the old one or the new one,
//! and every component it names is stored.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use wafer_worker::{Backend, Deployment};

use crate::error::ApiError;
use crate::manifest::{FunctionSpec, Manifest};
pub use crate::record::{DEFAULT_KEEP_VERSIONS, Draft, Record, Traffic, Version};
use crate::router::{Route, RouteTable, Router};
use crate::store::Store;
use crate::trigger::amqp::QueueTriggers;
use crate::trigger::schedule::Schedules;

/// How long a stored component is kept unreferenced: longer than any deploy takes from upload
/// to commit.
const GC_GRACE: Duration = Duration::from_secs(15 * 60);

/// How long a version stays installed after it stops being served: a call that picked it just
/// before the change still finds it.
const RETIRE_GRACE: Duration = Duration::from_secs(2);

/// How a deploy treats traffic, and what it says about itself.
#[derive(Clone, Debug)]
pub struct DeployOptions {
    /// Whether the new version takes all traffic (else none: `wafer deploy --no-traffic`).
    pub takes_traffic: bool,
    pub message: Option<String>,
    /// A tag for the new version (so that calls can pin it before it takes traffic).
    pub tag: Option<String>,
    /// Whether to add no version when the newest one has the same code and manifest (`wafer up`
    /// deploying its folders again at every start, which must not undo a split or rollback).
    pub reuse_unchanged: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            takes_traffic: true,
            message: None,
            tag: None,
            reuse_unchanged: false,
        }
    }
}

/// What a change did.
#[derive(Clone, Debug)]
pub struct Changed {
    pub record: Record,
    /// The version a deploy created or a rollback went to.
    pub version: u64,
    /// Whether the function is new.
    pub created: bool,
    /// Workers (of a cluster) still installing when the change stopped waiting for them.
    pub slow_workers: Vec<String>,
}

pub struct Functions {
    store: Arc<dyn Store>,
    backend: Arc<dyn Backend>,
    /// Queue consumers, kept in step with the records; `None` where workers run them (a
    /// cluster's gateway).
    pub triggers: Option<QueueTriggers>,
    /// The schedules, run by every gateway (a ledger lets one run through per slot).
    pub schedules: Schedules,
    records: Arc<RwLock<BTreeMap<String, Record>>>,
    /// Counts this process's own changes to `records`, so that a reload read before one of
    /// them does not undo it.
    changed_here: std::sync::atomic::AtomicU64,
    router: Router,
    /// Serializes the commit part of changes (not compilation).
    deploy_lock: Arc<tokio::sync::Mutex<()>>,
    /// Versions kept per function.
    keep_versions: usize,
}

impl Functions {
    /// Loads the records; with a backend of its own, installs every served version on it (and
    /// starts the queue consumers) and removes stored components no record uses.
    pub async fn open(
        store: Arc<dyn Store>,
        backend: Arc<dyn Backend>,
        triggers: Option<QueueTriggers>,
        schedules: Schedules,
        keep_versions: usize,
    ) -> Result<Functions, ApiError> {
        let records: BTreeMap<String, Record> = store
            .load()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        if !backend.follows_store() {
            let loaded = install_all(&*backend, &records).await;
            // Nothing is being deployed yet, so no grace period is needed.
            let removed = backend
                .retain(live_digests(&records), Duration::ZERO)
                .await?;
            if removed > 0 {
                tracing::info!(removed, "removed stored components no function uses");
            }
            if let Some(triggers) = &triggers {
                for (record, spec) in &loaded {
                    triggers
                        .sync(&record.name, record.target(), record.route(), &spec.queues)
                        .await;
                }
            }
        }
        let functions = Functions {
            store,
            backend,
            triggers,
            schedules,
            records: Arc::new(RwLock::new(records)),
            changed_here: std::sync::atomic::AtomicU64::new(0),
            router: Router::default(),
            deploy_lock: Arc::new(tokio::sync::Mutex::new(())),
            keep_versions: keep_versions.max(1),
        };
        functions.publish_routes();
        functions.sync_schedules();
        Ok(functions)
    }

    /// Starts, changes and stops schedules to match the records (every one: after a reload, any
    /// of them may have changed).
    fn sync_schedules(&self) {
        let records = self.list();
        for record in &records {
            self.sync_schedules_of(record);
        }
        for name in self.schedules.functions() {
            if !records.iter().any(|r| r.name == name) {
                self.schedules.stop(&name);
            }
        }
    }

    fn sync_schedules_of(&self, record: &Record) {
        match record.primary().manifest.validate(&record.name) {
            Ok(spec) => self.schedules.sync(
                &record.name,
                record.target(),
                record.route(),
                &spec.schedules,
            ),
            Err(e) => {
                tracing::error!(function = %record.name, error = %e, "schedules not updated")
            }
        }
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
            self.sync_schedules();
            return Ok(());
        }
    }

    /// The store's change signal (see [`Store::changes`]).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.changes()
    }

    /// Deploys `name`: a new version (the function's first, or the next).
    pub async fn deploy(
        &self,
        name: &str,
        manifest: Manifest,
        component: Bytes,
        options: DeployOptions,
    ) -> Result<Changed, ApiError> {
        let spec = manifest.validate(name)?;
        if let Some(tag) = &options.tag {
            crate::record::validate_tag(tag)?;
        }
        let digest = self.backend.prepare(component).await?;
        let draft = Draft {
            digest,
            route: spec.route.clone(),
            manifest: manifest.server_side(),
            message: options.message,
            takes_traffic: options.takes_traffic,
        };
        let now = wafer_worker::time::now_ms();
        let _guard = self.deploy_lock.lock().await;
        let previous = self.get(name);
        if options.reuse_unchanged
            && let Some(old) = &previous
            && old.latest().digest == draft.digest
            && old.latest().manifest == draft.manifest
        {
            return Ok(Changed {
                version: old.latest().number,
                record: old.clone(),
                created: false,
                slow_workers: Vec::new(),
            });
        }
        let (record, version) = match &previous {
            None => {
                let record = Record::first(name, draft, now)?;
                let version = record.latest().number;
                (record, version)
            }
            Some(old) => {
                let mut record = old.clone();
                let version = record.add(draft, now, self.keep_versions);
                record.revision = old.revision + 1;
                (record, version)
            }
        };
        let mut record = record;
        if let Some(tag) = &options.tag {
            record.tag(tag, Some(&version.to_string()))?;
        }
        let slow_workers = self.apply(previous.as_ref(), &record).await?;
        tracing::info!(function = name, version, route = %record.route(), "deployed");
        Ok(Changed {
            record,
            version,
            created: previous.is_none(),
            slow_workers,
        })
    }

    /// Changes an existing function's record with `change` (a split, a rollback, a tag) and
    /// applies it; `change` returns the version to report.
    pub async fn change(
        &self,
        name: &str,
        change: impl FnOnce(&mut Record) -> Result<u64, ApiError>,
    ) -> Result<Changed, ApiError> {
        let _guard = self.deploy_lock.lock().await;
        let previous = self
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("no function named `{name}`")))?;
        let mut record = previous.clone();
        let version = change(&mut record)?;
        record.revision = previous.revision + 1;
        let slow_workers = self.apply(Some(&previous), &record).await?;
        Ok(Changed {
            record,
            version,
            created: false,
            slow_workers,
        })
    }

    /// Makes `record` the function's, from `previous`: installs what becomes served, commits,
    /// publishes, and retires what is served no more. Called under the deploy lock.
    async fn apply(
        &self,
        previous: Option<&Record>,
        record: &Record,
    ) -> Result<Vec<String>, ApiError> {
        let name = record.name.as_str();
        if let Some(owner) = self.router.load().owner(record.route())
            && **owner != *name
        {
            return Err(ApiError::Conflict(format!(
                "route {} already belongs to function `{owner}`",
                record.route()
            )));
        }
        let was_served = previous.map(Record::served).unwrap_or_default();
        let served = record.served();
        let new: Vec<u64> = served.difference(&was_served).copied().collect();
        let mut deployments = Vec::new();
        for &v in &new {
            let version = record.version(v).expect("served versions are kept");
            deployments.push(deployment(name, version)?);
        }
        let mut slow = Vec::new();
        if self.backend.follows_store() {
            self.store.commit(record).await?;
            for d in deployments {
                match self.backend.install(d).await {
                    Ok(installed) => slow.extend(installed.slow),
                    Err(e) => {
                        self.store.restore(name, previous).await?;
                        return Err(e.into());
                    }
                }
            }
        } else {
            let mut installed = Vec::new();
            for d in deployments {
                let v = d.version;
                if let Err(e) = self.backend.install(d).await {
                    self.undo_installs(name, previous.is_none(), &installed)
                        .await;
                    return Err(e.into());
                }
                installed.push(v);
            }
            if let Err(e) = self.store.commit(record).await {
                self.undo_installs(name, previous.is_none(), &installed)
                    .await;
                return Err(e);
            }
        }
        self.records
            .write()
            .unwrap()
            .insert(name.to_string(), record.clone());
        self.changed_here
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.publish_routes();
        if let Some(triggers) = &self.triggers {
            match record.primary().manifest.validate(name) {
                Ok(spec) => {
                    triggers
                        .sync(name, record.target(), record.route(), &spec.queues)
                        .await
                }
                Err(e) => {
                    tracing::error!(function = name, error = %e, "queue triggers not updated")
                }
            }
        }
        self.sync_schedules_of(record);
        for v in was_served.difference(&served).copied() {
            self.retire_later(name, v);
        }
        let kept: HashSet<&str> = record.digests().collect();
        if previous.is_some_and(|old| old.digests().any(|d| !kept.contains(d))) {
            self.collect_garbage().await;
        }
        Ok(slow)
    }

    /// Takes back versions installed for a change that could not be committed.
    async fn undo_installs(&self, name: &str, created: bool, installed: &[u64]) {
        if created {
            self.backend.remove(name).await;
            return;
        }
        for &v in installed {
            self.backend.retire(name, v).await;
        }
    }

    /// Retires `version` of `name` after [`RETIRE_GRACE`], unless it is served again by then.
    fn retire_later(&self, name: &str, version: u64) {
        let (backend, records, lock) = (
            self.backend.clone(),
            self.records.clone(),
            self.deploy_lock.clone(),
        );
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_GRACE).await;
            let _guard = lock.lock().await;
            let served_again = records
                .read()
                .unwrap()
                .get(&name)
                .is_some_and(|r| r.served().contains(&version));
            if !served_again && backend.retire(&name, version).await {
                tracing::debug!(function = %name, version, "retired");
            }
        });
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
        self.schedules.remove(name).await;
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
        let live = live_digests(&self.records.read().unwrap());
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
        self.router.store(RouteTable::new(records.values().map(|r| {
            let route = Route {
                function: Arc::from(r.name.as_str()),
                route: Arc::from(r.route()),
                target: Arc::new(r.target()),
            };
            (r.route().to_string(), route)
        })));
    }
}

/// Every digest a kept version uses.
fn live_digests(records: &BTreeMap<String, Record>) -> HashSet<String> {
    records
        .values()
        .flat_map(|r| r.digests().map(str::to_string))
        .collect()
}

/// What the backend runs for one version of `name`.
pub fn deployment(name: &str, version: &Version) -> Result<Deployment, ApiError> {
    let spec = version.manifest.validate(name)?;
    Ok(Deployment {
        name: name.to_string(),
        version: version.number,
        digest: version.digest.clone(),
        config: spec.config,
    })
}

/// Installs every served version of every record on the backend; returns the records whose
/// primary loaded, with its spec. A version that does not load stays recorded but is not served.
async fn install_all(
    backend: &dyn Backend,
    records: &BTreeMap<String, Record>,
) -> Vec<(Record, FunctionSpec)> {
    let mut loaded = Vec::new();
    for record in records.values() {
        let mut ok: BTreeSet<u64> = BTreeSet::new();
        for v in record.served() {
            let Some(version) = record.version(v) else {
                continue;
            };
            let started = std::time::Instant::now();
            let result = match deployment(&record.name, version) {
                Ok(d) => backend.install(d).await.map_err(ApiError::from),
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => {
                    tracing::info!(function = %record.name, version = v, elapsed = ?started.elapsed(), "function loaded");
                    ok.insert(v);
                }
                Err(e) => {
                    tracing::error!(function = %record.name, version = v, error = %e, "version could not be loaded; it stays recorded but is not served")
                }
            }
        }
        let primary = record.primary();
        if ok.contains(&primary.number)
            && let Ok(spec) = primary.manifest.validate(&record.name)
        {
            loaded.push((record.clone(), spec));
        }
    }
    loaded
}
