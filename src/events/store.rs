//! [`EventStore`]: streams of events over one global log (docs/EVENTS.md).
//!
//! A store is a directory:
//!
//! ```text
//!  events.meta       what the store is (the stream hash's key)
//!  log/              the global log: one record per event, its offset the event's position
//!  index/            the stream index and the event-id index (runs and their manifest)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

use super::error::{CurrentVersion, Error, ExpectedVersion, Result, check_stream_id, shown};
use super::event::{self, EventRef, EventView, NewEvent, RecordedEvent};
use super::index::{IndexLimits, IndexRecovery, Indexed, Indexes};
use super::meta::{EVENTS_META_FILE_NAME, EventsMeta, INDEX_MANIFEST_FILE_NAME, StreamHasher};
use super::run::RunKind;
use super::streams::{METADATA_STREAM_PREFIX, TOMBSTONE_VERSION, Visibility};
use crate::config::{Durability, LogConfig};
use crate::envelope::Encode;
use crate::error::{CorruptionKind, IoContext};
use crate::log::Log;
use crate::record::Record;
use crate::sync::MutexExt;

/// Name of the global log's directory in a store.
pub const LOG_DIR_NAME: &str = "log";
/// Name of the index directory in a store.
pub const INDEX_DIR_NAME: &str = "index";

/// Lock stripes streams are spread over.
const STRIPES: usize = 256;

/// How an [`EventStore`] is opened.
#[derive(Debug, Clone)]
#[must_use]
pub struct EventStoreConfig {
    log: LogConfig,
    flush_entries: usize,
    merge_runs: usize,
}

impl Default for EventStoreConfig {
    fn default() -> EventStoreConfig {
        EventStoreConfig {
            // An index entry every 512 bytes: a read of one event scans at
            // most that much of its segment (about 1.5 times faster stream
            // reads than the log's default of 4 KiB, for index files 1/32 of
            // the log).
            log: LogConfig::default().with_segment_bytes(256 << 20).with_index_interval_bytes(512),
            flush_entries: 256 * 1024,
            merge_runs: 8,
        }
    }
}

impl EventStoreConfig {
    /// The global log's configuration: its durability (an append returns
    /// once its events are durable under `Always`), segment size, largest
    /// event, and `Io`. Default: [`LogConfig::default`] with 256 MiB segments
    /// and an index entry every 512 bytes.
    pub fn with_log_config(mut self, log: LogConfig) -> EventStoreConfig {
        self.log = log;
        self
    }

    /// Index entries kept in memory before they are written as index runs
    /// (default 262,144: about 25 MiB). Opening a store replays at most about
    /// this many events from the log.
    pub fn with_flush_entries(mut self, n: usize) -> EventStoreConfig {
        self.flush_entries = n;
        self
    }

    /// How many runs of one size tier an index merges into one of the next
    /// tier (default 8): see docs/EVENTS.md, "The indexes".
    pub fn with_merge_runs(mut self, n: usize) -> EventStoreConfig {
        self.merge_runs = n;
        self
    }

    /// The global log's configuration.
    pub fn log_config(&self) -> &LogConfig {
        &self.log
    }

    /// Index entries kept in memory before a flush.
    pub fn flush_entries(&self) -> usize {
        self.flush_entries
    }

    /// Runs an index may have before they are merged.
    pub fn merge_runs(&self) -> usize {
        self.merge_runs
    }

    fn validate(&self) -> Result<()> {
        if self.flush_entries == 0 || self.merge_runs < 2 {
            return Err(crate::Error::InvalidConfig(format!(
                "an event store needs flush_entries of at least 1 (got {}) and merge_runs of at least 2 (got {})",
                self.flush_entries, self.merge_runs
            ))
            .into());
        }
        Ok(())
    }
}

/// What an append wrote (or, for a retry of an earlier append with the same
/// event ids, what that append wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// The version of the first event written.
    pub first_version: u64,
    /// The version of the last event written: what the next
    /// [`ExpectedVersion::Exact`] names.
    pub next_expected_version: u64,
    /// The global position of the last event written.
    pub position: u64,
}

/// One stream's part of a multi-stream append
/// ([`EventStore::append_to_streams`]).
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream.
    pub stream: String,
    /// What the stream must be at.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// `events` for `stream`, if it is at `expected`.
    pub fn new(stream: impl Into<String>, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
        StreamAppend { stream: stream.into(), expected, events }
    }
}

/// The state of an event store's indexes ([`EventStore::index_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// The index runs cover the global log below this position.
    pub indexed_to: u64,
    /// Events whose index entries are in memory only (replayed at the next open).
    pub memtable_events: usize,
    /// Runs of the stream index.
    pub stream_runs: usize,
    /// Runs of the event-id index.
    pub id_runs: usize,
    /// Runs of the category index.
    pub category_runs: usize,
    /// Runs of the event-type index.
    pub event_type_runs: usize,
}

/// Which way a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the given version or position up.
    Forward,
    /// From the given version or position down.
    Backward,
}

/// An event store: streams of events over one global log, in a directory.
#[derive(Debug)]
pub struct EventStore {
    dir: PathBuf,
    log: Log,
    hasher: StreamHasher,
    index: Indexes,
    stripes: Box<[Mutex<()>]>,
    /// The store syncs after each append (the log itself is opened with
    /// `Never`, so that no fsync happens while an append holds its stripes).
    sync_appends: bool,
    /// The durability the store was opened with (its log's says `Never`
    /// under `Always`: see `sync_appends`).
    durability: Durability,
    /// Index entries the memtable holds before a flush.
    flush_entries: usize,
    recovery: IndexRecovery,
}

/// One stream's part of an append being prepared.
pub(crate) struct Planned<'a> {
    append: &'a StreamAppend,
    /// The hashes of its stream and of the stream's category.
    hash: u128,
    category: u128,
    /// Its first version, and the ids its events get.
    first_version: u64,
    ids: Vec<Uuid>,
}

impl EventStore {
    /// Opens the event store in `dir`, creating it if needed. Reads the index
    /// manifest and replays the events the index runs do not cover yet from
    /// the global log; a missing or damaged index is rebuilt from the log
    /// ([`EventStore::index_recovery`] says what was done).
    pub fn open(dir: impl AsRef<Path>, config: EventStoreConfig) -> Result<EventStore> {
        config.validate()?;
        let dir = dir.as_ref().to_owned();
        let io = std::sync::Arc::clone(&config.log.io);
        let created = !dir.exists();
        io.create_dir_all(&dir).ctx("create event store directory", &dir)?;
        if created && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            io.sync_dir(parent).ctx("fsync directory", parent)?;
        }
        let index_dir = dir.join(INDEX_DIR_NAME);
        let meta_path = dir.join(EVENTS_META_FILE_NAME);
        let meta = match crate::durable::read_decoded::<EventsMeta>(io.as_ref(), &meta_path)? {
            Some(meta) => meta,
            None => {
                // A new store, or one whose events.meta was lost: index runs
                // hashed under another key cannot be used.
                let manifest = index_dir.join(INDEX_MANIFEST_FILE_NAME);
                if manifest.exists() {
                    io.remove_file(&manifest).ctx("remove index manifest", &manifest)?;
                    io.sync_dir(&index_dir).ctx("fsync directory", &index_dir)?;
                }
                let meta = EventsMeta::new_random();
                crate::durable::replace_file_durably(io.as_ref(), &meta_path, &meta.encode())?;
                meta
            }
        };
        let sync_appends = config.log.durability() == Durability::Always;
        let log_config = match sync_appends {
            true => config.log.clone().with_durability(Durability::Never),
            false => config.log.clone(),
        };
        let log = Log::open(dir.join(LOG_DIR_NAME), log_config)?;
        let limits = IndexLimits { flush_entries: config.flush_entries, merge_runs: config.merge_runs };
        let (index, mut recovery) = Indexes::open(&index_dir, io, limits, log.next_offset())?;
        let store = EventStore {
            dir,
            log,
            hasher: meta.hasher(),
            index,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            sync_appends,
            durability: config.log.durability(),
            flush_entries: config.flush_entries,
            recovery: IndexRecovery::default(),
        };
        recovery.replayed = store.replay()?;
        Ok(EventStore { recovery, ..store })
    }

    /// Puts the events the index runs do not cover into the memtable.
    fn replay(&self) -> Result<u64> {
        let from = self.index.indexed_to().max(self.log.start_offset());
        let end = self.log.next_offset();
        let mut reader = self.log.read_from(from)?;
        let mut replayed = 0;
        let mut batch = Vec::with_capacity(1024);
        while reader.next_offset() < end {
            let Some(record) = reader.next_record()? else { break };
            let position = record.offset();
            let e = event::decode(record.key(), record.value()).map_err(|why| self.bad_event(position, why))?;
            batch.push(Indexed {
                stream: self.hasher.hash(e.stream),
                version: e.version,
                id: e.id.as_u128(),
                category: self.hasher.hash(event::category(e.stream)),
                event_type: self.hasher.hash(e.event_type),
                position,
            });
            replayed += 1;
            if batch.len() == batch.capacity() {
                self.index.insert_all(batch.drain(..));
                if self.index.flush_due() {
                    self.flush(true)?;
                }
            }
        }
        self.index.insert_all(batch);
        Ok(replayed)
    }

    /// `append`, with hash `hash`, planned from version `first_version`, with
    /// ids drawn for the events that have none.
    pub(crate) fn plan<'a>(&self, append: &'a StreamAppend, hash: u128, first_version: u64) -> Planned<'a> {
        let ids = append.events.iter().map(|e| e.id.unwrap_or_else(Uuid::now_v7)).collect();
        let category = self.hasher.hash(event::category(&append.stream));
        Planned { append, hash, category, first_version, ids }
    }

    /// The hash of a stream id, category or event type under the store's key.
    pub(crate) fn hash(&self, name: &str) -> u128 {
        self.hasher.hash(name)
    }

    /// The indexes.
    pub(crate) fn index(&self) -> &Indexes {
        &self.index
    }

    pub(crate) fn bad_event(&self, position: u64, why: String) -> Error {
        crate::Error::Corruption {
            path: self.log.dir().to_owned(),
            offset: position,
            position: 0,
            kind: CorruptionKind::BadEvent(why),
        }
        .into()
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The global log (read-only use: appending to it directly would put
    /// records in it that are not events).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// What opening the store did to its indexes.
    pub fn index_recovery(&self) -> &IndexRecovery {
        &self.recovery
    }

    /// The position the next event will have.
    pub fn head_position(&self) -> u64 {
        self.log.next_offset()
    }

    /// The durability the store was opened with
    /// ([`EventStoreConfig::with_log_config`]): when an append's events
    /// become durable, and so when [`EventStore::durable_position`] moves.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Waits until the global log holds an event at `position` or past it
    /// (with `durable`, until that event is durable:
    /// [`EventStore::durable_position`] is past `position`), for at most
    /// `timeout`, and returns whether it does. It gives up early, returning
    /// false, once `interrupted()` holds: the condition is checked when the
    /// wait starts and each time it wakes, with the log's waiting lock held,
    /// so a thread that makes it hold and then calls
    /// [`EventStore::wake_waiters`] is never missed. (Persistent
    /// subscriptions wait this way for new events or for a change of their
    /// group, whichever comes first.)
    pub fn wait_for_position(
        &self,
        position: u64,
        durable: bool,
        timeout: std::time::Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> bool {
        self.log.wait_for_unless(position, durable, timeout, interrupted)
    }

    /// Wakes every thread waiting for events (in
    /// [`EventStore::wait_for_position`] or a subscription's
    /// `next_timeout`): each looks again at what it waits for, and goes on
    /// waiting unless that has come or its interruption holds.
    pub fn wake_waiters(&self) {
        self.log.wake_waiters();
    }

    /// Appends `events` to `stream` if it is at `expected`. All the events
    /// become visible together or not at all, also across a crash. Retrying
    /// an append whose events all carry ids ([`NewEvent::with_id`]) that are
    /// already in the stream returns the original result and writes nothing.
    pub fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        let mut results = self.append_to_streams(vec![StreamAppend::new(stream, expected, events)])?;
        Ok(results.pop().expect("one result per stream"))
    }

    /// Appends to several streams at once, each with its own expected state:
    /// all of it or nothing. Returns one result per stream, in order.
    pub fn append_to_streams(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        for a in &appends {
            if a.stream.starts_with(METADATA_STREAM_PREFIX) {
                let reason =
                    format!("stream ids starting with {METADATA_STREAM_PREFIX} hold the store's stream metadata");
                return Err(Error::InvalidStreamId { stream: shown(&a.stream), reason });
            }
        }
        let hashes = self.validate(&appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        self.check_room()?;
        let results = {
            let _stripes = self.lock_stripes(&hashes);
            // Retries of earlier appends write nothing.
            let mut retried = Vec::with_capacity(appends.len());
            for (a, &hash) in appends.iter().zip(&hashes) {
                retried.push(self.earlier_append(a, hash)?);
            }
            if retried.iter().all(Option::is_some) {
                return Ok(retried.into_iter().flatten().collect());
            }
            if let Some((a, _)) = appends.iter().zip(&retried).find(|(_, r)| r.is_some()) {
                let id = a.events[0].id.expect("a retried append has ids");
                let reason = "this stream's events are a retry, another stream's are not".to_owned();
                return Err(Error::IdempotencyConflict { stream: shown(&a.stream), id, reason });
            }
            let mut planned = Vec::with_capacity(appends.len());
            for (a, &hash) in appends.iter().zip(&hashes) {
                let state = self.stream_state(&a.stream, hash)?;
                state.check(&a.stream, a.expected)?;
                planned.push(self.plan(a, hash, state.next_version()));
            }
            self.append_locked(&planned)?
        };
        self.after_append()?;
        Ok(results)
    }

    /// Checks every stream id, event type and size of `appends` (a stream
    /// named twice included); returns the streams' hashes.
    pub(crate) fn validate(&self, appends: &[StreamAppend]) -> Result<Vec<u128>> {
        let max = u64::from(self.log.config().max_record_bytes());
        let mut hashes = Vec::with_capacity(appends.len());
        for (i, a) in appends.iter().enumerate() {
            if let Some(reason) =
                event::stream_id_problem(a.stream.strip_prefix(METADATA_STREAM_PREFIX).unwrap_or(&a.stream))
            {
                return Err(Error::InvalidStreamId { stream: shown(&a.stream), reason });
            }
            if appends[..i].iter().any(|b| b.stream == a.stream) {
                let reason = "named twice in one append".to_owned();
                return Err(Error::InvalidStreamId { stream: shown(&a.stream), reason });
            }
            if a.events.is_empty() {
                let reason = "an append needs at least one event".to_owned();
                return Err(Error::InvalidEvent { stream: shown(&a.stream), index: 0, reason });
            }
            for (index, e) in a.events.iter().enumerate() {
                if let Some(reason) = event::event_type_problem(&e.event_type) {
                    return Err(Error::InvalidEvent { stream: shown(&a.stream), index, reason });
                }
                let size = Record::new(&[])
                    .with_key(a.stream.as_bytes())
                    .encoded_len()
                    .map_or(u64::MAX, |l| (l + event::encoded_len(e)) as u64);
                if size > max {
                    return Err(Error::EventTooLarge { stream: shown(&a.stream), index, size, max });
                }
            }
            hashes.push(self.hasher.hash(&a.stream));
        }
        Ok(hashes)
    }

    /// Takes the stripes of the streams of `hashes`, in stripe order.
    pub(crate) fn lock_stripes(&self, hashes: &[u128]) -> Vec<std::sync::MutexGuard<'_, ()>> {
        let mut ids: Vec<usize> = hashes.iter().map(|&h| (h % STRIPES as u128) as usize).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter().map(|&i| self.stripes[i].locked()).collect()
    }

    /// Writes the planned events as one batch of the global log and indexes
    /// them. The caller holds the streams' stripes and has checked their
    /// expected states.
    pub(crate) fn append_locked(&self, planned: &[Planned<'_>]) -> Result<Vec<AppendResult>> {
        let values: Vec<Vec<Vec<u8>>> = planned
            .iter()
            .map(|p| {
                // Counted up from the first version without passing it: a
                // tombstone's is u64::MAX.
                let versions = (0..).map(|i| p.first_version + i);
                p.append
                    .events
                    .iter()
                    .zip(&p.ids)
                    .zip(versions)
                    .map(|((e, &id), v)| event::encode_value(e, id, v))
                    .collect()
            })
            .collect();
        let records: Vec<Record<'_>> = planned
            .iter()
            .zip(&values)
            .flat_map(|(p, vs)| vs.iter().map(|v| Record::new(v).with_key(p.append.stream.as_bytes())))
            .collect();

        let gate = self.index.begin_append().ok_or_else(|| {
            Error::from(crate::Error::Panicked {
                path: self.dir.clone(),
                during: "an event append (reopen the store to index its events)",
            })
        })?;
        let positions = self.log.append_batch(&records).map_err(|e| match e {
            crate::Error::BatchTooLarge { size, max } => Error::AppendTooLarge { size, max },
            e => Error::Engine(e),
        })?;
        let mut position = positions.start;
        let mut results = Vec::with_capacity(planned.len());
        let mut entries = Vec::with_capacity(records.len());
        for p in planned {
            for (i, (id, e)) in p.ids.iter().zip(&p.append.events).enumerate() {
                entries.push(Indexed {
                    stream: p.hash,
                    version: p.first_version + i as u64,
                    id: id.as_u128(),
                    category: p.category,
                    event_type: self.hasher.hash(&e.event_type),
                    position,
                });
                position += 1;
            }
            let n = p.ids.len() as u64;
            results.push(AppendResult {
                first_version: p.first_version,
                next_expected_version: p.first_version + (n - 1),
                position: position - 1,
            });
        }
        self.index.insert_all(entries);
        drop(gate);
        Ok(results)
    }

    /// What follows an append once its stripes are released: the sync that
    /// makes it durable (under `Always`), and a flush of the index if due.
    pub(crate) fn after_append(&self) -> Result<()> {
        if self.sync_appends {
            self.log.sync()?;
        }
        // The append is done (and durable under `Always`): a failed flush of
        // the index is not its failure. The entries stay in the memtable, the
        // next append tries again, and `check_room` refuses appends once the
        // memtable holds twice what a flush writes.
        if self.index.flush_due() {
            let _ = self.flush(false);
        }
        Ok(())
    }

    /// Refuses an append while the index cannot be flushed and its memtable
    /// has grown to twice its flush size (the memory of the indexes stays
    /// bounded): flushes first, and fails with the flush's error.
    pub(crate) fn check_room(&self) -> Result<()> {
        if self.index.memtable_len() >= self.flush_entries.saturating_mul(2) {
            self.flush(true)?;
        }
        Ok(())
    }

    /// If every event of `a` has an id already in its stream, at consecutive
    /// versions, the result of that earlier append; if only some have, a
    /// conflict; otherwise none.
    fn earlier_append(&self, a: &StreamAppend, hash: u128) -> Result<Option<AppendResult>> {
        let mut found: Vec<Option<(u64, u64)>> = Vec::with_capacity(a.events.len());
        for e in &a.events {
            let hit = match e.id {
                Some(id) => self.find_id(&a.stream, hash, id)?,
                None => None,
            };
            found.push(hit);
        }
        let Some(first_hit) = found.iter().position(Option::is_some) else { return Ok(None) };
        let id = a.events[first_hit].id.expect("a found event has an id");
        let conflict = |reason: String| Error::IdempotencyConflict { stream: shown(&a.stream), id, reason };
        let Some((v0, _)) = found[0] else {
            return Err(conflict(format!("event {first_hit} is already in the stream, event 0 is not")));
        };
        for (i, f) in found.iter().enumerate() {
            match f {
                None => return Err(conflict(format!("event 0 is already in the stream, event {i} is not"))),
                Some((v, _)) if *v != v0 + i as u64 => {
                    return Err(conflict(format!(
                        "event {i} is at version {v}, not right after event 0 (version {v0})"
                    )));
                }
                Some(_) => {}
            }
        }
        let n = found.len() as u64;
        let (_, last_position) = found[found.len() - 1].expect("every event was found");
        Ok(Some(AppendResult { first_version: v0, next_expected_version: v0 + (n - 1), position: last_position }))
    }

    /// The version and global position of the event of `stream` whose id is
    /// `id`, if the stream holds one (and scavenging has not removed it):
    /// how an application that gives its events ids derived from a request
    /// tells whether that request was carried out already. A hard-deleted
    /// stream gives [`Error::StreamDeleted`].
    pub fn find_event(&self, stream: &str, id: Uuid) -> Result<Option<(u64, u64)>> {
        check_stream_id(stream)?;
        let hash = self.hasher.hash(stream);
        if self.stream_state(stream, hash)?.deleted {
            return Err(Error::StreamDeleted { stream: shown(stream) });
        }
        self.find_id(stream, hash, id)
    }

    /// [`EventStore::find_event`] of a stream whose hash is `hash`.
    fn find_id(&self, stream: &str, hash: u128, id: Uuid) -> Result<Option<(u64, u64)>> {
        for (position, version) in self.index.entries(RunKind::EventId, id.as_u128(), 0, false, usize::MAX)? {
            // The id may be in other streams too: only this one's counts.
            if self.index.entries(RunKind::Stream, hash, version, false, 1)?.first() == Some(&(version, position)) {
                // Scavenged: its idempotency window has closed.
                let Some(ev) = self.event_at(position)? else { continue };
                if ev.stream == stream {
                    return Ok(Some((version, position)));
                }
            }
        }
        Ok(None)
    }

    /// The version of the last event of `stream`, or none (also after a soft
    /// delete, until events are appended again). A hard-deleted stream gives
    /// [`Error::StreamDeleted`].
    pub fn stream_version(&self, stream: &str) -> Result<CurrentVersion> {
        check_stream_id(stream)?;
        let state = self.stream_state(stream, self.hasher.hash(stream))?;
        if state.deleted {
            return Err(Error::StreamDeleted { stream: shown(stream) });
        }
        Ok(state.current())
    }

    /// Up to `max` events of `stream` from version `from` (forward: `from`
    /// and up; backward: `from` and down, `u64::MAX` for the last event).
    /// An unknown or soft-deleted stream reads as empty; a hard-deleted one
    /// gives [`Error::StreamDeleted`]. Events its metadata hides (truncated,
    /// past its maximum count or age) are not returned.
    pub fn read_stream(&self, stream: &str, from: u64, direction: Direction, max: usize) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::with_capacity(max.min(1024));
        self.read_stream_with(stream, from, direction, max, |e| {
            out.push(e.to_recorded());
            Ok::<(), Error>(())
        })?;
        Ok(out)
    }

    /// [`EventStore::read_stream`] without a copy: calls `visit` with each
    /// event, borrowed from the log, in the order `read_stream` returns them,
    /// and returns how many it visited. This is how to replay a stream into
    /// an aggregate: its data is decoded straight from the log's memory map.
    /// An error of `visit` ends the read and is returned. (Read backward,
    /// the events of each page of up to 1,024 are copied before they are
    /// visited, as the log is read forward.)
    pub fn read_stream_with<E: From<Error>>(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
        visit: impl FnMut(&EventView<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        self.visit_stream_below(stream, from, direction, max, u64::MAX, i64::MAX, visit)
    }

    /// Up to `max` events of `stream` from version `from` that were appended
    /// at or before `as_of_ms` (milliseconds since the Unix epoch): the
    /// stream as it was then. The global log's time index gives the first
    /// position appended later; the stream is read forward up to it (and
    /// each event's own timestamp is checked too).
    pub fn read_stream_as_of(&self, stream: &str, from: u64, as_of_ms: i64, max: usize) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::with_capacity(max.min(1024));
        self.read_stream_as_of_with(stream, from, as_of_ms, max, |e| {
            out.push(e.to_recorded());
            Ok::<(), Error>(())
        })?;
        Ok(out)
    }

    /// [`EventStore::read_stream_as_of`] without a copy, as
    /// [`EventStore::read_stream_with`]: returns how many events it visited.
    pub fn read_stream_as_of_with<E: From<Error>>(
        &self,
        stream: &str,
        from: u64,
        as_of_ms: i64,
        max: usize,
        visit: impl FnMut(&EventView<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        let below = self.log.offset_for_timestamp(as_of_ms.saturating_add(1)).map_err(Error::from)?.unwrap_or(u64::MAX);
        self.visit_stream_below(stream, from, Direction::Forward, max, below, as_of_ms, visit)
    }

    /// The position below which every event is durable (a power loss cannot
    /// take it away): the global log's durable watermark. A reader that acts
    /// on what it reads and must never see an event a crash could take back
    /// reads below it (a subscription does with
    /// [`crate::events::Subscription::durable_only`]).
    pub fn durable_position(&self) -> u64 {
        self.log.durable_offset()
    }

    /// [`EventStore::read_stream_with`], of the events at positions below
    /// `below` with a timestamp at or before `until_ms` only.
    #[allow(clippy::too_many_arguments)]
    fn visit_stream_below<E: From<Error>>(
        &self,
        stream: &str,
        from: u64,
        direction: Direction,
        max: usize,
        below: u64,
        until_ms: i64,
        mut visit: impl FnMut(&EventView<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        check_stream_id(stream)?;
        let hash = self.hasher.hash(stream);
        let state = self.stream_state(stream, hash)?;
        if state.deleted {
            return Err(Error::StreamDeleted { stream: shown(stream) }.into());
        }
        let shown_from = state.visible_from();
        let min_timestamp = state.min_timestamp();
        let backward = direction == Direction::Backward;
        let mut next = if backward { from.min(u64::MAX - 1) } else { from.max(shown_from) };
        let mut visited = 0;
        while visited < max {
            if backward && next < shown_from {
                break;
            }
            let want = (max - visited).min(1024);
            let entries = self.index.entries(RunKind::Stream, hash, next, backward, want).map_err(Error::from)?;
            let Some(&(last, _)) = entries.last() else { break };
            // A stream's positions grow with its versions: forward, the first
            // one at or past `below` ends the read.
            let ends = !backward && entries.iter().any(|&(_, p)| p >= below);
            let wanted: Vec<(u64, u64)> =
                entries.into_iter().filter(|&(v, p)| v != TOMBSTONE_VERSION && v >= shown_from && p < below).collect();
            let positions: Vec<u64> = wanted.iter().map(|&(_, p)| p).collect();
            // Skipped: an event of another stream of the same hash (as likely
            // as two equal random UUIDs), or one outside the time bounds.
            let keep = |i: usize, e: &EventRef<'_>, timestamp: i64| {
                e.stream == stream && e.version == wanted[i].0 && (min_timestamp..=until_ms).contains(&timestamp)
            };
            self.visit_events(&positions, keep, |e| {
                if visited < max {
                    visited += 1;
                    visit(e)?;
                }
                Ok::<(), E>(())
            })?;
            if ends {
                break;
            }
            next = match backward {
                true if last == 0 => break,
                true => last - 1,
                false if last >= u64::MAX - 1 => break,
                false => last + 1,
            };
        }
        Ok(visited)
    }

    /// Up to `max` events of the global log (`$all`) from position `from`
    /// (forward: `from` and up; backward: `from` and down, `u64::MAX` for the
    /// last event).
    pub fn read_all(&self, from: u64, direction: Direction, max: usize) -> Result<Vec<RecordedEvent>> {
        let start = self.log.start_offset();
        let end = self.log.next_offset();
        let mut out = Vec::with_capacity(max.min(1024));
        let mut visibility = Visibility::default();
        match direction {
            Direction::Forward => {
                let mut reader = self.log.read_from(from.clamp(start, end))?;
                while out.len() < max {
                    let Some(record) = reader.next_record()? else { break };
                    let position = record.offset();
                    let e = event::decode(record.key(), record.value()).map_err(|why| self.bad_event(position, why))?;
                    let e = e.to_recorded(position, record.timestamp());
                    if visibility.shows(self, &e)? {
                        out.push(e);
                    }
                }
            }
            Direction::Backward => {
                // Pages of positions downward, each read in one pass.
                let mut top = from.min(end.saturating_sub(1));
                while out.len() < max && end > 0 && top >= start {
                    let bottom = top.saturating_sub((max - out.len()).min(1024) as u64 - 1).max(start);
                    let positions: Vec<u64> = (bottom..=top).rev().collect();
                    let mut page = Vec::with_capacity(positions.len());
                    self.read_events(&positions, |_, _, _| true, &mut page)?;
                    for e in page {
                        if visibility.shows(self, &e)? {
                            out.push(e);
                        }
                    }
                    if bottom == 0 {
                        break;
                    }
                    top = bottom - 1;
                }
                out.truncate(max);
            }
        }
        Ok(out)
    }

    /// Up to `max` events of the streams of `category` (the part of a
    /// stream id before its first `-`) in global order, from position `from`
    /// (forward: `from` and up; backward: `from` and down).
    pub fn read_category(
        &self,
        category: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_indexed(RunKind::Category, category, from, direction, max, |e| event::category(&e.stream) == category)
    }

    /// Up to `max` events of type `event_type` in global order, from
    /// position `from` (forward: `from` and up; backward: `from` and down).
    pub fn read_event_type(
        &self,
        event_type: &str,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_indexed(RunKind::EventType, event_type, from, direction, max, |e| e.event_type == event_type)
    }

    fn read_indexed(
        &self,
        kind: RunKind,
        name: &str,
        from: u64,
        direction: Direction,
        max: usize,
        matches: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<Vec<RecordedEvent>> {
        let hash = self.hasher.hash(name);
        let backward = direction == Direction::Backward;
        let mut visibility = Visibility::default();
        let mut next = from;
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max {
            let want = (max - out.len()).min(1024);
            let entries = self.index.entries(kind, hash, next, backward, want)?;
            let Some(&(last, _)) = entries.last() else { break };
            let positions: Vec<u64> = entries.iter().map(|&(p, _)| p).collect();
            let mut page = Vec::with_capacity(positions.len());
            self.read_events(&positions, |_, _, _| true, &mut page)?;
            for event in page {
                // Another name of the same hash (as likely as two equal
                // random UUIDs), or an event its stream's metadata hides.
                if matches(&event) && visibility.shows(self, &event)? {
                    out.push(event);
                }
            }
            next = match backward {
                true if last == 0 => break,
                true => last - 1,
                false => last + 1,
            };
        }
        Ok(out)
    }

    /// Appends to `out` the events at `positions` (strictly ascending or
    /// strictly descending), in that order, that `keep(i, event,
    /// timestamp_ms)` accepts (`i` is the event's index in `positions`);
    /// positions scavenging removed are skipped.
    pub(crate) fn read_events(
        &self,
        positions: &[u64],
        keep: impl FnMut(usize, &EventRef<'_>, i64) -> bool,
        out: &mut Vec<RecordedEvent>,
    ) -> Result<()> {
        self.visit_events(positions, keep, |e| {
            out.push(e.to_recorded());
            Ok::<(), Error>(())
        })
    }

    /// Calls `visit` with the events at `positions` (strictly ascending or
    /// strictly descending), in that order, that `keep(i, event,
    /// timestamp_ms)` accepts (`i` is the event's index in `positions`);
    /// positions scavenging removed are skipped. The log locates every event
    /// before it reads any ([`crate::Log::read_at`]). Ascending, each event
    /// is visited in place in the log's map; descending, the kept events are
    /// copied first, as the log reads them ascending.
    fn visit_events<E: From<Error>>(
        &self,
        positions: &[u64],
        mut keep: impl FnMut(usize, &EventRef<'_>, i64) -> bool,
        mut visit: impl FnMut(&EventView<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let descending = positions.len() > 1 && positions[0] > positions[1];
        let mut copied = Vec::new();
        let read = self.log.read_at(positions, |i, record| {
            let position = record.offset();
            let e = event::decode(record.key(), record.value()).map_err(|why| self.bad_event(position, why))?;
            let view = e.view(position, record.timestamp());
            match descending {
                _ if !keep(i, &e, record.timestamp()) => {}
                true => copied.push(view.to_recorded()),
                false => visit(&view).map_err(Visited::Caller)?,
            }
            Ok(())
        });
        match read {
            Ok(()) => {}
            Err(Visited::Store(e)) => return Err(e.into()),
            Err(Visited::Caller(e)) => return Err(e),
        }
        for e in copied.iter().rev() {
            visit(&e.view())?;
        }
        Ok(())
    }

    /// The event at `position`; `None` if scavenging removed it.
    pub(crate) fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>> {
        let end = self.log.next_offset();
        if position >= end || position < self.log.start_offset() {
            let start = self.log.start_offset();
            return Err(crate::Error::OffsetOutOfRange { requested: position, start, end }.into());
        }
        // Decoded in place from the log's map: one copy of the event's bytes.
        let mut reader = self.log.read_from(position)?;
        match reader.next_record()? {
            Some(record) if record.offset() == position => {
                let e = event::decode(record.key(), record.value()).map_err(|why| self.bad_event(position, why))?;
                Ok(Some(e.to_recorded(position, record.timestamp())))
            }
            // The reader skipped a gap: scavenging removed the event.
            _ => Ok(None),
        }
    }

    /// Writes the index entries held in memory as index runs (after making
    /// the log durable under them), so that the next open replays less.
    /// Returns whether there was anything to write.
    pub fn flush_index(&self) -> Result<bool> {
        self.flush(true)
    }

    fn flush(&self, wait: bool) -> Result<bool> {
        Ok(self.index.flush(wait, || self.log.next_offset(), || self.log.sync())?)
    }

    /// The state of the indexes.
    pub fn index_stats(&self) -> IndexStats {
        IndexStats {
            indexed_to: self.index.indexed_to(),
            memtable_events: self.index.memtable_len(),
            stream_runs: self.index.run_count(RunKind::Stream),
            id_runs: self.index.run_count(RunKind::EventId),
            category_runs: self.index.run_count(RunKind::Category),
            event_type_runs: self.index.run_count(RunKind::EventType),
        }
    }

    /// Releases the store as if the process had been killed: nothing is
    /// flushed or synced, and the next open recovers (replaying the events
    /// the index runs do not cover). Meant for crash tests.
    pub fn abandon(self) {
        self.log.abandon();
    }

    /// Flushes the index and closes the global log.
    pub fn close(self) -> Result<()> {
        self.flush(true)?;
        Ok(self.log.close()?)
    }
}

/// An error ending a visit of events: the store's, or the visitor's own.
enum Visited<E> {
    Store(Error),
    Caller(E),
}

impl<E> From<Error> for Visited<E> {
    fn from(e: Error) -> Visited<E> {
        Visited::Store(e)
    }
}

impl<E> From<crate::Error> for Visited<E> {
    fn from(e: crate::Error) -> Visited<E> {
        Visited::Store(e.into())
    }
}
