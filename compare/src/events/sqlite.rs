//! SQLite (rusqlite, bundled) in WAL mode with the PostgreSQL schema's
//! columns: `INTEGER PRIMARY KEY` global sequence, `UNIQUE(stream_id,
//! version)`; an append is `BEGIN IMMEDIATE`, the expected-version check,
//! the inserts, `COMMIT`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::{READ_EVENT_DATA, Session, Store, event_id};
use crate::workload::Result;

const FILE: &str = "events.sqlite3";
const SCHEMA: &str = "CREATE TABLE events (global_seq INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, \
    version INTEGER NOT NULL, event_id BLOB NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT, \
    created TEXT DEFAULT CURRENT_TIMESTAMP, UNIQUE (stream_id, version))";

/// A database file in a directory.
pub struct SqliteStore {
    path: PathBuf,
    durable: bool,
}

fn connect(path: &Path, durable: bool) -> Result<Connection> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (journal_mode is {mode})").into());
    }
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    // Writers of other connections wait for the write lock.
    conn.busy_timeout(Duration::from_secs(60))?;
    Ok(conn)
}

impl SqliteStore {
    /// Creates the database in the empty directory `dir`.
    pub fn create(dir: &Path, durable: bool) -> Result<SqliteStore> {
        let path = dir.join(FILE);
        connect(&path, durable)?.execute_batch(SCHEMA)?;
        Ok(SqliteStore { path, durable })
    }
}

impl Store for SqliteStore {
    fn session(&self) -> Result<Box<dyn Session + Send + '_>> {
        Ok(Box::new(SqliteSession { conn: connect(&self.path, self.durable)?, ids: super::next_id_seed() }))
    }

    fn fill(&mut self, streams: u64, per_stream: u64, singles: u64) -> Result<()> {
        let mut conn = connect(&self.path, false)?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO events (stream_id, version, event_id, type, data) VALUES (?1, ?2, ?3, 'OrderPlaced', ?4)",
            )?;
            let mut ids = super::next_id_seed();
            let mut single = 0;
            for v in 0..per_stream {
                for s in 0..streams {
                    let id = event_id(&mut ids);
                    insert.execute((format!("order-{s}"), v as i64, &id.as_bytes()[..], READ_EVENT_DATA))?;
                }
                while single < singles * (v + 1) / per_stream {
                    let id = event_id(&mut ids);
                    insert.execute((format!("cart-{single}"), 0i64, &id.as_bytes()[..], READ_EVENT_DATA))?;
                    single += 1;
                }
            }
        }
        tx.commit()?;
        conn.execute_batch("ANALYZE")?;
        Ok(())
    }

    fn count(&self) -> Result<u64> {
        let n: i64 = connect(&self.path, false)?.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        Ok(u64::try_from(n)?)
    }
}

struct SqliteSession {
    conn: Connection,
    ids: u128,
}

impl Session for SqliteSession {
    fn append(&mut self, stream: &str, expected: Option<u64>, n: usize, data: &str) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: Option<i64> = tx
            .prepare_cached("SELECT max(version) FROM events WHERE stream_id = ?1")?
            .query_row([stream], |r| r.get(0))?;
        if current != expected.map(|v| v as i64) {
            return Err(format!("{stream}: expected version {expected:?}, found {current:?}").into());
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (stream_id, version, event_id, type, data) VALUES (?1, ?2, ?3, 'OrderPlaced', ?4)",
            )?;
            let first = expected.map_or(0, |v| v + 1) as i64;
            for version in first..first + n as i64 {
                let id = event_id(&mut self.ids);
                match insert.execute((stream, version, &id.as_bytes()[..], data)) {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
                        return Err(format!("{stream}: concurrency conflict (unique violation)").into());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Result<usize> {
        let mut select = self.conn.prepare_cached(
            "SELECT global_seq, version, event_id, type, data, metadata FROM events \
             WHERE stream_id = ?1 ORDER BY version LIMIT 100",
        )?;
        let mut rows = select.query([stream])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let version: i64 = row.get(1)?;
            let data = row.get_ref(4)?.as_str()?;
            if version != n as i64 || data.is_empty() {
                return Err(format!("{stream}: row {n} has version {version}").into());
            }
            let _ = row.get_ref(2)?.as_blob()?;
            let _ = row.get_ref(3)?.as_str()?;
            n += 1;
        }
        Ok(n)
    }

    fn catch_up(&mut self, _total: u64) -> Result<u64> {
        let mut page = self.conn.prepare_cached(
            "SELECT global_seq, stream_id, version, event_id, type, data, metadata FROM events \
             WHERE global_seq > ?1 ORDER BY global_seq LIMIT 1000",
        )?;
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let mut rows = page.query([after])?;
            let mut got = 0;
            while let Some(row) = rows.next()? {
                after = row.get(0)?;
                let _ = row.get_ref(1)?.as_str()?;
                let _ = row.get_ref(5)?.as_str()?;
                got += 1;
            }
            if got == 0 {
                return Ok(n);
            }
            n += got;
        }
    }
}
