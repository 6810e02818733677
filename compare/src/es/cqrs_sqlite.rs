//! cqrs-es's persisted store (`PersistedEventStore`) on SQLite: a
//! `PersistedEventRepository` over rusqlite with sqlite-es 0.5.0's tables
//! (its migration `20221114171845_init.sql`) and SQL, statement for
//! statement. sqlite-es itself cannot be linked here: it reaches SQLite
//! through sqlx 0.8, whose `libsqlite3-sys` 0.30 and rusqlite 0.37's 0.35
//! both link the native `sqlite3` (cargo allows one). What differs from
//! sqlite-es: rusqlite's synchronous calls inside the async methods instead
//! of sqlx's driver thread, and a plain pool of connections (one per
//! writer) instead of sqlx's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use rusqlite::{Connection, ErrorCode, OptionalExtension};
use serde_json::Value;

use crate::workload::Result;

const FILE: &str = "cqrs.sqlite3";

/// sqlite-es's migration, without its test view and test row.
const SCHEMA: &str = "
CREATE TABLE events
(
  aggregate_type text                          NOT NULL,
  aggregate_id   text                          NOT NULL,
  sequence       integer CHECK (sequence >= 0) NOT NULL,
  event_type     text                          NOT NULL,
  event_version  text                          NOT NULL,
  payload        text                          NOT NULL,
  metadata       text                          NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE TABLE snapshots
(
  aggregate_type   text                                  NOT NULL,
  aggregate_id     text                                  NOT NULL,
  last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
  current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
  payload          text                                  NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;";

// sqlite-es's SqlQueryFactory, for the tables `events` and `snapshots`.
const SELECT_EVENTS: &str = "
SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
  FROM events
  WHERE aggregate_type = ? AND aggregate_id = ?
  ORDER BY sequence";
const INSERT_EVENT: &str = "
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?)";
const INSERT_SNAPSHOT: &str = "
INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
VALUES (?, ?, ?, ?, ?)";
const UPDATE_SNAPSHOT: &str = "
UPDATE snapshots
  SET last_sequence= ? , payload= ?, current_snapshot= ?
  WHERE aggregate_type= ? AND aggregate_id= ? AND current_snapshot= ?";
const SELECT_SNAPSHOT: &str = "
SELECT aggregate_type, aggregate_id, last_sequence, current_snapshot, payload
  FROM snapshots
  WHERE aggregate_type = ? AND aggregate_id = ?";

fn get_last_events_query(last_sequence: usize) -> String {
    format!(
        "
SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
  FROM events
  WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > {last_sequence}
  ORDER BY sequence"
    )
}

/// The database file and its connections.
struct Pool {
    path: PathBuf,
    durable: bool,
    idle: Mutex<Vec<Connection>>,
}

/// The repository (cheap to clone: the pool is shared).
#[derive(Clone)]
pub struct SqliteRepo {
    pool: Arc<Pool>,
}

fn connect(path: &Path, durable: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(60))?;
    Ok(conn)
}

fn failed(e: rusqlite::Error) -> PersistenceError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            PersistenceError::OptimisticLockError
        }
        e => PersistenceError::ConnectionError(Box::new(e)),
    }
}

impl SqliteRepo {
    /// Creates the database in the empty directory `dir`: WAL,
    /// `synchronous=FULL` (durable) or `OFF`.
    pub fn create(dir: &Path, durable: bool) -> Result<SqliteRepo> {
        let path = dir.join(FILE);
        connect(&path, durable)?.execute_batch(SCHEMA)?;
        Ok(SqliteRepo { pool: Arc::new(Pool { path, durable, idle: Mutex::new(Vec::new()) }) })
    }

    /// Another pool on the same database, with its own durability.
    pub fn reopen(&self, durable: bool) -> SqliteRepo {
        SqliteRepo { pool: Arc::new(Pool { path: self.pool.path.clone(), durable, idle: Mutex::new(Vec::new()) }) }
    }

    /// Runs `f` on a connection of the pool (a new one if none is idle).
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, PersistenceError>) -> Result<T, PersistenceError> {
        let idle = self.pool.idle.lock().expect("not poisoned").pop();
        let mut conn = match idle {
            Some(c) => c,
            None => connect(&self.pool.path, self.pool.durable).map_err(failed)?,
        };
        let r = f(&mut conn);
        self.pool.idle.lock().expect("not poisoned").push(conn);
        r
    }

    /// Events stored.
    pub fn count(&self) -> Result<u64> {
        let n: i64 = self
            .with(|c| c.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).map_err(failed))
            .map_err(|e| e.to_string())?;
        Ok(u64::try_from(n)?)
    }

    fn select_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        query: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.with(|c| {
            let mut select = c.prepare_cached(query).map_err(failed)?;
            let mut rows = select.query((A::TYPE, aggregate_id)).map_err(failed)?;
            let mut result = Vec::new();
            while let Some(row) = rows.next().map_err(failed)? {
                let text = |i| row.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(failed);
                let json = |i| -> Result<Value, PersistenceError> { Ok(serde_json::from_str(text(i)?)?) };
                let sequence: i64 = row.get(2).map_err(failed)?;
                result.push(SerializedEvent::new(
                    text(1)?.to_string(),
                    sequence as usize,
                    text(0)?.to_string(),
                    text(3)?.to_string(),
                    text(4)?.to_string(),
                    json(5)?,
                    json(6)?,
                ));
            }
            Ok(result)
        })
    }

    /// sqlite-es's `persist_events`: one INSERT per event; the sequence of
    /// the last.
    fn persist_events<A: Aggregate>(
        tx: &rusqlite::Transaction<'_>,
        events: &[SerializedEvent],
    ) -> Result<usize, PersistenceError> {
        let mut insert = tx.prepare_cached(INSERT_EVENT).map_err(failed)?;
        let mut current_sequence = 0;
        for event in events {
            current_sequence = event.sequence;
            let payload = serde_json::to_string(&event.payload)?;
            let metadata = serde_json::to_string(&event.metadata)?;
            insert
                .execute((
                    A::TYPE,
                    event.aggregate_id.as_str(),
                    event.sequence as i64,
                    &event.event_type,
                    &event.event_version,
                    payload,
                    metadata,
                ))
                .map_err(failed)?;
        }
        Ok(current_sequence)
    }
}

impl PersistedEventRepository for SqliteRepo {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events::<A>(aggregate_id, SELECT_EVENTS)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events::<A>(aggregate_id, &get_last_events_query(last_sequence))
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.with(|c| {
            let mut select = c.prepare_cached(SELECT_SNAPSHOT).map_err(failed)?;
            let row = select
                .query_row((A::TYPE, aggregate_id), |row| {
                    Ok((
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .optional()
                .map_err(failed)?;
            let Some((aggregate_id, last_sequence, current_snapshot, payload)) = row else { return Ok(None) };
            Ok(Some(SerializedSnapshot {
                aggregate_id,
                aggregate: serde_json::from_str(&payload)?,
                current_sequence: last_sequence as usize,
                current_snapshot: current_snapshot as usize,
            }))
        })
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.with(|c| {
            let tx = c.transaction().map_err(failed)?;
            let current_sequence = Self::persist_events::<A>(&tx, events)?;
            if let Some((aggregate_id, aggregate, current_snapshot)) = snapshot_update {
                let payload = serde_json::to_string(&aggregate)?;
                if current_snapshot == 1 {
                    tx.prepare_cached(INSERT_SNAPSHOT)
                        .and_then(|mut s| {
                            s.execute((
                                A::TYPE,
                                aggregate_id.as_str(),
                                current_sequence as i64,
                                current_snapshot as i64,
                                payload,
                            ))
                        })
                        .map_err(failed)?;
                } else {
                    let changed = tx
                        .prepare_cached(UPDATE_SNAPSHOT)
                        .and_then(|mut s| {
                            s.execute((
                                current_sequence as i64,
                                payload,
                                current_snapshot as i64,
                                A::TYPE,
                                aggregate_id.as_str(),
                                (current_snapshot - 1) as i64,
                            ))
                        })
                        .map_err(failed)?;
                    // As sqlite-es: committed, then the snapshot's lock checked.
                    tx.commit().map_err(failed)?;
                    return match changed {
                        1 => Ok(()),
                        _ => Err(PersistenceError::OptimisticLockError),
                    };
                }
            }
            tx.commit().map_err(failed)
        })
    }

    async fn stream_events<A: Aggregate>(&self, _: &str) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError("streaming is not used by the workloads".into()))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError("streaming is not used by the workloads".into()))
    }
}
