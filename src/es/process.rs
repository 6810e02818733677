//! Process managers (sagas; docs/EVENT-SOURCING.md, "Process managers"):
//! react to events, keep a state per instance (a correlation id, usually),
//! emit events and commands, and schedule durable timeouts. What one
//! reaction changes (the instance's new state, the position the manager
//! goes on from, the timeouts it scheduled or cancelled, the events and
//! commands it emitted) is one atomic multi-stream append: after a crash,
//! each event has been reacted to exactly once, and nothing emitted is lost
//! or written twice.
//!
//! Commands are events too, in command streams; a [`Dispatcher`] carries
//! them out through repositories with the command event's id as the
//! command id, so that a command dispatched again after a crash writes
//! nothing ([`crate::es::Executed::already_done`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::checkpoint::Checkpoint;
use super::codec::Codec;
use super::error::{Error, Result};
use super::projection::{CommitError, ParkedEvent, ReadModel};
use super::records::{TimeoutKind, TimeoutRecord, encode_parked};
use crate::events::{
    self, CurrentVersion, Direction, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StartFrom, StreamAppend,
    SubscriptionTarget, Uuid,
};

/// The event type of a process manager instance's state.
pub const STATE_EVENT_TYPE: &str = "$state";
/// The event type of a timeout record.
pub const TIMEOUT_EVENT_TYPE: &str = "$timeout";

/// A due timeout, as given to [`ProcessManager::timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// The instance that scheduled it.
    pub instance: String,
    /// Its name (one pending timeout per instance and name).
    pub name: String,
    /// When it was due, in milliseconds since the Unix epoch.
    pub due_ms: i64,
    /// What the instance gave with it.
    pub payload: Vec<u8>,
}

/// What a reaction does besides changing its instance's state.
#[derive(Debug, Default)]
pub struct Effects {
    emitted: Vec<(String, NewEvent)>,
    timeouts: Vec<TimeoutRecord>,
    now_ms: i64,
}

impl Effects {
    /// Appends `event` to `stream` with the reaction (an event, or a command
    /// for a [`Dispatcher`] in a command stream). Give it an id derived from
    /// the event reacted to if the stream may see it twice otherwise.
    pub fn emit(&mut self, stream: impl Into<String>, event: NewEvent) {
        self.emitted.push((stream.into(), event));
    }

    /// Schedules the instance's timeout `name` (replacing one of the same
    /// name) to fire `after` from now, with `payload`.
    pub fn schedule(&mut self, name: impl Into<String>, after: Duration, payload: impl Into<Vec<u8>>) {
        let due_ms = self.now_ms.saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        self.schedule_at(name, due_ms, payload);
    }

    /// Schedules the instance's timeout `name` to fire at `due_ms`.
    pub fn schedule_at(&mut self, name: impl Into<String>, due_ms: i64, payload: impl Into<Vec<u8>>) {
        self.timeouts.push(TimeoutRecord {
            kind: TimeoutKind::Scheduled,
            due_ms,
            instance: String::new(),
            name: name.into(),
            payload: payload.into(),
        });
    }

    /// Cancels the instance's timeout `name`, if pending.
    pub fn cancel(&mut self, name: impl Into<String>) {
        self.timeouts.push(TimeoutRecord {
            kind: TimeoutKind::Cancelled,
            due_ms: 0,
            instance: String::new(),
            name: name.into(),
            payload: Vec::new(),
        });
    }

    /// The time the reaction runs at (milliseconds since the Unix epoch).
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }
}

/// A process manager: reacts to events and timeouts with a state per
/// instance.
pub trait ProcessManager: Send {
    /// The state of one instance (`Default` before its first event).
    type State: Serialize + DeserializeOwned + Default + Send;

    /// The instance `event` concerns, or `None` to let it pass.
    fn instance(&self, event: &RecordedEvent) -> Option<String>;

    /// Reacts to `event` of `state`'s instance. An error changes nothing
    /// (the runner retries the event, then parks it).
    fn react(
        &mut self,
        state: &mut Self::State,
        event: &RecordedEvent,
        effects: &mut Effects,
    ) -> std::result::Result<(), String>;

    /// Reacts to a due timeout of `state`'s instance.
    fn timeout(
        &mut self,
        state: &mut Self::State,
        timeout: &Timeout,
        effects: &mut Effects,
    ) -> std::result::Result<(), String>;
}

/// What one [`ProcessRunner::run_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessOutcome {
    /// Events reacted to.
    pub reacted: usize,
    /// Timeouts fired.
    pub fired: usize,
    /// Events emitted (commands included).
    pub emitted: usize,
    /// Events parked after their retries.
    pub parked: usize,
    /// The position the manager goes on from.
    pub checkpoint: u64,
}

/// Instances whose state is cached, at most.
const STATE_CACHE: usize = 10_000;

/// Runs a process manager over the durable events of a source.
pub struct ProcessRunner<P: ProcessManager, C: Codec> {
    store: Arc<EventStore>,
    name: String,
    target: SubscriptionTarget,
    manager: P,
    codec: C,
    max_retries: u32,
    batch: usize,
    checkpoint: u64,
    /// The checkpoint as stored (`checkpoint` is never below the log's start).
    stored: Checkpoint,
    /// Pending timeouts: (instance, name) -> (due, payload), and by due time.
    pending: HashMap<(String, String), (i64, Vec<u8>)>,
    due: BTreeMap<(i64, String, String), ()>,
    /// Cached states: instance -> (stream version, state).
    states: HashMap<String, (Option<u64>, P::State)>,
}

impl<P: ProcessManager, C: Codec> std::fmt::Debug for ProcessRunner<P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRunner")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("checkpoint", &self.checkpoint)
            .field("pending_timeouts", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<P: ProcessManager, C: Codec> ProcessRunner<P, C> {
    /// Opens the process manager `name` over the events of `target`: reads
    /// its checkpoint and its pending timeouts back.
    pub fn open(store: Arc<EventStore>, name: &str, target: SubscriptionTarget, manager: P, codec: C) -> Result<Self> {
        if let Some(reason) = super::name_problem(name) {
            return Err(Error::Invalid(format!("process manager name {name:?}: {reason}")));
        }
        let mut runner = ProcessRunner {
            store,
            name: name.to_owned(),
            target,
            manager,
            codec,
            max_retries: 3,
            batch: 256,
            checkpoint: 0,
            stored: Checkpoint::default(),
            pending: HashMap::new(),
            due: BTreeMap::new(),
            states: HashMap::new(),
        };
        runner.load()?;
        Ok(runner)
    }

    /// Retries an event the manager fails on `n` times before parking it.
    #[must_use]
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The manager.
    pub fn manager(&self) -> &P {
        &self.manager
    }

    /// The stream of the state of `instance`.
    pub fn state_stream(&self, instance: &str) -> String {
        format!("$pm-{}-{instance}", self.name)
    }

    fn checkpoint_stream(&self) -> String {
        format!("$pm.checkpoint-{}", self.name)
    }

    /// The stream of the manager's timeouts.
    pub fn timeouts_stream(&self) -> String {
        format!("$timeouts-{}", self.name)
    }

    /// The stream of the manager's parked events.
    pub fn parked_stream(&self) -> String {
        format!("$pm.parked-{}", self.name)
    }

    /// The manager's parked events and timeouts, oldest first (at most
    /// `max`): events it failed on after its retries, and timeouts it
    /// failed on (position `u64::MAX`, their reason naming nothing else).
    pub fn parked(&self, max: usize) -> Result<Vec<ParkedEvent>> {
        super::projection::read_parked(&self.store, &self.parked_stream(), max)
    }

    /// The position the manager goes on from.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The timeouts pending, as (instance, name, due time), soonest first.
    pub fn pending_timeouts(&self) -> Vec<(String, String, i64)> {
        self.due.keys().map(|(due, i, n)| (i.clone(), n.clone(), *due)).collect()
    }

    fn load(&mut self) -> Result<()> {
        self.stored = Checkpoint::open(&self.store, self.checkpoint_stream())?;
        self.checkpoint = self.stored.position().unwrap_or(0).max(self.store.log().start_offset());
        let timeouts = self.timeouts_stream();
        let mut records = Vec::new();
        self.store.read_stream_with(&timeouts, 0, Direction::Forward, usize::MAX, |view| {
            let r = TimeoutRecord::decode(view.data).map_err(|reason| Error::State {
                what: format!("timeout record {} of {timeouts:?}", view.version),
                reason,
            })?;
            records.push(r);
            Ok::<(), Error>(())
        })?;
        for r in records {
            self.note_timeout(r);
        }
        Ok(())
    }

    fn note_timeout(&mut self, r: TimeoutRecord) {
        let key = (r.instance, r.name);
        if let Some((due, _)) = self.pending.remove(&key) {
            self.due.remove(&(due, key.0.clone(), key.1.clone()));
        }
        if r.kind == TimeoutKind::Scheduled {
            self.due.insert((r.due_ms, key.0.clone(), key.1.clone()), ());
            self.pending.insert(key, (r.due_ms, r.payload));
        }
    }

    /// The state of `instance` and its stream's version.
    fn state(&mut self, instance: &str) -> Result<(Option<u64>, P::State)> {
        if let Some(s) = self.states.remove(instance) {
            return Ok(s);
        }
        let stream = self.state_stream(instance);
        let mut found = None;
        self.store.read_stream_with(&stream, u64::MAX, Direction::Backward, 1, |view| {
            let state = self.codec.decode(view.data).map_err(|reason| Error::Decode {
                stream: stream.clone(),
                version: view.version,
                event_type: view.event_type.to_owned(),
                reason,
            })?;
            found = Some((Some(view.version), state));
            Ok::<(), Error>(())
        })?;
        match found {
            Some(f) => Ok(f),
            // No state yet; but a stream may exist whose state was hidden.
            None => match self.store.stream_version(&stream)? {
                CurrentVersion::NoStream => Ok((None, P::State::default())),
                CurrentVersion::Version(v) => Ok((Some(v), P::State::default())),
            },
        }
    }

    /// Fires the due timeouts, then reacts to up to a batch of the source's
    /// durable events from the checkpoint (waiting up to `timeout` for the
    /// first).
    pub fn run_batch(&mut self, timeout: Duration) -> Result<ProcessOutcome> {
        self.run_batch_at(super::now_ms(), timeout)
    }

    /// [`ProcessRunner::run_batch`] at the time `now_ms`: timeouts due at
    /// or before it fire.
    pub fn run_batch_at(&mut self, now_ms: i64, timeout: Duration) -> Result<ProcessOutcome> {
        let mut outcome = ProcessOutcome::default();
        self.fire_due(now_ms, &mut outcome)?;
        let from = self.checkpoint;
        let mut events = Vec::new();
        let next = {
            let mut sub = self.store.subscribe(self.target.clone(), StartFrom::Position(from))?.durable_only();
            let keep = |e: &RecordedEvent| !e.stream.starts_with('$');
            super::read_durable_batch(&mut sub, from, self.batch, timeout, keep, |e| {
                events.push(e);
                Ok(())
            })?
        };
        for e in &events {
            if let Some(instance) = self.manager.instance(e) {
                let (emitted, parked) = self.react(&instance, e, now_ms)?;
                outcome.reacted += usize::from(!parked);
                outcome.parked += usize::from(parked);
                outcome.emitted += emitted;
            }
        }
        // Past events that concern no instance, the position is stored only
        // once it has moved far (each commit is itself an event of the log).
        if next >= self.checkpoint + super::SKIPPED_BEFORE_COMMIT {
            self.commit(None, Vec::new(), Vec::new(), Some(next))?;
        }
        outcome.checkpoint = self.checkpoint;
        Ok(outcome)
    }

    /// Runs batches at the time `now_ms` until the manager has reacted to
    /// every durable event of its source there is now; returns how many
    /// events it reacted to (parked ones included).
    pub fn run_until_caught_up_at(&mut self, now_ms: i64) -> Result<u64> {
        let mut reacted = 0u64;
        loop {
            let before = self.checkpoint;
            let o = self.run_batch_at(now_ms, Duration::ZERO)?;
            reacted += (o.reacted + o.parked) as u64;
            if o.reacted + o.parked + o.fired == 0 && self.checkpoint == before {
                return Ok(reacted);
            }
        }
    }

    /// Reacts to `e` of `instance`, with retries, then parking; returns the
    /// events emitted and whether it was parked.
    fn react(&mut self, instance: &str, e: &RecordedEvent, now_ms: i64) -> Result<(usize, bool)> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Taken out of the cache: a failed reaction may have changed it.
            let (version, mut state) = self.state(instance)?;
            let mut effects = Effects { now_ms, ..Effects::default() };
            match self.manager.react(&mut state, e, &mut effects) {
                Ok(()) => {
                    let emitted = effects.emitted.len();
                    self.commit(
                        Some((instance, version, state)),
                        effects.emitted,
                        effects.timeouts,
                        Some(e.position + 1),
                    )?;
                    return Ok((emitted, false));
                }
                Err(reason) if attempts > self.max_retries => {
                    let id = Uuid::new_v5(&e.id, format!("parked by {}", self.name).as_bytes());
                    let record = ParkedEvent { position: e.position, event_id: e.id, attempts, reason };
                    let parked = NewEvent::binary(super::PARKED_EVENT_TYPE, encode_parked(&record)).with_id(id);
                    self.store.append(&self.parked_stream(), ExpectedVersion::Any, vec![parked])?;
                    self.commit(None, Vec::new(), Vec::new(), Some(e.position + 1))?;
                    return Ok((0, true));
                }
                Err(_) => {}
            }
        }
    }

    fn fire_due(&mut self, now_ms: i64, outcome: &mut ProcessOutcome) -> Result<()> {
        while let Some((&(due, ref instance, ref name), ())) = self.due.first_key_value() {
            if due > now_ms {
                break;
            }
            let (instance, name) = (instance.clone(), name.clone());
            let payload = self.pending.get(&(instance.clone(), name.clone())).map(|p| p.1.clone()).unwrap_or_default();
            let t = Timeout { instance: instance.clone(), name: name.clone(), due_ms: due, payload };
            let (version, mut state) = self.state(&instance)?;
            let mut effects = Effects { now_ms, ..Effects::default() };
            let fired = TimeoutRecord {
                kind: TimeoutKind::Fired,
                due_ms: 0,
                instance: instance.clone(),
                name: name.clone(),
                payload: Vec::new(),
            };
            match self.manager.timeout(&mut state, &t, &mut effects) {
                Ok(()) => {
                    let mut timeouts = vec![fired];
                    timeouts.extend(effects.timeouts);
                    outcome.emitted += effects.emitted.len();
                    self.commit(Some((&instance, version, state)), effects.emitted, timeouts, None)?;
                }
                Err(reason) => {
                    // A timeout the manager cannot handle is dropped, and
                    // said so in the parked stream.
                    // Recorded once, even if a crash makes it fire again.
                    let key = format!("{}/{instance}/{name}/{due}", self.name);
                    let id = Uuid::new_v5(&Uuid::nil(), key.as_bytes());
                    let reason = format!("timeout {name:?} of instance {instance:?}: {reason}");
                    let record = ParkedEvent { position: u64::MAX, event_id: Uuid::nil(), attempts: 1, reason };
                    let parked = NewEvent::binary(super::PARKED_EVENT_TYPE, encode_parked(&record)).with_id(id);
                    self.store.append(&self.parked_stream(), ExpectedVersion::Any, vec![parked])?;
                    self.commit(None, Vec::new(), vec![fired], None)?;
                    self.states.remove(&instance);
                }
            }
            outcome.fired += 1;
        }
        Ok(())
    }

    /// One atomic append of an instance's new state, the events emitted,
    /// the timeout records and the new checkpoint.
    fn commit(
        &mut self,
        state: Option<(&str, Option<u64>, P::State)>,
        emitted: Vec<(String, NewEvent)>,
        mut timeouts: Vec<TimeoutRecord>,
        checkpoint: Option<u64>,
    ) -> Result<()> {
        let mut appends: Vec<StreamAppend> = Vec::new();
        let mut instance_state = None;
        if let Some((instance, version, s)) = state {
            let bytes = self.codec.encode(&s).map_err(|reason| Error::Encode {
                what: format!("the state of {} instance {instance:?}", self.name),
                reason,
            })?;
            let event = match C::CONTENT_TYPE {
                events::ContentType::Json => NewEvent::json(STATE_EVENT_TYPE, bytes),
                events::ContentType::Binary => NewEvent::binary(STATE_EVENT_TYPE, bytes),
            };
            let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            appends.push(StreamAppend::new(self.state_stream(instance), expected, vec![event]));
            for t in &mut timeouts {
                if t.instance.is_empty() {
                    t.instance = instance.to_owned();
                }
            }
            instance_state = Some((instance.to_owned(), version, s));
        }
        if let Some(c) = checkpoint {
            appends.push(self.stored.append(c));
        }
        if !timeouts.is_empty() {
            let events = timeouts.iter().map(|t| NewEvent::binary(TIMEOUT_EVENT_TYPE, t.encode())).collect();
            appends.push(StreamAppend::new(self.timeouts_stream(), ExpectedVersion::Any, events));
        }
        for (stream, event) in emitted {
            match appends.iter_mut().find(|a| a.stream == stream) {
                Some(a) => a.events.push(event),
                None => appends.push(StreamAppend::new(stream, ExpectedVersion::Any, vec![event])),
            }
        }
        if appends.is_empty() {
            return Ok(());
        }
        let results = match self.store.append_to_streams(appends) {
            Ok(r) => r,
            Err(e) => {
                // What is stored is not known: read it again next time.
                self.states.clear();
                return Err(e.into());
            }
        };
        let mut results = results.into_iter();
        if let Some((instance, _, s)) = instance_state {
            let r = results.next().expect("one result per stream");
            if self.states.len() >= STATE_CACHE {
                self.states.clear();
            }
            self.states.insert(instance, (Some(r.next_expected_version), s));
        }
        if let Some(c) = checkpoint {
            let r = results.next().expect("one result per stream");
            self.stored.written(c, r.next_expected_version);
            self.checkpoint = c;
        }
        for t in timeouts {
            self.note_timeout(t);
        }
        Ok(())
    }
}

/// A read model whose effects are idempotent (commands carried out with
/// their ids, messages sent with ids), its checkpoint in a stream of the
/// store: it applies each event with its handler, then stores the position.
/// A crash between the two applies the events again; idempotent effects make
/// that harmless. Run it with a [`crate::es::ProjectionRunner`] over a
/// command stream to carry out a process manager's commands.
pub struct Dispatcher<F> {
    store: Arc<EventStore>,
    checkpoint: Checkpoint,
    handler: F,
}

impl<F> std::fmt::Debug for Dispatcher<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("checkpoint", &self.checkpoint).finish()
    }
}

impl<F: FnMut(&RecordedEvent) -> std::result::Result<(), String>> Dispatcher<F> {
    /// A dispatcher named `name` (its checkpoint in `$checkpoint-{name}`).
    pub fn open(store: Arc<EventStore>, name: &str, handler: F) -> Result<Dispatcher<F>> {
        if let Some(reason) = super::name_problem(name) {
            return Err(Error::Invalid(format!("dispatcher name {name:?}: {reason}")));
        }
        let checkpoint = Checkpoint::open(&store, format!("$checkpoint-{name}"))?;
        Ok(Dispatcher { store, checkpoint, handler })
    }
}

impl<F: FnMut(&RecordedEvent) -> std::result::Result<(), String>> ReadModel for Dispatcher<F> {
    fn checkpoint(&mut self) -> Result<Option<u64>> {
        Ok(self.checkpoint.position())
    }

    fn commit(&mut self, events: &[RecordedEvent], next: u64) -> std::result::Result<(), CommitError> {
        for (index, e) in events.iter().enumerate() {
            // The events before it are done and will be dispatched again,
            // which their idempotency makes harmless.
            (self.handler)(e).map_err(|reason| CommitError::Event { index, reason })?;
        }
        self.checkpoint.store(&self.store, next)?;
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        self.checkpoint.store(&self.store, 0)
    }
}
