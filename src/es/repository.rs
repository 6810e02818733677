//! The repository (docs/EVENT-SOURCING.md, "Aggregates and the
//! repository"): loads aggregates from their newest valid snapshot and the
//! events after it, carries out commands with optimistic concurrency and
//! retries, and writes snapshots by a policy.

use std::hash::Hasher;
use std::marker::PhantomData;
use std::sync::Arc;

use super::aggregate::{Aggregate, DomainEvent};
use super::codec::Codec;
use super::error::{CommandError, Error, Result};
use super::meta::{self, CommandMeta};
use super::snapshot::{SNAPSHOT_EVENT_TYPE, SNAPSHOT_STREAM_PREFIX, SnapshotHeader, SnapshotPolicy};
use super::upcast::Upcasters;
use crate::events::{
    self, CurrentVersion, DeleteMode, Direction, EventStore, EventView, ExpectedVersion, NewEvent, StreamMetadata,
};

/// Snapshots kept per aggregate by default.
pub const DEFAULT_KEPT_SNAPSHOTS: u64 = 3;

/// Times a command is handled before [`CommandError::Conflict`], by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// An aggregate as loaded ([`Repository::load`]).
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// Its state.
    pub state: A,
    /// The version of the last event applied, or `None` for an aggregate
    /// with no event (a new one).
    pub version: Option<u64>,
    /// The stream version the snapshot it started from covers, if one was
    /// used.
    pub snapshot: Option<u64>,
    /// How many events were applied after the snapshot (all of them without
    /// one).
    pub replayed: u64,
    /// Snapshots that were not used, newest first, and why: a damaged one,
    /// one of another schema version or fingerprint. They are never
    /// trusted; the load fell back to an older one or to a full replay.
    pub skipped_snapshots: Vec<SkippedSnapshot>,
}

/// A snapshot a load did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSnapshot {
    /// Its version in the snapshot stream.
    pub version: u64,
    /// Why it was not used.
    pub reason: String,
}

/// What a command did ([`Repository::execute`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The aggregate's version after the command (`None`: a new aggregate
    /// that the command left without events).
    pub version: Option<u64>,
    /// The global position of the last event written (or found, for a
    /// command done before).
    pub position: Option<u64>,
    /// How many events the command wrote.
    pub events: usize,
    /// How many times it was handled: 1, plus one for each time another
    /// writer changed the stream first.
    pub attempts: u32,
    /// The command carried an id and its events were written before (by an
    /// earlier execution): nothing was written now.
    pub already_done: bool,
    /// Whether a snapshot was written after it, and if writing one failed,
    /// why (the command's events are written all the same).
    pub snapshot: SnapshotWrite,
}

/// Whether a snapshot was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SnapshotWrite {
    /// None was due.
    #[default]
    NotDue,
    /// One was written, covering this stream version.
    Written(u64),
    /// One was due, and writing it failed (only a longer replay is lost).
    Failed(String),
}

/// Loads aggregates of type `A` and carries out their commands, their events
/// encoded by the codec `C`.
///
/// ```
/// # use annal::es::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default, Serialize, Deserialize)]
/// # struct Counter { value: u64 }
/// # #[derive(Debug, Clone, Serialize, Deserialize)]
/// # enum CounterEvent { Incremented { by: u64 } }
/// # impl DomainEvent for CounterEvent { fn event_type(&self) -> &'static str { "Incremented" } }
/// # #[derive(Debug, thiserror::Error)] #[error("too high")] struct TooHigh;
/// # impl Aggregate for Counter {
/// #     const TYPE: &'static str = "counter";
/// #     type Command = u64; type Event = CounterEvent; type Error = TooHigh;
/// #     fn handle(&self, by: &u64) -> Result<Vec<CounterEvent>, TooHigh> {
/// #         if self.value + by > 100 { return Err(TooHigh) }
/// #         Ok(vec![CounterEvent::Incremented { by: *by }])
/// #     }
/// #     fn apply(&mut self, e: &CounterEvent) { match e { CounterEvent::Incremented { by } => self.value += by } }
/// # }
/// use std::sync::Arc;
/// use annal::es::{CommandError, Json, Repository, SnapshotPolicy};
/// use annal::events::{EventStore, EventStoreConfig};
///
/// let dir = tempfile::tempdir()?;
/// let store = Arc::new(EventStore::open(dir.path(), EventStoreConfig::default())?);
/// let counters = Repository::<Counter, _>::new(Arc::clone(&store), Json)
///     .with_snapshots(SnapshotPolicy::EveryEvents(2));
/// counters.execute("c1", &40)?;
/// counters.execute("c1", &50)?;
/// assert!(matches!(counters.execute("c1", &20), Err(CommandError::Rejected(TooHigh))));
/// let c1 = counters.load("c1")?;
/// assert_eq!((c1.state.value, c1.version, c1.snapshot), (90, Some(1), Some(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Repository<A: Aggregate, C: Codec> {
    store: Arc<EventStore>,
    codec: C,
    upcasters: Arc<Upcasters>,
    policy: SnapshotPolicy,
    kept_snapshots: u64,
    max_attempts: u32,
    fingerprint: u64,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate, C: Codec> std::fmt::Debug for Repository<A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("type", &A::TYPE)
            .field("codec", &C::ID)
            .field("policy", &self.policy)
            .field("kept_snapshots", &self.kept_snapshots)
            .field("max_attempts", &self.max_attempts)
            .field("fingerprint", &format_args!("{:#018x}", self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, C: Codec> Clone for Repository<A, C> {
    fn clone(&self) -> Self {
        Repository {
            store: Arc::clone(&self.store),
            codec: self.codec.clone(),
            upcasters: Arc::clone(&self.upcasters),
            policy: self.policy,
            kept_snapshots: self.kept_snapshots,
            max_attempts: self.max_attempts,
            fingerprint: self.fingerprint,
            aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate, C: Codec> Repository<A, C> {
    /// A repository of `A` over `store`, without snapshots or upcasters.
    pub fn new(store: Arc<EventStore>, codec: C) -> Repository<A, C> {
        let upcasters = Arc::new(Upcasters::new());
        let fingerprint = fingerprint::<A, C>(&upcasters);
        Repository {
            store,
            codec,
            upcasters,
            policy: SnapshotPolicy::Never,
            kept_snapshots: DEFAULT_KEPT_SNAPSHOTS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            fingerprint,
            aggregate: PhantomData,
        }
    }

    /// Upcasts the aggregate's events with `upcasters` when they are read,
    /// and writes new events at their current schema versions.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Arc<Upcasters>) -> Self {
        self.fingerprint = fingerprint::<A, C>(&upcasters);
        self.upcasters = upcasters;
        self
    }

    /// Writes snapshots by `policy` (none by default).
    #[must_use]
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Keeps the newest `k` snapshots of each aggregate (at least 1; 3 by
    /// default): the older ones are hidden at once and removed by the next
    /// scavenge.
    #[must_use]
    pub fn with_kept_snapshots(mut self, k: u64) -> Self {
        self.kept_snapshots = k.max(1);
        self
    }

    /// Handles a command at most `n` times (at least 1; 10 by default) when
    /// other writers keep changing the aggregate's stream.
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The event store.
    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    /// The codec.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The upcasters.
    pub fn upcasters(&self) -> &Arc<Upcasters> {
        &self.upcasters
    }

    /// The fingerprint written in the snapshots: of `A::TYPE`,
    /// `A::SNAPSHOT_VERSION`, the codec and the upcasters' keys and names.
    /// A snapshot with another one is not used.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The stream of the aggregate `id`: `{TYPE}-{id}`.
    pub fn stream_id(id: &str) -> String {
        format!("{}-{id}", A::TYPE)
    }

    /// The stream of the snapshots of the aggregate `id`.
    pub fn snapshot_stream_id(id: &str) -> String {
        format!("{SNAPSHOT_STREAM_PREFIX}{}", Self::stream_id(id))
    }

    /// The aggregate `id` now: its newest usable snapshot, then the events
    /// after it. An aggregate with no event loads as `A::default()`. If the
    /// policy is [`SnapshotPolicy::ReplayedOver`] and the load replayed more
    /// than its count, a snapshot is written (best effort).
    pub fn load(&self, id: &str) -> Result<Loaded<A>> {
        let loaded = self.load_below(id, None)?;
        if let SnapshotPolicy::ReplayedOver(n) = self.policy
            && loaded.replayed > n
            && let Some(v) = loaded.version
        {
            let _ = self.write_snapshot(id, &loaded.state, v);
        }
        Ok(loaded)
    }

    /// The aggregate `id` as it was at `as_of_ms` (milliseconds since the
    /// Unix epoch): from the newest usable snapshot covering an event at or
    /// before that time, then the events appended after it up to that time.
    pub fn load_as_of(&self, id: &str, as_of_ms: i64) -> Result<Loaded<A>> {
        self.load_below(id, Some(as_of_ms))
    }

    /// The aggregate `id` replayed from its first event, ignoring its
    /// snapshots (what a snapshot is checked against).
    pub fn replay(&self, id: &str) -> Result<Loaded<A>> {
        let stream = Self::stream_id(id);
        let mut loaded = empty();
        self.apply_from(&stream, 0, None, &mut loaded)?;
        Ok(loaded)
    }

    fn load_below(&self, id: &str, as_of_ms: Option<i64>) -> Result<Loaded<A>> {
        let stream = Self::stream_id(id);
        let mut skipped = Vec::new();
        // Newest first, one at a time: the first usable one ends the search.
        let mut below = (self.policy != SnapshotPolicy::Never).then_some(u64::MAX);
        while let Some(from) = below
            && let Some((snapshot_version, header, state)) =
                self.snapshot_at_or_below(id, from, as_of_ms, &mut skipped)?
        {
            below = snapshot_version.checked_sub(1);
            let state = match self.codec.decode(&state) {
                Ok(state) => state,
                Err(e) => {
                    let reason = format!("its state does not decode: {e}");
                    skipped.push(SkippedSnapshot { version: snapshot_version, reason });
                    continue;
                }
            };
            let mut loaded =
                Loaded { state, version: None, snapshot: None, replayed: 0, skipped_snapshots: Vec::new() };
            match self.apply_after_snapshot(&stream, &header, as_of_ms, &mut loaded) {
                Ok(()) => {
                    loaded.skipped_snapshots = skipped;
                    return Ok(loaded);
                }
                Err(LoadFail::Stale(reason)) => skipped.push(SkippedSnapshot { version: snapshot_version, reason }),
                Err(LoadFail::Failed(e)) => return Err(e),
            }
        }
        let mut loaded = empty();
        loaded.skipped_snapshots = skipped;
        self.apply_from(&stream, 0, as_of_ms, &mut loaded)?;
        Ok(loaded)
    }

    /// Applies to `loaded` (a snapshot's state) the events after the one the
    /// snapshot covers (up to `as_of_ms`). That event must be in the stream
    /// as it was when the snapshot was written (a stream deleted and written
    /// again has other events): if not, the snapshot is [`LoadFail::Stale`].
    fn apply_after_snapshot(
        &self,
        stream: &str,
        header: &SnapshotHeader,
        as_of_ms: Option<i64>,
        loaded: &mut Loaded<A>,
    ) -> std::result::Result<(), LoadFail> {
        let mut covered_seen = false;
        let mut version = header.stream_version;
        let mut replayed = 0u64;
        let state = &mut loaded.state;
        let visit = |view: &EventView<'_>| -> std::result::Result<(), LoadFail> {
            if !covered_seen {
                covered_seen = true;
                if view.version != header.stream_version || view.timestamp_ms != header.covered_ms {
                    return Err(LoadFail::Stale(format!(
                        "it covers version {} of {} ms, the stream has version {} of {} ms there",
                        header.stream_version, header.covered_ms, view.version, view.timestamp_ms
                    )));
                }
                return Ok(());
            }
            self.upcasters.decode(&self.codec, view, |e: A::Event| state.apply(&e))?;
            version = view.version;
            replayed += 1;
            Ok(())
        };
        let from = header.stream_version;
        self.read_forward(stream, from, as_of_ms, visit)?;
        if !covered_seen {
            return Err(LoadFail::Stale(format!("version {} it covers is not in the stream", header.stream_version)));
        }
        loaded.version = Some(version);
        loaded.snapshot = Some(header.stream_version);
        loaded.replayed = replayed;
        Ok(())
    }

    /// Visits the events of `stream` from version `from` (appended up to
    /// `as_of_ms`, if given), in order.
    fn read_forward<E: From<events::Error>>(
        &self,
        stream: &str,
        from: u64,
        as_of_ms: Option<i64>,
        visit: impl FnMut(&EventView<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        match as_of_ms {
            None => self.store.read_stream_with(stream, from, Direction::Forward, usize::MAX, visit),
            Some(t) => self.store.read_stream_as_of_with(stream, from, t, usize::MAX, visit),
        }
    }

    /// Applies to `loaded` every event of `stream` from `from` (up to
    /// `as_of_ms`).
    fn apply_from(&self, stream: &str, from: u64, as_of_ms: Option<i64>, loaded: &mut Loaded<A>) -> Result<()> {
        let state = &mut loaded.state;
        let mut version = loaded.version;
        let mut replayed = 0u64;
        let visit = |view: &EventView<'_>| -> Result<()> {
            self.upcasters.decode(&self.codec, view, |e: A::Event| state.apply(&e))?;
            version = Some(view.version);
            replayed += 1;
            Ok(())
        };
        self.read_forward(stream, from, as_of_ms, visit)?;
        loaded.version = version;
        loaded.replayed += replayed;
        Ok(())
    }

    /// The newest snapshot of `id` at or below version `from` of its
    /// snapshot stream that this repository may use, with its state's bytes
    /// (covering an event at or before `as_of_ms` if given); the ones passed
    /// over on the way are added to `skipped`.
    fn snapshot_at_or_below(
        &self,
        id: &str,
        mut from: u64,
        as_of_ms: Option<i64>,
        skipped: &mut Vec<SkippedSnapshot>,
    ) -> Result<Option<(u64, SnapshotHeader, Vec<u8>)>> {
        let stream = Self::snapshot_stream_id(id);
        if events::stream_id_problem(&stream).is_some() {
            return Ok(None);
        }
        loop {
            let mut seen = None;
            let mut found = None;
            let read = self.store.read_stream_with(&stream, from, Direction::Backward, 1, |view| {
                seen = Some(view.version);
                match self.check_snapshot(view) {
                    Ok((header, _)) if as_of_ms.is_some_and(|t| header.covered_ms > t) => {}
                    Ok((header, state)) => found = Some((view.version, header, state.to_vec())),
                    Err(reason) => skipped.push(SkippedSnapshot { version: view.version, reason }),
                }
                Ok::<(), events::Error>(())
            });
            match read {
                Ok(_) => {}
                // A deleted snapshot stream has no snapshot to offer.
                Err(events::Error::StreamDeleted { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            if found.is_some() {
                return Ok(found);
            }
            match seen.and_then(|v| v.checked_sub(1)) {
                Some(v) => from = v,
                None => return Ok(None),
            }
        }
    }

    /// A snapshot event's header and state bytes, if it is one this
    /// repository may use; otherwise why not.
    fn check_snapshot<'v>(&self, view: &EventView<'v>) -> std::result::Result<(SnapshotHeader, &'v [u8]), String> {
        if view.event_type != SNAPSHOT_EVENT_TYPE {
            return Err(format!("an event of type {:?}, not {SNAPSHOT_EVENT_TYPE}", view.event_type));
        }
        let (header, state) = SnapshotHeader::decode(view.data)?;
        if header.codec != C::ID {
            return Err(format!("written by codec {}, this repository's is {}", header.codec, C::ID));
        }
        if header.schema_version != A::SNAPSHOT_VERSION {
            return Err(format!(
                "of snapshot version {}, the aggregate's is {}",
                header.schema_version,
                A::SNAPSHOT_VERSION
            ));
        }
        if header.fingerprint != self.fingerprint {
            return Err(format!(
                "fingerprint {:#018x}, the aggregate's is {:#018x} (its type, snapshot version, codec or upcasters changed)",
                header.fingerprint, self.fingerprint
            ));
        }
        Ok((header, state))
    }

    /// Writes a snapshot of the aggregate `id` now, whatever the policy;
    /// returns the stream version it covers (`None` for an aggregate with no
    /// event).
    pub fn snapshot(&self, id: &str) -> Result<Option<u64>> {
        let loaded = self.load_below(id, None)?;
        let Some(v) = loaded.version else { return Ok(None) };
        if loaded.snapshot != Some(v) {
            self.write_snapshot(id, &loaded.state, v)?;
        }
        Ok(Some(v))
    }

    /// Writes a snapshot of `state`, the aggregate `id` at stream version
    /// `version`.
    fn write_snapshot(&self, id: &str, state: &A, version: u64) -> Result<()> {
        let stream = Self::stream_id(id);
        // The timestamp of the event covered, checked when the snapshot is used.
        let mut covered_ms = None;
        self.store.read_stream_with(&stream, version, Direction::Forward, 1, |view| {
            if view.version == version {
                covered_ms = Some(view.timestamp_ms);
            }
            Ok::<(), events::Error>(())
        })?;
        let Some(covered_ms) = covered_ms else {
            return Err(Error::Invalid(format!("stream {stream:?} has no version {version} to snapshot")));
        };
        let state = self
            .codec
            .encode(state)
            .map_err(|reason| Error::Encode { what: format!("the state of {stream:?}"), reason })?;
        let header = SnapshotHeader {
            codec: C::ID,
            schema_version: A::SNAPSHOT_VERSION,
            fingerprint: self.fingerprint,
            stream_version: version,
            covered_ms,
        };
        let snapshots = Self::snapshot_stream_id(id);
        let written = self.store.append(
            &snapshots,
            ExpectedVersion::Any,
            vec![NewEvent::binary(SNAPSHOT_EVENT_TYPE, header.encode(&state))],
        )?;
        // The snapshot stream keeps the newest K (set with its first
        // snapshots, and again if a crash lost that).
        if written.first_version < self.kept_snapshots
            || self.store.stream_metadata(&snapshots)?.max_count() != Some(self.kept_snapshots)
        {
            self.store
                .set_stream_metadata(&snapshots, StreamMetadata::default().with_max_count(self.kept_snapshots))?;
        }
        Ok(())
    }

    /// Carries out `command` on the aggregate `id` ([`Repository::execute_with`]
    /// without metadata).
    pub fn execute(&self, id: &str, command: &A::Command) -> std::result::Result<Executed, CommandError<A::Error>> {
        self.execute_with(id, command, &CommandMeta::new())
    }

    /// Carries out `command` on the aggregate `id`: loads it, has it handle
    /// the command, and appends the events it decides on if the stream is
    /// still at the version loaded (all of them atomically, with `meta`'s
    /// correlation and causation ids in their metadata). If another writer
    /// appended meanwhile, loads again and handles the command again, up to
    /// the repository's limit of attempts. Then writes a snapshot if the
    /// policy says one is due.
    ///
    /// A command with an id ([`CommandMeta::with_command_id`]) is carried
    /// out at most once: its events get ids derived from it, and if they
    /// are in the stream already, nothing is written.
    pub fn execute_with(
        &self,
        id: &str,
        command: &A::Command,
        meta: &CommandMeta,
    ) -> std::result::Result<Executed, CommandError<A::Error>> {
        let stream = Self::stream_id(id);
        let mut attempts = 0;
        loop {
            if let Some(command_id) = meta.command_id
                && let Some((version, position)) =
                    self.store.find_event(&stream, CommandMeta::event_id(command_id, 0))?
            {
                return Ok(Executed {
                    version: Some(version),
                    position: Some(position),
                    events: 0,
                    attempts,
                    already_done: true,
                    snapshot: SnapshotWrite::NotDue,
                });
            }
            attempts += 1;
            let mut loaded = self.load_below(id, None)?;
            let decided = loaded.state.handle(command).map_err(CommandError::Rejected)?;
            if decided.is_empty() {
                return Ok(Executed {
                    version: loaded.version,
                    position: None,
                    events: 0,
                    attempts,
                    already_done: false,
                    snapshot: SnapshotWrite::NotDue,
                });
            }
            let new_events = self.encode_events(&stream, &decided, meta)?;
            let expected = loaded.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match self.store.append(&stream, expected, new_events) {
                Ok(written) => {
                    for e in &decided {
                        loaded.state.apply(e);
                    }
                    let version = written.next_expected_version;
                    let snapshot = self.snapshot_after(id, &loaded, version, decided.len() as u64);
                    return Ok(Executed {
                        version: Some(version),
                        position: Some(written.position),
                        events: decided.len(),
                        attempts,
                        already_done: false,
                        snapshot,
                    });
                }
                Err(events::Error::WrongExpectedVersion { .. }) if attempts < self.max_attempts => {}
                Err(events::Error::WrongExpectedVersion { .. }) => {
                    return Err(CommandError::Conflict { stream, attempts });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn encode_events(&self, stream: &str, decided: &[A::Event], meta: &CommandMeta) -> Result<Vec<NewEvent>> {
        decided
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let event_type = e.event_type();
                let data = self.codec.encode(e).map_err(|reason| Error::Encode {
                    what: format!("event {i} ({event_type}) for stream {stream:?}"),
                    reason,
                })?;
                let mut event = match C::CONTENT_TYPE {
                    events::ContentType::Json => NewEvent::json(event_type, data),
                    events::ContentType::Binary => NewEvent::binary(event_type, data),
                };
                let metadata = meta::encode(meta, self.upcasters.current_version(event_type));
                if !metadata.is_empty() {
                    event = event.with_json_metadata(metadata);
                }
                if let Some(command_id) = meta.command_id {
                    event = event.with_id(CommandMeta::event_id(command_id, i));
                }
                Ok(event)
            })
            .collect()
    }

    /// Writes a snapshot of `loaded` (now at `version`, after `appended`
    /// new events) if the policy says one is due.
    fn snapshot_after(&self, id: &str, loaded: &Loaded<A>, version: u64, appended: u64) -> SnapshotWrite {
        let due = match self.policy {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::EveryEvents(n) => {
                let n = n.max(1);
                let covered = loaded.snapshot.map_or(0, |s| s + 1);
                (version + 1) / n > covered / n
            }
            SnapshotPolicy::ReplayedOver(n) => loaded.replayed + appended > n,
            SnapshotPolicy::OlderThan(age) => {
                let limit = super::now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
                match loaded.snapshot {
                    None => true,
                    Some(_) => self.newest_snapshot_ms(id).is_none_or(|t| t < limit),
                }
            }
        };
        if !due {
            return SnapshotWrite::NotDue;
        }
        match self.write_snapshot(id, &loaded.state, version) {
            Ok(()) => SnapshotWrite::Written(version),
            Err(e) => SnapshotWrite::Failed(e.to_string()),
        }
    }

    /// The time of the event the newest snapshot of `id` covers.
    fn newest_snapshot_ms(&self, id: &str) -> Option<i64> {
        let mut skipped = Vec::new();
        let found = self.snapshot_at_or_below(id, u64::MAX, None, &mut skipped).ok()?;
        found.map(|(_, h, _)| h.covered_ms)
    }

    /// Deletes the aggregate `id`: its stream and its snapshots, as `mode`
    /// says ([`EventStore::delete_stream`]).
    pub fn delete(&self, id: &str, mode: DeleteMode) -> Result<()> {
        let stream = Self::stream_id(id);
        // The snapshots first: a crash between the two leaves an aggregate
        // without snapshots, never snapshots of a deleted aggregate.
        let snapshots = Self::snapshot_stream_id(id);
        match self.store.stream_version(&snapshots) {
            Ok(CurrentVersion::Version(_)) => {
                self.store.delete_stream(&snapshots, ExpectedVersion::Any, mode)?;
            }
            Ok(CurrentVersion::NoStream) | Err(events::Error::StreamDeleted { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.delete_stream(&stream, ExpectedVersion::Any, mode)?;
        Ok(())
    }
}

/// Why loading from a snapshot failed.
enum LoadFail {
    /// The snapshot does not match the stream as it is (why): not used.
    Stale(String),
    /// Reading or decoding failed.
    Failed(Error),
}

impl From<Error> for LoadFail {
    fn from(e: Error) -> LoadFail {
        LoadFail::Failed(e)
    }
}

impl From<events::Error> for LoadFail {
    fn from(e: events::Error) -> LoadFail {
        LoadFail::Failed(e.into())
    }
}

fn empty<A: Default>() -> Loaded<A> {
    Loaded { state: A::default(), version: None, snapshot: None, replayed: 0, skipped_snapshots: Vec::new() }
}

/// The snapshots' fingerprint of `A` with codec `C` and `upcasters`.
fn fingerprint<A: Aggregate, C: Codec>(upcasters: &Upcasters) -> u64 {
    // Fixed keys: the fingerprint must be the same in every process.
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x616e_6e61_6c2d_6573, 0x736e_6170_7368_6f74);
    h.write(A::TYPE.as_bytes());
    h.write_u8(0xff);
    h.write_u32(A::SNAPSHOT_VERSION);
    h.write_u8(C::ID);
    upcasters.fingerprint(&mut h);
    h.finish()
}
