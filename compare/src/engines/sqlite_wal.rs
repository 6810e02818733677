//! SQLite (bundled, through rusqlite 0.37) in WAL mode: a table
//! `log(id INTEGER PRIMARY KEY, value BLOB)`, rows inserted with a prepared
//! statement in explicit transactions.

use std::path::Path;

use rusqlite::Connection;

use super::{Engine, EngineInfo, FsyncSupport};
use crate::workload::{Check, Fsync, Result, Values};

const FILE: &str = "log.sqlite3";
const INSERT: &str = "INSERT INTO log (id, value) VALUES (?1, ?2)";
/// Rows per transaction in the one-insert-per-call workload.
const ROWS_PER_TX_EACH: usize = 1_000;

/// An open connection.
pub struct Sqlite {
    conn: Connection,
}

fn connect(dir: &Path, sync: Fsync) -> Result<Connection> {
    let conn = Connection::open(dir.join(FILE))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (journal_mode is {mode})").into());
    }
    // OFF: no fsync at all. FULL: in WAL mode, the WAL is fsynced at every
    // commit (NORMAL would fsync only at checkpoints, not per commit).
    let synchronous = match sync {
        Fsync::None => "OFF",
        Fsync::PerBatch => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

/// Converts a record index to an SQLite integer key.
#[inline]
fn id(i: u64) -> Result<i64> {
    Ok(i64::try_from(i)?)
}

impl Engine for Sqlite {
    const INFO: EngineInfo = EngineInfo {
        name: "SQLite",
        version: "SQLite 3.50.2 bundled by rusqlite 0.37.0",
        no_fsync: "journal_mode=WAL, synchronous=OFF; batches: one transaction per batch; one per call: one \
             INSERT execution per record, committed every 1,000 rows",
        fsync_per_batch: FsyncSupport::Supported(
            "journal_mode=WAL, synchronous=FULL (the WAL is fsynced at each commit), one \
             transaction per batch",
        ),
        scan: "SELECT id, value FROM log ORDER BY id; SQLite keeps no checksums of its pages",
        close: "Connection::close (checkpoints the WAL into the database file)",
    };

    fn create(dir: &Path, sync: Fsync, _values: Values<'_>) -> Result<Self> {
        let conn = connect(dir, sync)?;
        conn.execute_batch("CREATE TABLE log (id INTEGER PRIMARY KEY, value BLOB NOT NULL)")?;
        Ok(Sqlite { conn })
    }

    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()> {
        let mut begin = self.conn.prepare("BEGIN")?;
        let mut commit = self.conn.prepare("COMMIT")?;
        let mut insert = self.conn.prepare(INSERT)?;
        for (first, batch) in values.batches(batch) {
            begin.execute([])?;
            for (i, value) in (first..).zip(batch.iter()) {
                insert.execute((id(i)?, value))?;
            }
            commit.execute([])?;
        }
        Ok(())
    }

    fn append_each(&mut self, values: Values<'_>) -> Result<()> {
        let mut begin = self.conn.prepare("BEGIN")?;
        let mut commit = self.conn.prepare("COMMIT")?;
        let mut insert = self.conn.prepare(INSERT)?;
        for (i, value) in (0u64..).zip(values.iter()) {
            if i % ROWS_PER_TX_EACH as u64 == 0 {
                if i > 0 {
                    commit.execute([])?;
                }
                begin.execute([])?;
            }
            insert.execute((id(i)?, value))?;
        }
        if !values.is_empty() {
            commit.execute([])?;
        }
        Ok(())
    }

    fn close(self) -> Result<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }

    fn reopen(dir: &Path) -> Result<Self> {
        Ok(Sqlite { conn: connect(dir, Fsync::None)? })
    }

    fn scan(&mut self, check: &mut Check<'_>) -> Result<()> {
        let mut select = self.conn.prepare("SELECT id, value FROM log ORDER BY id")?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let key: i64 = row.get(0)?;
            check.key(u64::try_from(key)?)?;
            check.value(row.get_ref(1)?.as_blob()?)?;
        }
        Ok(())
    }
}
