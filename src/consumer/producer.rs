//! The idempotent producer (docs/CONSUMERS.md, "Idempotent producer"): a
//! producer id, an epoch and a sequence number per partition, written in a
//! header of each batch's first record, so that a retried batch is found and
//! answered with its original offsets instead of being written twice.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::error::{Error, Result};
use crate::sync::MutexExt;
use crate::{Header, Log, Record, TopicStore};

/// The header of an idempotent batch's first record (docs/FORMAT.md,
/// "Producer header").
pub const PRODUCER_HEADER: &str = "annal.producer";

/// Batches remembered per producer and partition, as Kafka's
/// `max.in.flight.requests.per.connection` bound: a retry of any of the last
/// five batches is recognised.
pub const REMEMBERED_BATCHES: usize = 5;

const HEADER_LEN: usize = 20;

/// What a producer header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub(crate) producer_id: u64,
    pub(crate) epoch: u16,
    pub(crate) first_sequence: u32,
    pub(crate) count: u32,
}

impl ProducerBatch {
    // Format: version u8 | reserved u8 | epoch u16 | producer_id u64 | first_sequence u32 | count u32 (LE)
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = 1;
        b[2..4].copy_from_slice(&self.epoch.to_le_bytes());
        b[4..12].copy_from_slice(&self.producer_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.first_sequence.to_le_bytes());
        b[16..20].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> std::result::Result<ProducerBatch, String> {
        let b: &[u8; HEADER_LEN] = b.try_into().map_err(|_| format!("a producer header of {} bytes (20)", b.len()))?;
        if b[0] != 1 || b[1] != 0 {
            return Err(format!("producer header version {} and reserved byte {}", b[0], b[1]));
        }
        let batch = ProducerBatch {
            epoch: u16::from_le_bytes([b[2], b[3]]),
            producer_id: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
            first_sequence: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
            count: u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")),
        };
        if batch.count == 0 || batch.first_sequence.checked_add(batch.count - 1).is_none() {
            return Err(format!("a batch of {} records from sequence {}", batch.count, batch.first_sequence));
        }
        Ok(batch)
    }
}

/// One producer's state in one partition.
#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: u16,
    /// The last batches: (first sequence, count, base offset).
    batches: VecDeque<(u32, u32, u64)>,
}

impl ProducerEntry {
    /// The next sequence number; `None` once the epoch used them all.
    fn next_sequence(&self) -> Option<u32> {
        self.batches.back().map_or(Some(0), |&(first, count, _)| first.checked_add(count))
    }

    fn record(&mut self, b: &ProducerBatch, base: u64) {
        if b.epoch != self.epoch {
            self.epoch = b.epoch;
            self.batches.clear();
        }
        self.batches.push_back((b.first_sequence, b.count, base));
        while self.batches.len() > REMEMBERED_BATCHES {
            self.batches.pop_front();
        }
    }
}

/// The producers' state of one partition, rebuilt from its records.
#[derive(Debug)]
struct PartitionState {
    log: Arc<Log>,
    producers: HashMap<u64, ProducerEntry>,
}

/// The idempotent producers' state of a store: per partition, per producer
/// id, its epoch and its last [`REMEMBERED_BATCHES`] batches. Each
/// partition's state is rebuilt the first time it is used, by reading the
/// producer headers of its records (so it survives restarts and crashes as
/// the records do: a batch and its header are one atomic frame); that read
/// is the cost of a partition's first idempotent send in a process.
#[derive(Debug)]
pub struct Producers {
    store: Arc<TopicStore>,
    partitions: Mutex<HashMap<(String, u32), SharedState>>,
}

/// A partition's producers' state, locked while a send checks and writes.
type SharedState = Arc<Mutex<PartitionState>>;

impl Producers {
    /// The producers' state of `store` (nothing is read until a partition is
    /// first sent to).
    pub fn new(store: Arc<TopicStore>) -> Producers {
        Producers { store, partitions: Mutex::new(HashMap::new()) }
    }

    /// A producer with id `producer_id` at epoch `epoch`. An application
    /// gives each of its producers a stable id and raises the epoch when it
    /// starts a new instance of one (a restart after a crash): sends of an
    /// older epoch are then refused ([`Error::ProducerFenced`]), so that a
    /// zombie instance cannot write. A producer continues the sequences its
    /// id and epoch have in each partition.
    pub fn producer(self: &Arc<Self>, producer_id: u64, epoch: u16) -> IdempotentProducer {
        IdempotentProducer { producers: Arc::clone(self), producer_id, epoch }
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<SharedState> {
        let log = self.store.topic(topic)?.partition(partition)?;
        let key = (topic.to_owned(), partition);
        if let Some(s) = self.partitions.locked().get(&key)
            && Arc::ptr_eq(&s.locked().log, &log)
        {
            return Ok(Arc::clone(s));
        }
        // Rebuilt from the partition's records (a topic created again gets a
        // new log, and a new state).
        let mut producers: HashMap<u64, ProducerEntry> = HashMap::new();
        let mut reader = log.read_from(log.start_offset())?;
        while let Some(r) = reader.next_record()? {
            let Some(h) = r.headers().find(|h| h.name == PRODUCER_HEADER) else { continue };
            // A header of that name that does not decode was not written by
            // a producer: the record is an ordinary one.
            if let Ok(b) = ProducerBatch::decode(h.value) {
                producers.entry(b.producer_id).or_default().record(&b, r.offset());
            }
        }
        // Another thread may have rebuilt it meanwhile and sent through it:
        // its state is the one to keep.
        let mut partitions = self.partitions.locked();
        if let Some(s) = partitions.get(&key)
            && Arc::ptr_eq(&s.locked().log, &log)
        {
            return Ok(Arc::clone(s));
        }
        let state = Arc::new(Mutex::new(PartitionState { log, producers }));
        partitions.insert(key, Arc::clone(&state));
        Ok(state)
    }
}

/// A producer whose sends are idempotent ([`Producers::producer`]): each
/// batch carries the producer's id, epoch and the sequence number of its
/// first record in its partition. A batch sent again with the same
/// sequence (a retry after an error or a restart, of one of the last
/// [`REMEMBERED_BATCHES`] batches) returns the offsets it was written at
/// and writes nothing; a sequence past the next one expected is
/// [`Error::SequenceGap`]; an epoch older than the partition has seen from
/// this producer is [`Error::ProducerFenced`].
///
/// Use one [`Producers`] per store in a process: it holds the state every
/// producer's sequences are checked against. In a
/// compacted topic, compaction may remove a batch's first record, which
/// carries its header: that batch is then forgotten at the next rebuild of
/// the state (after a restart), and a retry of it written again.
#[derive(Debug)]
pub struct IdempotentProducer {
    producers: Arc<Producers>,
    producer_id: u64,
    epoch: u16,
}

impl IdempotentProducer {
    /// The producer id.
    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// The epoch.
    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    /// The sequence number the next batch to `partition` of `topic` gets.
    pub fn next_sequence(&self, topic: &str, partition: u32) -> Result<u32> {
        let state = self.producers.partition(topic, partition)?;
        let st = state.locked();
        match st.producers.get(&self.producer_id) {
            Some(e) if e.epoch == self.epoch => e.next_sequence().ok_or_else(|| exhausted(topic, partition)),
            _ => Ok(0),
        }
    }

    /// Sends `records` to `partition` of `topic` as one atomic batch with the
    /// next sequence number (the partition's state says which); returns
    /// their offsets. To retry a send whose outcome is unknown (an error, a
    /// crash), send the same records with [`IdempotentProducer::send_batch_at`]
    /// and the sequence this call used: they are written only if the first
    /// send did not write them.
    pub fn send_batch(&self, topic: &str, partition: u32, records: &[Record<'_>]) -> Result<Range<u64>> {
        let sequence = self.next_sequence(topic, partition)?;
        self.send_batch_at(topic, partition, sequence, records)
    }

    /// Sends `records` as the batch whose first record has sequence number
    /// `first_sequence`: a new batch if it is the next one expected, the
    /// original offsets if it is one of the last batches written (a retry),
    /// else an error.
    pub fn send_batch_at(
        &self,
        topic: &str,
        partition: u32,
        first_sequence: u32,
        records: &[Record<'_>],
    ) -> Result<Range<u64>> {
        let Some((first, rest)) = records.split_first() else {
            return Err(Error::Invalid("an idempotent batch has at least one record".into()));
        };
        let count = u32::try_from(records.len()).map_err(|_| Error::Invalid("too many records".into()))?;
        let batch = ProducerBatch { producer_id: self.producer_id, epoch: self.epoch, first_sequence, count };
        if first_sequence.checked_add(count - 1).is_none() {
            return Err(Error::Invalid(format!("sequence {first_sequence} + {count} records overflows")));
        }
        let state = self.producers.partition(topic, partition)?;
        let mut st = state.locked();
        let at = |reason: String| (topic.to_owned(), partition, self.producer_id, reason);
        let expected = match st.producers.get(&self.producer_id) {
            Some(e) if self.epoch < e.epoch => {
                let (topic, partition, producer_id, _) = at(String::new());
                return Err(Error::ProducerFenced { topic, partition, producer_id, epoch: self.epoch, current: e.epoch });
            }
            Some(e) if self.epoch == e.epoch => {
                if let Some(&(_, n, base)) = e.batches.iter().find(|&&(f, _, _)| f == first_sequence) {
                    if n != count {
                        let (topic, partition, producer_id, reason) =
                            at(format!("sequence {first_sequence} was a batch of {n} records, not {count}"));
                        return Err(Error::SequenceMismatch { topic, partition, producer_id, reason });
                    }
                    return Ok(base..base + u64::from(n));
                }
                e.next_sequence().ok_or_else(|| exhausted(topic, partition))?
            }
            // A new producer, or a new epoch: sequences start again at 0.
            _ => 0,
        };
        if first_sequence != expected {
            let (topic, partition, producer_id, _) = at(String::new());
            if first_sequence > expected {
                return Err(Error::SequenceGap { topic, partition, producer_id, expected, got: first_sequence });
            }
            let reason = format!(
                "sequence {first_sequence} is older than the last {REMEMBERED_BATCHES} batches remembered (next: {expected})"
            );
            return Err(Error::SequenceMismatch { topic, partition, producer_id, reason });
        }
        let value = batch.encode();
        let mut headers: Vec<Header<'_>> = vec![Header { name: PRODUCER_HEADER, value: &value }];
        headers.extend_from_slice(first.headers());
        let mut all = Vec::with_capacity(records.len());
        all.push(first.with_headers(&headers));
        all.extend_from_slice(rest);
        let offsets = st.log.append_batch(&all)?;
        st.producers.entry(self.producer_id).or_default().record(&batch, offsets.start);
        Ok(offsets)
    }
}

/// The error of a producer whose epoch used every sequence number of a
/// partition: a new epoch starts again at 0.
fn exhausted(topic: &str, partition: u32) -> Error {
    Error::Invalid(format!("{topic}/{partition}: this epoch used every sequence number: start a new epoch"))
}

/// Decodes a producer header as the fuzz target does: `Ok` only for bytes
/// that encode back to themselves.
pub fn roundtrip_for_fuzzing(bytes: &[u8]) -> std::result::Result<(), String> {
    let b = ProducerBatch::decode(bytes)?;
    assert_eq!(b.encode(), bytes, "a decoded producer header encodes back to its bytes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_producer_header() {
        let b = ProducerBatch { producer_id: 0x0102_0304_0506_0708, epoch: 3, first_sequence: 10, count: 2 };
        let want = [1, 0, 3, 0, 8, 7, 6, 5, 4, 3, 2, 1, 10, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(b.encode(), want);
        assert_eq!(ProducerBatch::decode(&want).unwrap(), b);
        for n in 0..want.len() {
            assert!(ProducerBatch::decode(&want[..n]).is_err());
        }
        let mut bad = want;
        bad[1] = 1;
        assert!(ProducerBatch::decode(&bad).is_err());
        let mut empty = want;
        empty[16] = 0;
        assert!(ProducerBatch::decode(&empty).is_err(), "a batch of no record");
        let overflow = ProducerBatch { producer_id: 1, epoch: 0, first_sequence: u32::MAX, count: 2 }.encode();
        assert!(ProducerBatch::decode(&overflow).is_err());
    }
}
