//! Projections (docs/EVENT-SOURCING.md, "Projections"): a runner feeds the
//! events of `$all`, a stream, a category or a set of event types, durable
//! ones only, to a read model, which stores its changes and the position
//! it goes on from atomically, so that after a crash every event has been
//! applied exactly once. A failed event is retried, then parked, and the
//! projection goes on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::error::{Error, Result};
use super::records::{ROWS_EVENT_TYPE, RowsRecord, decode_parked, encode_parked};
use super::upcast::Upcasters;
use crate::events::{
    self, Direction, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StartFrom, StreamMetadata,
    SubscriptionTarget, Uuid,
};
use crate::sync::RwLockExt;

/// Where a projection's events come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectionSource {
    /// Every event (`$all`), the store's own (`$`-prefixed streams) left out.
    All,
    /// The events of one stream.
    Stream(String),
    /// The events of the streams of a category.
    Category(String),
    /// The events of these types.
    EventTypes(Vec<String>),
}

/// Why a read model did not commit a batch.
#[derive(Debug)]
pub enum CommitError {
    /// Its handler failed on the event at this index of the batch (nothing
    /// of the batch was stored): the runner commits the events before it,
    /// retries it alone, then parks it.
    Event {
        /// The index of the event in the batch.
        index: usize,
        /// What the handler said.
        reason: String,
    },
    /// Storing failed: the runner stops with this error.
    Store(Error),
}

impl<E: Into<Error>> From<E> for CommitError {
    fn from(e: E) -> CommitError {
        CommitError::Store(e.into())
    }
}

/// A read model: where a projection's results live, with the position the
/// projection goes on from.
///
/// Exactly once rests on [`ReadModel::commit`] storing the effects of its
/// events and the position together, atomically: in annal
/// ([`KvModel`], one event), or in the read model's own transaction for an
/// external store (a SQL table of checkpoints updated in the same
/// transaction as the rows).
pub trait ReadModel {
    /// The position the projection goes on from, as last committed (`None`
    /// if nothing was).
    fn checkpoint(&mut self) -> Result<Option<u64>>;

    /// Applies `events` (in global order) and stores `next`, the position
    /// to go on from, with their effects: all of it or nothing. `events`
    /// may be empty (only the position moves: past events the source skips,
    /// or past a parked one).
    fn commit(&mut self, events: &[RecordedEvent], next: u64) -> std::result::Result<(), CommitError>;

    /// Forgets every effect and the position ([`ProjectionRunner::rebuild`]).
    fn reset(&mut self) -> Result<()>;
}

/// What one [`ProjectionRunner::run_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Events applied.
    pub applied: usize,
    /// Events parked after their retries.
    pub parked: usize,
    /// Retries of failed events.
    pub retries: u32,
    /// The position the projection goes on from now.
    pub checkpoint: u64,
}

/// How far a projection is behind ([`ProjectionRunner::lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionLag {
    /// The position it goes on from.
    pub checkpoint: u64,
    /// The durable end of the global log.
    pub durable_head: u64,
    /// Events of its source not applied yet (counted up to
    /// [`LAG_COUNT_LIMIT`]; `counted_all` says whether that bound was hit).
    pub events: u64,
    /// Whether `events` is exact (else, at least that many).
    pub counted_all: bool,
    /// How long the oldest event not applied yet has waited, in
    /// milliseconds (0 when none waits).
    pub time_ms: i64,
}

/// The most events [`ProjectionRunner::lag`] counts.
pub const LAG_COUNT_LIMIT: u64 = 100_000;

/// A parked event: one the read model failed on after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    /// The event's global position.
    pub position: u64,
    /// Its id.
    pub event_id: Uuid,
    /// Times it was tried.
    pub attempts: u32,
    /// What the handler said the last time.
    pub reason: String,
}

/// The event type of a parked event's record.
pub const PARKED_EVENT_TYPE: &str = "$parked";

/// Feeds a source's durable events to a read model in batches.
#[derive(Debug)]
pub struct ProjectionRunner<M: ReadModel> {
    store: Arc<EventStore>,
    name: String,
    source: ProjectionSource,
    model: M,
    batch: usize,
    max_retries: u32,
    checkpoint: Option<u64>,
    upcasters: Option<Arc<Upcasters>>,
}

impl<M: ReadModel> ProjectionRunner<M> {
    /// A runner of the projection `name` from `source` into `model`.
    pub fn new(store: Arc<EventStore>, name: &str, source: ProjectionSource, model: M) -> Result<Self> {
        if let Some(reason) = super::name_problem(name) {
            return Err(Error::Invalid(format!("projection name {name:?}: {reason}")));
        }
        Ok(ProjectionRunner {
            store,
            name: name.to_owned(),
            source,
            model,
            batch: 512,
            max_retries: 3,
            checkpoint: None,
            upcasters: None,
        })
    }

    /// Gives the model the events at their current schema versions:
    /// upcast by `upcasters` ([`Upcasters::upcast_recorded`]) as they are
    /// read, as the repository reads them.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Arc<Upcasters>) -> Self {
        self.upcasters = Some(upcasters);
        self
    }

    /// Commits at most `n` events at a time (at least 1; 512 by default).
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// Retries an event the model fails on `n` times before parking it (3
    /// by default).
    #[must_use]
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The read model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The read model, to change.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The read model, the runner done.
    pub fn into_model(self) -> M {
        self.model
    }

    /// The stream of the projection's parked events.
    pub fn parked_stream(&self) -> String {
        format!("$projection.parked-{}", self.name)
    }

    /// The position the projection goes on from.
    pub fn checkpoint(&mut self) -> Result<u64> {
        if let Some(c) = self.checkpoint {
            return Ok(c);
        }
        let c = self.model.checkpoint()?.unwrap_or(0).max(self.store.log().start_offset());
        self.checkpoint = Some(c);
        Ok(c)
    }

    /// Reads up to a batch of the source's durable events from the
    /// checkpoint (waiting up to `timeout` for the first) and commits them
    /// to the model; a failed event is retried, then parked.
    pub fn run_batch(&mut self, timeout: Duration) -> Result<BatchOutcome> {
        let from = self.checkpoint()?;
        let (events, next) = self.read_batch(from, timeout)?;
        let mut outcome = BatchOutcome { checkpoint: from, ..BatchOutcome::default() };
        // With no event to apply, the position is stored only once it has
        // moved far (each commit is itself an event of the log, which the
        // next batch skips).
        if events.is_empty() && next - from < super::SKIPPED_BEFORE_COMMIT {
            return Ok(outcome);
        }
        let mut rest = &events[..];
        loop {
            match self.model.commit(rest, next) {
                Ok(()) => {
                    outcome.applied += rest.len();
                    break;
                }
                Err(CommitError::Store(e)) => {
                    // What the model holds is unknown: read its checkpoint again.
                    self.checkpoint = None;
                    return Err(e);
                }
                Err(CommitError::Event { index, reason }) => {
                    let Some(failed) = rest.get(index.min(rest.len().saturating_sub(1))) else {
                        return Err(Error::State {
                            what: format!("projection {}", self.name),
                            reason: format!("its model failed an empty batch: {reason}"),
                        });
                    };
                    // The events an upcaster made of one stored event share
                    // its position: they are retried and parked together.
                    let position = failed.position;
                    let start = rest.iter().position(|e| e.position == position).unwrap_or(0);
                    let end = rest.iter().rposition(|e| e.position == position).map_or(rest.len(), |i| i + 1);
                    self.commit_or_stop(&rest[..start], position)?;
                    outcome.applied += start;
                    let group = &rest[start..end];
                    let mut last = reason;
                    let mut attempts = 1;
                    let mut done = false;
                    while attempts <= self.max_retries {
                        attempts += 1;
                        outcome.retries += 1;
                        match self.model.commit(group, position + 1) {
                            Ok(()) => {
                                done = true;
                                break;
                            }
                            Err(CommitError::Event { reason, .. }) => last = reason,
                            Err(CommitError::Store(e)) => {
                                self.checkpoint = None;
                                return Err(e);
                            }
                        }
                    }
                    if done {
                        outcome.applied += group.len();
                    } else {
                        self.park(&group[0], attempts, &last)?;
                        self.commit_or_stop(&[], position + 1)?;
                        outcome.parked += 1;
                    }
                    rest = &rest[end..];
                }
            }
        }
        self.checkpoint = Some(next);
        outcome.checkpoint = next;
        Ok(outcome)
    }

    fn commit_or_stop(&mut self, events: &[RecordedEvent], next: u64) -> Result<()> {
        match self.model.commit(events, next) {
            Ok(()) => Ok(()),
            Err(CommitError::Store(e)) => {
                self.checkpoint = None;
                Err(e)
            }
            Err(CommitError::Event { reason, .. }) => Err(Error::State {
                what: format!("projection {}", self.name),
                reason: format!("its model failed events it had taken before: {reason}"),
            }),
        }
    }

    /// Runs batches until the projection has applied every durable event of
    /// its source there is now; returns how many it applied.
    pub fn run_until_caught_up(&mut self) -> Result<u64> {
        let mut applied = 0u64;
        loop {
            let outcome = self.run_batch(Duration::ZERO)?;
            applied += outcome.applied as u64;
            if outcome.applied + outcome.parked == 0 {
                return Ok(applied);
            }
        }
    }

    /// Resets the model and applies every event of the source again from
    /// the start of the log.
    pub fn rebuild(&mut self) -> Result<u64> {
        self.model.reset()?;
        self.checkpoint = None;
        self.run_until_caught_up()
    }

    /// Moves the projection's position to `position`: the events from there
    /// are given to the model again (for a model that rewound its own state
    /// to that point, or whose handling is idempotent). Use
    /// [`ProjectionRunner::rebuild`] to start again from nothing.
    pub fn rewind_to(&mut self, position: u64) -> Result<()> {
        self.commit_or_stop(&[], position)?;
        self.checkpoint = Some(position.max(self.store.log().start_offset()));
        Ok(())
    }

    /// [`ProjectionRunner::rewind_to`] the first event appended at or after
    /// `time_ms` (milliseconds since the Unix epoch); the end of the log if
    /// none was.
    pub fn rewind_to_time(&mut self, time_ms: i64) -> Result<u64> {
        let position = self.store.log().offset_for_timestamp(time_ms)?.unwrap_or_else(|| self.store.head_position());
        self.rewind_to(position)?;
        Ok(position)
    }

    /// How far the projection is behind the durable events of its source.
    pub fn lag(&mut self) -> Result<ProjectionLag> {
        let checkpoint = self.checkpoint()?;
        let durable_head = self.store.durable_position();
        let mut events = 0u64;
        let mut oldest = None;
        let mut sub = self.subscription(checkpoint)?;
        while events < LAG_COUNT_LIMIT {
            let Some(e) = sub.next_timeout(Duration::ZERO)? else { break };
            if !self.keeps(&e) {
                continue;
            }
            oldest.get_or_insert(e.timestamp_ms);
            events += 1;
        }
        let time_ms = oldest.map_or(0, |t| (super::now_ms() - t).max(0));
        Ok(ProjectionLag { checkpoint, durable_head, events, counted_all: events < LAG_COUNT_LIMIT, time_ms })
    }

    /// The projection's parked events, oldest first (at most `max`).
    pub fn parked(&self, max: usize) -> Result<Vec<ParkedEvent>> {
        read_parked(&self.store, &self.parked_stream(), max)
    }

    fn subscription(&self, from: u64) -> Result<events::Subscription<'_>> {
        let target = match &self.source {
            ProjectionSource::All => SubscriptionTarget::All,
            ProjectionSource::Stream(s) => SubscriptionTarget::Stream(s.clone()),
            ProjectionSource::Category(c) => SubscriptionTarget::Category(c.clone()),
            ProjectionSource::EventTypes(types) if types.len() == 1 => SubscriptionTarget::EventType(types[0].clone()),
            ProjectionSource::EventTypes(_) => SubscriptionTarget::All,
        };
        Ok(self.store.subscribe(target, StartFrom::Position(from))?.durable_only())
    }

    fn keeps(&self, e: &RecordedEvent) -> bool {
        match &self.source {
            ProjectionSource::All => !e.stream.starts_with('$'),
            ProjectionSource::EventTypes(types) => types.contains(&e.event_type),
            _ => true,
        }
    }

    /// The next batch of the source's durable events from `from`, and the
    /// position after everything looked at.
    fn read_batch(&self, from: u64, timeout: Duration) -> Result<(Vec<RecordedEvent>, u64)> {
        let mut sub = self.subscription(from)?;
        let mut events = Vec::new();
        let next = super::read_durable_batch(
            &mut sub,
            from,
            self.batch,
            timeout,
            |e| self.keeps(e),
            |e| {
                match &self.upcasters {
                    Some(u) => events.extend(u.upcast_recorded(e)?),
                    None => events.push(e),
                }
                Ok(())
            },
        )?;
        Ok((events, next))
    }

    /// Records `event` as parked, once (a retry after a crash writes
    /// nothing: the record's id derives from the event's).
    fn park(&self, event: &RecordedEvent, attempts: u32, reason: &str) -> Result<()> {
        let id = Uuid::new_v5(&event.id, format!("parked by {}", self.name).as_bytes());
        let data = encode_parked(&ParkedEvent {
            position: event.position,
            event_id: event.id,
            attempts,
            reason: reason.into(),
        });
        let record = NewEvent::binary(PARKED_EVENT_TYPE, data).with_id(id);
        self.store.append(&self.parked_stream(), ExpectedVersion::Any, vec![record])?;
        Ok(())
    }
}

/// The parked events of `stream`, oldest first (at most `max`).
pub(crate) fn read_parked(store: &EventStore, stream: &str, max: usize) -> Result<Vec<ParkedEvent>> {
    let mut out = Vec::new();
    store.read_stream_with(stream, 0, Direction::Forward, max, |view| {
        let parked = decode_parked(view.data).map_err(|reason| Error::State {
            what: format!("parked event {} of {}", view.version, view.stream),
            reason,
        })?;
        out.push(parked);
        Ok::<(), Error>(())
    })?;
    Ok(out)
}

/// A projection into a [`KvModel`]: turns each event into changes of rows.
pub trait Projection: Send {
    /// Applies `event` to the model's rows. An error leaves the rows as they
    /// were before the batch (the runner retries, then parks the event).
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> std::result::Result<(), String>;
}

type RowMap = HashMap<Vec<u8>, Vec<u8>>;

/// The rows of a [`KvModel`] as a handler sees them: the committed ones
/// with the batch's changes over them.
#[derive(Debug)]
pub struct Rows<'a> {
    committed: &'a RowMap,
    pending: &'a mut HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Rows<'_> {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        match self.pending.get(key) {
            Some(v) => v.as_deref(),
            None => self.committed.get(key).map(Vec::as_slice),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.pending.insert(key.into(), Some(value.into()));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.pending.insert(key.into(), None);
    }
}

/// Full states are written in events of about this many bytes.
const FULL_CHUNK_BYTES: usize = 256 * 1024;

/// A key-value read model kept in the event store: each commit is one event
/// of the stream `$projection-{name}` holding the rows a batch changed and
/// the position the projection goes on from (docs/FORMAT.md, "Read model
/// rows"). The rows are held in memory (readers share them through
/// [`KvModel::reader`]) and rebuilt from that stream when the model opens;
/// when the changes written since the last full state outgrow the model,
/// the full state is written again and the older events truncated.
pub struct KvModel<P: Projection> {
    store: Arc<EventStore>,
    stream: String,
    projection: P,
    rows: Arc<RwLock<RowMap>>,
    checkpoint: Option<u64>,
    /// The stream's version, which each commit expects (a second runner of
    /// the same projection is refused, not interleaved).
    version: Option<u64>,
    /// Rows written since the last full state.
    since_full: u64,
    /// The fewest rows written before the full state is written again.
    rewrite_after: u64,
}

impl<P: Projection> std::fmt::Debug for KvModel<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvModel")
            .field("stream", &self.stream)
            .field("checkpoint", &self.checkpoint)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A reader of a [`KvModel`]'s rows, for other threads.
#[derive(Debug, Clone)]
pub struct KvReader {
    rows: Arc<RwLock<RowMap>>,
}

impl KvReader {
    /// The value of `key`, copied.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.rows.read_locked().get(key).cloned()
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.read_locked().len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every row (in no particular order).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for (k, v) in self.rows.read_locked().iter() {
            f(k, v);
        }
    }
}

impl<P: Projection> KvModel<P> {
    /// Opens the model `name` (its stream `$projection-{name}`), reading its
    /// rows and checkpoint back.
    pub fn open(store: Arc<EventStore>, name: &str, projection: P) -> Result<KvModel<P>> {
        if let Some(reason) = super::name_problem(name) {
            return Err(Error::Invalid(format!("read model name {name:?}: {reason}")));
        }
        let mut model = KvModel {
            store,
            stream: format!("$projection-{name}"),
            projection,
            rows: Arc::new(RwLock::new(HashMap::new())),
            checkpoint: None,
            version: None,
            since_full: 0,
            rewrite_after: 4096,
        };
        model.load()?;
        Ok(model)
    }

    fn load(&mut self) -> Result<()> {
        let mut rows = RowMap::new();
        let (mut checkpoint, mut version, mut since_full) = (None, None, 0u64);
        let stream = self.stream.clone();
        self.store.read_stream_with(&stream, 0, Direction::Forward, usize::MAX, |view| {
            let r = RowsRecord::decode(view.data).map_err(|reason| Error::State {
                what: format!("read model event {} of {stream:?}", view.version),
                reason,
            })?;
            if r.full {
                rows.clear();
                since_full = 0;
            }
            since_full += r.rows.len() as u64;
            for (k, v) in r.rows {
                match v {
                    Some(v) => rows.insert(k, v),
                    None => rows.remove(&k),
                };
            }
            checkpoint = Some(r.checkpoint);
            version = Some(view.version);
            Ok::<(), Error>(())
        })?;
        *self.rows.write_locked() = rows;
        (self.checkpoint, self.version, self.since_full) = (checkpoint, version, since_full);
        Ok(())
    }

    /// Writes the full state again once the rows written since the last
    /// one are more than twice the rows there are and more than `n` (4,096
    /// by default), so that the stream read at open stays within a few
    /// times the model's size.
    #[must_use]
    pub fn with_rewrite_after(mut self, n: u64) -> Self {
        self.rewrite_after = n;
        self
    }

    /// A reader of the rows, for other threads.
    pub fn reader(&self) -> KvReader {
        KvReader { rows: Arc::clone(&self.rows) }
    }

    /// The value of `key`, copied.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.rows.read_locked().get(key).cloned()
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    fn append(&mut self, records: Vec<RowsRecord>) -> Result<()> {
        let expected = self.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = records.iter().map(|r| NewEvent::binary(ROWS_EVENT_TYPE, r.encode())).collect();
        let written = self.store.append(&self.stream, expected, events)?;
        self.version = Some(written.next_expected_version);
        Ok(())
    }

    /// Writes the whole model again and hides what came before it.
    fn write_full(&mut self, checkpoint: u64) -> Result<()> {
        let mut records = vec![RowsRecord { full: true, checkpoint, ..RowsRecord::default() }];
        let mut bytes = 0;
        for (k, v) in self.rows.read_locked().iter() {
            if bytes >= FULL_CHUNK_BYTES {
                records.last_mut().expect("one record at least").more = true;
                records.push(RowsRecord { checkpoint, ..RowsRecord::default() });
                bytes = 0;
            }
            bytes += 8 + k.len() + v.len();
            records.last_mut().expect("one record at least").rows.push((k.clone(), Some(v.clone())));
        }
        let n = records.len() as u64;
        self.append(records)?;
        let first = self.version.expect("just written") + 1 - n;
        self.since_full = 0;
        // Scavenging removes the events before the full state.
        self.store.set_stream_metadata(&self.stream, StreamMetadata::default().with_truncate_before(first))?;
        Ok(())
    }
}

impl<P: Projection> ReadModel for KvModel<P> {
    fn checkpoint(&mut self) -> Result<Option<u64>> {
        Ok(self.checkpoint)
    }

    fn commit(&mut self, events: &[RecordedEvent], next: u64) -> std::result::Result<(), CommitError> {
        let mut pending = HashMap::new();
        {
            let committed = self.rows.read_locked();
            let mut rows = Rows { committed: &committed, pending: &mut pending };
            for (index, e) in events.iter().enumerate() {
                self.projection.handle(e, &mut rows).map_err(|reason| CommitError::Event { index, reason })?;
            }
        }
        let changed = pending.len() as u64;
        let record = RowsRecord { full: false, more: false, checkpoint: next, rows: pending.into_iter().collect() };
        // Applied to memory only once stored.
        let rows = record.rows.clone();
        self.append(vec![record])?;
        {
            let mut committed = self.rows.write_locked();
            for (k, v) in rows {
                match v {
                    Some(v) => committed.insert(k, v),
                    None => committed.remove(&k),
                };
            }
        }
        self.checkpoint = Some(next);
        self.since_full += changed;
        let len = self.rows.read_locked().len() as u64;
        if self.since_full > (2 * len).max(self.rewrite_after) {
            self.write_full(next)?;
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        self.rows.write_locked().clear();
        self.write_full(0)?;
        self.checkpoint = None;
        Ok(())
    }
}
