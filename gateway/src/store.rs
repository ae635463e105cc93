//! Where function records live, and the commit point of every deploy and delete. [`DiskStore`]
//! keeps them as files in the data directory (`wafer up`); a cluster keeps them in PostgreSQL
//! (the `wafer-cluster` crate), where every gateway and worker reads the same ones.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use tokio::sync::watch;
use wafer_worker::disk;

use crate::error::ApiError;
pub use crate::record::Record;

/// The records of a deployment's functions.
pub trait Store: Send + Sync + 'static {
    /// Every record, as it is now.
    fn load(&self) -> BoxFuture<'_, Result<Vec<Record>, ApiError>>;

    /// Makes `record` its function's current one, atomically: a reader sees the previous record
    /// or this one, never a mix. Its `revision` must be one more than the stored one's (for a
    /// new function, no record may be stored); if another process committed in between, this is
    /// a conflict and nothing changes. A route another function owns is a conflict too.
    fn commit(&self, record: &Record) -> BoxFuture<'_, Result<(), ApiError>>;

    /// Puts a function back as it was before a commit whose install failed: `previous`, or no
    /// record at all.
    fn restore<'a>(
        &'a self,
        name: &'a str,
        previous: Option<&'a Record>,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// Deletes a function's record; resolves to whether it existed.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, ApiError>>;

    /// Changes whenever the records may have changed elsewhere (another gateway deployed), so
    /// that this process reloads them. A store only this process writes never changes it.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// Records as files, `<data>/functions/<name>.json` (a function's whole history in one file),
/// each written atomically (so after a crash at any point a file holds the old record or the
/// new one). Only this process writes them.
pub struct DiskStore {
    dir: PathBuf,
    /// Held open so that [`Store::changes`] never reports a change.
    changes: watch::Sender<u64>,
}

impl DiskStore {
    /// Opens (creating) `<data_dir>/functions` and removes what a crash left half-written.
    pub fn open(data_dir: &Path) -> Result<DiskStore, ApiError> {
        let dir = data_dir.join("functions");
        let failed = |what: &str| ApiError::storage(format!("failed to {what} {}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(failed("create"))?;
        disk::remove_temporaries(&dir).map_err(failed("clean"))?;
        Ok(DiskStore {
            dir,
            changes: watch::channel(0).0,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn write(&self, record: &Record) -> Result<(), ApiError> {
        let path = self.path(&record.name);
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        disk::atomic_write(&path, &json).map_err(ApiError::storage(format!(
            "failed to write {}",
            path.display()
        )))
    }

    fn remove(&self, name: &str) -> Result<bool, ApiError> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(ApiError::storage(format!(
                    "failed to remove {}",
                    path.display()
                ))(e));
            }
        }
        disk::sync_dir(&self.dir).map_err(ApiError::storage(format!(
            "failed to remove {}",
            path.display()
        )))?;
        Ok(true)
    }
}

impl Store for DiskStore {
    fn load(&self) -> BoxFuture<'_, Result<Vec<Record>, ApiError>> {
        Box::pin(async move {
            let failed =
                |what: &str| ApiError::storage(format!("failed to {what} {}", self.dir.display()));
            let mut records = Vec::new();
            for entry in std::fs::read_dir(&self.dir).map_err(failed("read"))? {
                let path = entry.map_err(failed("read"))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match read_record(&path) {
                    Ok(record) => records.push(record),
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "skipping unreadable function record")
                    }
                }
            }
            Ok(records)
        })
    }

    fn commit(&self, record: &Record) -> BoxFuture<'_, Result<(), ApiError>> {
        let result = self.write(record);
        Box::pin(std::future::ready(result))
    }

    fn restore<'a>(
        &'a self,
        name: &'a str,
        previous: Option<&'a Record>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let result = match previous {
            Some(record) => self.write(record),
            None => self.remove(name).map(drop),
        };
        Box::pin(std::future::ready(result))
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(std::future::ready(self.remove(name)))
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
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
