//! The cluster's desired state in PostgreSQL: function records (the gateway's [`Store`]: a row
//! per function with its traffic and tags, a row per kept version), component bytes by digest,
//! and which workers serve which versions. A deploy is one
//! transaction; every change is announced on [`FUNCTIONS_CHANNEL`], and readers also reload on
//! a timer, so a missed notification heals by itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tokio::sync::watch;
use wafer_gateway::manifest::Manifest;
use wafer_gateway::record::{Traffic, Version};
use wafer_gateway::trigger::schedule::Ledger;
use wafer_gateway::{ApiError, Record, Store};

use crate::db::{DbError, FUNCTIONS_CHANNEL, READY_CHANNEL};

/// How often readers reload even without a notification.
const RELOAD: Duration = Duration::from_secs(5);

/// Records, components and readiness in PostgreSQL.
pub struct PgStore {
    pool: PgPool,
    changes: watch::Sender<u64>,
    /// Ticks when a worker reports on a function version.
    ready: watch::Sender<u64>,
}

/// What the workers have done with one function version.
#[derive(Debug, Default, PartialEq)]
pub struct Readiness {
    /// Live workers not serving it yet.
    pub waiting: Vec<String>,
    /// Workers that could not, and why.
    pub failed: Vec<(String, String)>,
}

impl PgStore {
    /// A store on `pool`, announcing changes made by anyone (this process included).
    pub async fn open(pool: PgPool) -> Result<Arc<PgStore>, DbError> {
        let store = Arc::new(PgStore {
            pool: pool.clone(),
            changes: watch::channel(0).0,
            ready: watch::channel(0).0,
        });
        let mut listener = PgListener::connect_with(&pool).await?;
        listener
            .listen_all([FUNCTIONS_CHANNEL, READY_CHANNEL])
            .await?;
        tokio::spawn(follow(listener, Arc::downgrade(&store)));
        Ok(store)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Ticks whenever a worker reports on a function version (see [`PgStore::report`]).
    pub fn ready_signal(&self) -> watch::Receiver<u64> {
        self.ready.subscribe()
    }

    /// Stores component bytes under their digest (once: the same bytes are shared).
    pub async fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO components (digest, bytes) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(bytes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The bytes stored under `digest`, if any.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, DbError> {
        let row = sqlx::query("SELECT bytes FROM components WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get("bytes")))
    }

    /// Deletes components no function uses that were stored more than `grace` ago.
    pub async fn retain_components(
        &self,
        live: &HashSet<String>,
        grace: Duration,
    ) -> Result<usize, DbError> {
        let live: Vec<String> = live.iter().cloned().collect();
        let done = sqlx::query(
            "DELETE FROM components c
             WHERE c.stored_at < now() - make_interval(secs => $2)
               AND NOT (c.digest = ANY($1))
               AND NOT EXISTS (SELECT 1 FROM function_versions v WHERE v.digest = c.digest)",
        )
        .bind(&live)
        .bind(grace.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() as usize)
    }

    /// Records that `worker` serves `name` at `version` (`Ok`) or could not (`Err(why)`).
    pub async fn report(
        &self,
        worker: &str,
        name: &str,
        version: u64,
        outcome: Result<(), String>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO worker_functions (worker_id, name, version, ready, error, updated_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (worker_id, name, version) DO UPDATE SET
                 ready = EXCLUDED.ready, error = EXCLUDED.error, updated_at = now()",
        )
        .bind(worker)
        .bind(name)
        .bind(version as i64)
        .bind(outcome.is_ok())
        .bind(outcome.err())
        .execute(&self.pool)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(READY_CHANNEL)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets what `worker` said about `name` (it no longer serves it), or about one version.
    pub async fn forget(
        &self,
        worker: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "DELETE FROM worker_functions WHERE worker_id = $1 AND name = $2
             AND ($3::bigint IS NULL OR version = $3)",
        )
        .bind(worker)
        .bind(name)
        .bind(version.map(|v| v as i64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Which live workers serve `name` at `version`, which do not yet, and which failed.
    pub async fn readiness(&self, name: &str, version: u64) -> Result<Readiness, DbError> {
        let rows = sqlx::query(
            "SELECT w.id, f.version, f.ready, f.error FROM workers w
             LEFT JOIN worker_functions f
                 ON f.worker_id = w.id AND f.name = $1 AND f.version = $2
             WHERE w.lease_until > now() ORDER BY w.id",
        )
        .bind(name)
        .bind(version as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut readiness = Readiness::default();
        for row in rows {
            let id: String = row.get("id");
            let at: Option<i64> = row.get("version");
            let ready: Option<bool> = row.get("ready");
            let error: Option<String> = row.get("error");
            match (at, ready) {
                (Some(at), Some(true)) if at as u64 == version => {}
                (Some(at), Some(false)) if at as u64 == version => {
                    readiness.failed.push((id, error.unwrap_or_default()));
                }
                _ => readiness.waiting.push(id),
            }
        }
        Ok(readiness)
    }

    async fn announce(tx: &mut sqlx::PgTransaction<'_>, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(FUNCTIONS_CHANNEL)
            .bind(name)
            .execute(&mut **tx)
            .await
            .map(drop)
    }

    /// Writes `record` over what is stored: the function's row, then its versions (new ones
    /// inserted, collected ones deleted; a version never changes once written).
    async fn upsert(tx: &mut sqlx::PgTransaction<'_>, record: &Record) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO functions (name, route, traffic, tags, next_version, revision)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET route = EXCLUDED.route,
                 traffic = EXCLUDED.traffic, tags = EXCLUDED.tags,
                 next_version = EXCLUDED.next_version, revision = EXCLUDED.revision",
        )
        .bind(&record.name)
        .bind(record.route())
        .bind(Json(&record.traffic))
        .bind(Json(&record.tags))
        .bind(record.next_version as i64)
        .bind(record.revision as i64)
        .execute(&mut **tx)
        .await?;
        let kept: Vec<i64> = record.versions.iter().map(|v| v.number as i64).collect();
        sqlx::query("DELETE FROM function_versions WHERE name = $1 AND NOT (number = ANY($2))")
            .bind(&record.name)
            .bind(&kept)
            .execute(&mut **tx)
            .await?;
        let stored: HashSet<i64> =
            sqlx::query_scalar("SELECT number FROM function_versions WHERE name = $1")
                .bind(&record.name)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .collect();
        for version in record
            .versions
            .iter()
            .filter(|v| !stored.contains(&(v.number as i64)))
        {
            sqlx::query(
                "INSERT INTO function_versions
                     (name, number, digest, route, manifest, deployed_at_ms, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&record.name)
            .bind(version.number as i64)
            .bind(&version.digest)
            .bind(&version.route)
            .bind(Json(&version.manifest))
            .bind(version.deployed_at_ms as i64)
            .bind(&version.message)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn commit_record(&self, record: &Record) -> Result<(), ApiError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM functions WHERE name = $1 FOR UPDATE")
                .bind(&record.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let in_turn = match current {
            None => record.revision == 1,
            Some(stored) => stored as u64 + 1 == record.revision,
        };
        if !in_turn {
            return Err(ApiError::Conflict(format!(
                "function `{}` was changed elsewhere meanwhile; try again",
                record.name
            )));
        }
        if let Err(e) = Self::upsert(&mut tx, record).await {
            return Err(self.commit_error(e, record).await);
        }
        Self::announce(&mut tx, &record.name)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    /// Why an upsert was refused, in words: a route owned by another function, a component
    /// that is not stored, or the database being unavailable.
    async fn commit_error(&self, error: sqlx::Error, record: &Record) -> ApiError {
        let constraint = error
            .as_database_error()
            .and_then(|e| e.constraint())
            .unwrap_or("")
            .to_string();
        if constraint.contains("route") {
            let owner: Option<String> =
                sqlx::query_scalar("SELECT name FROM functions WHERE route = $1")
                    .bind(record.route())
                    .fetch_optional(&self.pool)
                    .await
                    .ok()
                    .flatten();
            return ApiError::Conflict(format!(
                "route {} already belongs to function `{}`",
                record.route(),
                owner.unwrap_or_else(|| "another function".into())
            ));
        }
        if constraint.contains("pkey") {
            return ApiError::Conflict(format!(
                "function `{}` was created elsewhere meanwhile; deploy again",
                record.name
            ));
        }
        unavailable(error)
    }
}

/// The database failed or is unreachable: the request may be retried.
fn unavailable(error: sqlx::Error) -> ApiError {
    ApiError::Unavailable(format!("the cluster's database: {error}"))
}

impl Store for PgStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<Record>, ApiError>> {
        Box::pin(async move {
            // One snapshot of both tables.
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            let functions = sqlx::query(
                "SELECT name, traffic, tags, next_version, revision FROM functions ORDER BY name",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            let versions = sqlx::query(
                "SELECT name, number, digest, route, manifest, deployed_at_ms, message
                 FROM function_versions ORDER BY name, number",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            let mut by_name: HashMap<String, Vec<Version>> = HashMap::new();
            for row in versions {
                let Json(manifest): Json<Manifest> = row.get("manifest");
                by_name.entry(row.get("name")).or_default().push(Version {
                    number: row.get::<i64, _>("number") as u64,
                    digest: row.get("digest"),
                    route: row.get("route"),
                    deployed_at_ms: row.get::<i64, _>("deployed_at_ms") as u64,
                    message: row.get("message"),
                    manifest,
                });
            }
            let mut records = Vec::new();
            for row in functions {
                let name: String = row.get("name");
                let Json(traffic): Json<Traffic> = row.get("traffic");
                let Json(tags): Json<BTreeMap<String, u64>> = row.get("tags");
                let Some(versions) = by_name.remove(&name) else {
                    tracing::error!(function = %name, "skipping a function record with no versions");
                    continue;
                };
                records.push(Record {
                    name,
                    versions,
                    traffic,
                    tags,
                    next_version: row.get::<i64, _>("next_version") as u64,
                    revision: row.get::<i64, _>("revision") as u64,
                });
            }
            Ok(records)
        })
    }

    fn commit(&self, record: &Record) -> BoxFuture<'_, Result<(), ApiError>> {
        let record = record.clone();
        Box::pin(async move { self.commit_record(&record).await })
    }

    fn restore<'a>(
        &'a self,
        name: &'a str,
        previous: Option<&'a Record>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            match previous {
                Some(record) => Self::upsert(&mut tx, record).await,
                None => sqlx::query("DELETE FROM functions WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map(drop),
            }
            .map_err(unavailable)?;
            Self::announce(&mut tx, name).await.map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let done = sqlx::query("DELETE FROM functions WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            Self::announce(&mut tx, name).await.map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Slots claimed in one statement: the row moves forward only past its last slot, so two
/// gateways claiming one slot cannot both succeed.
impl Ledger for PgStore {
    fn last<'a>(
        &'a self,
        function: &'a str,
        schedule: &'a str,
    ) -> BoxFuture<'a, Result<Option<u64>, String>> {
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT last_slot_ms FROM schedule_slots WHERE function = $1 AND schedule = $2",
            )
            .bind(function)
            .bind(schedule)
            .fetch_optional(&self.pool)
            .await
            .map(|slot| slot.map(|s| s as u64))
            .map_err(|e| format!("the cluster's database: {e}"))
        })
    }

    fn claim<'a>(
        &'a self,
        function: &'a str,
        schedule: &'a str,
        slot: u64,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let claimed = sqlx::query(
                "INSERT INTO schedule_slots (function, schedule, last_slot_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (function, schedule) DO UPDATE SET last_slot_ms = EXCLUDED.last_slot_ms
                 WHERE schedule_slots.last_slot_ms < EXCLUDED.last_slot_ms",
            )
            .bind(function)
            .bind(schedule)
            .bind(slot as i64)
            .execute(&self.pool)
            .await
            .map_err(|e| format!("the cluster's database: {e}"))?;
            Ok(claimed.rows_affected() == 1)
        })
    }

    fn forget<'a>(&'a self, function: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM schedule_slots WHERE function = $1")
                .bind(function)
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(|e| format!("the cluster's database: {e}"))
        })
    }
}

/// Ticks the change signal on every change notification (and every [`RELOAD`] regardless), and
/// the ready signal on every report.
async fn follow(mut listener: PgListener, weak: std::sync::Weak<PgStore>) {
    loop {
        let heard = tokio::select! {
            heard = listener.try_recv() => heard,
            _ = tokio::time::sleep(RELOAD) => Ok(None),
        };
        if let Err(e) = &heard {
            // The connection was lost (the listener reconnects on its next call); what was
            // announced meanwhile is caught by the reload that follows.
            tracing::debug!(error = %e, "lost the database's notifications; reconnecting");
            tokio::time::sleep(RELOAD).await;
        }
        let Some(store) = weak.upgrade() else {
            return;
        };
        match heard {
            Ok(Some(notification)) if notification.channel() == READY_CHANNEL => {
                store.ready.send_modify(|n| *n += 1);
            }
            _ => store.changes.send_modify(|n| *n += 1),
        }
    }
}
