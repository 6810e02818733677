//! fjall 3: an LSM tree. Each record is a key-value pair in one keyspace, the
//! key the record's index as a big-endian u64 (so keys sort in append order).

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Engine, EngineInfo, FsyncSupport};
use crate::workload::{Check, Fsync, Result, Values};

const KEYSPACE: &str = "log";

/// An open database and its one keyspace.
pub struct Fjall {
    db: Database,
    keyspace: Keyspace,
    /// Durability of each write batch: the journal flushed to the OS
    /// (`Buffer`), or also fdatasync'ed (`SyncData`).
    batch_mode: PersistMode,
}

fn open(dir: &Path, batch_mode: PersistMode) -> Result<Fjall> {
    // Default settings: manual_journal_persist(false), so every insert and
    // every batch flushes the journal's buffer to the OS.
    let db = Database::builder(dir).open()?;
    let keyspace = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
    Ok(Fjall { db, keyspace, batch_mode })
}

impl Engine for Fjall {
    const INFO: EngineInfo = EngineInfo {
        name: "fjall",
        version: "3.1.13",
        no_fsync: "default Database settings (each insert or batch flushes the journal to the OS: \
             PersistMode::Buffer); one keyspace, big-endian u64 keys; memtable flushes and compactions run on \
             fjall's background threads",
        fsync_per_batch: FsyncSupport::Supported(
            "WriteBatch::durability(Some(PersistMode::SyncData)): fdatasync of the journal per batch",
        ),
        scan: "Keyspace::iter in key order; blocks read from disk tables are checked against their xxh3 \
             checksums, what is still in memtables is not checksummed",
        close: "Database::persist(PersistMode::SyncAll), then drop (which stops the background threads)",
    };

    fn create(dir: &Path, sync: Fsync, _values: Values<'_>) -> Result<Self> {
        let mode = match sync {
            Fsync::None => PersistMode::Buffer,
            Fsync::PerBatch => PersistMode::SyncData,
        };
        open(dir, mode)
    }

    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()> {
        for (first, batch) in values.batches(batch) {
            let mut writes = self.db.batch().durability(Some(self.batch_mode));
            for (i, value) in (first..).zip(batch.iter()) {
                writes.insert(&self.keyspace, &i.to_be_bytes()[..], value);
            }
            writes.commit()?;
        }
        Ok(())
    }

    fn append_each(&mut self, values: Values<'_>) -> Result<()> {
        for (i, value) in (0u64..).zip(values.iter()) {
            self.keyspace.insert(&i.to_be_bytes()[..], value)?;
        }
        Ok(())
    }

    fn close(self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        drop(self.keyspace);
        drop(self.db);
        Ok(())
    }

    fn reopen(dir: &Path) -> Result<Self> {
        open(dir, PersistMode::Buffer)
    }

    fn scan(&mut self, check: &mut Check<'_>) -> Result<()> {
        for item in self.keyspace.iter() {
            let (key, value) = item.into_inner()?;
            let key: [u8; 8] = key[..].try_into().map_err(|_| format!("fjall key of {} bytes", key.len()))?;
            check.key(u64::from_be_bytes(key))?;
            check.value(&value)?;
        }
        Ok(())
    }
}
