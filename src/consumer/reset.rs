//! Offset resets, as `kafka-consumer-groups.sh --reset-offsets` does them: a
//! plan first (what each partition's committed offset would become), then
//! its execution, refused while the group has members.

use std::time::Duration;

use super::assignor::TopicPartition;
use super::error::{Error, Result};
use super::groups::{ConsumerGroups, OffsetCommit, check_group, now_ms};

/// Where a reset moves each partition's committed offset. Every target is
/// clamped to the partition's `start ..= end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTarget {
    /// The partition's first offset (`--to-earliest`).
    Earliest,
    /// The partition's end (`--to-latest`).
    Latest,
    /// Where it is (`--to-current`); the partition's end where none is
    /// committed (as Kafka's tool).
    Current,
    /// This offset (`--to-offset`).
    Offset(u64),
    /// The committed offset moved by this many records, back if negative
    /// (`--shift-by`); a partition without a committed offset is an error
    /// (as Kafka's tool).
    ShiftBy(i64),
    /// The first record with a timestamp at or after this time, in
    /// milliseconds since the Unix epoch; the end if none (`--to-datetime`).
    Datetime(i64),
    /// [`ResetTarget::Datetime`] this long before now (`--by-duration`).
    Ago(Duration),
    /// These offsets, by partition (`--from-file`, see
    /// [`ResetTarget::parse_csv`]); the scope is ignored.
    Offsets(Vec<OffsetCommit>),
}

impl ResetTarget {
    /// The offsets of a `--from-file` CSV: one `topic,partition,offset` line
    /// per partition (blank lines and lines starting with `#` skipped).
    pub fn parse_csv(text: &str) -> Result<ResetTarget> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| Error::Invalid(format!("line {}: {why}: {line:?}", i + 1));
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [topic, partition, offset] = fields[..] else { return Err(bad("expected topic,partition,offset")) };
            let partition = partition.parse().map_err(|_| bad("the partition is not a number"))?;
            let offset = offset.parse().map_err(|_| bad("the offset is not a number"))?;
            out.push(OffsetCommit::new(topic, partition, offset));
        }
        Ok(ResetTarget::Offsets(out))
    }
}

/// Which partitions a reset moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetScope {
    /// Every partition of the topics the group committed offsets for
    /// (`--all-topics`).
    AllTopics,
    /// These topics, each either whole or only the partitions listed
    /// (`--topic T` or `--topic T:0,2`).
    Topics(Vec<(String, Option<Vec<u32>>)>),
}

impl ResetScope {
    /// A scope from `--topic` arguments: `T` (every partition) or `T:P,P,...`.
    pub fn parse_topics<S: AsRef<str>>(args: &[S]) -> Result<ResetScope> {
        let mut topics = Vec::new();
        for a in args {
            let a = a.as_ref();
            match a.split_once(':') {
                None => topics.push((a.to_owned(), None)),
                Some((t, ps)) => {
                    let parts: std::result::Result<Vec<u32>, _> = ps.split(',').map(|p| p.trim().parse()).collect();
                    let parts = parts.map_err(|_| Error::Invalid(format!("--topic {a:?}: expected T or T:P,P,...")))?;
                    topics.push((t.to_owned(), Some(parts)));
                }
            }
        }
        Ok(ResetScope::Topics(topics))
    }
}

/// One partition of a [`ResetPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRow {
    /// The partition.
    pub partition: TopicPartition,
    /// Its committed offset now, if any.
    pub current: Option<u64>,
    /// What it would become.
    pub new_offset: u64,
}

/// What a reset would do ([`ConsumerGroups::plan_reset`]), to print (a dry
/// run) or to carry out ([`ConsumerGroups::execute_reset`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ResetPlan {
    /// The group.
    pub group: String,
    /// Each partition, in (topic, partition) order.
    pub rows: Vec<ResetRow>,
}

impl ConsumerGroups {
    /// What resetting `group`'s offsets of `scope` to `target` would do.
    /// Writes nothing. Unknown topics and partitions are errors.
    pub fn plan_reset(&self, group: &str, target: &ResetTarget, scope: &ResetScope) -> Result<ResetPlan> {
        self.plan_reset_at(group, target, scope, now_ms())
    }

    /// [`ConsumerGroups::plan_reset`] at time `now_ms` (for
    /// [`ResetTarget::Ago`]).
    pub fn plan_reset_at(
        &self,
        group: &str,
        target: &ResetTarget,
        scope: &ResetScope,
        now_ms: i64,
    ) -> Result<ResetPlan> {
        check_group(group)?;
        let committed = self.group_offsets(group)?;
        let partitions: Vec<(TopicPartition, Option<u64>)> = match (target, scope) {
            (ResetTarget::Offsets(offsets), _) => {
                offsets.iter().map(|c| (TopicPartition::new(c.topic.clone(), c.partition), Some(c.offset))).collect()
            }
            (_, ResetScope::AllTopics) => {
                let mut topics: Vec<&str> = committed.keys().map(|tp| tp.topic.as_str()).collect();
                topics.dedup();
                let mut out = Vec::new();
                for t in topics {
                    let n = self.store().topic(t)?.partitions();
                    out.extend((0..n).map(|p| (TopicPartition::new(t, p), None)));
                }
                out
            }
            (_, ResetScope::Topics(topics)) => {
                let mut out = Vec::new();
                for (t, parts) in topics {
                    let n = self.store().topic(t)?.partitions();
                    let parts: Vec<u32> = parts.clone().unwrap_or_else(|| (0..n).collect());
                    out.extend(parts.into_iter().map(|p| (TopicPartition::new(t.clone(), p), None)));
                }
                out
            }
        };
        let mut rows = Vec::with_capacity(partitions.len());
        for (tp, given) in partitions {
            let log = self.store().topic(&tp.topic)?.partition(tp.partition)?;
            // The end a consumer may read to: the durable end when the store syncs.
            let end = if self.durable_reads() { log.durable_offset() } else { log.next_offset() };
            let start = log.start_offset().min(end);
            let current = committed.get(&tp).map(|c| c.offset);
            let wanted = match target {
                ResetTarget::Earliest => start,
                ResetTarget::Latest => end,
                ResetTarget::Current => current.unwrap_or(end),
                ResetTarget::Offset(o) => *o,
                ResetTarget::ShiftBy(n) => match current {
                    Some(c) => c.saturating_add_signed(*n),
                    None => {
                        return Err(Error::Invalid(format!(
                            "cannot shift {tp} of group {group:?}: it has no committed offset"
                        )));
                    }
                },
                ResetTarget::Datetime(t) => log.offset_for_timestamp(*t)?.unwrap_or(end),
                ResetTarget::Ago(d) => {
                    let t = now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    log.offset_for_timestamp(t)?.unwrap_or(end)
                }
                ResetTarget::Offsets(_) => given.expect("an offset per row"),
            };
            rows.push(ResetRow { partition: tp, current, new_offset: wanted.clamp(start, end) });
        }
        rows.sort_by(|a, b| a.partition.cmp(&b.partition));
        rows.dedup_by(|a, b| a.partition == b.partition);
        Ok(ResetPlan { group: group.to_owned(), rows })
    }

    /// Carries out `plan`: every row's offset committed at once, forward or
    /// backward. Refused while the group has members
    /// ([`Error::GroupNotEmpty`]).
    pub fn execute_reset(&self, plan: &ResetPlan) -> Result<()> {
        let offsets: Vec<OffsetCommit> = plan
            .rows
            .iter()
            .map(|r| OffsetCommit::new(r.partition.topic.clone(), r.partition.partition, r.new_offset))
            .collect();
        self.reset_offsets(&plan.group, &offsets)
    }
}
