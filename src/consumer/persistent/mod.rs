//! Persistent subscriptions (competing consumers) on the event store
//! (docs/EVENTS.md, "Persistent subscriptions"): a named group over `$all`,
//! a category or a stream, whose members share its events, each event
//! acknowledged once (or retried, then parked), and whose progress is kept in
//! the store itself, so that members resume after a restart.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use annal::consumer::persistent::{GroupSettings, GroupTarget, NackAction, PersistentSubscriptions, Strategy};
//! use annal::events::{EventStore, EventStoreConfig, ExpectedVersion, NewEvent};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(EventStore::open(dir.path(), EventStoreConfig::default())?);
//! store.append("order-1", ExpectedVersion::NoStream, vec![NewEvent::json("OrderPlaced", "{}")])?;
//! store.append("order-2", ExpectedVersion::NoStream, vec![NewEvent::json("OrderPlaced", "{}")])?;
//!
//! let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
//! let settings = GroupSettings::new(GroupTarget::Category("order".into())).with_strategy(Strategy::Pinned);
//! subscriptions.create("billing", settings)?;
//! let member = subscriptions.connect("billing", "worker-1")?;
//! let first = member.next(Duration::from_secs(1))?.expect("an event");
//! member.ack(&first)?;
//! let second = member.next(Duration::from_secs(1))?.expect("an event");
//! member.nack(&second, NackAction::Park, "no customer")?;
//! member.close()?; // writes the checkpoint
//!
//! let info = subscriptions.info("billing")?;
//! assert_eq!((info.parked, info.lag), (1, 0));
//! drop(subscriptions);
//! Arc::try_unwrap(store).expect("the last reference").close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A group's state lives in three streams of the store (their events'
//! bytes are in docs/FORMAT.md, "Persistent subscription state"):
//!
//! - `$persistent-{group}`: its settings (the last event; metadata
//!   `max_count` 1);
//! - `$persistent.checkpoint-{group}`: its checkpoint (the last event;
//!   `max_count` 1): the position below which every event of the target was
//!   acknowledged, skipped or parked, and how far the parked events were
//!   replayed;
//! - `$persistent.parked-{group}`: its parked events, each the position of
//!   an event, why and after how many retries (truncated as they are
//!   replayed and done with).

mod error;
mod group;
pub(crate) mod records;
mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

pub use error::{Error, Result};
pub use group::{Delivery, NackAction};
pub use records::{
    CHECKPOINT_EVENT_TYPE, CHECKPOINT_STREAM_PREFIX, PARKED_EVENT_TYPE, PARKED_STREAM_PREFIX, ParkReason,
    SETTINGS_CATEGORY, SETTINGS_EVENT_TYPE,
};
pub use settings::{GroupSettings, GroupTarget, MAX_BUFFER_SIZE, MAX_MESSAGE_TIMEOUT_MS, Strategy};

use self::group::{Group, Stored, StreamCursor, checkpoint_event, decode_state, settings_event};
use self::records::{CheckpointRecord, ParkedRecord, SettingsRecord, StateStreams};
use crate::events::{
    self, CurrentVersion, DeleteMode, Direction, EventStore, ExpectedVersion, RecordedEvent, StartFrom, StreamAppend,
};
use crate::sync::MutexExt;

/// The longest group or member name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The persistent subscriptions of an event store: creates, changes, lists
/// and deletes groups, and connects members to them. Clones share the
/// groups whose members are connected; a process has one per store (another
/// one's writes to the same groups fail with [`Error::Conflict`]).
///
/// Members and handles hold the store: close every member and drop every
/// handle before closing the store.
#[derive(Debug, Clone)]
pub struct PersistentSubscriptions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<EventStore>,
    /// The groups with connected members, by name. Lock order: before a
    /// group's own locks (group.rs).
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

/// A persistent subscription, as [`PersistentSubscriptions::info`] and
/// [`PersistentSubscriptions::list`] see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub settings: GroupSettings,
    /// Every event of the target below this global position is done with
    /// (acknowledged, skipped or parked): the group's checkpoint as its
    /// members in this process have it, or as written if none is connected.
    pub checkpoint: u64,
    /// The events of the store after the checkpoint (the store's head minus
    /// the checkpoint): how far the group is behind, counted in events of
    /// the whole store (of other targets, and the store's own, too).
    pub lag: u64,
    /// Its parked events not replayed yet.
    pub parked: u64,
    /// Its members connected in this process.
    pub members: Vec<MemberInfo>,
    /// Events given to members and not acknowledged yet.
    pub in_flight: usize,
    /// Events read and waiting for a member (or for a retry).
    pub buffered: usize,
}

/// A connected member ([`GroupInfo::members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Events it holds, not acknowledged yet.
    pub in_flight: usize,
    /// Its threads waiting in [`Member::next`] for an event.
    pub waiting: usize,
}

/// A parked event ([`PersistentSubscriptions::parked_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParkedEvent {
    /// Its version in the group's parked stream.
    pub parked_version: u64,
    /// The global position of the event.
    pub position: u64,
    /// The event, or none if it is gone (scavenged, or hidden by its
    /// stream's deletion or metadata: a replay skips it).
    pub event: Option<RecordedEvent>,
    /// Why it was parked.
    pub reason: ParkReason,
    /// The member's reason (of its nack), or the timeout.
    pub message: String,
    /// Its failed deliveries before it was parked.
    pub retries: u32,
    /// When it was parked, in milliseconds since the Unix epoch.
    pub parked_at_ms: i64,
}

/// Why a group or member name is refused, if it is: 1 to
/// [`MAX_NAME_LEN`] bytes of UTF-8 without control characters.
pub fn name_problem(name: &str) -> Option<String> {
    match name.len() {
        0 => Some("a name cannot be empty".into()),
        n if n > MAX_NAME_LEN => Some(format!("a name of {n} bytes (at most {MAX_NAME_LEN})")),
        _ if name.chars().any(char::is_control) => Some("a name cannot hold control characters".into()),
        _ => None,
    }
}

fn check_name(what: &'static str, name: &str) -> Result<()> {
    match name_problem(name) {
        Some(reason) => Err(Error::InvalidName { what, name: records::cut(name, 100).to_owned(), reason }),
        None => Ok(()),
    }
}

/// A refused append to a group's state stream: another writer's.
fn state_error(group: &str, stream: &str, e: events::Error) -> Error {
    match e {
        e @ events::Error::WrongExpectedVersion { .. } => {
            Error::Conflict { group: group.to_owned(), stream: stream.to_owned(), source: Box::new(e) }
        }
        e => Error::Store(e),
    }
}

impl PersistentSubscriptions {
    /// The persistent subscriptions of `store`.
    pub fn new(store: Arc<EventStore>) -> PersistentSubscriptions {
        PersistentSubscriptions { inner: Arc::new(Inner { store, groups: Mutex::new(HashMap::new()) }) }
    }

    /// The event store.
    pub fn store(&self) -> &Arc<EventStore> {
        &self.inner.store
    }

    /// Creates the group `group`: its settings and its first checkpoint (at
    /// its start) in one append. [`Error::GroupExists`] if it exists.
    pub fn create(&self, group: &str, settings: GroupSettings) -> Result<()> {
        check_name("group", group)?;
        if let Some(reason) = settings.problem() {
            return Err(Error::InvalidSettings { group: group.to_owned(), reason });
        }
        let store = &*self.inner.store;
        let _groups = self.inner.groups.locked();
        let streams = StateStreams::of(group);
        if Stored::settings(store, &streams)?.is_some() {
            return Err(Error::GroupExists { group: group.to_owned() });
        }
        // What an earlier group of this name left (its deletion was cut
        // short); its events carry another group id, and are not read anyway.
        for stream in [&streams.checkpoint, &streams.parked] {
            if store.stream_version(stream)? != CurrentVersion::NoStream {
                store.delete_stream(stream, ExpectedVersion::Any, DeleteMode::Soft)?;
            }
        }
        // Scavenging keeps only the last settings and checkpoint.
        for stream in [&streams.settings, &streams.checkpoint] {
            let metadata = store.stream_metadata(stream)?;
            if metadata.max_count() != Some(1) {
                store.set_stream_metadata(stream, metadata.with_max_count(1))?;
            }
        }
        let parked = StreamCursor::of(store, &streams.parked)?;
        let position = match settings.start() {
            StartFrom::Beginning => 0,
            StartFrom::End => store.head_position(),
            StartFrom::Position(p) => p,
        };
        let group_id = Uuid::new_v4();
        let checkpoint = CheckpointRecord { group_id, position, parked_from: parked.next, replay_to: parked.next };
        let settings = SettingsRecord { group_id, settings };
        let checkpoint_cursor = StreamCursor::of(store, &streams.checkpoint)?;
        let appends = vec![
            StreamAppend::new(&streams.settings, ExpectedVersion::NoStream, vec![settings_event(&settings)]),
            StreamAppend::new(&streams.checkpoint, checkpoint_cursor.expected(), vec![checkpoint_event(&checkpoint)]),
        ];
        match store.append_to_streams(appends) {
            Ok(_) => Ok(()),
            Err(events::Error::WrongExpectedVersion { stream, .. }) if stream == streams.settings => {
                Err(Error::GroupExists { group: group.to_owned() })
            }
            Err(e) => Err(state_error(group, &streams.checkpoint, e)),
        }
    }

    /// Changes the settings of `group`: its strategy, retries, timeout,
    /// checkpoint interval and buffer, at once for its connected members.
    /// Its target and start cannot change ([`Error::InvalidSettings`]).
    pub fn update(&self, group: &str, settings: GroupSettings) -> Result<()> {
        check_name("group", group)?;
        let invalid = |reason: String| Error::InvalidSettings { group: group.to_owned(), reason };
        if let Some(reason) = settings.problem() {
            return Err(invalid(reason));
        }
        let store = &*self.inner.store;
        let groups = self.inner.groups.locked();
        let streams = StateStreams::of(group);
        let unknown = || Error::UnknownGroup { group: group.to_owned() };
        let (current, cursor, _) = Stored::settings(store, &streams)?.ok_or_else(unknown)?;
        if settings.target() != current.settings.target() {
            return Err(invalid(format!(
                "its target is {}, and a group's target cannot change (create another group)",
                current.settings.target()
            )));
        }
        if settings.start() != current.settings.start() {
            return Err(invalid(format!(
                "its start is {:?}, and a group's start cannot change (it goes on from its checkpoint)",
                current.settings.start()
            )));
        }
        let record = SettingsRecord { group_id: current.group_id, settings };
        store
            .append(&streams.settings, cursor.expected(), vec![settings_event(&record)])
            .map_err(|e| state_error(group, &streams.settings, e))?;
        if let Some(g) = groups.get(group) {
            g.update(record.settings);
        }
        Ok(())
    }

    /// Deletes `group`: its settings, checkpoint and parked events (soft
    /// deletes of its streams, which scavenging reclaims). Refused while
    /// members are connected ([`Error::GroupInUse`]).
    pub fn delete(&self, group: &str) -> Result<()> {
        check_name("group", group)?;
        let store = &*self.inner.store;
        let mut groups = self.inner.groups.locked();
        if let Some(g) = groups.get(group) {
            let members = g.member_count();
            if members > 0 {
                return Err(Error::GroupInUse { group: group.to_owned(), members });
            }
        }
        let streams = StateStreams::of(group);
        let unknown = || Error::UnknownGroup { group: group.to_owned() };
        let (_, cursor, _) = Stored::settings(store, &streams)?.ok_or_else(unknown)?;
        // The settings first: from then on the group does not exist.
        store
            .delete_stream(&streams.settings, cursor.expected(), DeleteMode::Soft)
            .map_err(|e| state_error(group, &streams.settings, e))?;
        for stream in [&streams.checkpoint, &streams.parked] {
            if store.stream_version(stream)? != CurrentVersion::NoStream {
                store.delete_stream(stream, ExpectedVersion::Any, DeleteMode::Soft)?;
            }
        }
        groups.remove(group);
        Ok(())
    }

    /// Every group, by name.
    pub fn list(&self) -> Result<Vec<GroupInfo>> {
        let store = &*self.inner.store;
        let mut names = Vec::new();
        let mut from = 0;
        loop {
            let page = store.read_category(records::SETTINGS_CATEGORY, from, Direction::Forward, 256)?;
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            for e in page {
                // The category of `$persistent-{group}`: the rest is the name.
                let name = e.stream.strip_prefix(records::SETTINGS_CATEGORY).and_then(|s| s.strip_prefix('-'));
                let Some(name) = name else { continue };
                if name_problem(name).is_none() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match self.info(&name) {
                Ok(info) => out.push(info),
                // Deleted meanwhile.
                Err(Error::UnknownGroup { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// What `group` is and how far it got.
    pub fn info(&self, group: &str) -> Result<GroupInfo> {
        check_name("group", group)?;
        let store = &*self.inner.store;
        let loaded = self.inner.groups.locked().get(group).cloned();
        let stored = Stored::read(store, group, &StateStreams::of(group))?;
        let mut info = GroupInfo {
            name: group.to_owned(),
            settings: stored.settings.settings.clone(),
            checkpoint: stored.checkpoint.position,
            lag: stored.lag(store),
            parked: stored.parked_count,
            members: Vec::new(),
            in_flight: 0,
            buffered: 0,
        };
        if let Some(g) = loaded.filter(|g| g.id == stored.settings.group_id) {
            let live = g.snapshot();
            info.settings = live.settings;
            if live.checkpoint > info.checkpoint {
                info.checkpoint = live.checkpoint;
                info.lag = store.head_position().saturating_sub(live.checkpoint);
            }
            info.parked = live.parked;
            info.members = live
                .members
                .into_iter()
                .map(|(name, in_flight, waiting)| MemberInfo { name, in_flight, waiting })
                .collect();
            info.in_flight = live.in_flight;
            info.buffered = live.buffered;
        }
        Ok(info)
    }

    /// Connects a member named `member` to `group` (loading the group from
    /// its streams if no member is connected yet): it resumes from the
    /// checkpoint, and the events after it may be delivered again.
    pub fn connect(&self, group: &str, member: &str) -> Result<Member> {
        check_name("group", group)?;
        check_name("member", member)?;
        let mut groups = self.inner.groups.locked();
        let g = match groups.get(group) {
            Some(g) => Arc::clone(g),
            None => {
                let g = Arc::new(Group::load(Arc::clone(&self.inner.store), group)?);
                groups.insert(group.to_owned(), Arc::clone(&g));
                g
            }
        };
        let id = g.join(member);
        Ok(Member { inner: Arc::clone(&self.inner), group: g, id, name: member.to_owned(), left: false })
    }

    /// Delivers the parked events of `group` again (those parked until now,
    /// in the order they were parked), to its members as they ask for
    /// events; each one acknowledged or skipped leaves the parked events,
    /// one that fails again is parked again (at the end). The request is
    /// durable: a replay cut short by a restart goes on. Returns how many
    /// parked events there are.
    pub fn replay_parked(&self, group: &str) -> Result<u64> {
        check_name("group", group)?;
        let store = &*self.inner.store;
        let groups = self.inner.groups.locked();
        if let Some(g) = groups.get(group) {
            return g.replay_parked();
        }
        let streams = StateStreams::of(group);
        let stored = Stored::read(store, group, &streams)?;
        let replay_to = stored.parked_cursor.next.max(stored.checkpoint.replay_to);
        if replay_to != stored.checkpoint.replay_to {
            let record = CheckpointRecord { replay_to, ..stored.checkpoint };
            store
                .append(&streams.checkpoint, stored.checkpoint_cursor.expected(), vec![checkpoint_event(&record)])
                .map_err(|e| state_error(group, &streams.checkpoint, e))?;
        }
        Ok(stored.parked_count)
    }

    /// Up to `max` of the parked events of `group`, oldest first.
    pub fn parked_events(&self, group: &str, max: usize) -> Result<Vec<ParkedEvent>> {
        check_name("group", group)?;
        let store = &*self.inner.store;
        let loaded = self.inner.groups.locked().get(group).cloned();
        let streams = StateStreams::of(group);
        let stored = Stored::read(store, group, &streams)?;
        let group_id = stored.settings.group_id;
        let mut from = match loaded.filter(|g| g.id == group_id) {
            Some(g) => g.parked_from(),
            None => stored.checkpoint.parked_from,
        };
        let mut out = Vec::new();
        while out.len() < max {
            let page = store.read_stream(&streams.parked, from, Direction::Forward, 256)?;
            let Some(last) = page.last() else { break };
            from = last.version + 1;
            for e in page {
                let record = decode_state(&e, PARKED_EVENT_TYPE, ParkedRecord::decode)?;
                if record.group_id != group_id || out.len() == max {
                    continue;
                }
                let event = store.read_all(record.position, Direction::Forward, 1)?.pop();
                out.push(ParkedEvent {
                    parked_version: e.version,
                    position: record.position,
                    event: event.filter(|o| o.position == record.position),
                    reason: record.reason,
                    message: record.message,
                    retries: record.retries,
                    parked_at_ms: e.timestamp_ms,
                });
            }
        }
        Ok(out)
    }
}

/// A member of a group ([`PersistentSubscriptions::connect`]): asks for
/// events with [`Member::next`], and acknowledges each with [`Member::ack`]
/// or [`Member::nack`]. It may be shared by threads (`&self` everywhere).
/// Closing it ([`Member::close`], or dropping it) gives what it holds back
/// to the group and writes the checkpoint.
#[derive(Debug)]
pub struct Member {
    inner: Arc<Inner>,
    group: Arc<Group>,
    id: u64,
    name: String,
    left: bool,
}

impl Member {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// The next event for this member, waiting up to `timeout` for one:
    /// none if none came. It also takes back, for a retry, the deliveries of
    /// the group not acknowledged within the message timeout (parking those
    /// that failed too often).
    pub fn next(&self, timeout: Duration) -> Result<Option<Delivery>> {
        self.next_at(Instant::now(), timeout)
    }

    /// [`Member::next`] on a clock of the caller's: message timeouts are
    /// judged as if it were `now` at the call (and that clock advances with
    /// real time while the call waits). Deliveries it makes time out at
    /// `now` plus the message timeout, on that clock.
    pub fn next_at(&self, now: Instant, timeout: Duration) -> Result<Option<Delivery>> {
        self.group.next(self.id, now, timeout)
    }

    /// Acknowledges `delivery`: the event was processed. Writes the
    /// checkpoint when it is due (an error then says the acknowledgement
    /// counted, but the checkpoint was not written). [`Error::StaleDelivery`]
    /// if the delivery is no longer in flight (it timed out: the event is
    /// delivered again), [`Error::UnknownDelivery`] if it is not this
    /// member's.
    pub fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.group.ack(self.id, &self.name, delivery)
    }

    /// Reports that `delivery` failed, for `reason` (kept with the event if
    /// it is parked): it is retried, parked (written to the group's parked
    /// events before this returns) or skipped, as `action` says. The same
    /// errors as [`Member::ack`].
    pub fn nack(&self, delivery: &Delivery, action: NackAction, reason: &str) -> Result<()> {
        self.group.nack(self.id, &self.name, delivery, action, reason)
    }

    /// Disconnects: the events it holds go back to the group (to be
    /// delivered to another member, their retry counts unchanged), and the
    /// checkpoint is written.
    pub fn close(mut self) -> Result<()> {
        self.leave(true)
    }

    /// Disconnects without writing the checkpoint, as when the process
    /// dies: what it holds goes back to the group, and a group left without
    /// members resumes from its last checkpoint written. For crash tests
    /// (with [`EventStore::abandon`]).
    pub fn abandon(mut self) {
        let _ = self.leave(false);
    }

    fn leave(&mut self, checkpoint: bool) -> Result<()> {
        if std::mem::replace(&mut self.left, true) {
            return Ok(());
        }
        let empty = self.group.leave(self.id);
        let written = match checkpoint {
            true => self.group.skip_ahead().and_then(|()| self.group.write_checkpoint()),
            false => Ok(()),
        };
        if empty {
            // Unloads the group, unless a member connected meanwhile.
            let mut groups = self.inner.groups.locked();
            if self.group.close_if_empty() && groups.get(&self.group.name).is_some_and(|g| Arc::ptr_eq(g, &self.group))
            {
                groups.remove(&self.group.name);
            }
        }
        written
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Errors are for `close` to return.
        let _ = self.leave(true);
    }
}
