//! [`ConsumerGroups`]: the committed offsets of a store's consumer groups,
//! kept in its compacted `__consumer_offsets` topic, and the groups'
//! membership in this process (docs/CONSUMERS.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::assignor::{self, Assignor, TopicPartition};
use super::error::{Error, Result, shown};
use super::record::{OffsetKey, OffsetValue};
use super::{MAX_COMMIT_METADATA_LEN, MAX_GROUP_NAME_LEN, OFFSETS_TOPIC};
use crate::sync::MutexExt;
use crate::{CleanupPolicy, Log, Record, Topic, TopicConfig, TopicStore};

/// How long a group's offsets outlive its last member (or, for a group that
/// never had one in this process, its last commit): 7 days, as Kafka's
/// `offsets.retention.minutes`.
pub const DEFAULT_OFFSETS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The configuration of [`ConsumerGroups`].
#[derive(Debug, Clone)]
#[must_use]
pub struct GroupsConfig {
    offsets_retention: Duration,
}

impl Default for GroupsConfig {
    /// Offsets kept [`DEFAULT_OFFSETS_RETENTION`] after their group empties.
    fn default() -> Self {
        GroupsConfig { offsets_retention: DEFAULT_OFFSETS_RETENTION }
    }
}

impl GroupsConfig {
    /// How long a group's offsets outlive the group's last member (or last
    /// commit, if it had no member since the store was opened).
    pub fn with_offsets_retention(mut self, retention: Duration) -> Self {
        self.offsets_retention = retention;
        self
    }

    /// See [`GroupsConfig::with_offsets_retention`].
    pub fn offsets_retention(&self) -> Duration {
        self.offsets_retention
    }
}

/// One offset to commit: the next record to read in a partition, with a
/// metadata string of the committer's (at most
/// [`MAX_COMMIT_METADATA_LEN`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct OffsetCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next record to read (Kafka's meaning of a committed offset).
    pub offset: u64,
    /// The committer's metadata.
    pub metadata: String,
}

impl OffsetCommit {
    /// Offset `offset` of partition `partition` of `topic`, without metadata.
    pub fn new(topic: impl Into<String>, partition: u32, offset: u64) -> OffsetCommit {
        OffsetCommit { topic: topic.into(), partition, offset, metadata: String::new() }
    }

    /// With a metadata string.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> OffsetCommit {
        self.metadata = metadata.into();
        self
    }
}

/// A committed offset, as [`ConsumerGroups::committed`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next record to read.
    pub offset: u64,
    /// The committer's metadata.
    pub metadata: String,
    /// The generation of the member that committed it; 0 for a commit from
    /// outside the group protocol (a standalone commit, a reset).
    pub generation: u32,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub committed_ms: i64,
}

/// What a member of a group is, as it joins ([`ConsumerGroups::join`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct MemberConfig {
    topics: Vec<String>,
    assignor: Assignor,
    session_timeout: Duration,
    instance_id: Option<String>,
}

impl MemberConfig {
    /// A member subscribing to `topics`, with the [`Assignor::Range`]
    /// assignor, a session timeout of 45 s (Kafka's default) and no static
    /// instance id.
    pub fn new<S: Into<String>>(topics: impl IntoIterator<Item = S>) -> MemberConfig {
        MemberConfig {
            topics: topics.into_iter().map(Into::into).collect(),
            assignor: Assignor::Range,
            session_timeout: Duration::from_secs(45),
            instance_id: None,
        }
    }

    /// The assignor (every member of a group must use the same).
    pub fn with_assignor(mut self, assignor: Assignor) -> MemberConfig {
        self.assignor = assignor;
        self
    }

    /// How long the member may go without a heartbeat (a poll) before the
    /// group drops it and gives its partitions to the others.
    pub fn with_session_timeout(mut self, timeout: Duration) -> MemberConfig {
        self.session_timeout = timeout;
        self
    }

    /// A static member's id (Kafka's `group.instance.id`): a member that
    /// leaves and joins again under the same instance id within its session
    /// timeout gets its partitions back without a rebalance.
    pub fn with_instance_id(mut self, id: impl Into<String>) -> MemberConfig {
        self.instance_id = Some(id.into());
        self
    }

    /// See [`MemberConfig::new`].
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// See [`MemberConfig::with_assignor`].
    pub fn assignor(&self) -> Assignor {
        self.assignor
    }

    /// See [`MemberConfig::with_session_timeout`].
    pub fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    /// See [`MemberConfig::with_instance_id`].
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }
}

/// What a heartbeat tells a member ([`ConsumerGroups::heartbeat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The group's generation, which the member's commits carry.
    pub generation: u32,
    /// The partitions the member owns now (it may read and commit them).
    pub owned: BTreeSet<TopicPartition>,
    /// Partitions the member owns but must give up: it commits what it
    /// consumed of them, stops reading them and calls
    /// [`ConsumerGroups::release`]; the group gives them to their new owner
    /// only then.
    pub revoke: BTreeSet<TopicPartition>,
}

/// One member of a group, as [`ConsumerGroups::describe`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions it owns.
    pub owned: BTreeSet<TopicPartition>,
}

/// A member of a group in this process.
#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    topics: BTreeSet<String>,
    session_timeout_ms: i64,
    last_seen_ms: i64,
    /// The generation the member last heard of (its commits carry it).
    generation: u32,
    /// A static member that left: it keeps its id and partitions until its
    /// session times out, unless it joins again first.
    left: bool,
}

/// A group's membership in this process.
#[derive(Debug, Default)]
struct Group {
    generation: u32,
    assignor: Option<Assignor>,
    members: BTreeMap<String, Member>,
    /// The assignment of the current generation.
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// Who owns each partition now: a partition leaves its owner only when
    /// the owner releases it (or is dropped), so that no two members ever
    /// read it at once.
    owners: BTreeMap<TopicPartition, String>,
    /// The partition counts the assignment was made for.
    counts: BTreeMap<String, u32>,
    /// When the last member left; offsets expire from then.
    emptied_ms: Option<i64>,
}

impl Group {
    fn live_members(&self) -> usize {
        self.members.values().filter(|m| !m.left).count()
    }
}

#[derive(Debug, Default)]
struct State {
    committed: BTreeMap<OffsetKey, OffsetValue>,
    groups: HashMap<String, Group>,
    next_member: u64,
}

/// The consumer groups of a [`TopicStore`]: their committed offsets (durable,
/// in the store's compacted `__consumer_offsets` topic) and their members in
/// this process (join, heartbeat, leave; partitions assigned by an
/// [`Assignor`]; generations that fence a member the group went on
/// without). [`crate::consumer::Consumer`] is built on it; offsets can also
/// be committed and read directly, as a standalone consumer or a tool does.
#[derive(Debug)]
pub struct ConsumerGroups {
    store: Arc<TopicStore>,
    offsets: Arc<Log>,
    config: GroupsConfig,
    state: Mutex<State>,
}

pub(crate) fn check_group(group: &str) -> Result<()> {
    let reason = match group.len() {
        0 => "a group name cannot be empty",
        n if n > MAX_GROUP_NAME_LEN => "a group name has at most 255 bytes",
        _ => return Ok(()),
    };
    Err(Error::InvalidGroupName { group: shown(group), reason })
}

fn key(group: &str, topic: &str, partition: u32) -> OffsetKey {
    OffsetKey { group: group.to_owned(), topic: topic.to_owned(), partition }
}

impl ConsumerGroups {
    /// The consumer groups of `store`, with the committed offsets its
    /// `__consumer_offsets` topic holds (created on first use, one partition,
    /// compacted). Offsets of topics deleted (or deleted and created again)
    /// since they were committed, and of groups past their retention, are
    /// deleted. A record of that topic that does not decode gives
    /// [`Error::BadCommitRecord`].
    pub fn open(store: Arc<TopicStore>, config: GroupsConfig) -> Result<ConsumerGroups> {
        let topic = match store.topic(OFFSETS_TOPIC) {
            Ok(t) => t,
            Err(crate::Error::UnknownTopic { .. }) => {
                let config = TopicConfig::default().with_cleanup_policy(CleanupPolicy::Compact);
                match store.create_topic(OFFSETS_TOPIC, config) {
                    Ok(t) => t,
                    Err(crate::Error::TopicExists { .. }) => store.topic(OFFSETS_TOPIC)?,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let offsets = topic.partition(0)?;
        let mut committed = BTreeMap::new();
        let mut reader = offsets.read_from(offsets.start_offset())?;
        while let Some(r) = reader.next_record()? {
            let bad =
                |reason: String| Error::BadCommitRecord { topic: OFFSETS_TOPIC.into(), offset: r.offset(), reason };
            let k = OffsetKey::decode(r.key().unwrap_or_default()).map_err(bad)?;
            match r.value() {
                None => {
                    committed.remove(&k);
                }
                Some(v) => {
                    committed.insert(k, OffsetValue::decode(v).map_err(bad)?);
                }
            }
        }
        let groups =
            ConsumerGroups { store, offsets, config, state: Mutex::new(State { committed, ..State::default() }) };
        groups.delete_stale(&mut groups.state.locked())?;
        groups.expire_offsets()?;
        Ok(groups)
    }

    /// The store.
    pub fn store(&self) -> &Arc<TopicStore> {
        &self.store
    }

    /// Whether consumers of this store read only durable records, and
    /// commits and resets stop at the durable end: the store's durability is
    /// not [`crate::Durability::Never`].
    pub fn durable_reads(&self) -> bool {
        self.store.config().log_config().durability() != crate::Durability::Never
    }

    /// The configuration.
    pub fn config(&self) -> &GroupsConfig {
        &self.config
    }

    /// Writes tombstones for `keys` as one batch, then forgets them.
    fn delete_keys(&self, st: &mut State, keys: Vec<OffsetKey>) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let encoded: Vec<Vec<u8>> = keys.iter().map(OffsetKey::encode).collect();
        let records: Vec<Record<'_>> = encoded.iter().map(|k| Record::tombstone(k)).collect();
        self.offsets.append_batch(&records)?;
        for k in &keys {
            st.committed.remove(k);
        }
        Ok(keys.len())
    }

    /// The `created_ms` of `topic`, or `None` if it does not exist; another
    /// failure to open it is an error (not a reason to delete its offsets).
    fn incarnation(&self, topic: &str) -> Result<Option<i64>> {
        match self.store.topic(topic) {
            Ok(t) => Ok(Some(t.meta()?.created_ms)),
            Err(crate::Error::UnknownTopic { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the offsets of topics that are gone or were created again
    /// since they were committed.
    fn delete_stale(&self, st: &mut State) -> Result<usize> {
        let mut incarnations: HashMap<String, Option<i64>> = HashMap::new();
        let mut stale = Vec::new();
        for (k, v) in &st.committed {
            if !incarnations.contains_key(&k.topic) {
                incarnations.insert(k.topic.clone(), self.incarnation(&k.topic)?);
            }
            if incarnations[&k.topic] != Some(v.topic_created_ms) {
                stale.push(k.clone());
            }
        }
        self.delete_keys(st, stale)
    }

    /// Commits `offsets` for `group` from outside the group protocol (a
    /// standalone consumer, a tool), as one atomic batch: all of them or
    /// none, durable when this returns under the store's durability. Refused
    /// while the group has members in this process
    /// ([`Error::GroupNotEmpty`]), for an offset past its partition's end
    /// ([`Error::OffsetPastEnd`]) or below the one committed
    /// ([`Error::OffsetBackward`]).
    pub fn commit(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        self.commit_at(group, None, offsets, now_ms())
    }

    /// [`ConsumerGroups::commit`] by member `member` of generation
    /// `generation` (what its last heartbeat said), which must own every
    /// partition it commits: a member the group went on without gets
    /// [`Error::UnknownMember`], one of an older generation or committing a
    /// partition it does not own [`Error::StaleGeneration`].
    pub fn commit_as(&self, group: &str, member: &str, generation: u32, offsets: &[OffsetCommit]) -> Result<()> {
        self.commit_at(group, Some((member, generation)), offsets, now_ms())
    }

    /// [`ConsumerGroups::commit`] or [`ConsumerGroups::commit_as`] at time
    /// `now_ms` (milliseconds since the Unix epoch).
    pub fn commit_at(
        &self,
        group: &str,
        member: Option<(&str, u32)>,
        offsets: &[OffsetCommit],
        now_ms: i64,
    ) -> Result<()> {
        self.write_offsets(group, member, offsets, now_ms, false)
    }

    fn write_offsets(
        &self,
        group: &str,
        member: Option<(&str, u32)>,
        offsets: &[OffsetCommit],
        now_ms: i64,
        reset: bool,
    ) -> Result<()> {
        check_group(group)?;
        let mut values = Vec::with_capacity(offsets.len());
        for (i, c) in offsets.iter().enumerate() {
            if offsets[..i].iter().any(|o| o.topic == c.topic && o.partition == c.partition) {
                return Err(Error::Invalid(format!("{}:{} is named twice in one commit", c.topic, c.partition)));
            }
            let topic = self.store.topic(&c.topic)?;
            let log = topic.partition(c.partition)?;
            if c.metadata.len() > MAX_COMMIT_METADATA_LEN {
                return Err(Error::MetadataTooLarge {
                    group: shown(group),
                    topic: c.topic.clone(),
                    partition: c.partition,
                    len: c.metadata.len(),
                    max: MAX_COMMIT_METADATA_LEN,
                });
            }
            // What a consumer may have read: the durable end, unless the
            // store does not sync (then everything is what there is).
            let end = if self.durable_reads() { log.durable_offset() } else { log.next_offset() };
            if c.offset > end {
                return Err(Error::OffsetPastEnd {
                    group: shown(group),
                    topic: c.topic.clone(),
                    partition: c.partition,
                    offset: c.offset,
                    end,
                });
            }
            values.push((key(group, &c.topic, c.partition), topic_created(&topic)?, c, end));
        }
        let mut st = self.state.locked();
        self.expire_members(&mut st, group, now_ms);
        let generation = match member {
            None => {
                let live = st.groups.get(group).map_or(0, Group::live_members);
                if live > 0 {
                    let operation = if reset { "a reset" } else { "a commit from outside the group" };
                    return Err(Error::GroupNotEmpty { group: shown(group), members: live, operation });
                }
                0
            }
            Some((id, generation)) => {
                let g = st.groups.get(group);
                let Some(m) = g.and_then(|g| g.members.get(id)).filter(|m| !m.left) else {
                    return Err(Error::UnknownMember { group: shown(group), member: id.to_owned() });
                };
                let g = g.expect("the member's group");
                for (k, _, _, _) in &values {
                    let tp = TopicPartition::new(k.topic.clone(), k.partition);
                    let reason = if generation != m.generation {
                        Some(format!("the member is at generation {}", m.generation))
                    } else if g.owners.get(&tp).map(String::as_str) != Some(id) {
                        Some(match g.owners.get(&tp) {
                            Some(owner) => format!("{tp} is owned by {owner}"),
                            None => format!("{tp} is not assigned to it"),
                        })
                    } else {
                        None
                    };
                    if let Some(reason) = reason {
                        return Err(Error::StaleGeneration {
                            group: shown(group),
                            member: id.to_owned(),
                            generation,
                            topic: k.topic.clone(),
                            partition: k.partition,
                            reason,
                        });
                    }
                }
                generation
            }
        };
        if !reset {
            for (k, created, c, end) in &values {
                // An offset past the partition's end (records a crash took
                // back under a durability that does not sync) may come back
                // to where the records are.
                if let Some(v) = st.committed.get(k).filter(|v| v.topic_created_ms == *created)
                    && c.offset < v.offset
                    && v.offset <= *end
                {
                    return Err(Error::OffsetBackward {
                        group: shown(group),
                        topic: k.topic.clone(),
                        partition: k.partition,
                        offset: c.offset,
                        committed: v.offset,
                    });
                }
            }
        }
        let encoded: Vec<(OffsetKey, Vec<u8>, OffsetValue)> = values
            .into_iter()
            .map(|(k, created, c, _)| {
                let v = OffsetValue {
                    offset: c.offset,
                    generation,
                    committed_ms: now_ms,
                    topic_created_ms: created,
                    metadata: c.metadata.clone(),
                };
                (k.clone(), k.encode(), v)
            })
            .collect();
        let value_bytes: Vec<Vec<u8>> = encoded.iter().map(|(_, _, v)| v.encode()).collect();
        let records: Vec<Record<'_>> =
            encoded.iter().zip(&value_bytes).map(|((_, k, _), v)| Record::new(v).with_key(k)).collect();
        if !records.is_empty() {
            self.offsets.append_batch(&records)?;
        }
        for (k, _, v) in encoded {
            st.committed.insert(k, v);
        }
        Ok(())
    }

    /// Sets `group`'s offsets to `offsets`, forward or backward (the one
    /// way to move a committed offset back), as one atomic batch. Refused
    /// while the group has members ([`Error::GroupNotEmpty`]).
    pub fn reset_offsets(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        self.write_offsets(group, None, offsets, now_ms(), true)
    }

    /// The offset `group` committed for `partition` of `topic`, if any (none
    /// for a topic deleted or created again since).
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<CommittedOffset>> {
        check_group(group)?;
        let created = self.incarnation(topic)?;
        let st = self.state.locked();
        Ok(st.committed.get(&key(group, topic, partition)).filter(|v| Some(v.topic_created_ms) == created).map(|v| {
            CommittedOffset {
                offset: v.offset,
                metadata: v.metadata.clone(),
                generation: v.generation,
                committed_ms: v.committed_ms,
            }
        }))
    }

    /// Every offset `group` committed, by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, CommittedOffset>> {
        check_group(group)?;
        let keys: Vec<OffsetKey> = {
            let st = self.state.locked();
            st.committed.keys().filter(|k| k.group == group).cloned().collect()
        };
        let mut out = BTreeMap::new();
        for k in keys {
            if let Some(c) = self.committed(group, &k.topic, k.partition)? {
                out.insert(TopicPartition::new(k.topic, k.partition), c);
            }
        }
        Ok(out)
    }

    /// The groups with committed offsets or members, by name.
    pub fn groups(&self) -> Vec<String> {
        let st = self.state.locked();
        let mut names: BTreeSet<String> = st.committed.keys().map(|k| k.group.clone()).collect();
        names.extend(st.groups.iter().filter(|(_, g)| !g.members.is_empty()).map(|(n, _)| n.clone()));
        names.into_iter().collect()
    }

    /// Deletes `group`'s committed offsets (as Kafka's `--delete`); returns
    /// how many. Refused while it has members ([`Error::GroupNotEmpty`]);
    /// [`Error::UnknownGroup`] if it has no offset.
    pub fn delete_group(&self, group: &str) -> Result<usize> {
        check_group(group)?;
        let mut st = self.state.locked();
        self.expire_members(&mut st, group, now_ms());
        if let Some(g) = st.groups.get(group).filter(|g| g.live_members() > 0) {
            let members = g.live_members();
            return Err(Error::GroupNotEmpty { group: shown(group), members, operation: "deleting it" });
        }
        let keys: Vec<OffsetKey> = st.committed.keys().filter(|k| k.group == group).cloned().collect();
        if keys.is_empty() {
            return Err(Error::UnknownGroup { group: shown(group) });
        }
        st.groups.remove(group);
        self.delete_keys(&mut st, keys)
    }

    /// Deletes `topic` from the store and every group's offsets of it.
    pub fn delete_topic(&self, topic: &str) -> Result<crate::TopicDeletion> {
        let deletion = self.store.delete_topic(topic)?;
        let mut st = self.state.locked();
        let keys: Vec<OffsetKey> = st.committed.keys().filter(|k| k.topic == topic).cloned().collect();
        self.delete_keys(&mut st, keys)?;
        Ok(deletion)
    }

    /// Deletes the offsets of groups without members whose last member left
    /// (or, without one since the store opened, whose last commit was) longer
    /// than the offsets retention ago, and of deleted topics. Returns how
    /// many offsets it deleted.
    pub fn expire_offsets(&self) -> Result<usize> {
        self.expire_offsets_at(now_ms())
    }

    /// [`ConsumerGroups::expire_offsets`] at time `now_ms`.
    pub fn expire_offsets_at(&self, now_ms: i64) -> Result<usize> {
        let retention = i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let mut st = self.state.locked();
        let names: Vec<String> = st.groups.keys().cloned().collect();
        for name in names {
            self.expire_members(&mut st, &name, now_ms);
        }
        let mut last: HashMap<&str, i64> = HashMap::new();
        for (k, v) in &st.committed {
            let t = last.entry(k.group.as_str()).or_insert(i64::MIN);
            *t = (*t).max(v.committed_ms);
        }
        let expired: BTreeSet<String> = last
            .into_iter()
            .filter(|(g, t)| {
                let group = st.groups.get(*g);
                let empty = group.is_none_or(|g| g.members.is_empty());
                let since = group.and_then(|g| g.emptied_ms).map_or(*t, |e| e.max(*t));
                empty && since.saturating_add(retention) < now_ms
            })
            .map(|(g, _)| g.to_owned())
            .collect();
        let keys: Vec<OffsetKey> = st.committed.keys().filter(|k| expired.contains(&k.group)).cloned().collect();
        let n = self.delete_keys(&mut st, keys)? + self.delete_stale(&mut st)?;
        st.groups.retain(|_, g| !g.members.is_empty());
        drop(st);
        // Keeps the offsets topic to about one record per offset, so that an
        // open reads little (the store's cleanup thread does it too, when on).
        self.store.topic(OFFSETS_TOPIC)?.compact_at(now_ms)?;
        Ok(n)
    }

    // ----- membership -----

    /// Joins `group` as a new member (or, with a static instance id that a
    /// member of the group holds, as that member again, without a
    /// rebalance); returns the member id. A new member starts a rebalance:
    /// the group's generation moves on, and every member learns its new
    /// partitions from its next [`ConsumerGroups::heartbeat`].
    pub fn join(&self, group: &str, config: &MemberConfig) -> Result<String> {
        self.join_at(group, config, now_ms())
    }

    /// [`ConsumerGroups::join`] at time `now_ms`.
    pub fn join_at(&self, group: &str, config: &MemberConfig, now_ms: i64) -> Result<String> {
        check_group(group)?;
        if config.topics.is_empty() {
            return Err(Error::Invalid("a member subscribes to at least one topic".into()));
        }
        if config.session_timeout.is_zero() {
            return Err(Error::Invalid("a member's session timeout cannot be zero".into()));
        }
        for t in &config.topics {
            crate::validate_topic_name(t)?;
        }
        let mut st = self.state.locked();
        self.expire_members(&mut st, group, now_ms);
        st.next_member += 1;
        let serial = st.next_member;
        let g = st.groups.entry(group.to_owned()).or_default();
        if let Some(a) = g.assignor
            && !g.members.is_empty()
            && a != config.assignor
        {
            return Err(Error::Invalid(format!(
                "group {:?} uses the {} assignor, the member asks for {}",
                shown(group),
                a.name(),
                config.assignor.name()
            )));
        }
        g.assignor = Some(config.assignor);
        let topics: BTreeSet<String> = config.topics.iter().cloned().collect();
        let session_timeout_ms = i64::try_from(config.session_timeout.as_millis()).unwrap_or(i64::MAX);
        // A static member coming back: the same member, no rebalance (unless
        // it subscribes to other topics now).
        if let Some(instance) = &config.instance_id
            && let Some(old_id) =
                g.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(instance)).map(|(id, _)| id.clone())
        {
            let mut m = g.members.remove(&old_id).expect("found above");
            // An instance that is still live is fenced (as Kafka fences a
            // duplicate group.instance.id): the newcomer takes its place
            // under a new member id, and the old one's calls fail as an
            // unknown member's.
            let id = if m.left { old_id.clone() } else { format!("{instance}-{serial}") };
            if id != old_id {
                for owner in g.owners.values_mut().filter(|o| **o == old_id) {
                    owner.clone_from(&id);
                }
                if let Some(t) = g.target.remove(&old_id) {
                    g.target.insert(id.clone(), t);
                }
            }
            let same = m.topics == topics;
            m.left = false;
            m.last_seen_ms = now_ms;
            m.session_timeout_ms = session_timeout_ms;
            m.topics = topics;
            g.members.insert(id.clone(), m);
            if !same {
                self.rebalance(g);
            }
            return Ok(id);
        }
        let id = match &config.instance_id {
            Some(instance) => format!("{instance}-{serial}"),
            None => format!("member-{serial}"),
        };
        g.members.insert(
            id.clone(),
            Member {
                instance_id: config.instance_id.clone(),
                topics,
                session_timeout_ms,
                last_seen_ms: now_ms,
                generation: 0,
                left: false,
            },
        );
        g.emptied_ms = None;
        self.rebalance(g);
        Ok(id)
    }

    /// A member's heartbeat: keeps its session and tells it its partitions
    /// ([`Heartbeat`]). Members whose session expired are dropped first (and
    /// their partitions reassigned); a topic that gained partitions starts a
    /// rebalance. [`Error::UnknownMember`] for a member the group dropped.
    pub fn heartbeat(&self, group: &str, member: &str) -> Result<Heartbeat> {
        self.heartbeat_at(group, member, now_ms())
    }

    /// [`ConsumerGroups::heartbeat`] at time `now_ms`.
    pub fn heartbeat_at(&self, group: &str, member: &str, now_ms: i64) -> Result<Heartbeat> {
        check_group(group)?;
        let mut st = self.state.locked();
        self.expire_members(&mut st, group, now_ms);
        let unknown = || Error::UnknownMember { group: shown(group), member: member.to_owned() };
        let g = st.groups.get_mut(group).ok_or_else(unknown)?;
        if g.members.get(member).is_none_or(|m| m.left) {
            return Err(unknown());
        }
        if self.partition_counts(g) != g.counts {
            self.rebalance(g);
        }
        let eager = !g.assignor.is_some_and(Assignor::is_cooperative);
        let generation = g.generation;
        let m = g.members.get_mut(member).expect("checked above");
        m.last_seen_ms = now_ms;
        let catching_up = m.generation != generation;
        m.generation = generation;
        let target = g.target.get(member).cloned().unwrap_or_default();
        let owned_now: BTreeSet<TopicPartition> =
            g.owners.iter().filter(|(_, o)| o.as_str() == member).map(|(tp, _)| tp.clone()).collect();
        // Eager assignors take everything back at a new generation before
        // giving anything; the cooperative one only what moves.
        let revoke: BTreeSet<TopicPartition> =
            if eager && catching_up { owned_now.clone() } else { owned_now.difference(&target).cloned().collect() };
        if revoke.is_empty() {
            for tp in &target {
                g.owners.entry(tp.clone()).or_insert_with(|| member.to_owned());
            }
        }
        let owned = g.owners.iter().filter(|(_, o)| o.as_str() == member).map(|(tp, _)| tp.clone()).collect();
        Ok(Heartbeat { generation, owned, revoke })
    }

    /// Gives up `partitions` that a heartbeat asked `member` to revoke
    /// (after it committed what it consumed of them); the group gives them
    /// to their new owners at their next heartbeat.
    pub fn release(&self, group: &str, member: &str, partitions: &BTreeSet<TopicPartition>) -> Result<()> {
        check_group(group)?;
        let mut st = self.state.locked();
        let unknown = || Error::UnknownMember { group: shown(group), member: member.to_owned() };
        let g = st.groups.get_mut(group).ok_or_else(unknown)?;
        if !g.members.contains_key(member) {
            return Err(unknown());
        }
        for tp in partitions {
            if g.owners.get(tp).map(String::as_str) == Some(member) {
                g.owners.remove(tp);
            }
        }
        Ok(())
    }

    /// `member` leaves `group`: its partitions go to the others (a rebalance).
    /// A static member keeps its partitions (unread) until its session times
    /// out, so that it may come back without a rebalance.
    pub fn leave(&self, group: &str, member: &str) -> Result<()> {
        self.leave_at(group, member, now_ms())
    }

    /// [`ConsumerGroups::leave`] at time `now_ms`.
    pub fn leave_at(&self, group: &str, member: &str, now_ms: i64) -> Result<()> {
        check_group(group)?;
        let mut st = self.state.locked();
        self.expire_members(&mut st, group, now_ms);
        let Some(g) = st.groups.get_mut(group) else { return Ok(()) };
        let Some(m) = g.members.get_mut(member) else { return Ok(()) };
        if m.instance_id.is_some() {
            m.left = true;
            m.last_seen_ms = now_ms;
            return Ok(());
        }
        self.remove_member(g, member, now_ms);
        Ok(())
    }

    /// The members of `group` in this process and the partitions they own.
    pub fn describe(&self, group: &str) -> Result<Vec<MemberInfo>> {
        check_group(group)?;
        let st = self.state.locked();
        let Some(g) = st.groups.get(group) else { return Ok(Vec::new()) };
        Ok(g.members
            .iter()
            .filter(|(_, m)| !m.left)
            .map(|(id, m)| MemberInfo {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                topics: m.topics.iter().cloned().collect(),
                owned: g.owners.iter().filter(|(_, o)| *o == id).map(|(tp, _)| tp.clone()).collect(),
            })
            .collect())
    }

    /// The group's live members in this process (those whose session has
    /// not expired).
    pub fn live_members(&self, group: &str) -> usize {
        self.live_members_at(group, now_ms())
    }

    /// [`ConsumerGroups::live_members`] at time `now_ms`.
    pub fn live_members_at(&self, group: &str, now_ms: i64) -> usize {
        let mut st = self.state.locked();
        self.expire_members(&mut st, group, now_ms);
        st.groups.get(group).map_or(0, Group::live_members)
    }

    fn remove_member(&self, g: &mut Group, member: &str, now_ms: i64) {
        g.members.remove(member);
        g.owners.retain(|_, o| o != member);
        if g.members.is_empty() {
            g.emptied_ms = Some(now_ms);
            g.target.clear();
            g.generation += 1;
        } else {
            self.rebalance(g);
        }
    }

    /// Drops the members of `group` whose session expired.
    fn expire_members(&self, st: &mut State, group: &str, now_ms: i64) {
        let Some(g) = st.groups.get_mut(group) else { return };
        let expired: Vec<String> = g
            .members
            .iter()
            .filter(|(_, m)| now_ms.saturating_sub(m.last_seen_ms) > m.session_timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_member(g, &id, now_ms);
        }
    }

    /// The partition counts of the topics the group's members subscribe to.
    fn partition_counts(&self, g: &Group) -> BTreeMap<String, u32> {
        let topics: BTreeSet<&String> = g.members.values().flat_map(|m| &m.topics).collect();
        topics
            .into_iter()
            .filter_map(|t| self.store.topic(t).ok().map(|h| (t.clone(), h.partitions())))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// A new generation and its assignment. Partitions keep their owners
    /// until released.
    fn rebalance(&self, g: &mut Group) {
        g.generation += 1;
        g.counts = self.partition_counts(g);
        let subscriptions: BTreeMap<String, BTreeSet<String>> =
            g.members.iter().map(|(id, m)| (id.clone(), m.topics.clone())).collect();
        let previous = std::mem::take(&mut g.target);
        g.target = assignor::assign(g.assignor.unwrap_or_default(), &subscriptions, &g.counts, &previous);
        // Partitions of topics gone or shrunk have no owner to wait for.
        g.owners.retain(|tp, _| g.counts.get(&tp.topic).is_some_and(|&n| tp.partition < n));
    }
}

/// The `created_ms` of an open topic.
fn topic_created(topic: &Topic) -> Result<i64> {
    Ok(topic.meta()?.created_ms)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
