//! The outbox relay (docs/EVENT-SOURCING.md, "The outbox"): the transactional
//! outbox is the event store itself (an aggregate's state change and its
//! event are one append); the relay publishes the durable events to a topic
//! with the idempotent producer, each exactly once, also across crashes.
//!
//! Each record relayed carries the event's global position in a header
//! (`annal.event-position`, 8 bytes little-endian), and the events go to
//! each partition in position order. After a crash, the relay reads the
//! last record of each partition to learn what reached it, goes on from its
//! own checkpoint, and skips what a partition has already: no event is lost
//! and none is written twice.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::Checkpoint;
use super::error::{Error, Result};
use crate::consumer::{IdempotentProducer, Producers};
use crate::events::{EventStore, RecordedEvent, StartFrom, SubscriptionTarget};
use crate::{Header, Record, TopicStore, partition_for_key};

/// The header of a relayed record giving its event's global position.
pub const POSITION_HEADER: &str = "annal.event-position";
/// The header of a relayed record giving its event's type.
pub const TYPE_HEADER: &str = "annal.event-type";
/// The header of a relayed record giving its event's id (16 bytes).
pub const ID_HEADER: &str = "annal.event-id";

/// What one [`OutboxRelay::run_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayOutcome {
    /// Events published.
    pub published: usize,
    /// Events found already published (after a crash).
    pub skipped: usize,
    /// The position the relay goes on from.
    pub checkpoint: u64,
}

/// Publishes the durable events of a source to a topic, exactly once: the
/// record's key is the event's stream id (so a stream's events stay in one
/// partition, in order), its value the event's data, its timestamp the
/// event's, and its headers the event's position, type and id.
pub struct OutboxRelay {
    store: Arc<EventStore>,
    topics: Arc<TopicStore>,
    producer: IdempotentProducer,
    name: String,
    target: SubscriptionTarget,
    topic: String,
    batch: usize,
    checkpoint: u64,
    /// The checkpoint as stored.
    stored: Checkpoint,
    /// Per partition, the position of the last event it has.
    last_sent: Vec<Option<u64>>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

impl OutboxRelay {
    /// The relay `name` of the events of `target` to `topic` (which must
    /// exist; the relay must be its only writer), through `producers` with
    /// the producer id `producer_id` at `epoch` (raise the epoch when a new
    /// instance of the relay starts, to fence an old one). Reads back its
    /// checkpoint and what each partition has.
    pub fn open(
        store: Arc<EventStore>,
        topics: Arc<TopicStore>,
        producers: &Arc<Producers>,
        name: &str,
        target: SubscriptionTarget,
        topic: &str,
        (producer_id, epoch): (u64, u16),
    ) -> Result<OutboxRelay> {
        if let Some(reason) = super::name_problem(name) {
            return Err(Error::Invalid(format!("relay name {name:?}: {reason}")));
        }
        let handle = topics.topic(topic).map_err(|e| Error::Consumer(e.into()))?;
        let mut last_sent = Vec::with_capacity(handle.partitions() as usize);
        for p in 0..handle.partitions() {
            let log = handle.partition(p).map_err(|e| Error::Consumer(e.into()))?;
            let next = log.next_offset();
            let last = if next > log.start_offset() {
                let r = log.get(next - 1)?;
                let position = r.headers.iter().find(|(n, _)| n == POSITION_HEADER).map(|(_, v)| v.as_slice());
                match position.map(<[u8; 8]>::try_from) {
                    Some(Ok(b)) => Some(u64::from_le_bytes(b)),
                    _ => {
                        return Err(Error::State {
                            what: format!("outbox relay {name:?}"),
                            reason: format!(
                                "the last record of {topic}/{p} (offset {}) has no {POSITION_HEADER} header: the relay must be the topic's only writer",
                                next - 1
                            ),
                        });
                    }
                }
            } else {
                None
            };
            last_sent.push(last);
        }
        let stored = Checkpoint::open(&store, format!("$outbox.checkpoint-{name}"))?;
        Ok(OutboxRelay {
            producer: producers.producer(producer_id, epoch),
            store,
            topics,
            name: name.to_owned(),
            target,
            topic: topic.to_owned(),
            batch: 512,
            checkpoint: stored.position().unwrap_or(0),
            stored,
            last_sent,
        })
    }

    /// The position the relay goes on from.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Publishes up to a batch of the source's durable events from the
    /// checkpoint (waiting up to `timeout` for the first), then stores the
    /// new checkpoint.
    pub fn run_batch(&mut self, timeout: Duration) -> Result<RelayOutcome> {
        let from = self.checkpoint.max(self.store.log().start_offset());
        let mut events: Vec<RecordedEvent> = Vec::new();
        let next = {
            let mut sub = self.store.subscribe(self.target.clone(), StartFrom::Position(from))?.durable_only();
            let keep = |e: &RecordedEvent| !e.stream.starts_with('$');
            super::read_durable_batch(&mut sub, from, self.batch, timeout, keep, |e| {
                events.push(e);
                Ok(())
            })?
        };
        let mut outcome = RelayOutcome { checkpoint: self.checkpoint, ..RelayOutcome::default() };
        // With no event to publish, the position is stored only once it has
        // moved far (each commit is itself an event of the log).
        if events.is_empty() && next - from < super::SKIPPED_BEFORE_COMMIT {
            return Ok(outcome);
        }
        let partitions = self.last_sent.len() as u32;
        let mut by_partition: Vec<Vec<&RecordedEvent>> = vec![Vec::new(); partitions as usize];
        for e in &events {
            let p = partition_for_key(e.stream.as_bytes(), partitions);
            if self.last_sent[p as usize].is_some_and(|last| e.position <= last) {
                outcome.skipped += 1;
            } else {
                by_partition[p as usize].push(e);
            }
        }
        for (p, evs) in by_partition.iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            self.send(p as u32, evs)?;
            self.last_sent[p] = evs.last().map(|e| e.position);
            outcome.published += evs.len();
        }
        // Durable in the topic before the checkpoint says so, whatever the
        // topic's own durability.
        let handle = self.topics.topic(&self.topic).map_err(|e| Error::Consumer(e.into()))?;
        for (p, evs) in by_partition.iter().enumerate() {
            if !evs.is_empty() {
                handle.partition(p as u32).map_err(|e| Error::Consumer(e.into()))?.sync()?;
            }
        }
        self.stored.store(&self.store, next)?;
        self.checkpoint = next;
        outcome.checkpoint = next;
        Ok(outcome)
    }

    /// Runs batches until every durable event there is now is published;
    /// returns how many were.
    pub fn run_until_caught_up(&mut self) -> Result<u64> {
        let mut published = 0;
        loop {
            let o = self.run_batch(Duration::ZERO)?;
            published += o.published as u64;
            if o.published + o.skipped == 0 {
                return Ok(published);
            }
        }
    }

    /// Sends `events` to partition `p` as one idempotent batch; a send whose
    /// outcome is unknown (an error) is tried once more with the same
    /// sequence number, which writes it only if the first did not.
    fn send(&self, p: u32, events: &[&RecordedEvent]) -> Result<Range<u64>> {
        let positions: Vec<[u8; 8]> = events.iter().map(|e| e.position.to_le_bytes()).collect();
        let ids: Vec<[u8; 16]> = events.iter().map(|e| *e.id.as_bytes()).collect();
        let headers: Vec<[Header<'_>; 3]> = events
            .iter()
            .zip(positions.iter().zip(&ids))
            .map(|(e, (position, id))| {
                [
                    Header { name: POSITION_HEADER, value: position },
                    Header { name: TYPE_HEADER, value: e.event_type.as_bytes() },
                    Header { name: ID_HEADER, value: id },
                ]
            })
            .collect();
        let records: Vec<Record<'_>> = events
            .iter()
            .zip(&headers)
            .map(|(e, h)| {
                Record::new(&e.data).with_key(e.stream.as_bytes()).with_timestamp(e.timestamp_ms).with_headers(h)
            })
            .collect();
        let sequence = self.producer.next_sequence(&self.topic, p)?;
        match self.producer.send_batch_at(&self.topic, p, sequence, &records) {
            Ok(r) => Ok(r),
            Err(_) => Ok(self.producer.send_batch_at(&self.topic, p, sequence, &records)?),
        }
    }

    /// The topic store.
    pub fn topics(&self) -> &Arc<TopicStore> {
        &self.topics
    }
}
