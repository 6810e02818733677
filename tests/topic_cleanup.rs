//! The store's cleanup passes over topics: compaction of compacted topics
//! (checked against a model), tombstone expiry, the background thread, and
//! each topic's own archive policy.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal::ArchivePolicy;
use annal::{
    CleanupPolicy, Durability, Error, LocalDirArchive, LogConfig, OwnedRecord, Record, Topic, TopicConfig, TopicStore,
    TopicStoreConfig,
};
use common::{Rng, fast_tempdir};

fn cfg() -> TopicStoreConfig {
    TopicStoreConfig::default()
        .with_log_config(LogConfig::default().with_durability(Durability::Never).with_index_interval_bytes(256))
}

/// A compacted topic of `n` partitions with 4 KiB segments, tombstones kept one minute.
fn compacted(n: u32) -> TopicConfig {
    TopicConfig::default()
        .with_partitions(n)
        .with_segment_bytes(4096)
        .with_cleanup_policy(CleanupPolicy::Compact)
        .with_tombstone_retention(Duration::from_secs(60))
}

fn read_partition(topic: &Topic, p: u32) -> Vec<OwnedRecord> {
    let start = topic.start_offset(p).unwrap();
    topic.read_from(p, start).unwrap().collect::<annal::Result<Vec<_>>>().unwrap()
}

/// Offsets of partition `p` that lie in its sealed segments (below the active one's base).
fn sealed_end(topic: &Topic, p: u32) -> u64 {
    let log = topic.partition(p).unwrap();
    log.segments().iter().filter(|s| s.sealed).map(|s| s.next_offset).max().unwrap_or(0)
}

/// One record sent: (offset, key, value; `None` for a tombstone).
type SentRecord = (u64, Vec<u8>, Option<Vec<u8>>);
/// Every record sent to each partition, in offset order.
type Sent = BTreeMap<u32, Vec<SentRecord>>;

/// Sends `ops` random keyed records and tombstones (timestamped `ts`) over
/// `keys` keys, and returns what went where.
fn send_random(topic: &Topic, rng: &mut Rng, ops: usize, keys: u64, ts: i64) -> Sent {
    let mut sent = Sent::new();
    for i in 0..ops {
        let key = format!("key-{}", rng.range(0, keys)).into_bytes();
        let value = (rng.range(0, 10) != 0).then(|| format!("value-{i}-{}", "x".repeat(rng.range(0, 80) as usize)));
        let record = match &value {
            Some(v) => Record::new(v.as_bytes()).with_key(&key),
            None => Record::tombstone(&key),
        };
        let (p, offset) = topic.send(&record.with_timestamp(ts)).unwrap();
        sent.entry(p).or_default().push((offset, key, value.map(String::into_bytes)));
    }
    sent
}

/// What compaction must leave of partition `p`'s `records`: in the sealed
/// range, the latest record of each key, without tombstones if `tombstones_expired`;
/// everything past `sealed_end`.
fn model(records: &[SentRecord], sealed_end: u64, tombstones_expired: bool) -> Vec<u64> {
    let mut latest: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (offset, key, _) in records.iter().filter(|r| r.0 < sealed_end) {
        latest.insert(key, *offset);
    }
    records
        .iter()
        .filter(|(offset, key, value)| {
            *offset >= sealed_end || (latest[key.as_slice()] == *offset && !(value.is_none() && tombstones_expired))
        })
        .map(|r| r.0)
        .collect()
}

#[test]
fn compaction_pass_keeps_exactly_the_latest_value_per_key_in_every_partition() {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let topic = store.create_topic("state", compacted(3)).unwrap();
    let other =
        store.create_topic("events", TopicConfig::default().with_partitions(2).with_segment_bytes(4096)).unwrap();
    for seed in [1u64, 2, 3] {
        let mut rng = Rng::new(seed);
        let now = 1_700_000_000_000 + seed as i64;
        let sent = send_random(&topic, &mut rng, 3_000, 40, now);
        for i in 0..300u32 {
            other.send(&Record::new(format!("e{i}").as_bytes()).with_key(b"same")).unwrap();
        }
        let before_events: Vec<_> = (0..2).map(|p| read_partition(&other, p)).collect();

        // Tombstones are young: kept.
        let report = store.run_compaction_at(now + 1_000, None, &mut |_, _, _| {}).unwrap();
        assert!(report.is_ok(), "{:?}", report.failures);
        assert!(report.partitions.iter().all(|p| p.topic == "state"), "only the compacted topic is compacted");
        assert!(report.records_removed() > 0);
        for (&p, records) in &sent {
            let all = read_partition(&topic, p);
            let end = sealed_end(&topic, p);
            // Earlier seeds' records are in the partition too: compare from this round's first offset.
            let first = records[0].0;
            let got: Vec<u64> = all.iter().map(|r| r.offset).filter(|o| *o >= first).collect();
            assert_eq!(got, model(records, end, false), "seed {seed} partition {p}");
            // The values read back are the ones sent at those offsets.
            for r in all.iter().filter(|r| r.offset >= first) {
                let (_, key, value) = records.iter().find(|s| s.0 == r.offset).unwrap();
                assert_eq!((r.key.as_deref(), r.value.as_deref()), (Some(key.as_slice()), value.as_deref()));
            }
        }
        // The delete-policy topic is untouched.
        let after_events: Vec<_> = (0..2).map(|p| read_partition(&other, p)).collect();
        assert_eq!(before_events, after_events);

        // Past the tombstone retention: the latest tombstones go too (keys whose
        // older records all live in earlier rounds are covered by the same rule).
        let report = store.run_compaction_at(now + 61_000, Some("state"), &mut |_, _, _| {}).unwrap();
        assert!(report.is_ok());
        for (&p, records) in &sent {
            let end = sealed_end(&topic, p);
            let first = records[0].0;
            let got: Vec<u64> = read_partition(&topic, p).iter().map(|r| r.offset).filter(|o| *o >= first).collect();
            assert_eq!(got, model(records, end, true), "seed {seed} partition {p} after tombstone expiry");
        }
    }
    drop((topic, other));
    store.close().unwrap();
}

#[test]
fn a_tombstoned_key_disappears_after_its_delay_and_passes_skip_unchanged_partitions() {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let topic = store.create_topic("users", compacted(1)).unwrap();
    let t0 = 1_700_000_000_000;
    topic.send(&Record::new(b"alice v1").with_key(b"alice").with_timestamp(t0)).unwrap();
    topic.send(&Record::new(b"bob v1").with_key(b"bob").with_timestamp(t0)).unwrap();
    topic.send(&Record::tombstone(b"alice").with_timestamp(t0 + 10)).unwrap();
    // Filler that rolls the segment holding the above, so they are sealed.
    let filler = vec![b'f'; 500];
    for i in 0..20u32 {
        topic.send(&Record::new(&filler).with_key(format!("filler-{i}").as_bytes()).with_timestamp(t0)).unwrap();
    }
    let log = topic.partition(0).unwrap();
    assert!(sealed_end(&topic, 0) > 2, "the tombstone is in a sealed segment");
    let keys = |topic: &Topic| -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        read_partition(topic, 0)
            .into_iter()
            .filter(|r| !r.key.as_ref().unwrap().starts_with(b"filler"))
            .map(|r| (r.key.unwrap(), r.value))
            .collect()
    };

    // Within the delay: alice's value is gone, her tombstone stays.
    assert!(log.compaction_due_at(t0 + 1_000));
    let report = store.run_compaction_at(t0 + 1_000, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.partitions.len(), 1);
    assert_eq!(report.partitions[0].outcome.records_removed, 1);
    assert_eq!(keys(&topic), vec![(b"bob".to_vec(), Some(b"bob v1".to_vec())), (b"alice".to_vec(), None)]);
    assert!(matches!(log.get(0), Err(Error::Compacted { .. })), "offset 0 is a gap now");

    // Nothing new sealed and no tombstone expired: the pass leaves the partition alone.
    assert!(!log.compaction_due_at(t0 + 2_000));
    let report = store.run_compaction_at(t0 + 2_000, None, &mut |_, _, _| {}).unwrap();
    assert!(report.partitions.is_empty(), "{:?}", report.partitions);

    // Once the tombstone is older than the retention it is due, and goes.
    assert!(!log.compaction_due_at(t0 + 10 + 60_000), "a tombstone goes once older than the retention, not at it");
    assert!(log.compaction_due_at(t0 + 10 + 60_001));
    let report = store.run_compaction_at(t0 + 10 + 60_001, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.partitions[0].outcome.tombstones_removed, 1);
    assert_eq!(keys(&topic), vec![(b"bob".to_vec(), Some(b"bob v1".to_vec()))]);
    assert!(!log.compaction_due_at(t0 + 10 + 120_000));

    // After a reopen alice is still gone, and the first pass runs again (nothing to do).
    drop((log, topic));
    store.close().unwrap();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let topic = store.topic("users").unwrap();
    assert_eq!(keys(&topic), vec![(b"bob".to_vec(), Some(b"bob v1".to_vec()))]);
    let report = store.run_compaction_at(t0 + 10 + 120_000, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.records_removed(), 0);
    drop(topic);
    store.close().unwrap();
}

#[test]
fn compaction_refuses_delete_topics_and_reports_unknown_ones() {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let events = store.create_topic("events", TopicConfig::default().with_segment_bytes(4096)).unwrap();
    for _ in 0..50 {
        events.send(&Record::new(&[7; 200]).with_key(b"k")).unwrap();
    }
    let before = read_partition(&events, 0);
    let err = events.compact_at(annal_now()).unwrap_err();
    assert!(matches!(&err, Error::InvalidConfig(m) if m.contains("\"events\"") && m.contains("delete")), "{err}");
    let err = store.run_compaction_at(annal_now(), Some("events"), &mut |_, _, _| {}).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let err = store.run_compaction_at(annal_now(), Some("nope"), &mut |_, _, _| {}).unwrap_err();
    assert!(matches!(&err, Error::UnknownTopic { topic } if topic == "nope"), "{err}");
    assert_eq!(read_partition(&events, 0), before, "nothing was dropped");
    let report = store.run_compaction().unwrap();
    assert!(report.partitions.is_empty() && report.is_ok());
    assert_eq!(read_partition(&events, 0), before);
    drop(events);
    store.close().unwrap();
    // A read-only store refuses.
    let ro = TopicStore::open_read_only(dir.path(), cfg()).unwrap();
    assert!(matches!(ro.run_compaction(), Err(Error::ReadOnly { .. })));
}

fn annal_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn the_background_thread_compacts_compacted_topics() {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg().with_retention_interval(Duration::from_millis(20))).unwrap();
    let topic = store.create_topic("state", compacted(2)).unwrap();
    let value = vec![b'v'; 300];
    for _ in 0..40 {
        for k in 0..5u32 {
            topic.send(&Record::new(&value).with_key(format!("k{k}").as_bytes())).unwrap();
        }
    }
    // Wait until some partition holds fewer records than its offset range:
    // that only grows, while the latest report may be of a later pass that
    // found nothing new to compact (a pass may even run during the sends).
    let compacted_somewhere = || {
        (0..2).any(|p| {
            let info = topic.partition_info(p).unwrap();
            info.records < info.next_offset - info.start_offset
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !compacted_somewhere() {
        assert!(Instant::now() < deadline, "the background thread compacted nothing in 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.last_compaction().is_none() {
        assert!(Instant::now() < deadline, "the background thread kept no report");
        std::thread::sleep(Duration::from_millis(10));
    }
    let last = store.last_compaction().unwrap();
    assert!(last.is_ok(), "{:?}", last.failures);
    // Every key still reads back with its latest value.
    let mut latest = BTreeMap::new();
    for p in 0..2 {
        for r in read_partition(&topic, p) {
            latest.insert(r.key.unwrap(), r.value.unwrap());
        }
    }
    assert_eq!(latest.len(), 5);
    assert!(latest.values().all(|v| *v == value));
    drop(topic);
    store.close().unwrap();
}

#[test]
fn each_topic_follows_its_own_archive_policy_and_it_survives_reopen() {
    let dir = fast_tempdir();
    let arch = fast_tempdir();
    let archive = Arc::new(LocalDirArchive::open(arch.path()).unwrap());
    // The store's default archives nothing.
    let config = || cfg().with_archive(archive.clone(), ArchivePolicy::default());
    let store = TopicStore::open(dir.path(), config()).unwrap();
    let base = TopicConfig::default().with_segment_bytes(4096);
    let own = store.create_topic("own", base.with_archive(ArchivePolicy::everything_sealed())).unwrap();
    let default = store.create_topic("default", base).unwrap();
    let value = vec![b'a'; 400];
    for t in [&own, &default] {
        for _ in 0..60 {
            t.send(&Record::new(&value)).unwrap();
        }
    }
    assert_eq!(own.archive_policy().unwrap(), Some(ArchivePolicy::everything_sealed()));
    assert_eq!(default.archive_policy().unwrap(), None);
    let report = store.run_archival().unwrap();
    assert!(report.is_ok());
    assert!(report.segments_archived() > 0);
    assert!(report.partitions.iter().all(|p| p.topic == "own"), "only the topic with a policy is archived");
    assert!(default.archived_segments().unwrap().is_empty());
    let archived = own.archived_segments().unwrap().len();
    assert!(archived > 0);
    // Archived offsets still read back.
    assert_eq!(read_partition(&own, 0).len(), 60);
    drop((own, default));
    store.close().unwrap();

    // Reopened with a default that archives everything: "own" keeps its
    // policy, "default" follows the store now, and "never" opts out.
    let store =
        TopicStore::open(dir.path(), cfg().with_archive(archive.clone(), ArchivePolicy::everything_sealed())).unwrap();
    let never = store.create_topic("never", base.with_archive(ArchivePolicy::default())).unwrap();
    for _ in 0..60 {
        never.send(&Record::new(&value)).unwrap();
    }
    assert_eq!(store.topic("own").unwrap().archive_policy().unwrap(), Some(ArchivePolicy::everything_sealed()));
    let backlog = store.archival_backlog_at(annal_now(), Some("never"), None).unwrap();
    assert!(backlog.is_empty());
    let report = store.run_archival().unwrap();
    assert!(report.is_ok());
    assert!(report.partitions.iter().any(|p| p.topic == "default" && p.outcome.segments_archived > 0));
    assert!(report.partitions.iter().all(|p| p.topic != "never"));
    assert!(never.archived_segments().unwrap().is_empty());
    // An explicit policy overrides every topic's own, "never" included.
    let report = store
        .run_archival_at(annal_now(), Some("never"), Some(&ArchivePolicy::everything_sealed()), &mut |_, _, _| {})
        .unwrap();
    assert!(report.segments_archived() > 0);
    for name in ["own", "default", "never"] {
        assert_eq!(read_partition(&store.topic(name).unwrap(), 0).len(), 60, "{name}");
    }
    drop(never);
    store.close().unwrap();

    // Opened without an archive: the store takes up the one it recorded
    // (store.meta), and archived offsets still read back.
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let location = format!("file://{}", std::path::absolute(arch.path()).unwrap().display());
    assert_eq!(store.archive_location().unwrap(), Some(location));
    assert!(store.run_archival().unwrap().is_ok());
    assert_eq!(read_partition(&store.topic("own").unwrap(), 0).len(), 60);
    store.close().unwrap();

    // A store that never had an archive tier: archival is a typed error.
    let other = fast_tempdir();
    let store = TopicStore::open(other.path(), cfg()).unwrap();
    assert!(matches!(store.run_archival(), Err(Error::InvalidConfig(m)) if m.contains("no archive tier")));
    store.close().unwrap();
}
