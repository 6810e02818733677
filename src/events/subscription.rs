//! Subscriptions (docs/EVENTS.md, "Subscriptions"): the events of `$all`, a
//! stream, a category or an event type from a starting position, past ones
//! first, then live ones as they are appended, with no gap and no duplicate
//! across the switch.
//!
//! A subscription is pulled: [`Subscription::next_timeout`] returns the next
//! event, waiting for one if there is none yet. The store buffers nothing for
//! a subscriber (a slow one only falls behind, which
//! [`Subscription::checkpoint`] and the store's head tell), and a subscriber
//! buffers at most one batch of its catch-up.
//!
//! Catching up on a stream, a category or a type reads its index, in batches;
//! when the index has nothing more, the subscription reads the global log
//! from the position after the last event it delivered, keeping the events
//! that match: an event appended while it switched is in the log past that
//! position, whether or not the index had it yet, so it is delivered once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::error::{Result, check_stream_id};
use super::event::{self, RecordedEvent};
use super::run::RunKind;
use super::store::EventStore;
use super::streams::Visibility;
use crate::log::LogReader;

/// Events a subscription reads from an index at a time while catching up.
const CATCH_UP_BATCH: usize = 256;

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubscriptionTarget {
    /// Every event (`$all`).
    All,
    /// The events of one stream.
    Stream(String),
    /// The events of the streams of a category (the part of a stream id
    /// before its first `-`).
    Category(String),
    /// The events of one type.
    EventType(String),
}

/// A further filter of a subscription's events ([`Subscription::with_filter`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubscriptionFilter {
    /// Only events of streams whose id starts with this.
    StreamPrefix(String),
    /// Only events whose type starts with this.
    EventTypePrefix(String),
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartFrom {
    /// The first event of the store.
    Beginning,
    /// The events appended after the subscription was made.
    End,
    /// The events at this global position and after it (a position a
    /// subscriber checkpointed: [`Subscription::checkpoint`]).
    Position(u64),
}

/// A subscription to an event store's events ([`EventStore::subscribe`]).
#[derive(Debug)]
pub struct Subscription<'a> {
    store: &'a EventStore,
    target: SubscriptionTarget,
    /// The index to catch up from, and the hash of the name in it.
    index: Option<(RunKind, u128)>,
    /// The next global position the subscription looks at.
    next: u64,
    /// The position after the last event delivered (the start before any).
    resume: u64,
    /// Events read from the index and not delivered yet.
    pending: VecDeque<RecordedEvent>,
    /// Reading the global log (live, or `$all` from the start).
    reader: Option<LogReader>,
    durable_only: bool,
    filter: Option<SubscriptionFilter>,
    /// Which events the streams' metadata and deletions hide (looked up
    /// again at each call: they may change while the subscription lives).
    visibility: Visibility,
}

impl EventStore {
    /// A subscription to `target` from `start`. It delivers the events
    /// already there, then those appended later, in global order (a
    /// stream's in version order), each once.
    pub fn subscribe(&self, target: SubscriptionTarget, start: StartFrom) -> Result<Subscription<'_>> {
        let index = match &target {
            SubscriptionTarget::All => None,
            SubscriptionTarget::Stream(s) => {
                check_stream_id(s)?;
                Some((RunKind::Stream, self.hash(s)))
            }
            SubscriptionTarget::Category(c) => Some((RunKind::Category, self.hash(c))),
            SubscriptionTarget::EventType(t) => Some((RunKind::EventType, self.hash(t))),
        };
        let next = match start {
            StartFrom::Beginning => self.log().start_offset(),
            StartFrom::End => self.head_position(),
            StartFrom::Position(p) => p.max(self.log().start_offset()),
        };
        Ok(Subscription {
            store: self,
            target,
            index,
            next,
            resume: next,
            pending: VecDeque::new(),
            reader: None,
            durable_only: false,
            filter: None,
            visibility: Visibility::default(),
        })
    }
}

impl Subscription<'_> {
    /// Delivers only durable events: none that a power loss could take
    /// away (the log's durable watermark), for a subscriber that records
    /// what it has processed. Under `Durability::Never`, an event becomes
    /// durable at the next sync, roll or close.
    #[must_use]
    pub fn durable_only(mut self) -> Self {
        self.durable_only = true;
        self
    }

    /// Delivers only the events `filter` keeps, of those of the target.
    #[must_use]
    pub fn with_filter(mut self, filter: SubscriptionFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The global position from which the subscription goes on: after the
    /// last event it delivered. A subscriber that checkpoints it resumes with
    /// [`StartFrom::Position`].
    pub fn checkpoint(&self) -> u64 {
        self.resume
    }

    /// The global position the subscription looks at next: every event
    /// below it was delivered or is not one the subscription delivers. (An
    /// event read ahead from an index and not delivered yet is at or past
    /// it.) Unlike [`Subscription::checkpoint`], it moves past the events
    /// that do not match, so that a subscriber that resumes from it with
    /// [`StartFrom::Position`] does not look at them again, and one that
    /// waits for what comes next waits for this position
    /// ([`EventStore::wait_for_position`]).
    pub fn next_position(&self) -> u64 {
        self.pending.front().map_or(self.next, |e| e.position)
    }

    /// The next event, waiting up to `timeout` for one to be appended;
    /// `None` if none came.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let next = self.next_event(timeout)?;
        if let Some(e) = &next {
            self.resume = e.position + 1;
        }
        Ok(next)
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        // Streams' metadata and deletions as they are now, not as they were
        // at the last call.
        self.visibility = Visibility::default();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            if self.reader.is_none() && self.catch_up()? {
                continue;
            }
            if let Some(e) = self.read_log()? {
                return Ok(Some(e));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let log = self.store.log();
            let arrived = match self.durable_only {
                true => log.wait_for_durable(self.next, deadline - now),
                false => log.wait_for(self.next, deadline - now),
            };
            if !arrived {
                return Ok(None);
            }
        }
    }

    /// Reads the next batch of the target's index into `pending`; whether it
    /// found any (if not, the subscription goes on in the global log).
    fn catch_up(&mut self) -> Result<bool> {
        let Some((kind, hash)) = self.index else { return Ok(false) };
        let limit = self.limit();
        let entries = match kind {
            // The stream index is by version: find the first version at or
            // after `next` by position.
            RunKind::Stream => {
                let first = self.first_version_from(hash)?;
                self.store
                    .index()
                    .entries(kind, hash, first, false, CATCH_UP_BATCH)?
                    .into_iter()
                    .map(|(_, position)| position)
                    .collect::<Vec<_>>()
            }
            _ => self
                .store
                .index()
                .entries(kind, hash, self.next, false, CATCH_UP_BATCH)?
                .into_iter()
                .map(|(position, _)| position)
                .collect(),
        };
        let mut found = false;
        let from = self.next;
        for position in entries.into_iter().filter(|&p| p >= from && p < limit) {
            let e = self.store.event_at(position)?;
            self.next = position + 1;
            // Scavenged since the index listed it.
            let Some(e) = e else { continue };
            if self.matches(&e)? {
                self.pending.push_back(e);
                found = true;
            }
        }
        Ok(found)
    }

    /// The first version of the stream whose position is at or after
    /// `next`: a binary search over its versions (whose positions grow with
    /// them).
    fn first_version_from(&self, hash: u128) -> Result<u64> {
        let index = self.store.index();
        let Some((last, _)) = index.last_of(hash, u64::MAX)? else { return Ok(0) };
        let (mut lo, mut hi) = (0, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let position = index.entries(RunKind::Stream, hash, mid, false, 1)?.first().map_or(u64::MAX, |e| e.1);
            if position < self.next {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The end of what may be delivered now: the log's end, or its durable
    /// watermark.
    fn limit(&self) -> u64 {
        let log = self.store.log();
        if self.durable_only { log.durable_offset() } else { log.next_offset() }
    }

    /// The next matching event of the global log from `next`, if one is there.
    fn read_log(&mut self) -> Result<Option<RecordedEvent>> {
        let limit = self.limit();
        if self.reader.as_ref().is_none_or(|r| r.next_offset() != self.next) {
            self.reader = Some(self.store.log().read_from(self.next)?);
        }
        while self.next < limit {
            let reader = self.reader.as_mut().expect("a reader");
            let Some(record) = reader.next_record()? else { return Ok(None) };
            let position = record.offset();
            let decoded =
                event::decode(record.key(), record.value()).map(|e| e.to_recorded(position, record.timestamp()));
            let recorded = decoded.map_err(|why| self.store.bad_event(position, why))?;
            self.next = position + 1;
            if self.matches(&recorded)? {
                return Ok(Some(recorded));
            }
        }
        Ok(None)
    }

    /// Whether the subscription delivers `e`: its target's, and not hidden
    /// by its stream's metadata or deletion (as they are when it is read).
    fn matches(&mut self, e: &RecordedEvent) -> Result<bool> {
        let target = match &self.target {
            SubscriptionTarget::All => true,
            SubscriptionTarget::Stream(s) => e.stream == *s,
            SubscriptionTarget::Category(c) => event::category(&e.stream) == c,
            SubscriptionTarget::EventType(t) => e.event_type == *t,
        };
        let kept = match &self.filter {
            None => true,
            Some(SubscriptionFilter::StreamPrefix(p)) => e.stream.starts_with(p.as_str()),
            Some(SubscriptionFilter::EventTypePrefix(p)) => e.event_type.starts_with(p.as_str()),
        };
        Ok(target && kept && self.visibility.shows(self.store, e)?)
    }
}

impl Iterator for Subscription<'_> {
    type Item = Result<RecordedEvent>;

    /// The next event, waiting as long as it takes.
    fn next(&mut self) -> Option<Result<RecordedEvent>> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
