//! redb 4: a copy-on-write B-tree in one file. Each record is a row of a
//! `u64 -> &[u8]` table keyed by its index; one write transaction per batch
//! (or per record in the one-per-call workload).

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Engine, EngineInfo, FsyncSupport};
use crate::workload::{Check, Fsync, Result, Values};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const FILE: &str = "log.redb";

/// An open database.
pub struct Redb {
    db: Database,
    durability: Durability,
}

impl Redb {
    /// Inserts `values` with keys from `first` in one write transaction.
    #[inline]
    fn write(&self, first: u64, values: impl Iterator<Item = impl AsRef<[u8]>>) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(self.durability)?;
        {
            let mut table = tx.open_table(TABLE)?;
            for (key, value) in (first..).zip(values) {
                table.insert(key, value.as_ref())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    const INFO: EngineInfo = EngineInfo {
        name: "redb",
        version: "4.6.0",
        no_fsync: "Durability::None commits, which keep the written pages in redb's own write buffer (part of \
             its 1 GiB default cache) until a durable commit; the append time therefore includes one final empty \
             Durability::Immediate commit, redb's only way to hand the data to the OS, and that commit fsyncs",
        fsync_per_batch: FsyncSupport::Supported(
            "Durability::Immediate: each batch's commit is on disk when commit() returns",
        ),
        scan: "one read transaction, Table::iter in key order; redb does not verify page checksums on reads",
        close: "Database::close",
    };

    fn create(dir: &Path, sync: Fsync, _values: Values<'_>) -> Result<Self> {
        let durability = match sync {
            Fsync::None => Durability::None,
            Fsync::PerBatch => Durability::Immediate,
        };
        let db = Database::create(dir.join(FILE))?;
        // Create the table before the timing starts.
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?;
        tx.commit()?;
        Ok(Redb { db, durability })
    }

    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()> {
        for (first, batch) in values.batches(batch) {
            self.write(first, batch.iter())?;
        }
        Ok(())
    }

    fn append_each(&mut self, values: Values<'_>) -> Result<()> {
        for (i, value) in (0u64..).zip(values.iter()) {
            self.write(i, std::iter::once(value))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if matches!(self.durability, Durability::None) {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }

    fn reopen(dir: &Path) -> Result<Self> {
        Ok(Redb { db: Database::open(dir.join(FILE))?, durability: Durability::None })
    }

    fn scan(&mut self, check: &mut Check<'_>) -> Result<()> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        for item in table.iter()? {
            let (key, value) = item?;
            check.key(key.value())?;
            check.value(value.value())?;
        }
        Ok(())
    }
}
