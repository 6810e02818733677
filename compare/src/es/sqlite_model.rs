//! A read model in SQLite for annal's `ProjectionRunner`: the balances of
//! the accounts, and the projection's position in a table of checkpoints,
//! written in one transaction per batch ([`ReadModel::commit`]), the
//! position read back from that table ([`ReadModel::checkpoint`]). The
//! runner, the events and the handler's arithmetic are those of annal's
//! `KvModel` run; only where the rows go differs.

use std::path::Path;
use std::time::Duration;

use annal::es::{CommitError, Error, ReadModel};
use annal::events::RecordedEvent;
use rusqlite::{Connection, OptionalExtension};

use super::account::AccountEvent;
use crate::workload::Result;

const FILE: &str = "read-model.sqlite3";
const SCHEMA: &str = "CREATE TABLE balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL); \
    CREATE TABLE checkpoints (projection TEXT PRIMARY KEY, position INTEGER NOT NULL);";
const UPSERT_BALANCE: &str = "INSERT INTO balances (account, balance) VALUES (?1, ?2) \
    ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance";
const UPSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (projection, position) VALUES (?1, ?2) \
    ON CONFLICT (projection) DO UPDATE SET position = excluded.position";

/// The balances of the account streams in SQLite (WAL,
/// `synchronous=FULL` durable or `OFF`).
pub struct SqliteBalances {
    conn: Connection,
    name: String,
}

fn store_error(e: rusqlite::Error) -> Error {
    Error::State { what: "the SQLite read model".into(), reason: e.to_string() }
}

impl SqliteBalances {
    /// Creates the database in the empty directory `dir`, for the
    /// projection `name`.
    pub fn create(dir: &Path, name: &str, durable: bool) -> Result<SqliteBalances> {
        let conn = Connection::open(dir.join(FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
        conn.busy_timeout(Duration::from_secs(60))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteBalances { conn, name: name.to_string() })
    }

    /// The number of rows and the sum of the balances.
    pub fn totals(&self) -> Result<(u64, i64)> {
        let (n, sum): (i64, Option<i64>) =
            self.conn.query_row("SELECT count(*), sum(balance) FROM balances", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((u64::try_from(n)?, sum.unwrap_or(0)))
    }
}

/// What an account event adds to its balance.
pub fn delta(event: &RecordedEvent) -> std::result::Result<i64, String> {
    match serde_json::from_slice(&event.data).map_err(|e| e.to_string())? {
        AccountEvent::Opened => Ok(0),
        AccountEvent::Deposited { amount, .. } => Ok(amount),
    }
}

impl ReadModel for SqliteBalances {
    fn checkpoint(&mut self) -> annal::es::Result<Option<u64>> {
        let position: Option<i64> = self
            .conn
            .query_row("SELECT position FROM checkpoints WHERE projection = ?1", [&self.name], |r| r.get(0))
            .optional()
            .map_err(store_error)?;
        Ok(position.map(|p| p as u64))
    }

    fn commit(&mut self, events: &[RecordedEvent], next: u64) -> std::result::Result<(), CommitError> {
        let tx = self.conn.transaction().map_err(store_error)?;
        {
            let mut upsert = tx.prepare_cached(UPSERT_BALANCE).map_err(store_error)?;
            for (index, e) in events.iter().enumerate() {
                let delta = delta(e).map_err(|reason| CommitError::Event { index, reason })?;
                upsert.execute((&e.stream, delta)).map_err(store_error)?;
            }
            tx.prepare_cached(UPSERT_CHECKPOINT)
                .and_then(|mut s| s.execute((&self.name, next as i64)))
                .map_err(store_error)?;
        }
        tx.commit().map_err(store_error)?;
        Ok(())
    }

    fn reset(&mut self) -> annal::es::Result<()> {
        let tx = self.conn.transaction().map_err(store_error)?;
        tx.execute("DELETE FROM balances", []).map_err(store_error)?;
        tx.execute("DELETE FROM checkpoints WHERE projection = ?1", [&self.name]).map_err(store_error)?;
        tx.commit().map_err(store_error)
    }
}
