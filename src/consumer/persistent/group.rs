//! A group whose members are connected in this process: the events it holds
//! (buffered, in flight, waiting for a retry, being parked), who gets which,
//! retries and timeouts, parking, the replay of parked events, and its
//! checkpoint (docs/EVENTS.md, "Persistent subscriptions").
//!
//! # Locks
//!
//! A group has two locks, always taken in this order:
//!
//! 1. `writes`: held while the group appends to its state streams (a
//!    checkpoint, parked events, the parked stream's truncation), so that its
//!    expected versions follow one another;
//! 2. `state`: everything else, held only for short steps in memory, never
//!    across a read or an append of the store.
//!
//! Under `state`, a change may call [`EventStore::wake_waiters`], which takes
//! the global log's waiting lock: that one comes last. (The handle's map of
//! loaded groups, in `mod.rs`, comes before both.)
//!
//! # Waiting
//!
//! A member that finds nothing for itself waits: on the group's condition
//! variable when another member reads the store for the group or the buffer
//! is full, or, as the group's one *watcher*, in the store for the next
//! event ([`EventStore::wait_for_position`]), interrupted by any change of
//! the group (`epoch`). Nobody polls: every wait ends with what it waits
//! for, a change, its caller's timeout, or the next message timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use siphasher::sip::SipHasher13;
use uuid::Uuid;

use super::error::{Error, Result};
use super::records::{
    CHECKPOINT_EVENT_TYPE, CheckpointRecord, PARKED_EVENT_TYPE, ParkReason, ParkedRecord, SETTINGS_EVENT_TYPE,
    SettingsRecord, StateStreams,
};
use super::settings::{GroupSettings, GroupTarget, Strategy};
use crate::events::{
    self, AppendResult, CurrentVersion, Direction, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StartFrom,
    StreamMetadata, SubscriptionTarget,
};
use crate::sync::MutexExt;

/// Events of the parked stream read at a time while replaying.
const REPLAY_BATCH: usize = 256;

/// Where a group's next append to one of its state streams goes: the
/// stream's next version, and the first version its reads show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamCursor {
    pub(crate) next: u64,
    pub(crate) shown_from: u64,
}

impl StreamCursor {
    /// The cursor of `stream` as the store has it now.
    pub(crate) fn of(store: &EventStore, stream: &str) -> Result<StreamCursor> {
        let truncate_before = store.stream_metadata(stream)?.truncate_before().unwrap_or(0);
        Ok(match store.stream_version(stream)? {
            CurrentVersion::Version(v) => StreamCursor { next: v + 1, shown_from: truncate_before },
            // Never written, or every event hidden: a soft delete or the
            // group's own truncation sets truncate-before to the stream's
            // next version.
            CurrentVersion::NoStream => StreamCursor { next: truncate_before, shown_from: truncate_before },
        })
    }

    /// What an append to the stream expects.
    pub(crate) fn expected(&self) -> ExpectedVersion {
        match self.next {
            0 => ExpectedVersion::NoStream,
            n if self.shown_from >= n => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n - 1),
        }
    }

    pub(crate) fn appended(&mut self, result: &AppendResult) {
        self.next = result.next_expected_version + 1;
    }
}

/// A group's state as its streams hold it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) settings: SettingsRecord,
    pub(crate) checkpoint: CheckpointRecord,
    /// The global position of the checkpoint event.
    pub(crate) checkpoint_at: u64,
    pub(crate) checkpoint_cursor: StreamCursor,
    pub(crate) parked_cursor: StreamCursor,
    /// This group's parked events not done with.
    pub(crate) parked_count: u64,
}

impl Stored {
    /// The last event of `stream`, if it has one.
    fn last_event(store: &EventStore, stream: &str) -> Result<Option<RecordedEvent>> {
        Ok(store.read_stream(stream, u64::MAX, Direction::Backward, 1)?.pop())
    }

    /// The group's settings, the cursor of its settings stream and the
    /// position of its settings event, if the group exists.
    pub(crate) fn settings(
        store: &EventStore,
        streams: &StateStreams,
    ) -> Result<Option<(SettingsRecord, StreamCursor, u64)>> {
        let Some(e) = Stored::last_event(store, &streams.settings)? else { return Ok(None) };
        let record = decode_state(&e, SETTINGS_EVENT_TYPE, SettingsRecord::decode)?;
        Ok(Some((record, StreamCursor::of(store, &streams.settings)?, e.position)))
    }

    /// Reads the group's state; [`Error::UnknownGroup`] if it has none.
    pub(crate) fn read(store: &EventStore, group: &str, streams: &StateStreams) -> Result<Stored> {
        let unknown = || Error::UnknownGroup { group: group.to_owned() };
        let (settings, _, settings_at) = Stored::settings(store, streams)?.ok_or_else(unknown)?;
        let last = Stored::last_event(store, &streams.checkpoint)?;
        let checkpoint = match &last {
            Some(e) => decode_state(e, CHECKPOINT_EVENT_TYPE, CheckpointRecord::decode)?,
            None => CheckpointRecord { group_id: Uuid::nil(), position: 0, parked_from: 0, replay_to: 0 },
        };
        // The group's creation writes its first checkpoint with its settings,
        // in one append: without one of its own, the state is damaged.
        let Some(e) = last.as_ref().filter(|_| checkpoint.group_id == settings.group_id) else {
            let (position, found) = match &last {
                Some(e) => {
                    (e.position, format!("the last one (at {}) is of group id {}", e.position, checkpoint.group_id))
                }
                None => (settings_at, format!("it has none (the settings are at position {settings_at})")),
            };
            return Err(Error::DamagedState {
                stream: streams.checkpoint.clone(),
                position,
                reason: format!("no checkpoint of group {group:?} (id {}): {found}", settings.group_id),
            });
        };
        let parked_cursor = StreamCursor::of(store, &streams.parked)?;
        let parked_count = count_parked(store, streams, settings.group_id, checkpoint.parked_from)?;
        Ok(Stored {
            settings,
            checkpoint,
            checkpoint_at: e.position,
            checkpoint_cursor: StreamCursor::of(store, &streams.checkpoint)?,
            parked_cursor,
            parked_count,
        })
    }

    /// The events of the store after the checkpoint. A checkpoint event at
    /// the very position it names (the group was done with everything before
    /// it) counts as done with too: it is the group's own.
    pub(crate) fn lag(&self, store: &EventStore) -> u64 {
        let done_to = match self.checkpoint_at == self.checkpoint.position {
            true => self.checkpoint.position + 1,
            false => self.checkpoint.position,
        };
        store.head_position().saturating_sub(done_to)
    }
}

/// Decodes the data of a state event `e` of type `event_type`; a damaged
/// one is an error naming its stream and position.
pub(crate) fn decode_state<T>(
    e: &RecordedEvent,
    event_type: &str,
    decode: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
) -> Result<T> {
    let damaged = |reason: String| Error::DamagedState { stream: e.stream.clone(), position: e.position, reason };
    if e.event_type != event_type {
        return Err(damaged(format!("an event of type {:?} where {event_type:?} was expected", e.event_type)));
    }
    decode(&e.data).map_err(damaged)
}

/// How many of the group's parked events there are from version `from` of
/// its parked stream (those of an earlier group of the same name are not).
fn count_parked(store: &EventStore, streams: &StateStreams, group_id: Uuid, from: u64) -> Result<u64> {
    let mut count = 0;
    store.read_stream_with(&streams.parked, from, Direction::Forward, usize::MAX, |e| {
        let damaged =
            |reason: String| Error::DamagedState { stream: e.stream.to_owned(), position: e.position, reason };
        if e.event_type != PARKED_EVENT_TYPE {
            return Err(damaged(format!("an event of type {:?} in a parked stream", e.event_type)));
        }
        if ParkedRecord::decode(e.data).map_err(damaged)?.group_id == group_id {
            count += 1;
        }
        Ok::<(), Error>(())
    })?;
    Ok(count)
}

/// Which event an entry of a group is: one read from the target (by its
/// global position), or one replayed from the parked stream (by its version
/// there: an event may be parked twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Key {
    Live(u64),
    Parked(u64),
}

/// What becomes of a delivery that failed ([`super::Member::nack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NackAction {
    /// Deliver it again (to any member under round robin, to the stream's
    /// member under pinned), unless it failed more than `max_retries` times:
    /// then it is parked.
    Retry,
    /// Park it now: it is written to the group's parked events, which
    /// [`super::PersistentSubscriptions::replay_parked`] delivers again.
    Park,
    /// Drop it, as if it had been processed.
    Skip,
}

/// An event given to a member ([`super::Member::next`]), to acknowledge with
/// [`super::Member::ack`] or [`super::Member::nack`].
#[derive(Debug, Clone)]
pub struct Delivery {
    event: Arc<RecordedEvent>,
    retry_count: u32,
    key: Key,
    attempt: u64,
    member: u64,
    group_id: Uuid,
}

impl Delivery {
    /// The event.
    pub fn event(&self) -> &RecordedEvent {
        &self.event
    }

    /// How many times the event was delivered before and failed (nacked for
    /// a retry, or not acknowledged in time): 0 on its first delivery. (Not
    /// kept across a restart: it starts over at 0.)
    pub fn retry_count(&self) -> u32 {
        self.retry_count
    }

    /// Whether this is the replay of a parked event
    /// ([`super::PersistentSubscriptions::replay_parked`]).
    pub fn replayed(&self) -> bool {
        matches!(self.key, Key::Parked(_))
    }
}

/// A connected member, as the group sees it.
#[derive(Debug)]
struct Slot {
    id: u64,
    name: String,
    /// The hash of its name, for pinning streams to it.
    name_hash: u64,
    in_flight: usize,
    /// Its threads waiting in `next` for an event.
    waiting: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Waiting for a member (for the first time, or for a retry).
    Ready,
    /// Given to `member`, which must acknowledge it before `deadline`.
    InFlight { member: u64, attempt: u64, deadline: Instant },
    /// Being written to the parked stream.
    Parking,
}

#[derive(Debug)]
struct Entry {
    event: Arc<RecordedEvent>,
    /// Its arrival in the group: the order of its stream's events.
    seq: u64,
    stream_hash: u64,
    retries: u32,
    status: Status,
}

/// An entry to park: what the parked event records.
#[derive(Debug)]
pub(crate) struct ToPark {
    key: Key,
    position: u64,
    retries: u32,
    reason: ParkReason,
    message: String,
}

/// What a member that finds nothing for itself reads from the store.
#[derive(Debug)]
struct Plan {
    target: GroupTarget,
    scan: u64,
    room: usize,
    /// Parked events to replay: from this version of the parked stream, below that one.
    replay: Option<(u64, u64)>,
}

/// What it read.
#[derive(Debug, Default)]
struct Fetched {
    live: Vec<RecordedEvent>,
    scan: u64,
    /// Replayed parked events: their version in the parked stream, and the event.
    replayed: Vec<(u64, RecordedEvent)>,
    /// The group's parked events whose event is gone (scavenged, or hidden
    /// by its stream's deletion or metadata): done with.
    gone: u64,
    replay_next: Option<u64>,
}

/// The part of a group that changes, under its `state` lock.
#[derive(Debug)]
struct State {
    settings: GroupSettings,
    members: Vec<Slot>,
    next_member: u64,
    entries: BTreeMap<Key, Entry>,
    /// Each stream's entries, by arrival.
    streams: HashMap<Arc<str>, BTreeMap<u64, Key>>,
    /// The entries a member may be given now, by arrival: every ready one
    /// under round robin; under pinned, a ready one that is the first of its
    /// stream's entries (no other event of its stream is out).
    ready: BTreeMap<u64, Key>,
    deadlines: BTreeSet<(Instant, Key)>,
    next_seq: u64,
    next_attempt: u64,
    /// The next global position to read from the target.
    scan: u64,
    /// A member is reading the store for the group.
    fetching: bool,
    /// A member waits in the store for the group's next event.
    watching: bool,
    /// Events done with since the last checkpoint.
    done: u32,
    /// The next version of the parked stream to replay, and the end of the
    /// replay.
    replay_next: u64,
    replay_to: u64,
    /// Versions of replayed parked events not done with yet.
    replaying: BTreeSet<u64>,
    parked_count: u64,
    /// Unloaded: its last member left (a new connection loads it again).
    closed: bool,
}

/// A loaded group.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) streams: StateStreams,
    pub(crate) id: Uuid,
    store: Arc<EventStore>,
    /// Deliver only durable events.
    durable: bool,
    writes: Mutex<Writes>,
    state: Mutex<State>,
    changed: Condvar,
    /// Moves with every change of `state` that a waiting member may want to
    /// see; the watcher's wait in the store ends when it moves.
    epoch: AtomicU64,
}

/// The state streams' cursors and what was last written, under `writes`.
#[derive(Debug)]
struct Writes {
    checkpoint: StreamCursor,
    parked: StreamCursor,
    stored: CheckpointRecord,
}

/// What a group looks like now ([`Group::snapshot`]).
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) settings: GroupSettings,
    pub(crate) checkpoint: u64,
    pub(crate) parked: u64,
    /// Each member's name, deliveries in flight, and threads waiting.
    pub(crate) members: Vec<(String, usize, usize)>,
    pub(crate) in_flight: usize,
    pub(crate) buffered: usize,
}

fn hash64(bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new();
    h.write(bytes);
    h.finish()
}

/// A stream's score for a member (rendezvous hashing): the stream goes to
/// the member of the highest, so that a member joining or leaving moves only
/// the streams it wins or held.
fn score(stream_hash: u64, name_hash: u64) -> u64 {
    // splitmix64's finalizer.
    let mut z = stream_hash ^ name_hash.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl State {
    fn room(&self) -> usize {
        (self.settings.buffer_size() as usize).saturating_sub(self.entries.len())
    }

    /// Every event of the target below it is done with.
    fn checkpoint(&self) -> u64 {
        match self.entries.keys().next() {
            Some(&Key::Live(p)) => p,
            _ => self.scan,
        }
    }

    /// Every parked event below this version is done with.
    fn parked_from(&self) -> u64 {
        self.replaying.first().copied().unwrap_or(self.replay_next)
    }

    /// Whether the entry `key` may be given to a member now; updates `ready`.
    fn refresh(&mut self, key: Key) {
        let Some(e) = self.entries.get(&key) else { return };
        let first = || {
            let stream = self.streams.get(e.event.stream.as_str()).and_then(|s| s.first_key_value());
            stream.is_some_and(|(_, &k)| k == key)
        };
        let ready = e.status == Status::Ready && (self.settings.strategy() == Strategy::RoundRobin || first());
        match ready {
            true => self.ready.insert(e.seq, key),
            false => self.ready.remove(&e.seq),
        };
    }

    /// Recomputes `ready` (the strategy changed).
    fn refresh_all(&mut self) {
        self.ready.clear();
        let keys: Vec<Key> = self.entries.keys().copied().collect();
        for key in keys {
            self.refresh(key);
        }
    }

    fn insert(&mut self, key: Key, event: RecordedEvent) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let stream: Arc<str> = Arc::from(event.stream.as_str());
        let stream_hash = hash64(event.stream.as_bytes());
        self.streams.entry(stream).or_default().insert(seq, key);
        let entry = Entry { event: Arc::new(event), seq, stream_hash, retries: 0, status: Status::Ready };
        self.entries.insert(key, entry);
        self.refresh(key);
    }

    /// Takes `key` out of flight: its member holds it no more.
    fn land(&mut self, key: Key) {
        let Some(e) = self.entries.get_mut(&key) else { return };
        if let Status::InFlight { member, deadline, .. } = e.status {
            self.deadlines.remove(&(deadline, key));
            if let Some(slot) = self.members.iter_mut().find(|s| s.id == member) {
                slot.in_flight -= 1;
            }
            e.status = Status::Ready;
        }
    }

    /// The entry `key` is done with (acknowledged, skipped, parked, or
    /// replayed and done with).
    fn resolve(&mut self, key: Key) {
        self.land(key);
        let Some(e) = self.entries.remove(&key) else { return };
        self.ready.remove(&e.seq);
        let stream = e.event.stream.as_str();
        let mut next_first = None;
        if let Some(s) = self.streams.get_mut(stream) {
            s.remove(&e.seq);
            next_first = s.first_key_value().map(|(_, &k)| k);
            if s.is_empty() {
                self.streams.remove(stream);
            }
        }
        if let Some(k) = next_first {
            self.refresh(k);
        }
        if let Key::Parked(version) = key {
            self.replaying.remove(&version);
            self.parked_count = self.parked_count.saturating_sub(1);
        }
        self.done = self.done.saturating_add(1);
    }

    /// A failure of the entry `key` (a nack for a retry, or a timeout): it
    /// is retried, or parked if it failed too often (then returned).
    fn fail(&mut self, key: Key, message: impl FnOnce() -> String) -> Option<ToPark> {
        self.land(key);
        let max = self.settings.max_retries();
        let e = self.entries.get_mut(&key)?;
        e.retries = e.retries.saturating_add(1);
        if e.retries > max {
            e.status = Status::Parking;
            let (position, retries) = (e.event.position, e.retries);
            self.refresh(key);
            let message = message();
            return Some(ToPark { key, position, retries, reason: ParkReason::RetriesExhausted, message });
        }
        self.refresh(key);
        None
    }

    /// Takes back the deliveries not acknowledged in time (at `now`);
    /// returns those to park.
    fn expire(&mut self, now: Instant) -> Vec<ToPark> {
        let mut parks = Vec::new();
        let timeout = self.settings.message_timeout();
        while let Some(&(deadline, key)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let message = || format!("not acknowledged within {} ms", timeout.as_millis());
            parks.extend(self.fail(key, message));
        }
        parks
    }

    /// Counts a thread of `member` in (`1`) or out (`-1`) of a wait.
    fn waiting(&mut self, member: u64, change: isize) {
        if let Some(slot) = self.members.iter_mut().find(|s| s.id == member) {
            slot.waiting = slot.waiting.saturating_add_signed(change);
        }
    }

    /// The member an event of a stream of `stream_hash` goes to under the
    /// pinned strategy.
    fn pinned_member(&self, stream_hash: u64) -> Option<u64> {
        self.members.iter().max_by_key(|s| (score(stream_hash, s.name_hash), std::cmp::Reverse(s.id))).map(|s| s.id)
    }

    /// The next delivery for `member` at `now`, if one is ready for it.
    fn take_for(&mut self, member: u64, now: Instant, group_id: Uuid) -> Option<Delivery> {
        let (seq, key) = match self.settings.strategy() {
            Strategy::RoundRobin => self.ready.first_key_value().map(|(&s, &k)| (s, k))?,
            Strategy::Pinned => self
                .ready
                .iter()
                .find(|&(_, k)| self.pinned_member(self.entries[k].stream_hash) == Some(member))
                .map(|(&s, &k)| (s, k))?,
        };
        self.ready.remove(&seq);
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let deadline = now + self.settings.message_timeout();
        let e = self.entries.get_mut(&key).expect("a ready entry");
        e.status = Status::InFlight { member, attempt, deadline };
        self.deadlines.insert((deadline, key));
        if let Some(slot) = self.members.iter_mut().find(|s| s.id == member) {
            slot.in_flight += 1;
        }
        Some(Delivery { event: Arc::clone(&e.event), retry_count: e.retries, key, attempt, member, group_id })
    }

    /// Whether the store may have events for the group that it has not read.
    fn has_news(&self, limit: u64) -> bool {
        self.replay_next < self.replay_to || limit > self.scan
    }

    fn plan(&self) -> Plan {
        Plan {
            target: self.settings.target().clone(),
            scan: self.scan,
            room: self.room(),
            replay: (self.replay_next < self.replay_to).then_some((self.replay_next, self.replay_to)),
        }
    }

    /// Takes in what a member read; whether it brought events.
    fn absorb(&mut self, fetched: Fetched) -> bool {
        let added = !fetched.live.is_empty() || !fetched.replayed.is_empty();
        for (version, event) in fetched.replayed {
            self.replaying.insert(version);
            self.insert(Key::Parked(version), event);
        }
        for event in fetched.live {
            self.insert(Key::Live(event.position), event);
        }
        self.scan = self.scan.max(fetched.scan);
        if let Some(next) = fetched.replay_next {
            self.replay_next = next.max(self.replay_next);
        }
        self.parked_count = self.parked_count.saturating_sub(fetched.gone);
        self.done = self.done.saturating_add(fetched.gone.min(u64::from(u32::MAX)) as u32);
        added
    }

    /// The check of an acknowledgement of `d` by `member`.
    fn check(&self, d: &Delivery, member: u64, group_id: Uuid) -> std::result::Result<(), Option<&'static str>> {
        if d.group_id != group_id || d.member != member {
            return Err(None);
        }
        match self.entries.get(&d.key).map(|e| e.status) {
            Some(Status::InFlight { attempt, .. }) if attempt == d.attempt => Ok(()),
            Some(Status::Parking) => Err(Some("it failed too often and is being parked")),
            Some(_) => Err(Some("it was taken back (timed out, or its member left) and is delivered again")),
            None => Err(Some("it was acknowledged or nacked already, or timed out and was parked")),
        }
    }
}

impl Group {
    /// Loads the group `name` from its streams.
    pub(crate) fn load(store: Arc<EventStore>, name: &str) -> Result<Group> {
        let streams = StateStreams::of(name);
        let stored = Stored::read(&store, name, &streams)?;
        let durable = store.durability() != crate::Durability::Never;
        let c = stored.checkpoint;
        let state = State {
            settings: stored.settings.settings.clone(),
            members: Vec::new(),
            next_member: 0,
            entries: BTreeMap::new(),
            streams: HashMap::new(),
            ready: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_seq: 0,
            next_attempt: 0,
            scan: c.position,
            fetching: false,
            watching: false,
            done: 0,
            replay_next: c.parked_from,
            replay_to: c.replay_to,
            replaying: BTreeSet::new(),
            parked_count: stored.parked_count,
            closed: false,
        };
        let writes = Writes { checkpoint: stored.checkpoint_cursor, parked: stored.parked_cursor, stored: c };
        Ok(Group {
            name: name.to_owned(),
            streams,
            id: stored.settings.group_id,
            store,
            durable,
            writes: Mutex::new(writes),
            state: Mutex::new(state),
            changed: Condvar::new(),
            epoch: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Wakes the members waiting on the group's condition.
    fn notify(&self) {
        self.changed.notify_all();
    }

    /// Tells every waiting member that `state` changed: those waiting on the
    /// condition, and the watcher waiting in the store.
    fn changed(&self, state: &State) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_all();
        if state.watching {
            self.store.wake_waiters();
        }
    }

    /// Connects a member named `name`; returns its id.
    pub(crate) fn join(&self, name: &str) -> u64 {
        let mut s = self.state();
        let id = s.next_member;
        s.next_member += 1;
        s.members.push(Slot {
            id,
            name: name.to_owned(),
            name_hash: hash64(name.as_bytes()),
            in_flight: 0,
            waiting: 0,
        });
        self.changed(&s);
        id
    }

    /// Disconnects member `id`: what it held goes back to the others (its
    /// retry counts unchanged). Returns whether no member is left.
    pub(crate) fn leave(&self, id: u64) -> bool {
        let mut s = self.state();
        let held: Vec<Key> = s
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.status, Status::InFlight { member, .. } if member == id))
            .map(|(&k, _)| k)
            .collect();
        for key in held {
            s.land(key);
            s.refresh(key);
        }
        s.members.retain(|m| m.id != id);
        self.changed(&s);
        s.members.is_empty()
    }

    /// Marks the group unloaded if no member is connected; whether it did.
    pub(crate) fn close_if_empty(&self) -> bool {
        let mut s = self.state();
        if s.members.is_empty() {
            s.closed = true;
        }
        s.closed
    }

    pub(crate) fn member_count(&self) -> usize {
        self.state().members.len()
    }

    /// The group as it is now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let s = self.state();
        let in_flight = s.members.iter().map(|m| m.in_flight).sum();
        Snapshot {
            settings: s.settings.clone(),
            checkpoint: s.checkpoint(),
            parked: s.parked_count,
            members: s.members.iter().map(|m| (m.name.clone(), m.in_flight, m.waiting)).collect(),
            in_flight,
            buffered: s.entries.len() - in_flight,
        }
    }

    /// Applies new settings (the target and start are unchanged).
    pub(crate) fn update(&self, settings: GroupSettings) {
        let mut s = self.state();
        s.settings = settings;
        s.refresh_all();
        self.changed(&s);
    }

    /// The next delivery for member `member`, waiting up to `timeout` (real
    /// time) for one; message timeouts are judged on the clock that reads
    /// `now` at the call (and advances with real time while it waits).
    pub(crate) fn next(&self, member: u64, now: Instant, timeout: Duration) -> Result<Option<Delivery>> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout).unwrap_or(started + Duration::from_secs(86_400 * 365));
        let clock = |real: Instant| now + real.saturating_duration_since(started);
        let mut s = self.state();
        loop {
            let real = Instant::now();
            let at = clock(real);
            let parks = s.expire(at);
            if !parks.is_empty() {
                self.changed(&s);
                drop(s);
                self.park(parks)?;
                self.checkpoint_if_due()?;
                s = self.state();
                continue;
            }
            if let Some(d) = s.take_for(member, at, self.id) {
                return Ok(Some(d));
            }
            let room = s.room() > 0;
            if room && !s.fetching && s.has_news(self.limit()) {
                s.fetching = true;
                let plan = s.plan();
                drop(s);
                let fetched = self.fetch(plan);
                s = self.state();
                s.fetching = false;
                match fetched {
                    Ok(f) => match s.absorb(f) {
                        true => self.changed(&s),
                        false => self.notify(),
                    },
                    Err(e) => {
                        self.notify();
                        return Err(e);
                    }
                }
                continue;
            }
            if real >= deadline {
                return Ok(None);
            }
            // Until the caller's deadline or the next message timeout.
            let wake = match s.deadlines.first() {
                Some(&(d, _)) => deadline.min(real + d.saturating_duration_since(at)),
                None => deadline,
            };
            let wait = wake.saturating_duration_since(real);
            s.waiting(member, 1);
            if room && !s.fetching && !s.watching {
                // Nothing new in the store: wait there for the group's next
                // event, or for a change of the group.
                s.watching = true;
                let (seen, scan) = (self.epoch.load(Ordering::SeqCst), s.scan);
                drop(s);
                let interrupted = || self.epoch.load(Ordering::SeqCst) != seen;
                self.store.wait_for_position(scan, self.durable, wait, &interrupted);
                s = self.state();
                s.watching = false;
                // Another member may watch now.
                self.notify();
            } else {
                s = self.changed.wait_timeout(s, wait).unwrap_or_else(PoisonError::into_inner).0;
            }
            s.waiting(member, -1);
        }
    }

    /// Reads what `plan` says from the store: parked events to replay, then
    /// events of the target.
    fn fetch(&self, plan: Plan) -> Result<Fetched> {
        let store = &*self.store;
        let mut fetched = Fetched { scan: plan.scan, ..Fetched::default() };
        let mut room = plan.room;
        if let Some((from, to)) = plan.replay {
            let want = room.min(REPLAY_BATCH);
            let events = store.read_stream(&self.streams.parked, from, Direction::Forward, want)?;
            let mut next = from;
            let exhausted = events.len() < want;
            for e in events {
                if e.version >= to {
                    next = to;
                    break;
                }
                next = e.version + 1;
                let record = decode_state(&e, PARKED_EVENT_TYPE, ParkedRecord::decode)?;
                if record.group_id != self.id {
                    // An earlier group's of the same name.
                    continue;
                }
                match store.read_all(record.position, Direction::Forward, 1)?.pop() {
                    Some(original) if original.position == record.position => {
                        fetched.replayed.push((e.version, original));
                        room -= 1;
                    }
                    _ => fetched.gone += 1,
                }
            }
            if exhausted {
                // The parked stream has nothing more to show below `to`.
                next = next.max(to);
            }
            fetched.replay_next = Some(next.min(to));
        }
        if room > 0 {
            let limit = self.limit();
            let mut sub = store.subscribe(subscription_target(&plan.target), StartFrom::Position(plan.scan))?;
            if self.durable {
                sub = sub.durable_only();
            }
            while room > 0 {
                let Some(e) = sub.next_timeout(Duration::ZERO)? else { break };
                if plan.target.delivers(&e.stream) {
                    fetched.live.push(e);
                    room -= 1;
                }
            }
            fetched.scan = sub.next_position();
            if room > 0 {
                // The subscription looked at everything it may read, which
                // reaches `limit` at least; past the last record there may
                // be no record to read (the end of a sealed segment
                // scavenged, and nothing after it yet).
                fetched.scan = fetched.scan.max(limit);
            }
        }
        Ok(fetched)
    }

    /// Moves the group's reading position past the events of the store that
    /// are not for it (its own state events among them), up to its next
    /// event or what is there: so that a checkpoint written now does not
    /// count them as lag. Does nothing while a member reads the store.
    pub(crate) fn skip_ahead(&self) -> Result<()> {
        let (target, scan) = {
            let mut s = self.state();
            if s.fetching || !s.has_news(self.limit()) {
                return Ok(());
            }
            s.fetching = true;
            (s.settings.target().clone(), s.scan)
        };
        let skipped = (|| {
            let mut sub = self.store.subscribe(subscription_target(&target), StartFrom::Position(scan))?;
            if self.durable {
                sub = sub.durable_only();
            }
            let limit = self.limit();
            while let Some(e) = sub.next_timeout(Duration::ZERO)? {
                if target.delivers(&e.stream) {
                    return Ok(e.position);
                }
            }
            // As in `fetch`: everything below `limit` was looked at.
            Ok::<u64, Error>(sub.next_position().max(limit))
        })();
        let mut s = self.state();
        s.fetching = false;
        if let Ok(to) = skipped {
            s.scan = s.scan.max(to);
        }
        self.notify();
        skipped.map(|_| ())
    }

    /// The end of what the group may read now: the store's head, or the
    /// durable position when it delivers only durable events.
    fn limit(&self) -> u64 {
        match self.durable {
            true => self.store.durable_position(),
            false => self.store.head_position(),
        }
    }

    /// Acknowledges `d` (processed) for member `member` (`name`), writing
    /// the checkpoint if it is due.
    pub(crate) fn ack(&self, member: u64, name: &str, d: &Delivery) -> Result<()> {
        {
            let mut s = self.state();
            s.check(d, member, self.id).map_err(|why| self.refused(name, d, why))?;
            s.resolve(d.key);
            self.changed(&s);
        }
        self.checkpoint_if_due()
    }

    /// Nacks `d` for member `member` (`name`): retried, parked or skipped.
    pub(crate) fn nack(&self, member: u64, name: &str, d: &Delivery, action: NackAction, reason: &str) -> Result<()> {
        let park = {
            let mut s = self.state();
            s.check(d, member, self.id).map_err(|why| self.refused(name, d, why))?;
            let park = match action {
                NackAction::Skip => {
                    s.resolve(d.key);
                    None
                }
                NackAction::Retry => s.fail(d.key, || reason.to_owned()),
                NackAction::Park => {
                    s.land(d.key);
                    let e = s.entries.get_mut(&d.key).expect("an entry in flight");
                    e.status = Status::Parking;
                    let (position, retries) = (e.event.position, e.retries);
                    s.refresh(d.key);
                    let message = reason.to_owned();
                    Some(ToPark { key: d.key, position, retries, reason: ParkReason::Nacked, message })
                }
            };
            self.changed(&s);
            park
        };
        if let Some(park) = park {
            self.park(vec![park])?;
        }
        self.checkpoint_if_due()
    }

    /// Writes the checkpoint if enough events were done with since the last.
    fn checkpoint_if_due(&self) -> Result<()> {
        let due = {
            let s = self.state();
            s.done >= s.settings.checkpoint_interval()
        };
        if due { self.write_checkpoint() } else { Ok(()) }
    }

    fn refused(&self, member: &str, d: &Delivery, why: Option<&'static str>) -> Error {
        let (group, member, position) = (self.name.clone(), member.to_owned(), d.event.position);
        match why {
            None => Error::UnknownDelivery { group, member, position },
            Some(reason) => Error::StaleDelivery { group, member, position, reason },
        }
    }

    /// Writes `parks` to the parked stream (one append), then lets them go:
    /// until then, their streams' later events wait (under pinned) and the
    /// checkpoint stays below them. If the append fails, they are retried.
    fn park(&self, parks: Vec<ToPark>) -> Result<()> {
        let mut w = self.writes.locked();
        let events = parks
            .iter()
            .map(|p| {
                let record = ParkedRecord {
                    group_id: self.id,
                    position: p.position,
                    retries: p.retries,
                    reason: p.reason,
                    message: p.message.clone(),
                };
                NewEvent::binary(PARKED_EVENT_TYPE, record.encode())
            })
            .collect();
        let written = self.store.append(&self.streams.parked, w.parked.expected(), events);
        let mut s = self.state();
        match written {
            Ok(result) => {
                w.parked.appended(&result);
                for p in &parks {
                    s.resolve(p.key);
                }
                s.parked_count += parks.len() as u64;
                self.changed(&s);
                Ok(())
            }
            Err(e) => {
                for p in &parks {
                    if let Some(entry) = s.entries.get_mut(&p.key) {
                        entry.status = Status::Ready;
                    }
                    s.refresh(p.key);
                }
                self.changed(&s);
                Err(self.state_write_error(&self.streams.parked, e))
            }
        }
    }

    fn state_write_error(&self, stream: &str, e: events::Error) -> Error {
        match e {
            e @ events::Error::WrongExpectedVersion { .. } => {
                Error::Conflict { group: self.name.clone(), stream: stream.to_owned(), source: Box::new(e) }
            }
            e => Error::Store(e),
        }
    }

    /// Writes the checkpoint, if it moved since the last one written (one
    /// append); then lets scavenging drop the parked events done with.
    pub(crate) fn write_checkpoint(&self) -> Result<()> {
        let mut w = self.writes.locked();
        self.write_checkpoint_locked(&mut w)
    }

    fn write_checkpoint_locked(&self, w: &mut Writes) -> Result<()> {
        let record = {
            let mut s = self.state();
            s.done = 0;
            CheckpointRecord {
                group_id: self.id,
                position: s.checkpoint(),
                parked_from: s.parked_from(),
                replay_to: s.replay_to,
            }
        };
        if record == w.stored {
            return Ok(());
        }
        let event = NewEvent::binary(CHECKPOINT_EVENT_TYPE, record.encode());
        let result = self.store.append(&self.streams.checkpoint, w.checkpoint.expected(), vec![event]);
        let result = result.map_err(|e| self.state_write_error(&self.streams.checkpoint, e))?;
        w.checkpoint.appended(&result);
        let truncate = record.parked_from > w.stored.parked_from;
        w.stored = record;
        if truncate {
            let metadata = StreamMetadata::default().with_truncate_before(record.parked_from);
            self.store.set_stream_metadata(&self.streams.parked, metadata)?;
            w.parked.shown_from = record.parked_from;
        }
        Ok(())
    }

    /// Replays the group's parked events (those parked until now): returns
    /// how many there are. The request is written with the checkpoint.
    pub(crate) fn replay_parked(&self) -> Result<u64> {
        let mut w = self.writes.locked();
        let count = {
            let mut s = self.state();
            s.replay_to = s.replay_to.max(w.parked.next);
            self.changed(&s);
            s.parked_count
        };
        self.write_checkpoint_locked(&mut w)?;
        Ok(count)
    }

    /// The version of the parked stream below which every parked event is
    /// done with.
    pub(crate) fn parked_from(&self) -> u64 {
        self.state().parked_from()
    }
}

/// The event store's subscription target of a group's.
fn subscription_target(target: &GroupTarget) -> SubscriptionTarget {
    match target {
        GroupTarget::All => SubscriptionTarget::All,
        GroupTarget::Stream(s) => SubscriptionTarget::Stream(s.clone()),
        GroupTarget::Category(c) => SubscriptionTarget::Category(c.clone()),
    }
}

/// The settings event of a new group.
pub(crate) fn settings_event(record: &SettingsRecord) -> NewEvent {
    NewEvent::binary(SETTINGS_EVENT_TYPE, record.encode())
}

/// The checkpoint event of a record.
pub(crate) fn checkpoint_event(record: &CheckpointRecord) -> NewEvent {
    NewEvent::binary(CHECKPOINT_EVENT_TYPE, record.encode())
}
