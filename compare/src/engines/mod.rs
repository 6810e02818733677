//! The engines compared, behind one trait, so that every one runs the very
//! same workload loop (monomorphised: no dynamic dispatch in timed code).

use std::path::Path;

use clap::ValueEnum;
use serde::Serialize;

use crate::workload::{Check, Fsync, Result, Values};

mod annal_log;
mod commit_log;
mod fjall_kv;
mod raw_mmap;
mod redb_kv;
mod sqlite_wal;

pub use annal_log::Annal;
pub use commit_log::CommitLogEngine;
pub use fjall_kv::Fjall;
pub use raw_mmap::RawMmap;
pub use redb_kv::Redb;
pub use sqlite_wal::Sqlite;

/// What an engine does for each workload, for the notes under the table and
/// the JSON file.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EngineInfo {
    /// Name in the table.
    pub name: &'static str,
    /// Version(s) of the code measured (pinned in Cargo.toml).
    pub version: &'static str,
    /// What "no fsync" means for this engine: its settings.
    pub no_fsync: &'static str,
    /// What "fsync per batch" means for this engine, or why it cannot do it.
    pub fsync_per_batch: FsyncSupport,
    /// What the scan does, and what it checks.
    pub scan: &'static str,
    /// What is timed as close (after appends, not in the append rate).
    pub close: &'static str,
}

/// Whether an engine can make each batch durable before the call returns.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncSupport {
    /// It can: how.
    Supported(&'static str),
    /// It cannot: why.
    Unsupported(&'static str),
}

/// One engine: a store in a directory that can be appended to, closed,
/// reopened and scanned.
pub trait Engine: Sized {
    /// Description of the engine's settings.
    const INFO: EngineInfo;

    /// Creates a new store in the empty directory `dir`, for appending
    /// `values` with durability `sync` (open time is not measured).
    fn create(dir: &Path, sync: Fsync, values: Values<'_>) -> Result<Self>;

    /// Appends `values` with one engine call per batch of `batch`, the
    /// record at index i getting key (or offset) i.
    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()>;

    /// Appends `values` with one engine call per record.
    fn append_each(&mut self, values: Values<'_>) -> Result<()>;

    /// Moves whatever appends left in process memory to the OS (timed with
    /// the appends, reported separately too). Nothing for most engines.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Closes the store the engine's normal way.
    fn close(self) -> Result<()>;

    /// Opens the store in `dir` again, for reading.
    fn reopen(dir: &Path) -> Result<Self>;

    /// Reads every record in order, handing each value (and key or offset)
    /// to `check`.
    fn scan(&mut self, check: &mut Check<'_>) -> Result<()>;
}

/// The engines the command line can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The raw baseline: CRC + memcpy into a memory-mapped file.
    Raw,
    /// annal (this repository).
    Annal,
    /// The `commitlog` crate.
    Commitlog,
    /// fjall (LSM tree).
    Fjall,
    /// redb (copy-on-write B-tree).
    Redb,
    /// SQLite through rusqlite, WAL mode.
    Sqlite,
}

impl EngineKind {
    /// Every engine, the raw baseline first.
    pub const ALL: [EngineKind; 6] = [
        EngineKind::Raw,
        EngineKind::Annal,
        EngineKind::Commitlog,
        EngineKind::Fjall,
        EngineKind::Redb,
        EngineKind::Sqlite,
    ];

    /// The engine's description.
    pub fn info(self) -> EngineInfo {
        match self {
            EngineKind::Raw => RawMmap::INFO,
            EngineKind::Annal => Annal::INFO,
            EngineKind::Commitlog => CommitLogEngine::INFO,
            EngineKind::Fjall => Fjall::INFO,
            EngineKind::Redb => Redb::INFO,
            EngineKind::Sqlite => Sqlite::INFO,
        }
    }
}
