//! Lag: how far a group is behind each partition's end, in records and in
//! time.

use std::collections::BTreeMap;

use super::assignor::TopicPartition;
use super::error::Result;
use super::groups::{ConsumerGroups, check_group, now_ms};

/// How far a group is behind one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset, if any.
    pub committed: Option<u64>,
    /// The partition's first offset.
    pub start: u64,
    /// The partition's end (next offset).
    pub end: u64,
    /// Records between the committed offset (or the start, without one) and
    /// the end.
    pub records: u64,
    /// The age of the oldest record not consumed (the one at the committed
    /// offset), in milliseconds; 0 when nothing is left to consume.
    pub age_ms: u64,
    /// The member that owns the partition in this process, if any.
    pub member: Option<String>,
}

/// How far a group is behind, per partition and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct GroupLag {
    /// Each partition of the topics the group committed offsets for or whose
    /// members subscribe to.
    pub partitions: Vec<PartitionLag>,
    /// The sum of the partitions' lags in records.
    pub total_records: u64,
    /// The largest lag in records.
    pub max_records: u64,
    /// The largest lag in time, in milliseconds.
    pub max_age_ms: u64,
}

impl ConsumerGroups {
    /// `group`'s lag over every partition of the topics it committed offsets
    /// for or its members subscribe to.
    pub fn lag(&self, group: &str) -> Result<GroupLag> {
        self.lag_at(group, now_ms())
    }

    /// [`ConsumerGroups::lag`] at time `now_ms`.
    pub fn lag_at(&self, group: &str, now_ms: i64) -> Result<GroupLag> {
        check_group(group)?;
        let committed = self.group_offsets(group)?;
        let members = self.describe(group)?;
        let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let mut topics: Vec<String> = committed.keys().map(|tp| tp.topic.clone()).collect();
        for m in &members {
            topics.extend(m.topics.iter().cloned());
            owners.extend(m.owned.iter().map(|tp| (tp.clone(), m.member_id.clone())));
        }
        topics.sort();
        topics.dedup();
        let mut out = GroupLag { partitions: Vec::new(), total_records: 0, max_records: 0, max_age_ms: 0 };
        for topic in topics {
            let Ok(handle) = self.store().topic(&topic) else { continue };
            for p in 0..handle.partitions() {
                let log = handle.partition(p)?;
                let tp = TopicPartition::new(topic.clone(), p);
                let (start, end) = (log.start_offset(), log.next_offset());
                let c = committed.get(&tp).map(|c| c.offset);
                let from = c.unwrap_or(start).max(start).min(end);
                let records = end - from;
                let age_ms = match records {
                    0 => 0,
                    _ => match log.read_from(from)?.next_record()? {
                        Some(r) => u64::try_from(now_ms.saturating_sub(r.timestamp())).unwrap_or(0),
                        None => 0,
                    },
                };
                out.total_records += records;
                out.max_records = out.max_records.max(records);
                out.max_age_ms = out.max_age_ms.max(age_ms);
                let member = owners.get(&tp).cloned();
                out.partitions.push(PartitionLag { partition: tp, committed: c, start, end, records, age_ms, member });
            }
        }
        Ok(out)
    }
}
