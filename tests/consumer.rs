//! Consumer groups: committed offsets (atomic, durable across reopen, never
//! backward, never past the end, expiry, topic deletion), membership (joins,
//! leaves, session expiry, generations fencing zombies, static members,
//! eager and cooperative rebalances), lag, resets, and the `Consumer`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use annal::consumer::{
    Assignor, Consumer, ConsumerConfig, ConsumerGroups, Error, GroupsConfig, MemberConfig, OFFSETS_TOPIC, OffsetCommit,
    OffsetReset, RebalanceListener, ResetScope, ResetTarget, TopicPartition,
};
use annal::{Durability, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig};
use common::fast_tempdir;
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;

fn cfg() -> TopicStoreConfig {
    TopicStoreConfig::default().with_log_config(LogConfig::default().with_durability(Durability::Never))
}

/// A store with topic `orders` of `partitions` partitions holding `per` records each
/// (timestamps T0 + offset * 1000), and its groups.
fn setup(partitions: u32, per: u64) -> (TempDir, Arc<TopicStore>, Arc<ConsumerGroups>) {
    let dir = fast_tempdir();
    let store = Arc::new(TopicStore::open(dir.path(), cfg()).unwrap());
    let topic = store.create_topic("orders", TopicConfig::default().with_partitions(partitions)).unwrap();
    for p in 0..partitions {
        for i in 0..per {
            topic.send_to(p, &Record::new(format!("{p}-{i}").as_bytes()).with_timestamp(T0 + i as i64 * 1000)).unwrap();
        }
    }
    let groups = Arc::new(ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).unwrap());
    (dir, store, groups)
}

fn offsets_end(store: &TopicStore) -> u64 {
    store.topic(OFFSETS_TOPIC).unwrap().partition(0).unwrap().next_offset()
}

fn committed(groups: &ConsumerGroups, group: &str, p: u32) -> Option<u64> {
    groups.committed(group, "orders", p).unwrap().map(|c| c.offset)
}

#[test]
fn commits_are_atomic_durable_and_read_back_after_reopen() {
    let (dir, store, groups) = setup(3, 10);
    let offsets: Vec<OffsetCommit> =
        (0..3).map(|p| OffsetCommit::new("orders", p, 2 + u64::from(p)).with_metadata(format!("m{p}"))).collect();
    let before = offsets_end(&store);
    groups.commit("billing", &offsets).unwrap();
    assert_eq!(offsets_end(&store), before + 3, "one record per partition");
    let c = groups.committed("billing", "orders", 1).unwrap().unwrap();
    assert_eq!((c.offset, c.metadata.as_str(), c.generation), (3, "m1", 0));
    assert_eq!(groups.groups(), ["billing"]);
    drop(groups);
    Arc::try_unwrap(store).unwrap().close().unwrap();

    let store = Arc::new(TopicStore::open(dir.path(), cfg()).unwrap());
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).unwrap();
    for p in 0..3 {
        assert_eq!(committed(&groups, "billing", p), Some(2 + u64::from(p)));
    }
    assert_eq!(groups.committed("billing", "orders", 0).unwrap().unwrap().metadata, "m0");
    assert_eq!(groups.committed("other", "orders", 0).unwrap(), None);
}

#[test]
fn a_refused_commit_writes_nothing_and_says_why() {
    let (_dir, store, groups) = setup(2, 10);
    groups.commit("g", &[OffsetCommit::new("orders", 0, 5)]).unwrap();
    let end = offsets_end(&store);
    let cases: Vec<(Vec<OffsetCommit>, &str)> = vec![
        (vec![OffsetCommit::new("orders", 1, 3), OffsetCommit::new("orders", 0, 4)], "backward"),
        (vec![OffsetCommit::new("orders", 1, 11)], "past the end"),
        (vec![OffsetCommit::new("orders", 1, 1).with_metadata("x".repeat(4097))], "metadata"),
        (vec![OffsetCommit::new("orders", 7, 1)], "partition"),
        (vec![OffsetCommit::new("nope", 0, 1)], "topic"),
        (vec![OffsetCommit::new("orders", 1, 1), OffsetCommit::new("orders", 1, 2)], "twice"),
    ];
    for (offsets, what) in cases {
        let e = groups.commit("g", &offsets).unwrap_err();
        let shown = e.to_string();
        match what {
            "backward" => assert!(matches!(e, Error::OffsetBackward { offset: 4, committed: 5, .. }), "{e:?}"),
            "past the end" => assert!(matches!(e, Error::OffsetPastEnd { offset: 11, end: 10, .. }), "{e:?}"),
            "metadata" => assert!(matches!(e, Error::MetadataTooLarge { len: 4097, .. }), "{e:?}"),
            "partition" => assert!(matches!(e, Error::Engine(annal::Error::PartitionOutOfRange { .. })), "{e:?}"),
            "topic" => assert!(matches!(e, Error::Engine(annal::Error::UnknownTopic { .. })), "{e:?}"),
            _ => assert!(shown.contains("twice"), "{shown}"),
        }
        assert_eq!(offsets_end(&store), end, "{what}: nothing written");
        assert_eq!((committed(&groups, "g", 0), committed(&groups, "g", 1)), (Some(5), None), "{what}");
    }
    assert!(matches!(groups.commit("", &[]), Err(Error::InvalidGroupName { .. })));
    assert!(matches!(groups.commit(&"g".repeat(256), &[]), Err(Error::InvalidGroupName { .. })));
    // A reset may go back; the same offset again is no regression.
    groups.commit("g", &[OffsetCommit::new("orders", 0, 5)]).unwrap();
    groups.reset_offsets("g", &[OffsetCommit::new("orders", 0, 1)]).unwrap();
    assert_eq!(committed(&groups, "g", 0), Some(1));
}

#[test]
fn offsets_go_with_their_topic_and_expire_with_their_group() {
    let (dir, store, groups) = setup(2, 10);
    groups.commit("g", &[OffsetCommit::new("orders", 0, 5)]).unwrap();
    groups.commit("h", &[OffsetCommit::new("orders", 1, 5)]).unwrap();
    // A topic deleted behind the groups' back and created again: its old
    // offsets do not apply to the new one, and go at the next open.
    let created = store.topic("orders").unwrap().meta().unwrap().created_ms;
    store.delete_topic("orders").unwrap();
    // A topic's incarnation is its creation time in ms: wait for the clock.
    while store.create_topic("orders", TopicConfig::default().with_partitions(2)).unwrap().meta().unwrap().created_ms
        == created
    {
        store.delete_topic("orders").unwrap();
        std::thread::yield_now();
    }
    assert_eq!(committed(&groups, "g", 0), None);
    drop(groups);
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).unwrap();
    assert!(groups.groups().is_empty(), "{:?}", groups.groups());

    // Deleting through the groups deletes the offsets at once.
    let topic = store.topic("orders").unwrap();
    topic.send_to(0, &Record::new(b"x")).unwrap();
    groups.commit("g", &[OffsetCommit::new("orders", 0, 1)]).unwrap();
    groups.delete_topic("orders").unwrap();
    assert!(groups.groups().is_empty());

    // Expiry: only a group with no member, its last commit older than the retention.
    store.create_topic("orders", TopicConfig::default()).unwrap().send(&Record::new(b"x")).unwrap();
    let groups = ConsumerGroups::open(
        Arc::clone(&store),
        GroupsConfig::default().with_offsets_retention(Duration::from_secs(60)),
    )
    .unwrap();
    groups.commit_at("old", None, &[OffsetCommit::new("orders", 0, 1)], T0).unwrap();
    groups.commit_at("busy", None, &[OffsetCommit::new("orders", 0, 1)], T0).unwrap();
    let member = groups.join_at("busy", &MemberConfig::new(["orders"]), T0 + 60_000).unwrap();
    groups.heartbeat_at("busy", &member, T0 + 100_000).unwrap();
    assert_eq!(groups.expire_offsets_at(T0 + 60_000).unwrap(), 0, "not yet");
    assert_eq!(groups.expire_offsets_at(T0 + 100_001).unwrap(), 1);
    assert_eq!(groups.groups(), ["busy"]);
    drop(dir);
}

fn settle(
    groups: &ConsumerGroups,
    group: &str,
    members: &[String],
    now: i64,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    // Heartbeat and release until nothing changes.
    let mut last = BTreeMap::new();
    for _ in 0..10 {
        let mut owned = BTreeMap::new();
        for m in members {
            let beat = groups.heartbeat_at(group, m, now).unwrap();
            if !beat.revoke.is_empty() {
                groups.release(group, m, &beat.revoke).unwrap();
            }
            owned.insert(m.clone(), beat.owned);
        }
        if owned == last {
            return owned;
        }
        last = owned;
    }
    panic!("the group did not settle: {last:?}");
}

fn all_partitions(n: u32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| TopicPartition::new("orders", p)).collect()
}

fn check_exclusive_and_complete(owned: &BTreeMap<String, BTreeSet<TopicPartition>>, n: u32) {
    let mut seen = BTreeSet::new();
    for tps in owned.values() {
        for tp in tps {
            assert!(seen.insert(tp.clone()), "{tp} owned twice: {owned:?}");
        }
    }
    assert_eq!(seen, all_partitions(n), "{owned:?}");
}

#[test]
fn members_share_partitions_and_stale_members_are_fenced() {
    let (_dir, _store, groups) = setup(6, 4);
    let config = MemberConfig::new(["orders"]).with_session_timeout(Duration::from_secs(10));
    let a = groups.join_at("g", &config, T0).unwrap();
    let owned = settle(&groups, "g", std::slice::from_ref(&a), T0);
    assert_eq!(owned[&a], all_partitions(6));
    let gen1 = groups.heartbeat_at("g", &a, T0).unwrap().generation;
    groups.commit_at("g", Some((&a, gen1)), &[OffsetCommit::new("orders", 0, 1)], T0).unwrap();

    let b = groups.join_at("g", &config, T0 + 1).unwrap();
    // Until a gives them up, b gets nothing a owns, and a may still commit
    // them (as in its revocation callback).
    let beat_b = groups.heartbeat_at("g", &b, T0 + 1).unwrap();
    assert!(beat_b.owned.is_empty(), "{beat_b:?}");
    groups.commit_at("g", Some((&a, gen1)), &[OffsetCommit::new("orders", 0, 2)], T0 + 1).unwrap();
    // Once a heard of the new generation, a commit of the old one is fenced.
    let gen2 = groups.heartbeat_at("g", &a, T0 + 1).unwrap().generation;
    assert!(gen2 > gen1);
    let e = groups.commit_at("g", Some((&a, gen1)), &[OffsetCommit::new("orders", 0, 2)], T0 + 1).unwrap_err();
    assert!(matches!(e, Error::StaleGeneration { .. }) && e.to_string().contains("generation"), "{e:?}");
    let owned = settle(&groups, "g", &[a.clone(), b.clone()], T0 + 2);
    check_exclusive_and_complete(&owned, 6);
    assert_eq!(owned[&a].len(), 3);
    // A member commits only what it owns.
    assert_eq!(groups.heartbeat_at("g", &b, T0 + 2).unwrap().generation, gen2);
    let not_b = owned[&a].iter().next().unwrap().clone();
    let e = groups
        .commit_at("g", Some((&b, gen2)), &[OffsetCommit::new("orders", not_b.partition, 1)], T0 + 2)
        .unwrap_err();
    assert!(matches!(e, Error::StaleGeneration { .. }) && e.to_string().contains("owned by"), "{e}");
    // A standalone commit is refused while the group has members.
    assert!(matches!(groups.commit_at("g", None, &[], T0 + 2), Err(Error::GroupNotEmpty { .. })));

    // a stops heartbeating: after its session it is dropped, b gets all,
    // and a's commits fail as a zombie's.
    groups.heartbeat_at("g", &b, T0 + 9_000).unwrap();
    let owned = settle(&groups, "g", std::slice::from_ref(&b), T0 + 11_000);
    assert_eq!(owned[&b], all_partitions(6));
    let e = groups.commit_at("g", Some((&a, gen2)), &[OffsetCommit::new("orders", 0, 3)], T0 + 11_000).unwrap_err();
    assert!(matches!(e, Error::UnknownMember { .. }), "{e:?}");
    assert!(matches!(groups.heartbeat_at("g", &a, T0 + 11_000), Err(Error::UnknownMember { .. })));
    groups.leave_at("g", &b, T0 + 11_001).unwrap();
    assert_eq!(groups.live_members("g"), 0);
}

#[test]
fn a_static_member_comes_back_without_a_rebalance_within_its_session() {
    let (_dir, _store, groups) = setup(4, 1);
    let config =
        |id: &str| MemberConfig::new(["orders"]).with_instance_id(id).with_session_timeout(Duration::from_secs(10));
    let a = groups.join_at("g", &config("host-a"), T0).unwrap();
    let b = groups.join_at("g", &config("host-b"), T0).unwrap();
    let before = settle(&groups, "g", &[a.clone(), b.clone()], T0);
    check_exclusive_and_complete(&before, 4);
    let generation = groups.heartbeat_at("g", &a, T0).unwrap().generation;
    groups.leave_at("g", &a, T0 + 1000).unwrap();
    // b keeps its share (a's is not handed over while a may come back).
    assert_eq!(groups.heartbeat_at("g", &b, T0 + 2000).unwrap().owned, before[&b]);
    let again = groups.join_at("g", &config("host-a"), T0 + 5000).unwrap();
    assert_eq!(again, a, "the same member id");
    let beat = groups.heartbeat_at("g", &a, T0 + 5000).unwrap();
    assert_eq!((beat.generation, &beat.owned), (generation, &before[&a]), "no rebalance");
    // Gone for longer than its session: dropped, b takes everything.
    groups.leave_at("g", &a, T0 + 6000).unwrap();
    groups.heartbeat_at("g", &b, T0 + 9000).unwrap();
    let owned = settle(&groups, "g", std::slice::from_ref(&b), T0 + 16_500);
    assert_eq!(owned[&b], all_partitions(4));
}

#[test]
fn the_cooperative_assignor_revokes_only_what_moves() {
    let (_dir, _store, groups) = setup(6, 1);
    let config = MemberConfig::new(["orders"]).with_assignor(Assignor::CooperativeSticky);
    let a = groups.join_at("g", &config, T0).unwrap();
    let b = groups.join_at("g", &config, T0).unwrap();
    let before = settle(&groups, "g", &[a.clone(), b.clone()], T0);
    check_exclusive_and_complete(&before, 6);
    let c = groups.join_at("g", &config, T0).unwrap();
    let beat_a = groups.heartbeat_at("g", &a, T0).unwrap();
    assert_eq!(beat_a.revoke.len(), 1, "a gives up one partition, keeps two: {beat_a:?}");
    let after = settle(&groups, "g", &[a.clone(), b.clone(), c.clone()], T0);
    check_exclusive_and_complete(&after, 6);
    assert!(after[&a].is_subset(&before[&a]) && after[&b].is_subset(&before[&b]));
    assert_eq!(after[&c].len(), 2);
    // Mixing assignors in a group is refused.
    let e = groups.join_at("g", &MemberConfig::new(["orders"]), T0).unwrap_err();
    assert!(e.to_string().contains("cooperative-sticky"), "{e}");
}

#[test]
fn lag_counts_records_and_the_age_of_the_oldest_unread() {
    let (_dir, _store, groups) = setup(2, 10);
    groups.commit("g", &[OffsetCommit::new("orders", 0, 4), OffsetCommit::new("orders", 1, 10)]).unwrap();
    let lag = groups.lag_at("g", T0 + 60_000).unwrap();
    assert_eq!(lag.partitions.len(), 2);
    assert_eq!((lag.partitions[0].records, lag.partitions[0].age_ms), (6, 60_000 - 4_000));
    assert_eq!((lag.partitions[1].records, lag.partitions[1].age_ms), (0, 0));
    assert_eq!((lag.total_records, lag.max_records, lag.max_age_ms), (6, 6, 56_000));
}

#[test]
fn resets_plan_then_execute_as_kafka_consumer_groups_does() {
    let (_dir, _store, groups) = setup(2, 10);
    groups.commit("g", &[OffsetCommit::new("orders", 0, 5), OffsetCommit::new("orders", 1, 7)]).unwrap();
    let all = ResetScope::AllTopics;
    let plan = |target: ResetTarget, scope: &ResetScope| -> Vec<u64> {
        groups.plan_reset_at("g", &target, scope, T0 + 9_500).unwrap().rows.iter().map(|r| r.new_offset).collect()
    };
    assert_eq!(plan(ResetTarget::Earliest, &all), [0, 0]);
    assert_eq!(plan(ResetTarget::Latest, &all), [10, 10]);
    assert_eq!(plan(ResetTarget::Current, &all), [5, 7]);
    assert_eq!(plan(ResetTarget::Offset(8), &all), [8, 8]);
    assert_eq!(plan(ResetTarget::Offset(80), &all), [10, 10], "clamped to the end");
    assert_eq!(plan(ResetTarget::ShiftBy(-6), &all), [0, 1]);
    assert_eq!(plan(ResetTarget::ShiftBy(2), &all), [7, 9]);
    assert_eq!(plan(ResetTarget::Datetime(T0 + 3_000), &all), [3, 3]);
    assert_eq!(plan(ResetTarget::Ago(Duration::from_millis(2_000)), &all), [8, 8]);
    let only_1 = ResetScope::parse_topics(&["orders:1"]).unwrap();
    assert_eq!(plan(ResetTarget::Earliest, &only_1), [0]);
    let csv = ResetTarget::parse_csv("# topic,partition,offset\norders,0,2\n\norders,1,9\n").unwrap();
    assert_eq!(plan(csv.clone(), &all), [2, 9]);
    assert!(ResetTarget::parse_csv("orders,x,1").is_err());
    assert!(ResetScope::parse_topics(&["orders:a"]).is_err());
    // The dry run wrote nothing; execute does, backward included.
    assert_eq!(committed(&groups, "g", 0), Some(5));
    groups.execute_reset(&groups.plan_reset("g", &csv, &all).unwrap()).unwrap();
    assert_eq!((committed(&groups, "g", 0), committed(&groups, "g", 1)), (Some(2), Some(9)));
    // Refused while the group has a member.
    let m = groups.join("g", &MemberConfig::new(["orders"])).unwrap();
    let e = groups.execute_reset(&groups.plan_reset("g", &ResetTarget::Earliest, &all).unwrap()).unwrap_err();
    assert!(matches!(e, Error::GroupNotEmpty { members: 1, .. }), "{e:?}");
    groups.leave("g", &m).unwrap();
    assert!(matches!(groups.delete_group("nobody"), Err(Error::UnknownGroup { .. })));
    assert_eq!(groups.delete_group("g").unwrap(), 2);
    assert_eq!(committed(&groups, "g", 0), None);
}

/// Polls until `n` records came or a poll returns none.
fn drain(c: &mut Consumer, n: usize) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let polled = c.poll((n - out.len()).min(100), Duration::from_millis(200)).unwrap();
        if polled.is_empty() {
            break;
        }
        out.extend(polled.iter().map(|r| (r.partition, r.record.offset)));
    }
    out
}

#[test]
fn a_consumer_reads_its_partitions_commits_and_resumes() {
    let (_dir, store, groups) = setup(3, 20);
    let config =
        || ConsumerConfig::new("g", ["orders"]).with_offset_reset(OffsetReset::Earliest).with_auto_commit(None);
    let mut c = Consumer::new(Arc::clone(&groups), config()).unwrap();
    let first = drain(&mut c, 30);
    assert_eq!(first.len(), 30);
    c.commit().unwrap();
    let positions: u64 = (0..3).map(|p| c.position(&TopicPartition::new("orders", p)).unwrap()).sum();
    assert_eq!(positions, 30);
    c.close().unwrap();
    let mut c = Consumer::new(Arc::clone(&groups), config()).unwrap();
    let rest = drain(&mut c, 100);
    assert_eq!(rest.len(), 30, "the other 30, from the committed offsets");
    let all: BTreeSet<(u32, u64)> = first.iter().chain(&rest).copied().collect();
    assert_eq!(all.len(), 60, "nothing twice");
    // Paused partitions return nothing; seek moves back.
    let p0 = TopicPartition::new("orders", 0);
    c.pause(std::slice::from_ref(&p0));
    c.seek(&p0, 0).unwrap();
    store.topic("orders").unwrap().send_to(1, &Record::new(b"late")).unwrap();
    let polled = drain(&mut c, 100);
    assert_eq!(polled, [(1, 20)]);
    c.resume(std::slice::from_ref(&p0));
    assert_eq!(drain(&mut c, 100).len(), 20, "partition 0 again from 0");
    assert!(c.commit_async().wait().is_ok());
    assert_eq!(committed(&groups, "g", 0), Some(20));
}

struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

impl RebalanceListener for Recorder {
    fn on_revoked(
        &mut self,
        consumer: &mut Consumer,
        partitions: &BTreeSet<TopicPartition>,
    ) -> annal::consumer::Result<()> {
        self.0.lock().unwrap().push(format!("{} revoked {}", consumer.member_id(), partitions.len()));
        Ok(())
    }

    fn on_assigned(
        &mut self,
        consumer: &mut Consumer,
        partitions: &BTreeSet<TopicPartition>,
    ) -> annal::consumer::Result<()> {
        self.0.lock().unwrap().push(format!("{} assigned {}", consumer.member_id(), partitions.len()));
        Ok(())
    }
}

#[test]
fn two_consumers_split_the_partitions_and_read_each_record_once() {
    let (_dir, _store, groups) = setup(4, 25);
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = ConsumerConfig::new("g", ["orders"]).with_offset_reset(OffsetReset::Earliest);
    let mut a = Consumer::new(Arc::clone(&groups), config.clone()).unwrap();
    a.set_listener(Box::new(Recorder(Arc::clone(&events))));
    let mut seen: Vec<(u32, u64)> =
        a.poll(30, Duration::from_secs(1)).unwrap().iter().map(|r| (r.partition, r.record.offset)).collect();
    let mut b = Consumer::new(Arc::clone(&groups), config).unwrap();
    b.set_listener(Box::new(Recorder(Arc::clone(&events))));
    // Alternate until both have their share and everything is read.
    for _ in 0..50 {
        for c in [&mut a, &mut b] {
            seen.extend(c.poll(10, Duration::from_millis(10)).unwrap().iter().map(|r| (r.partition, r.record.offset)));
        }
        if seen.len() >= 100 && !a.assignment().is_empty() && !b.assignment().is_empty() {
            break;
        }
    }
    let distinct: BTreeSet<(u32, u64)> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 100, "every record");
    assert_eq!(seen.len(), 100, "none twice: a committed what it read before giving partitions up");
    assert_eq!(a.assignment().len() + b.assignment().len(), 4);
    assert!(a.assignment().is_disjoint(&b.assignment()));
    let log = events.lock().unwrap().clone();
    assert!(
        log.iter().any(|e| e.contains("revoked")) && log.iter().filter(|e| e.contains("assigned")).count() >= 2,
        "{log:?}"
    );
}

mod protocol_model {
    //! The group protocol against a simple model: members join, leave,
    //! heartbeat (releasing what they are asked to), go silent past their
    //! session, and commit with the generation they know or an older one.
    //! Commits succeed exactly when the model says the member is alive and
    //! owns the partition; no partition ever has two owners; and once every
    //! live member has heartbeated to a fixpoint, every partition has exactly
    //! one live owner.

    use super::*;
    use proptest::prelude::*;

    const PARTITIONS: u32 = 5;
    const SESSION_MS: i64 = 10_000;

    #[derive(Debug, Clone)]
    enum Op {
        Join(usize),
        Leave(usize),
        Beat(usize),
        Commit(usize, u32),
        StaleCommit(usize, u32),
        Wait(i64),
        Settle,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..4usize).prop_map(Op::Join),
            1 => (0..4usize).prop_map(Op::Leave),
            4 => (0..4usize).prop_map(Op::Beat),
            3 => (0..4usize, 0..PARTITIONS).prop_map(|(m, p)| Op::Commit(m, p)),
            1 => (0..4usize, 0..PARTITIONS).prop_map(|(m, p)| Op::StaleCommit(m, p)),
            1 => (1..12_000i64).prop_map(Op::Wait),
            1 => Just(Op::Settle),
        ]
    }

    #[derive(Debug, Default, Clone)]
    struct Slot {
        id: Option<String>,
        last_seen: i64,
        generation: u32,
        owned: BTreeSet<TopicPartition>,
    }

    fn run(assignor: Assignor, ops: Vec<Op>) {
        let (_dir, _store, groups) = setup(PARTITIONS, 3);
        let config = MemberConfig::new(["orders"])
            .with_assignor(assignor)
            .with_session_timeout(Duration::from_millis(SESSION_MS as u64));
        let mut slots = vec![Slot::default(); 4];
        let mut now = T0;
        // Members silent past their session are gone at the next call.
        let expire = |slots: &mut Vec<Slot>, now: i64| {
            for s in slots.iter_mut() {
                if s.id.is_some() && now - s.last_seen > SESSION_MS {
                    *s = Slot::default();
                }
            }
        };
        let beat = |groups: &ConsumerGroups, s: &mut Slot, now: i64| {
            let id = s.id.clone().expect("a member");
            let hb = groups.heartbeat_at("g", &id, now).unwrap();
            s.last_seen = now;
            s.generation = hb.generation;
            if !hb.revoke.is_empty() {
                groups.release("g", &id, &hb.revoke).unwrap();
            }
            s.owned = hb.owned.difference(&hb.revoke).cloned().collect();
        };
        for op in ops {
            match op {
                Op::Wait(ms) => {
                    now += ms;
                    continue;
                }
                Op::Join(i) => {
                    expire(&mut slots, now);
                    if slots[i].id.is_none() {
                        let id = groups.join_at("g", &config, now).unwrap();
                        slots[i] = Slot { id: Some(id), last_seen: now, ..Slot::default() };
                    }
                }
                Op::Leave(i) => {
                    expire(&mut slots, now);
                    if let Some(id) = slots[i].id.take() {
                        groups.leave_at("g", &id, now).unwrap();
                        slots[i] = Slot::default();
                    }
                }
                Op::Beat(i) => {
                    expire(&mut slots, now);
                    if slots[i].id.is_some() {
                        beat(&groups, &mut slots[i], now);
                    }
                }
                Op::Commit(i, p) | Op::StaleCommit(i, p) => {
                    expire(&mut slots, now);
                    let Some(id) = slots[i].id.clone() else { continue };
                    let stale = matches!(op, Op::StaleCommit(..));
                    let generation = if stale { slots[i].generation.wrapping_sub(1) } else { slots[i].generation };
                    let tp = TopicPartition::new("orders", p);
                    let result =
                        groups.commit_at("g", Some((&id, generation)), &[OffsetCommit::new("orders", p, 0)], now);
                    let owns = slots[i].owned.contains(&tp);
                    assert_eq!(
                        result.is_ok(),
                        owns && !stale,
                        "{op:?} by {id} owning {:?}: {result:?}",
                        slots[i].owned
                    );
                }
                Op::Settle => {
                    expire(&mut slots, now);
                    for _ in 0..8 {
                        for s in slots.iter_mut().filter(|s| s.id.is_some()) {
                            beat(&groups, s, now);
                        }
                    }
                    let live: Vec<&Slot> = slots.iter().filter(|s| s.id.is_some()).collect();
                    if !live.is_empty() {
                        let mut seen = BTreeSet::new();
                        for s in &live {
                            for tp in &s.owned {
                                assert!(seen.insert(tp.clone()), "{tp} owned twice: {slots:?}");
                            }
                        }
                        assert_eq!(seen, all_partitions(PARTITIONS), "after settling: {slots:?}");
                    }
                }
            }
            // Never two owners, whatever the state.
            let mut seen = BTreeSet::new();
            for m in groups.describe("g").unwrap() {
                for tp in m.owned {
                    assert!(seen.insert(tp.clone()), "{tp} owned twice");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn the_group_protocol_behaves_as_its_model(ops in proptest::collection::vec(op(), 1..60), which in 0..3usize) {
            let assignor = [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky][which];
            run(assignor, ops);
        }
    }
}

mod idempotent_producer {
    use super::*;
    use annal::consumer::{Producers, REMEMBERED_BATCHES};

    fn records(values: &[&'static str]) -> Vec<Record<'static>> {
        values.iter().map(|v| Record::new(v.as_bytes())).collect()
    }

    fn end(store: &TopicStore, p: u32) -> u64 {
        store.topic("orders").unwrap().next_offset(p).unwrap()
    }

    #[test]
    fn retries_duplicated_and_reordered_return_the_original_offsets_across_restarts() {
        let (dir, store, _groups) = setup(2, 0);
        drop(_groups);
        let producers = Arc::new(Producers::new(Arc::clone(&store)));
        let p = producers.producer(7, 1);
        let a = p.send_batch("orders", 0, &records(&["a0", "a1", "a2"])).unwrap();
        let b = p.send_batch("orders", 0, &records(&["b0", "b1"])).unwrap();
        let c = p.send_batch("orders", 0, &records(&["c0"])).unwrap();
        assert_eq!((a.clone(), b.clone(), c.clone()), (0..3, 3..5, 5..6));
        // Retries, in any order, write nothing and answer as the first time.
        assert_eq!(p.send_batch_at("orders", 0, 3, &records(&["b0", "b1"])).unwrap(), b);
        assert_eq!(p.send_batch_at("orders", 0, 0, &records(&["a0", "a1", "a2"])).unwrap(), a);
        assert_eq!(p.send_batch_at("orders", 0, 5, &records(&["c0"])).unwrap(), c);
        assert_eq!(end(&store, 0), 6);
        // A gap, a wrong length, an empty batch: refused, nothing written.
        let e = p.send_batch_at("orders", 0, 9, &records(&["x"])).unwrap_err();
        assert!(matches!(e, Error::SequenceGap { expected: 6, got: 9, .. }), "{e:?}");
        let e = p.send_batch_at("orders", 0, 3, &records(&["b0"])).unwrap_err();
        assert!(matches!(e, Error::SequenceMismatch { .. }), "{e:?}");
        assert!(p.send_batch_at("orders", 0, 6, &[]).is_err());
        assert_eq!(end(&store, 0), 6);
        // Sequences are per partition.
        assert_eq!(p.send_batch("orders", 1, &records(&["p1"])).unwrap(), 0..1);

        // A restart of the store: the state comes back from the records.
        drop((p, producers));
        Arc::try_unwrap(store).unwrap().close().unwrap();
        let store = Arc::new(TopicStore::open(dir.path(), cfg()).unwrap());
        let producers = Arc::new(Producers::new(Arc::clone(&store)));
        let p = producers.producer(7, 1);
        assert_eq!(p.send_batch_at("orders", 0, 3, &records(&["b0", "b1"])).unwrap(), b);
        assert_eq!(p.next_sequence("orders", 0).unwrap(), 6);
        assert_eq!(p.send_batch("orders", 0, &records(&["d0"])).unwrap(), 6..7);
        assert_eq!(end(&store, 0), 7);
        // Only the last batches are remembered.
        for i in 0..REMEMBERED_BATCHES {
            p.send_batch("orders", 0, &records(&["e"])).unwrap();
            let _ = i;
        }
        let e = p.send_batch_at("orders", 0, 3, &records(&["b0", "b1"])).unwrap_err();
        assert!(matches!(e, Error::SequenceMismatch { .. }) && e.to_string().contains("older"), "{e}");

        // A new epoch fences the old one and starts its sequences at 0.
        let newer = producers.producer(7, 2);
        assert_eq!(newer.next_sequence("orders", 0).unwrap(), 0);
        let n = newer.send_batch("orders", 0, &records(&["n0"])).unwrap();
        let e = p.send_batch("orders", 0, &records(&["zombie"])).unwrap_err();
        assert!(matches!(e, Error::ProducerFenced { epoch: 1, current: 2, .. }), "{e:?}");
        assert_eq!(end(&store, 0), n.end);
        // Another producer id has sequences of its own.
        let other = producers.producer(8, 0);
        assert_eq!(other.send_batch("orders", 0, &records(&["o"])).unwrap(), n.end..n.end + 1);
        // The user's headers stay on the record, after the producer's.
        let h = [annal::Header { name: "trace", value: b"t1" }];
        let at = other.send_batch("orders", 1, &[Record::new(b"h").with_headers(&h)]).unwrap();
        let r = store.topic("orders").unwrap().partition(1).unwrap().get(at.start).unwrap();
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["annal.producer", "trace"]);
    }
}

/// Three consumers in threads join one group one after another while
/// records keep coming: every record is read exactly once (what a consumer
/// read is committed before its partitions move), whatever the assignor.
#[test]
fn consumers_in_threads_read_every_record_once_across_rebalances() {
    for assignor in [Assignor::Range, Assignor::CooperativeSticky] {
        let (_dir, store, groups) = setup(6, 0);
        let total = 600u64;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::scope(|scope| {
            let topic = store.topic("orders").unwrap();
            scope.spawn(move || {
                for i in 0..total {
                    topic.send_to((i % 6) as u32, &Record::new(&i.to_le_bytes())).unwrap();
                }
            });
            for _ in 0..3 {
                let (groups, seen, done) = (Arc::clone(&groups), Arc::clone(&seen), Arc::clone(&done));
                scope.spawn(move || {
                    let config = ConsumerConfig::new("g", ["orders"])
                        .with_assignor(assignor)
                        .with_offset_reset(OffsetReset::Earliest)
                        .with_auto_commit(Some(Duration::from_millis(1)));
                    let mut c = Consumer::new(groups, config).unwrap();
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        let polled = c.poll(20, Duration::from_millis(5)).unwrap();
                        let mut seen = seen.lock().unwrap();
                        seen.extend(
                            polled
                                .iter()
                                .map(|r| u64::from_le_bytes(r.record.value.clone().unwrap().try_into().unwrap())),
                        );
                        if seen.len() as u64 >= total {
                            done.store(true, std::sync::atomic::Ordering::Release);
                        }
                    }
                    c.close().unwrap();
                });
            }
        });
        let mut seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!((seen.len() as u64, n as u64), (total, total), "{assignor:?}: every record once");
    }
}

mod review_fixes {
    use super::*;
    use annal::consumer::Producers;

    struct FailingRevoke;

    impl RebalanceListener for FailingRevoke {
        fn on_revoked(&mut self, _: &mut Consumer, _: &BTreeSet<TopicPartition>) -> annal::consumer::Result<()> {
            Err(Error::Invalid("the application could not save its state".into()))
        }
    }

    /// A failed revocation (here the listener's) is reported, and the
    /// partitions go to their new owner all the same.
    #[test]
    fn partitions_move_on_even_when_their_revocation_fails() {
        let (_dir, _store, groups) = setup(4, 5);
        let config = ConsumerConfig::new("g", ["orders"]).with_offset_reset(OffsetReset::Earliest);
        let mut a = Consumer::new(Arc::clone(&groups), config.clone()).unwrap();
        a.set_listener(Box::new(FailingRevoke));
        assert_eq!(drain(&mut a, 20).len(), 20);
        let mut b = Consumer::new(Arc::clone(&groups), config).unwrap();
        b.poll(10, Duration::ZERO).unwrap();
        let e = a.poll(10, Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("could not save"), "{e}");
        for _ in 0..4 {
            let _ = a.poll(10, Duration::ZERO);
            b.poll(10, Duration::ZERO).unwrap();
        }
        assert_eq!(a.assignment().len() + b.assignment().len(), 4, "{:?} {:?}", a.assignment(), b.assignment());
        assert!(!b.assignment().is_empty());
    }

    /// A second live instance with the same static id fences the first.
    #[test]
    fn a_duplicate_static_instance_fences_the_older_one() {
        let (_dir, _store, groups) = setup(2, 1);
        let config = MemberConfig::new(["orders"]).with_instance_id("host-a");
        let old = groups.join_at("g", &config, T0).unwrap();
        let owned = settle(&groups, "g", std::slice::from_ref(&old), T0);
        let new = groups.join_at("g", &config, T0 + 1).unwrap();
        assert_ne!(old, new);
        assert!(matches!(groups.heartbeat_at("g", &old, T0 + 2), Err(Error::UnknownMember { .. })));
        assert_eq!(groups.heartbeat_at("g", &new, T0 + 2).unwrap().owned, owned[&old]);
        groups.leave_at("g", &old, T0 + 3).unwrap();
        assert_eq!(groups.live_members_at("g", T0 + 3), 1, "the old handle's leave changes nothing");
    }

    #[test]
    fn resets_to_current_and_shifts_follow_kafka_without_a_committed_offset() {
        let (_dir, _store, groups) = setup(2, 10);
        groups.commit("g", &[OffsetCommit::new("orders", 0, 4)]).unwrap();
        let all = ResetScope::Topics(vec![("orders".into(), None)]);
        let rows = groups.plan_reset("g", &ResetTarget::Current, &all).unwrap().rows;
        assert_eq!(rows.iter().map(|r| r.new_offset).collect::<Vec<_>>(), [4, 10], "the end where none");
        let e = groups.plan_reset("g", &ResetTarget::ShiftBy(1), &all).unwrap_err();
        assert!(e.to_string().contains("no committed offset"), "{e}");
    }

    /// Producers sending to a partition for the first time at once: the
    /// state each rebuilds is not lost, so every retry is recognised.
    #[test]
    fn first_sends_from_many_threads_keep_every_producer_state() {
        for _ in 0..20 {
            let (_dir, store, _groups) = setup(1, 0);
            let producers = Arc::new(Producers::new(Arc::clone(&store)));
            let written: Vec<(u64, std::ops::Range<u64>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..6u64)
                    .map(|id| {
                        let producers = Arc::clone(&producers);
                        scope.spawn(move || {
                            let p = producers.producer(id, 0);
                            (id, p.send_batch("orders", 0, &[Record::new(b"a"), Record::new(b"b")]).unwrap())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (id, offsets) in written {
                let p = producers.producer(id, 0);
                assert_eq!(p.send_batch_at("orders", 0, 0, &[Record::new(b"a"), Record::new(b"b")]).unwrap(), offsets);
                assert_eq!(p.next_sequence("orders", 0).unwrap(), 2);
            }
            assert_eq!(store.topic("orders").unwrap().next_offset(0).unwrap(), 12, "no batch twice");
        }
    }
}
