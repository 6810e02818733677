//! [`Topic`]: a named set of partition logs, and the key → partition rule.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use super::meta::{self, CleanupPolicy, TopicConfig, TopicMeta};
use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::log::{ArchiveOutcome, ArchivePolicy, ArchivedSegmentInfo, SegmentInfo};
use crate::log::{Compaction, CompactionOutcome, Log, LogReader, Retention, RetentionOutcome};
use crate::record::Record;
use crate::sync::RwLockExt;

/// FNV-1a, 64 bits: the hash that maps record keys to partitions.
///
/// Offset basis `0xcbf29ce484222325`, prime `0x100000001b3`; for each byte,
/// xor it into the hash, then multiply by the prime (wrapping). It is part of
/// the stored format: the same key must go to the same partition in every
/// version, so it never changes.
///
/// ```
/// assert_eq!(annal::topic::fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(annal::topic::fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The partition a record with `key` goes to in a topic of `partitions`
/// partitions: `fnv1a_64(key) % partitions`. Adding partitions changes it for
/// most keys (see [`crate::topic::TopicStore::add_partitions`]). Returns 0 when
/// `partitions` is 0 (a topic always has at least one).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    // The remainder is below `partitions`, so it fits in a u32.
    (fnv1a_64(key) % u64::from(partitions)) as u32
}

/// The name of partition `p`'s directory inside its topic directory: five
/// decimal digits (`00000`, `00001`, ...).
pub fn partition_dir_name(p: u32) -> String {
    format!("{p:05}")
}

/// Why a topic handle no longer works.
#[derive(Debug)]
pub(crate) enum Gone {
    /// The topic was deleted.
    Deleted,
    /// The store was closed.
    Closed,
}

#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) meta: TopicMeta,
    pub(crate) logs: Vec<Arc<Log>>,
    pub(crate) gone: Option<Gone>,
}

/// A topic: a named set of partitions, each an annal [`Log`].
///
/// Obtained from [`crate::topic::TopicStore::create_topic`] or
/// [`crate::topic::TopicStore::topic`], shared through an `Arc`, and usable from
/// many threads at once. A record with a key goes to partition
/// [`partition_for_key`]`(key, partitions)`, so records with the same key
/// stay in order in one partition; a record without a key goes to the
/// partitions in turn (round-robin), starting at a partition chosen at random
/// for each handle, so that short-lived producers that each send a few
/// records spread them over all partitions. Offsets are per partition.
///
/// Once the topic is deleted, every call on a handle still held gives
/// [`Error::UnknownTopic`]; once the store is closed, [`Error::Closed`].
#[derive(Debug)]
pub struct Topic {
    name: String,
    dir: PathBuf,
    log_config: LogConfig,
    read_only: bool,
    state: RwLock<TopicState>,
    round_robin: AtomicU64,
}

/// Figures of one partition, as [`Topic::partition_info`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// The first offset the partition holds.
    pub start_offset: u64,
    /// The offset the next record sent to the partition gets.
    pub next_offset: u64,
    /// Records from the start offset on ([`Log::record_count`]): fewer than
    /// `next_offset - start_offset` once compaction has removed some.
    pub records: u64,
    /// Segments (sealed and active), archived ones included.
    pub segments: usize,
    /// How many of those segments are in the archive tier (not local).
    pub archived_segments: usize,
    /// Bytes of record data in those segments.
    pub data_bytes: u64,
}

impl Topic {
    /// Opens the topic in `dir`: reads its metadata and opens every partition.
    pub(crate) fn load(name: &str, dir: &Path, base: &LogConfig, read_only: bool) -> Result<Topic> {
        if !read_only {
            // A replacement of topic.meta cut short by a crash.
            let tmp = crate::durable::tmp_path(&meta::path(dir));
            if tmp.exists() {
                base.io.remove_file(&tmp).ctx("remove temporary file", &tmp)?;
                base.io.sync_dir(dir).ctx("fsync directory", dir)?;
            }
        }
        let meta = meta::read_with(base.io.as_ref(), dir)?;
        let log_config = base.clone().with_segment_bytes(meta.segment_bytes);
        let mut logs = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            let pdir = dir.join(partition_dir_name(p));
            if !pdir.is_dir() {
                return Err(Error::NotALog {
                    path: pdir,
                    reason: format!(
                        "partition {p} of topic {name:?} is missing ({} lists {} partitions)",
                        meta::TOPIC_META_FILE_NAME,
                        meta.partitions
                    ),
                });
            }
            let log = if read_only {
                Log::open_read_only(&pdir, partition_config(&log_config, name, p))?
            } else {
                Log::open(&pdir, partition_config(&log_config, name, p))?
            };
            logs.push(Arc::new(log));
        }
        Ok(Topic {
            name: name.to_owned(),
            dir: dir.to_owned(),
            log_config,
            read_only,
            state: RwLock::new(TopicState { meta, logs, gone: None }),
            round_robin: AtomicU64::new(random_start()),
        })
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The number of partitions (0 once the topic is deleted or the store closed).
    pub fn partitions(&self) -> u32 {
        let st = self.state.read_locked();
        if st.gone.is_some() { 0 } else { st.meta.partitions }
    }

    /// The topic's configuration, as recorded in its `topic.meta`.
    pub fn config(&self) -> Result<TopicConfig> {
        Ok(self.live()?.meta.config())
    }

    /// The topic's metadata, as recorded in its `topic.meta`.
    pub fn meta(&self) -> Result<TopicMeta> {
        Ok(self.live()?.meta)
    }

    /// Sends `record` to the partition its key hashes to
    /// ([`partition_for_key`]), or, without a key, to the next partition in
    /// turn. Returns the partition and the record's offset in it. Durable as
    /// the store's [`LogConfig`] durability says.
    pub fn send(&self, record: &Record<'_>) -> Result<(u32, u64)> {
        let st = self.writable()?;
        let n = st.meta.partitions;
        let p = match record.key() {
            Some(key) => partition_for_key(key, n),
            // The remainder is below `n`, so it fits in a u32.
            None => (self.round_robin.fetch_add(1, Ordering::Relaxed) % u64::from(n)) as u32,
        };
        let offset = st.logs[p as usize].append(record)?;
        Ok((p, offset))
    }

    /// Sends `record` to partition `partition`, whatever its key; returns its offset.
    pub fn send_to(&self, partition: u32, record: &Record<'_>) -> Result<u64> {
        let st = self.writable()?;
        self.log_in(&st, partition)?.append(record)
    }

    /// Partition `p`'s log, for everything a [`Log`] offers (batches,
    /// tailing, segments). Appending to it directly bypasses nothing but the
    /// partitioner. A handle kept after the store is closed keeps the
    /// partition open (and locked) until it is dropped.
    pub fn partition(&self, p: u32) -> Result<Arc<Log>> {
        let st = self.live()?;
        self.log_in(&st, p).map(Arc::clone)
    }

    /// A reader of partition `p` from `offset` (`start_offset ..= next_offset`,
    /// else [`Error::OffsetOutOfRange`]).
    pub fn read_from(&self, p: u32, offset: u64) -> Result<LogReader> {
        let st = self.live()?;
        self.log_in(&st, p)?.read_from(offset)
    }

    /// The first offset of partition `p` whose record has a timestamp
    /// `>= timestamp_ms`, or `None` if every record is older.
    pub fn offset_for_timestamp(&self, p: u32, timestamp_ms: i64) -> Result<Option<u64>> {
        let st = self.live()?;
        self.log_in(&st, p)?.offset_for_timestamp(timestamp_ms)
    }

    /// The first offset partition `p` holds.
    pub fn start_offset(&self, p: u32) -> Result<u64> {
        let st = self.live()?;
        Ok(self.log_in(&st, p)?.start_offset())
    }

    /// The offset the next record sent to partition `p` gets.
    pub fn next_offset(&self, p: u32) -> Result<u64> {
        let st = self.live()?;
        Ok(self.log_in(&st, p)?.next_offset())
    }

    /// Offsets, segments and bytes of partition `p`.
    pub fn partition_info(&self, p: u32) -> Result<PartitionInfo> {
        let st = self.live()?;
        let log = self.log_in(&st, p)?;
        let start_offset = log.start_offset();
        let segments = log.segments();
        Ok(PartitionInfo {
            partition: p,
            start_offset,
            next_offset: log.next_offset(),
            records: log.count_records(&segments, start_offset)?,
            segments: segments.len(),
            archived_segments: log.archived_segments().len(),
            data_bytes: segments.iter().map(|s| s.data_bytes).sum(),
        })
    }

    /// Moves partition `p`'s start offset to `offset`, as [`Log::delete_before`] does.
    pub fn delete_before(&self, p: u32, offset: u64) -> Result<RetentionOutcome> {
        let st = self.writable()?;
        self.log_in(&st, p)?.delete_before(offset)
    }

    /// Applies the topic's retention limits to every partition, measuring ages
    /// against `now_ms` (milliseconds since the Unix epoch). Under
    /// [`CleanupPolicy::Compact`] nothing is deleted. Every partition is tried
    /// even if one fails; the first error is returned. The outcomes are in
    /// partition order.
    pub fn apply_retention_at(&self, now_ms: i64) -> Result<Vec<RetentionOutcome>> {
        all_or_first_error(self.retention_results(now_ms)?)
    }

    /// [`Topic::apply_retention_at`] with the current time.
    pub fn apply_retention(&self) -> Result<Vec<RetentionOutcome>> {
        self.apply_retention_at(crate::log::now_ms())
    }

    /// Compacts every partition's sealed segments now, with the topic's
    /// tombstone retention, measuring tombstone ages against `now_ms`
    /// (milliseconds since the Unix epoch): see [`Log::compact_at`]. Only for
    /// a topic whose cleanup policy is [`CleanupPolicy::Compact`]; on any
    /// other, [`Error::InvalidConfig`] (compaction would drop records that
    /// policy keeps). Every partition is tried even if one fails; the first
    /// error is returned. The outcomes are in partition order.
    pub fn compact_at(&self, now_ms: i64) -> Result<Vec<CompactionOutcome>> {
        all_or_first_error(self.compaction_results(now_ms, false, &mut |_, _, _| {})?)
    }

    /// [`Topic::compact_at`] with the current time.
    pub fn compact(&self) -> Result<Vec<CompactionOutcome>> {
        self.compact_at(crate::log::now_ms())
    }

    /// The compaction policy of the topic: its tombstone retention.
    fn compaction_policy(&self, st: &TopicState) -> Result<Compaction> {
        match st.meta.cleanup_policy {
            CleanupPolicy::Compact => {
                Ok(Compaction::default().with_tombstone_retention(Duration::from_millis(st.meta.tombstone_retention_ms)))
            }
            CleanupPolicy::Delete => Err(self.not_compacted()),
        }
    }

    /// The error for compacting this topic, whose cleanup policy is delete.
    pub(crate) fn not_compacted(&self) -> Error {
        Error::InvalidConfig(format!(
            "topic {:?} has cleanup policy delete; compacting it would drop records that policy keeps",
            self.name
        ))
    }

    /// One result per partition of a compaction; with `only_due`, the
    /// partitions where compaction would change nothing ([`Log::compaction_due_at`])
    /// are left out.
    pub(crate) fn compaction_results(
        &self,
        now_ms: i64,
        only_due: bool,
        progress: &mut dyn FnMut(&str, u32, &SegmentInfo),
    ) -> Result<Vec<(u32, Result<CompactionOutcome>)>> {
        let st = self.writable()?;
        let policy = self.compaction_policy(&st)?;
        Ok((0u32..)
            .zip(&st.logs)
            .filter(|(_, log)| !only_due || log.compaction_due_at(now_ms))
            .map(|(p, log)| (p, log.compact_with_progress(&policy, now_ms, &mut |s| progress(&self.name, p, s))))
            .collect())
    }

    /// The sealed segments a compaction of the topic would read (each twice),
    /// for a progress bar; empty unless the topic is compacted.
    pub(crate) fn compaction_backlog(&self) -> Vec<SegmentInfo> {
        let st = self.state.read_locked();
        if st.gone.is_some() || st.meta.cleanup_policy != CleanupPolicy::Compact {
            return Vec::new();
        }
        st.logs.iter().flat_map(|log| log.compaction_backlog()).collect()
    }

    /// The topic's own archive policy (recorded in `topic.meta`), if any.
    pub fn archive_policy(&self) -> Result<Option<ArchivePolicy>> {
        Ok(self.live()?.meta.archive_policy)
    }

    /// One result per partition of an archival run with `policy`.
    pub(crate) fn archival_results(
        &self,
        policy: &ArchivePolicy,
        now_ms: i64,
        progress: &mut dyn FnMut(&str, u32, &SegmentInfo),
    ) -> Result<Vec<(u32, Result<ArchiveOutcome>)>> {
        let st = self.writable()?;
        Ok((0u32..)
            .zip(&st.logs)
            .map(|(p, log)| (p, log.archive_with_progress(policy, now_ms, &mut |s| progress(&self.name, p, s))))
            .collect())
    }

    /// The segments an archival run with `policy` would archive now, per partition.
    pub(crate) fn archival_backlog_at(&self, policy: &ArchivePolicy, now_ms: i64) -> Vec<SegmentInfo> {
        let st = self.state.read_locked();
        st.logs.iter().flat_map(|log| log.archival_backlog_at(policy, now_ms)).collect()
    }

    /// The archived segments of every partition.
    pub fn archived_segments(&self) -> Result<Vec<(u32, ArchivedSegmentInfo)>> {
        let st = self.live()?;
        Ok((0u32..)
            .zip(&st.logs)
            .flat_map(|(p, log)| log.archived_segments().into_iter().map(move |a| (p, a)))
            .collect())
    }

    /// One result per partition for [`Topic::apply_retention_at`].
    pub(crate) fn retention_results(&self, now_ms: i64) -> Result<Vec<(u32, Result<RetentionOutcome>)>> {
        let st = self.writable()?;
        let policy = match st.meta.cleanup_policy {
            CleanupPolicy::Delete => st.meta.retention(),
            CleanupPolicy::Compact => Retention::default(),
        };
        Ok((0u32..).zip(&st.logs).map(|(p, log)| (p, log.apply_retention_at(&policy, now_ms))).collect())
    }

    /// Grows the topic to `new_count` partitions: creates the new partition
    /// logs (reusing the empty ones an interrupted earlier call left), then
    /// records the new count in `topic.meta`. Sends wait meanwhile.
    pub(crate) fn grow(&self, new_count: u32) -> Result<()> {
        let mut st = self.state.write_locked();
        self.check_gone(&st)?;
        if self.read_only {
            return Err(Error::ReadOnly { path: self.dir.clone() });
        }
        let old = st.meta.partitions;
        if new_count <= old || new_count > meta::MAX_PARTITIONS {
            return Err(Error::InvalidConfig(format!(
                "topic {:?} has {old} partitions; partitions can only be added, up to {} (asked for {new_count})",
                self.name,
                meta::MAX_PARTITIONS
            )));
        }
        let mut new_logs = Vec::with_capacity((new_count - old) as usize);
        for p in old..new_count {
            let pdir = self.dir.join(partition_dir_name(p));
            let log = Log::open(&pdir, partition_config(&self.log_config, &self.name, p))?;
            if log.next_offset() != 0 {
                // Only an interrupted add_partitions leaves directories past the
                // count, and it never sends to them: this one is not ours to reuse.
                return Err(Error::InvalidConfig(format!(
                    "{} exists past the topic's {old} partitions and holds records; move it away first",
                    pdir.display()
                )));
            }
            new_logs.push(Arc::new(log));
        }
        let meta = TopicMeta { partitions: new_count, ..st.meta };
        meta::write(self.log_config.io.as_ref(), &self.dir, &meta)?;
        st.meta = meta;
        st.logs.extend(new_logs);
        Ok(())
    }

    /// Marks the topic deleted or closed and takes its partition logs out;
    /// later calls on any handle fail. Waits for sends in progress.
    pub(crate) fn retire(&self, why: Gone) -> Vec<Arc<Log>> {
        let mut st = self.state.write_locked();
        if st.gone.is_none() {
            st.gone = Some(why);
        }
        std::mem::take(&mut st.logs)
    }

    fn check_gone(&self, st: &TopicState) -> Result<()> {
        match st.gone {
            None => Ok(()),
            Some(Gone::Deleted) => Err(Error::UnknownTopic { topic: self.name.clone() }),
            Some(Gone::Closed) => Err(Error::Closed { path: self.dir.clone() }),
        }
    }

    /// The state, if the topic is neither deleted nor closed.
    fn live(&self) -> Result<RwLockReadGuard<'_, TopicState>> {
        let st = self.state.read_locked();
        self.check_gone(&st)?;
        Ok(st)
    }

    /// The state, if the topic is live and writable.
    fn writable(&self) -> Result<RwLockReadGuard<'_, TopicState>> {
        let st = self.live()?;
        if self.read_only {
            return Err(Error::ReadOnly { path: self.dir.clone() });
        }
        Ok(st)
    }

    fn log_in<'a>(&self, st: &'a TopicState, p: u32) -> Result<&'a Arc<Log>> {
        st.logs.get(p as usize).ok_or_else(|| Error::PartitionOutOfRange {
            topic: self.name.clone(),
            partition: p,
            partitions: st.meta.partitions,
        })
    }
}

/// The outcomes of every partition, in order, or the first partition's error.
fn all_or_first_error<O>(results: Vec<(u32, Result<O>)>) -> Result<Vec<O>> {
    results.into_iter().map(|(_, result)| result).collect()
}

/// The configuration of partition `p` of `topic`: the topic's, with the
/// archive key prefix `{topic}/{p}` if the store has an archive tier.
pub(crate) fn partition_config(config: &LogConfig, topic: &str, p: u32) -> LogConfig {
    let mut config = match config.archive() {
        Some((store, _)) => config.clone().with_archive(Arc::clone(store), format!("{topic}/{p}")),
        None => config.clone(),
    };
    // The store's lock keeps a second writer out of every partition.
    config.own_lock = false;
    config
}

/// A random starting point for round-robin sends: the randomly keyed
/// hasher the standard library seeds from the operating system.
fn random_start() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}
