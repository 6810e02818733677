//! [`Consumer`]: a member of a consumer group that polls the partitions the
//! group gives it, from its committed offsets, and commits what it consumed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::mpsc::{Receiver, SyncSender as Sender};

use super::assignor::{Assignor, TopicPartition};
use super::error::{Error, Result};
use super::groups::{ConsumerGroups, MemberConfig, OffsetCommit};
use crate::{Log, LogReader, OwnedRecord};

/// Where a consumer starts in a partition its group has no committed offset
/// for (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// The partition's first record.
    Earliest,
    /// The partition's end: only records appended from now on. Kafka's
    /// default.
    #[default]
    Latest,
}

/// The configuration of a [`Consumer`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ConsumerConfig {
    group: String,
    member: MemberConfig,
    auto_commit: Option<Duration>,
    offset_reset: OffsetReset,
}

impl ConsumerConfig {
    /// A member of `group` subscribing to `topics`: the range assignor, a
    /// 45 s session timeout, auto-commit every 5 s (Kafka's defaults), and
    /// [`OffsetReset::Latest`].
    pub fn new<S: Into<String>>(group: impl Into<String>, topics: impl IntoIterator<Item = S>) -> ConsumerConfig {
        ConsumerConfig {
            group: group.into(),
            member: MemberConfig::new(topics),
            auto_commit: Some(Duration::from_secs(5)),
            offset_reset: OffsetReset::Latest,
        }
    }

    /// The assignor (every member of a group must use the same).
    pub fn with_assignor(mut self, assignor: Assignor) -> ConsumerConfig {
        self.member = self.member.with_assignor(assignor);
        self
    }

    /// How long the consumer may go without polling before the group drops
    /// it.
    pub fn with_session_timeout(mut self, timeout: Duration) -> ConsumerConfig {
        self.member = self.member.with_session_timeout(timeout);
        self
    }

    /// A static member id ([`MemberConfig::with_instance_id`]).
    pub fn with_instance_id(mut self, id: impl Into<String>) -> ConsumerConfig {
        self.member = self.member.with_instance_id(id);
        self
    }

    /// Commit the consumed positions every `interval` during polls, before
    /// partitions are revoked, and on close; `None` to commit only when told.
    pub fn with_auto_commit(mut self, interval: Option<Duration>) -> ConsumerConfig {
        self.auto_commit = interval;
        self
    }

    /// Where to start in a partition without a committed offset.
    pub fn with_offset_reset(mut self, reset: OffsetReset) -> ConsumerConfig {
        self.offset_reset = reset;
        self
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The member's configuration (topics, assignor, session timeout,
    /// instance id).
    pub fn member(&self) -> &MemberConfig {
        &self.member
    }

    /// See [`ConsumerConfig::with_auto_commit`].
    pub fn auto_commit(&self) -> Option<Duration> {
        self.auto_commit
    }

    /// See [`ConsumerConfig::with_offset_reset`].
    pub fn offset_reset(&self) -> OffsetReset {
        self.offset_reset
    }
}

/// A record a [`Consumer`] polled, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The record (its offset included).
    pub record: OwnedRecord,
}

/// Called by a [`Consumer`] when its group moves partitions (Kafka's
/// `ConsumerRebalanceListener`): `on_revoked` before it gives partitions up
/// (after its auto-commit of them, if on; commit here otherwise),
/// `on_assigned` after it gets new ones (their positions set from the
/// committed offsets; seek here to start elsewhere).
pub trait RebalanceListener: Send {
    /// `partitions` are about to go to another member.
    fn on_revoked(&mut self, consumer: &mut Consumer, partitions: &BTreeSet<TopicPartition>) -> Result<()> {
        let _ = (consumer, partitions);
        Ok(())
    }

    /// `partitions` are now this consumer's.
    fn on_assigned(&mut self, consumer: &mut Consumer, partitions: &BTreeSet<TopicPartition>) -> Result<()> {
        let _ = (consumer, partitions);
        Ok(())
    }
}

/// A partition the consumer owns.
#[derive(Debug)]
struct Owned {
    log: Arc<Log>,
    position: u64,
    paused: bool,
    /// The reader of the last poll, kept while it stands at `position`: a
    /// new reader would find its place again (an index lookup, and the whole
    /// batch frame it lands in checked once more).
    reader: Option<LogReader>,
}

/// The result of a [`Consumer::commit_async`], to wait for.
#[derive(Debug)]
#[must_use = "a commit's result is known only by waiting for it"]
pub struct CommitHandle(Receiver<Result<()>>);

impl CommitHandle {
    /// Waits for the commit; its result.
    pub fn wait(self) -> Result<()> {
        self.0.recv().unwrap_or_else(|_| Err(Error::Invalid("the consumer's committer stopped".into())))
    }
}

type CommitJob = (String, u32, Vec<OffsetCommit>, Sender<Result<()>>);

/// A member of a consumer group: it polls records from the partitions the
/// group assigns it, starting at the group's committed offsets, and commits
/// the offsets it consumed (explicitly, asynchronously, or automatically on
/// an interval). When the store's durability is not [`crate::Durability::Never`] it
/// reads only durable records, so that an offset it commits never points
/// past what a crash can take away.
///
/// A consumer heartbeats its group on every poll: one that stops polling for
/// longer than its session timeout is dropped, and its commits then fail
/// with [`Error::UnknownMember`].
pub struct Consumer {
    groups: Arc<ConsumerGroups>,
    config: ConsumerConfig,
    member: String,
    generation: u32,
    owned: BTreeMap<TopicPartition, Owned>,
    listener: Option<Box<dyn RebalanceListener>>,
    durable_only: bool,
    last_commit: Instant,
    /// Where polls start, so that every partition gets its turn.
    turn: usize,
    committer: Option<Sender<CommitJob>>,
    closed: bool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group", &self.config.group)
            .field("member", &self.member)
            .field("generation", &self.generation)
            .field("owned", &self.owned.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Joins the group as `config` says. Its partitions come with the first
    /// poll.
    pub fn new(groups: Arc<ConsumerGroups>, config: ConsumerConfig) -> Result<Consumer> {
        let member = groups.join(&config.group, &config.member)?;
        let durable_only = groups.durable_reads();
        Ok(Consumer {
            groups,
            config,
            member,
            generation: 0,
            owned: BTreeMap::new(),
            listener: None,
            durable_only,
            last_commit: Instant::now(),
            turn: 0,
            committer: None,
            closed: false,
        })
    }

    /// Calls `listener` when the group moves partitions.
    pub fn set_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// The member id the group knows this consumer by.
    pub fn member_id(&self) -> &str {
        &self.member
    }

    /// The group's generation this consumer last heard of.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The partitions the consumer owns.
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.owned.keys().cloned().collect()
    }

    /// The offset of the next record the consumer reads from `partition`
    /// (what a commit records), if it owns it.
    pub fn position(&self, partition: &TopicPartition) -> Option<u64> {
        self.owned.get(partition).map(|o| o.position)
    }

    /// Reads `partition` from `offset` on (clamped to what the partition
    /// holds when read). [`Error::Invalid`] if the consumer does not own it.
    pub fn seek(&mut self, partition: &TopicPartition, offset: u64) -> Result<()> {
        let o = self.owned.get_mut(partition).ok_or_else(|| not_owned(partition))?;
        o.position = offset;
        Ok(())
    }

    /// Reads `partition` from its first record.
    pub fn seek_to_beginning(&mut self, partition: &TopicPartition) -> Result<()> {
        let o = self.owned.get_mut(partition).ok_or_else(|| not_owned(partition))?;
        o.position = o.log.start_offset();
        Ok(())
    }

    /// Reads `partition` from its end (its durable end when the consumer
    /// reads only durable records).
    pub fn seek_to_end(&mut self, partition: &TopicPartition) -> Result<()> {
        let durable_only = self.durable_only;
        let o = self.owned.get_mut(partition).ok_or_else(|| not_owned(partition))?;
        o.position = if durable_only { o.log.durable_offset() } else { o.log.next_offset() };
        Ok(())
    }

    /// Stops returning records of `partitions` until resumed (they stay
    /// owned).
    pub fn pause(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(o) = self.owned.get_mut(tp) {
                o.paused = true;
            }
        }
    }

    /// Returns records of `partitions` again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(o) = self.owned.get_mut(tp) {
                o.paused = false;
            }
        }
    }

    /// The partitions paused.
    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.owned.iter().filter(|(_, o)| o.paused).map(|(tp, _)| tp.clone()).collect()
    }

    /// Up to `max` records from the partitions the consumer owns, waiting up
    /// to `timeout` for one if there is none. Heartbeats the group first,
    /// taking part in a rebalance if one is going on (its listener called),
    /// and commits if auto-commit is due. A partition whose position fell
    /// below its start (retention deleted it) goes on from the start.
    pub fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        loop {
            self.sync()?;
            if let Some(every) = self.config.auto_commit
                && self.last_commit.elapsed() >= every
            {
                let offsets = self.forward_offsets(self.owned.keys())?;
                self.commit_offsets(&offsets)?;
            }
            let out = self.read(max)?;
            let now = Instant::now();
            if !out.is_empty() || now >= deadline || max == 0 {
                return Ok(out);
            }
            // Wait on the partitions in turn, a slice each, heartbeating in
            // between.
            let slice = (deadline - now).min(Duration::from_millis(20));
            let active: Vec<(Arc<Log>, u64)> =
                self.owned.values().filter(|o| !o.paused).map(|o| (Arc::clone(&o.log), o.position)).collect();
            match active.get(self.turn % active.len().max(1)) {
                Some((log, position)) if self.durable_only => {
                    log.wait_for_durable(*position, slice);
                }
                Some((log, position)) => {
                    log.wait_for(*position, slice);
                }
                None => std::thread::sleep(slice),
            }
            self.turn = self.turn.wrapping_add(1);
        }
    }

    /// Reads up to `max` records, a partition after another from the one
    /// whose turn it is.
    fn read(&mut self, max: usize) -> Result<Vec<ConsumerRecord>> {
        let mut out = Vec::new();
        let keys: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        let n = keys.len();
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let tp = &keys[(self.turn + i) % n];
            let o = self.owned.get_mut(tp).expect("a key of the map");
            if o.paused {
                continue;
            }
            let mut reader = match o.reader.take() {
                Some(r) if r.next_offset() == o.position => r,
                _ => fresh_reader(o, self.durable_only)?,
            };
            while out.len() < max {
                let record = match reader.next_record() {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    // Retention passed the reader: go on from the start.
                    Err(crate::Error::OffsetOutOfRange { .. }) => {
                        reader = fresh_reader(o, self.durable_only)?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                o.position = record.offset() + 1;
                let record = record.to_owned();
                out.push(ConsumerRecord { topic: tp.topic.clone(), partition: tp.partition, record });
            }
            o.reader = Some(reader);
        }
        self.turn = self.turn.wrapping_add(1);
        Ok(out)
    }

    /// Heartbeats the group; gives up what it must (committing it first if
    /// auto-commit is on, then telling the listener) and takes what it gets
    /// (positions from the committed offsets, then the listener).
    fn sync(&mut self) -> Result<()> {
        let group = self.config.group.clone();
        let beat = self.groups.heartbeat(&group, &self.member)?;
        self.generation = beat.generation;
        if !beat.revoke.is_empty() {
            // The partitions go whatever happens here: a failed commit or
            // listener must not keep them from their new owner for good.
            let mut failed = None;
            if self.config.auto_commit.is_some() {
                let offsets = self.forward_offsets(beat.revoke.iter())?;
                if let Err(e) = self.groups.commit_as(&group, &self.member, self.generation, &offsets) {
                    failed = Some(e);
                }
            }
            if let Err(e) = self.with_listener(|l, c| l.on_revoked(c, &beat.revoke)) {
                failed.get_or_insert(e);
            }
            for tp in &beat.revoke {
                self.owned.remove(tp);
            }
            self.groups.release(&group, &self.member, &beat.revoke)?;
            if let Some(e) = failed {
                return Err(e);
            }
            return self.sync();
        }
        self.owned.retain(|tp, _| beat.owned.contains(tp));
        let new: BTreeSet<TopicPartition> =
            beat.owned.iter().filter(|tp| !self.owned.contains_key(*tp)).cloned().collect();
        if new.is_empty() {
            return Ok(());
        }
        for tp in &new {
            let log = self.groups.store().topic(&tp.topic)?.partition(tp.partition)?;
            let position = match self.groups.committed(&group, &tp.topic, tp.partition)? {
                Some(c) => c.offset,
                None => match self.config.offset_reset {
                    OffsetReset::Earliest => log.start_offset(),
                    OffsetReset::Latest if self.durable_only => log.durable_offset(),
                    OffsetReset::Latest => log.next_offset(),
                },
            };
            self.owned.insert(tp.clone(), Owned { log, position, paused: false, reader: None });
        }
        self.with_listener(|l, c| l.on_assigned(c, &new))
    }

    fn with_listener(&mut self, f: impl FnOnce(&mut dyn RebalanceListener, &mut Consumer) -> Result<()>) -> Result<()> {
        let Some(mut listener) = self.listener.take() else { return Ok(()) };
        let result = f(listener.as_mut(), self);
        self.listener = Some(listener);
        result
    }

    /// The positions of `partitions` that an automatic commit writes: those
    /// at or past their committed offset (a partition the application moved
    /// back with `seek` is left as committed: only a reset moves an offset
    /// back).
    fn forward_offsets<'a>(&self, partitions: impl Iterator<Item = &'a TopicPartition>) -> Result<Vec<OffsetCommit>> {
        let mut out = Vec::new();
        for c in self.offsets_of(partitions) {
            let committed = self.groups.committed(&self.config.group, &c.topic, c.partition)?.map(|c| c.offset);
            if committed.is_none_or(|committed| c.offset >= committed) {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn offsets_of<'a>(&self, partitions: impl Iterator<Item = &'a TopicPartition>) -> Vec<OffsetCommit> {
        partitions
            .filter_map(|tp| self.owned.get(tp).map(|o| OffsetCommit::new(tp.topic.clone(), tp.partition, o.position)))
            .collect()
    }

    /// Commits the position of every partition the consumer owns, atomically
    /// and durably (under the store's durability). Fails with
    /// [`Error::UnknownMember`] if the group dropped this consumer (its
    /// session expired), and with [`Error::OffsetBackward`] for a partition
    /// moved back with `seek` (only a reset moves a committed offset back).
    pub fn commit(&mut self) -> Result<()> {
        let offsets = self.offsets_of(self.owned.keys());
        self.commit_offsets(&offsets)
    }

    /// Commits `offsets` (of partitions this consumer owns).
    pub fn commit_offsets(&mut self, offsets: &[OffsetCommit]) -> Result<()> {
        self.groups.commit_as(&self.config.group, &self.member, self.generation, offsets)?;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// [`Consumer::commit`] on the consumer's committer thread: returns at
    /// once; the handle gives the result. Commits run in the order of the
    /// calls.
    pub fn commit_async(&mut self) -> CommitHandle {
        let offsets = self.offsets_of(self.owned.keys());
        let (reply, result) = std::sync::mpsc::sync_channel(1);
        let job = (self.member.clone(), self.generation, offsets, reply);
        let groups = Arc::clone(&self.groups);
        let group = self.config.group.clone();
        let sender = self.committer.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<CommitJob>(16);
            std::thread::Builder::new()
                .name("annal-commit".into())
                .spawn(move || {
                    for (member, generation, offsets, reply) in rx {
                        let _ = reply.send(groups.commit_as(&group, &member, generation, &offsets));
                    }
                })
                .expect("spawning the committer thread");
            tx
        });
        let job_reply = job.3.clone();
        if sender.send(job).is_err() {
            let _ = job_reply.send(Err(Error::Invalid("the consumer's committer stopped".into())));
        }
        self.last_commit = Instant::now();
        CommitHandle(result)
    }

    /// Leaves the group, committing first if auto-commit is on.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        let committed = match self.config.auto_commit {
            Some(_) if !self.owned.is_empty() => {
                self.forward_offsets(self.owned.keys()).and_then(|offsets| self.commit_offsets(&offsets))
            }
            _ => Ok(()),
        };
        let left = self.groups.leave(&self.config.group, &self.member);
        committed.and(left)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.groups.leave(&self.config.group, &self.member);
        }
    }
}

/// A reader of `o`'s partition at its position, clamped to what the
/// partition holds (the position moves with it).
fn fresh_reader(o: &mut Owned, durable_only: bool) -> Result<LogReader> {
    let (start, end) = (o.log.start_offset(), o.log.next_offset());
    o.position = o.position.clamp(start, end);
    let reader = o.log.read_from(o.position)?;
    Ok(if durable_only { reader.durable_only() } else { reader })
}

fn not_owned(partition: &TopicPartition) -> Error {
    Error::Invalid(format!("the consumer does not own {partition}"))
}
