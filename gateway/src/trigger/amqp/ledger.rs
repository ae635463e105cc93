//! Counts a message's deliveries that ended without an answer (the process died or lost the
//! broker mid-call), across restarts, so that a message which kills its worker is dead-lettered
//! after `max_attempts` deliveries instead of being redelivered forever.
//!
//! The broker flags a delivery `redelivered` when an earlier one was never settled, but not how
//! many there were. Quorum queues count them (`x-delivery-count`); for classic queues this
//! ledger does, in the data directory: before a redelivered message runs, its entry (one small
//! file named by a digest of the message) goes up by one; when the message is settled the entry
//! goes. A first delivery writes nothing (the hot path stays off the disk), so its possible
//! crash is charged from the flag alone, once.
//!
//! Writes are a temporary file renamed into place, without fsync: they survive a killed
//! process, which is what they are for, and a lost count after a power cut costs at most a few
//! extra deliveries. A write that fails (a full disk) is logged and the message runs anyway:
//! the ledger may never be the reason a message is lost.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Entries untouched for this long are of messages settled elsewhere (another worker, or a
/// queue since deleted); they are swept when the ledger opens.
const STALE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where a process's delivery counts live.
pub struct DeliveryLedger {
    dir: PathBuf,
}

/// A message as the ledger knows it: its source queue, identity and attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry(String);

impl Entry {
    /// A message is known by its id where it has one, else by its body and timestamp;
    /// `attempt` separates the copies that retries republish.
    pub(crate) fn new(queue: &str, id: Option<&str>, body: &[u8], attempt: u32) -> Entry {
        let mut hash = Sha256::new();
        hash.update(queue.as_bytes());
        hash.update([0]);
        match id {
            Some(id) => hash.update(id.as_bytes()),
            None => hash.update(body),
        }
        hash.update([u8::from(id.is_some())]);
        hash.update(attempt.to_le_bytes());
        Entry(hex::encode(&hash.finalize()[..16]))
    }
}

impl DeliveryLedger {
    /// The ledger in `dir` (created on first use), with stale entries swept.
    pub fn open(dir: PathBuf) -> DeliveryLedger {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let now = SystemTime::now();
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE);
                if old || entry.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        DeliveryLedger { dir }
    }

    fn path(&self, entry: &Entry) -> PathBuf {
        self.dir.join(&entry.0)
    }

    /// Runs of this message this ledger has seen start while it was redelivered.
    pub(crate) fn runs(&self, entry: &Entry) -> u32 {
        std::fs::read_to_string(self.path(entry))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Records that a run of this message is starting: `runs` before it, one more now.
    pub(crate) fn starting(&self, entry: &Entry, runs: u32) {
        if let Err(e) = write(&self.dir, &self.path(entry), runs + 1) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not count a redelivered message's run; it runs anyway");
        }
    }

    /// Puts the count back to `runs` (a run that was recorded but did not happen).
    pub(crate) fn restore(&self, entry: &Entry, runs: u32) {
        if runs == 0 {
            self.settled(entry);
        } else if let Err(e) = write(&self.dir, &self.path(entry), runs) {
            tracing::debug!(error = %e, "could not restore a delivery count");
        }
    }

    /// Forgets the message (it was settled).
    pub(crate) fn settled(&self, entry: &Entry) {
        match std::fs::remove_file(self.path(entry)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(error = %e, "could not remove a delivery count"),
        }
    }
}

fn write(dir: &Path, path: &Path, runs: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, runs.to_string())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_a_new_ledger_and_go_when_settled() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("deliveries");
        let entry = Entry::new("q", None, b"message", 1);
        let ledger = DeliveryLedger::open(dir.clone());
        assert_eq!(ledger.runs(&entry), 0);
        ledger.starting(&entry, 0);
        ledger.starting(&entry, 1);
        // A restarted process reads what the last one wrote.
        let ledger = DeliveryLedger::open(dir.clone());
        assert_eq!(ledger.runs(&entry), 2);
        assert_eq!(ledger.runs(&Entry::new("q", None, b"message", 2)), 0);
        assert_eq!(ledger.runs(&Entry::new("other", None, b"message", 1)), 0);
        assert_ne!(
            Entry::new("q", Some("message"), b"", 1),
            entry,
            "an id is not a body"
        );
        ledger.restore(&entry, 1);
        assert_eq!(ledger.runs(&entry), 1);
        ledger.settled(&entry);
        assert_eq!(ledger.runs(&entry), 0);
        ledger.settled(&entry);
    }

    #[test]
    fn a_ledger_it_cannot_write_loses_counts_not_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let ledger = DeliveryLedger::open(file.join("deliveries"));
        let entry = Entry::new("q", Some("m"), b"", 1);
        ledger.starting(&entry, 0);
        assert_eq!(ledger.runs(&entry), 0);
    }
}
