//! annal's event store: `EventStore::append` with `ExpectedVersion::Exact`
//! or `NoStream`, `Durability::Always` (durable) or `Never`; event ids drawn
//! by annal (no idempotency lookup, as the SQL tables have no unique index
//! on the id).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annal::Durability;
use annal::events::{
    Direction, EventStore, EventStoreConfig, ExpectedVersion, INDEX_DIR_NAME, NewEvent, StartFrom, SubscriptionTarget,
};

use super::{READ_EVENT_DATA, Session, Store};
use crate::workload::Result;

fn config(durable: bool) -> EventStoreConfig {
    let d = if durable { Durability::Always } else { Durability::Never };
    let default = EventStoreConfig::default();
    let log = default.log_config().clone().with_durability(d);
    default.with_log_config(log)
}

/// An open store.
pub struct AnnalStore {
    dir: PathBuf,
    durable: bool,
    store: Option<EventStore>,
}

impl AnnalStore {
    /// Creates a store in the empty directory `dir`.
    pub fn create(dir: &Path, durable: bool) -> Result<AnnalStore> {
        let store = EventStore::open(dir, config(durable))?;
        Ok(AnnalStore { dir: dir.to_path_buf(), durable, store: Some(store) })
    }

    fn store(&self) -> Result<&EventStore> {
        self.store.as_ref().ok_or_else(|| "the store is closed".into())
    }
}

impl Store for AnnalStore {
    fn session(&self) -> Result<Box<dyn Session + Send + '_>> {
        Ok(Box::new(AnnalSession { store: self.store()? }))
    }

    fn fill(&mut self, streams: u64, per_stream: u64, singles: u64) -> Result<()> {
        let store = self.store()?;
        let names: Vec<String> = (0..streams).map(|s| format!("order-{s}")).collect();
        let mut single = 0;
        for v in 0..per_stream {
            let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
            for name in &names {
                store.append(name, expected, vec![NewEvent::json("OrderPlaced", READ_EVENT_DATA)])?;
            }
            while single < singles * (v + 1) / per_stream {
                let event = NewEvent::json("OrderPlaced", READ_EVENT_DATA);
                store.append(&format!("cart-{single}"), ExpectedVersion::NoStream, vec![event])?;
                single += 1;
            }
        }
        store.flush_index()?;
        Ok(())
    }

    fn count(&self) -> Result<u64> {
        Ok(self.store()?.head_position())
    }

    fn rebuild_index(&mut self) -> Result<Option<f64>> {
        if let Some(store) = self.store.take() {
            store.close()?;
        }
        std::fs::remove_dir_all(self.dir.join(INDEX_DIR_NAME))?;
        let start = Instant::now();
        let store = EventStore::open(&self.dir, config(self.durable))?;
        let secs = start.elapsed().as_secs_f64();
        self.store = Some(store);
        Ok(Some(secs))
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(store) = self.store.take() {
            store.close()?;
        }
        Ok(())
    }
}

struct AnnalSession<'a> {
    store: &'a EventStore,
}

impl Session for AnnalSession<'_> {
    fn append(&mut self, stream: &str, expected: Option<u64>, n: usize, data: &str) -> Result<()> {
        let expected = expected.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = (0..n).map(|_| NewEvent::json("OrderPlaced", data.as_bytes())).collect();
        self.store.append(stream, expected, events)?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Result<usize> {
        // Each event borrowed from the log, as the SQL engines' rows are
        // read (`&str` fields of the fetched rows).
        let mut next = 0;
        let n = self.store.read_stream_with(stream, 0, Direction::Forward, 100, |e| {
            if e.version != next || e.data.is_empty() || e.event_type.is_empty() {
                return Err(format!("{stream}: event {next} has version {}", e.version).into());
            }
            next += 1;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })?;
        Ok(n)
    }

    fn catch_up(&mut self, total: u64) -> Result<u64> {
        let mut sub = self.store.subscribe(SubscriptionTarget::All, StartFrom::Beginning)?;
        let mut n = 0;
        while n < total {
            match sub.next_timeout(Duration::from_secs(10))? {
                Some(e) if !e.data.is_empty() => n += 1,
                Some(e) => return Err(format!("event at {} has no data", e.position).into()),
                None => break,
            }
        }
        Ok(n)
    }
}
