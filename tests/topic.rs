//! Topics and partitions: the store's layout and topic.meta, partitioning,
//! reopening, concurrency, retention through the store, deletion, growth and
//! the errors for bad input and damaged metadata.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use annal::ArchivePolicy;
use annal::topic::{
    MAX_TOPIC_NAME_LEN, PartitionRetention, TOPIC_META_FILE_NAME, TopicMeta, fnv1a_64, partition_for_key,
    validate_topic_name,
};
use annal::{
    CleanupPolicy, Durability, Error, LogConfig, OwnedRecord, Record, Retention, Topic, TopicConfig, TopicStore,
    TopicStoreConfig,
};
use common::{FaultIo, fast_tempdir};
use tempfile::TempDir;

fn cfg() -> TopicStoreConfig {
    TopicStoreConfig::default()
        .with_log_config(LogConfig::default().with_durability(Durability::Never).with_index_interval_bytes(256))
}

/// A topic of `n` partitions with 4 KiB segments, so that a few records roll.
fn tiny(n: u32) -> TopicConfig {
    TopicConfig::default().with_partitions(n).with_segment_bytes(4096)
}

/// A store (`cfg()`) in a fresh directory with one topic: (directory, store, topic).
fn store_with_topic(name: &str, config: TopicConfig) -> (TempDir, TopicStore, Arc<Topic>) {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let topic = store.create_topic(name, config).unwrap();
    (dir, store, topic)
}

fn topic_dir(root: &Path, name: &str) -> PathBuf {
    root.join("topics").join(name)
}

fn meta_path(root: &Path, name: &str) -> PathBuf {
    topic_dir(root, name).join(TOPIC_META_FILE_NAME)
}

/// Every record of partition `p` from its start offset.
fn read_partition(topic: &Topic, p: u32) -> Vec<OwnedRecord> {
    let start = topic.start_offset(p).unwrap();
    topic.read_from(p, start).unwrap().collect::<annal::Result<Vec<_>>>().unwrap()
}

fn values(records: &[OwnedRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect()
}

/// Entries of `dir` whose name starts with `.`.
fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect()
}

const GOLDEN_META: [u8; 72] = [
    0x41, 0x4e, 0x4e, 0x41, 0x4c, 0x54, 0x4f, 0x50, // "ANNALTOP"
    0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, // version 1, flags 0, 3 partitions
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // compact, reserved
    0x00, 0x84, 0x0c, 0x24, 0x00, 0x00, 0x00, 0x00, // retention_ms 604_800_000
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // retention_bytes: none
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // segment_bytes 65_536
    0x00, 0x5c, 0x26, 0x05, 0x00, 0x00, 0x00, 0x00, // tombstone_retention_ms 86_400_000
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // created_ms 1_700_000_000_000
    0xca, 0x8b, 0xc9, 0x52, 0x00, 0x00, 0x00, 0x00, // CRC-32 of [0, 64), reserved
];

fn golden_meta() -> TopicMeta {
    TopicMeta {
        partitions: 3,
        cleanup_policy: CleanupPolicy::Compact,
        retention_ms: 604_800_000,
        retention_bytes: u64::MAX,
        segment_bytes: 65_536,
        tombstone_retention_ms: 86_400_000,
        created_ms: 1_700_000_000_000,
        archive_policy: None,
    }
}

/// Version 3: the small-file envelope around the fields (48 bytes, 64 with
/// an archive policy of its own).
fn golden_meta_v3_bytes(archive: Option<(u64, u64)>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&3u32.to_le_bytes()); // partitions
    body.extend_from_slice(&[1, 0, 0, 0]); // compact, reserved
    body.extend_from_slice(&GOLDEN_META[24..64]); // retention_ms .. created_ms, as in version 1
    if let Some((age, bytes)) = archive {
        body.extend_from_slice(&age.to_le_bytes());
        body.extend_from_slice(&bytes.to_le_bytes());
    }
    let mut b = b"ANNALTOP".to_vec();
    b.extend_from_slice(&3u16.to_le_bytes()); // version
    b.extend_from_slice(&0u16.to_le_bytes()); // flags
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(&body);
    let crc = crc32(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

#[test]
fn golden_topic_meta_v3() {
    let meta = golden_meta();
    let golden = golden_meta_v3_bytes(None);
    assert_eq!(golden.len(), 24 + 48);
    assert_eq!(meta.encode(), golden);
    assert_eq!(TopicMeta::decode(&golden), Ok(meta));
    let policy = ArchivePolicy::default().with_max_local_age(Duration::from_secs(3600)).with_max_local_bytes(1 << 30);
    let with_policy = TopicMeta { archive_policy: Some(policy), ..meta };
    let golden = golden_meta_v3_bytes(Some((3_600_000, 1 << 30)));
    assert_eq!(golden.len(), 24 + 64);
    assert_eq!(with_policy.encode(), golden);
    assert_eq!(TopicMeta::decode(&golden), Ok(with_policy));
    // "Never archive": both limits none.
    let never = TopicMeta { archive_policy: Some(ArchivePolicy::default()), ..meta };
    assert_eq!(never.encode(), golden_meta_v3_bytes(Some((u64::MAX, u64::MAX))));
    assert_eq!(TopicMeta::decode(&never.encode()), Ok(never));
    // Every single-bit flip and every truncation is refused.
    for golden in [golden_meta_v3_bytes(None), golden] {
        for bit in 0..golden.len() * 8 {
            let mut b = golden.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(TopicMeta::decode(&b).is_err(), "v3 topic.meta with bit {bit} flipped decoded");
        }
        for len in 0..golden.len() {
            assert!(TopicMeta::decode(&golden[..len]).is_err(), "v3 topic.meta cut to {len} bytes decoded");
        }
    }
}

/// Version 1, written before the envelope (and still what a topic without
/// its own archive policy was written as before version 3), is still read.
#[test]
fn golden_topic_meta_v1_is_still_read() {
    let meta = golden_meta();
    assert_eq!(TopicMeta::decode(&GOLDEN_META), Ok(meta));
    // The configuration round-trips through the stored fields.
    let config = meta.config();
    assert_eq!(config.partitions(), 3);
    assert_eq!(config.cleanup_policy(), CleanupPolicy::Compact);
    assert_eq!(config.retention(), Retention::default().with_max_age(Duration::from_secs(7 * 86_400)));
    assert_eq!(config.segment_bytes(), 65_536);
    assert_eq!(config.tombstone_retention(), Duration::from_secs(86_400));
    assert_eq!(TopicMeta::new(&config, 1_700_000_000_000), meta);
    // Every single-bit flip is refused, reserved bytes included.
    for bit in 0..72 * 8 {
        let mut b = GOLDEN_META;
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(TopicMeta::decode(&b).is_err(), "topic.meta with bit {bit} flipped decoded");
    }
    // Every truncation, an extension and zeros are refused.
    for len in 0..72 {
        assert!(TopicMeta::decode(&GOLDEN_META[..len]).is_err(), "topic.meta cut to {len} bytes decoded");
    }
    let mut longer = GOLDEN_META.to_vec();
    longer.push(0);
    assert!(TopicMeta::decode(&longer).is_err());
    assert!(TopicMeta::decode(&[0u8; 72]).is_err());
    // Well checksummed but out of range: zero partitions, an unknown policy, tiny segments.
    for (at, value) in [(12usize, 0u8), (16, 2), (42, 0)] {
        let mut b = GOLDEN_META;
        b[at] = value;
        let crc = crc32(&b[..64]);
        b[64..68].copy_from_slice(&crc.to_le_bytes());
        let err = TopicMeta::decode(&b).unwrap_err();
        assert!(!err.is_empty(), "byte {at} = {value}");
    }
}

/// Version 2: the golden topic with its own archive policy (one hour, 1 GiB).
fn golden_meta_v2_bytes() -> Vec<u8> {
    let mut b = GOLDEN_META[..64].to_vec();
    b[8] = 2; // version 2
    b.extend_from_slice(&3_600_000u64.to_le_bytes()); // archive_max_local_age_ms
    b.extend_from_slice(&(1u64 << 30).to_le_bytes()); // archive_max_local_bytes
    let crc = crc32(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&[0; 4]); // reserved
    b
}

#[test]
fn golden_topic_meta_v2_with_an_archive_policy_is_still_read() {
    let policy = ArchivePolicy::default().with_max_local_age(Duration::from_secs(3600)).with_max_local_bytes(1 << 30);
    let meta = TopicMeta { archive_policy: Some(policy), ..golden_meta() };
    let golden = golden_meta_v2_bytes();
    assert_eq!(golden.len(), 88);
    assert_eq!(golden[80..84], [0x34, 0x3c, 0x0e, 0x60], "pinned CRC of the v2 golden bytes");
    assert_eq!(TopicMeta::decode(&golden), Ok(meta));
    // The policy goes through TopicConfig and back.
    let config = meta.config();
    assert_eq!(config.archive_policy(), Some(policy));
    assert_eq!(TopicMeta::new(&config, 1_700_000_000_000), meta);
    // Every single-bit flip and every truncation is refused.
    for bit in 0..88 * 8 {
        let mut b = golden.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(TopicMeta::decode(&b).is_err(), "v2 topic.meta with bit {bit} flipped decoded");
    }
    for len in 0..88 {
        assert!(TopicMeta::decode(&golden[..len]).is_err(), "v2 topic.meta cut to {len} bytes decoded");
    }
    // A v1 file claiming version 2, and a v2 file claiming version 1, are refused.
    let mut b = GOLDEN_META;
    b[8] = 2;
    assert!(TopicMeta::decode(&b).unwrap_err().contains("88"));
    let mut b = golden.clone();
    b[8] = 1;
    assert!(TopicMeta::decode(&b).unwrap_err().contains("72"));
}

/// CRC-32 (IEEE), bit by bit: independent of the crate's implementation.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn fnv1a_and_key_partitions_are_pinned() {
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(fnv1a_64(b"order-17"), 0x7d2e_e886_a064_d0ee);
    for (key, p4, p7) in [
        (&b"user-1"[..], 0, 6),
        (b"user-2", 1, 1),
        (b"user-3", 2, 5),
        (b"key-0", 1, 6),
        (b"key-1", 2, 3),
        (b"key-2", 3, 0),
        (b"order-17", 2, 1),
        (b"", 1, 2),
    ] {
        assert_eq!(partition_for_key(key, 4), p4, "{key:?} % 4");
        assert_eq!(partition_for_key(key, 7), p7, "{key:?} % 7");
    }
    assert_eq!(partition_for_key(b"anything", 1), 0);
}

#[test]
fn handles_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<TopicStore>();
    send_sync::<Topic>();
    send_sync::<Arc<Topic>>();
    send_sync::<TopicStoreConfig>();
    send_sync::<annal::RetentionReport>();
}

#[test]
fn create_list_describe_delete() {
    let dir = fast_tempdir();
    let root = dir.path().join("store");
    let store = TopicStore::open(&root, cfg()).unwrap();
    assert!(root.join("store.lock").is_file());
    assert!(store.topics().is_empty());
    let age = Duration::from_secs(3600);
    let config = tiny(3).with_retention(Retention::default().with_max_age(age).with_max_bytes(1 << 20));
    let orders = store.create_topic("orders", config).unwrap();
    let audit =
        store.create_topic("audit.log_v2", TopicConfig::default().with_cleanup_policy(CleanupPolicy::Compact)).unwrap();
    assert_eq!(store.topics(), ["audit.log_v2", "orders"]);

    // Layout: topic.meta and one log directory per partition, 5 digits.
    for p in ["00000", "00001", "00002"] {
        assert!(topic_dir(&root, "orders").join(p).join("annal.lock").is_file(), "{p}");
    }
    assert!(!topic_dir(&root, "orders").join("00003").exists());
    assert_eq!(std::fs::read(meta_path(&root, "orders")).unwrap().len(), 72);
    assert!(hidden_entries(&root.join("topics")).is_empty());

    // Describe.
    assert_eq!((orders.name(), orders.partitions()), ("orders", 3));
    assert_eq!(orders.config().unwrap(), config);
    let meta = orders.meta().unwrap();
    assert_eq!((meta.retention_ms, meta.retention_bytes, meta.segment_bytes), (3_600_000, 1 << 20, 4096));
    assert!(meta.created_ms > 1_600_000_000_000);
    assert_eq!(audit.config().unwrap().cleanup_policy(), CleanupPolicy::Compact);
    assert_eq!(audit.partitions(), 1);
    for p in 0..3 {
        let info = orders.partition_info(p).unwrap();
        assert_eq!((info.partition, info.start_offset, info.next_offset, info.data_bytes), (p, 0, 0, 0));
    }
    assert!(Arc::ptr_eq(&store.topic("orders").unwrap(), &orders));

    // Creating it again is refused; so is a config out of range.
    assert!(matches!(store.create_topic("orders", tiny(1)), Err(Error::TopicExists { topic }) if topic == "orders"));
    assert!(matches!(store.create_topic("x", tiny(0)), Err(Error::InvalidConfig(_))));
    assert!(matches!(store.create_topic("x", tiny(1).with_segment_bytes(100)), Err(Error::InvalidConfig(_))));
    assert!(matches!(store.create_topic("x", tiny(100_001)), Err(Error::InvalidConfig(_))));
    assert_eq!(store.topics().len(), 2);

    // Delete: the handle still held refuses everything, the name is free again.
    orders.send(&Record::new(b"before")).unwrap();
    store.delete_topic("orders").unwrap();
    assert_eq!(store.topics(), ["audit.log_v2"]);
    assert!(!topic_dir(&root, "orders").exists());
    assert!(hidden_entries(&root.join("topics")).is_empty(), "no tombstone left");
    assert!(matches!(orders.send(&Record::new(b"after")), Err(Error::UnknownTopic { topic }) if topic == "orders"));
    assert!(matches!(orders.send_to(0, &Record::new(b"after")), Err(Error::UnknownTopic { .. })));
    assert!(matches!(orders.read_from(0, 0), Err(Error::UnknownTopic { .. })));
    assert!(matches!(orders.delete_before(0, 0), Err(Error::UnknownTopic { .. })));
    assert_eq!(orders.partitions(), 0);
    assert!(matches!(store.topic("orders"), Err(Error::UnknownTopic { .. })));
    assert!(matches!(store.delete_topic("orders"), Err(Error::UnknownTopic { .. })));
    let again = store.create_topic("orders", tiny(2)).unwrap();
    assert_eq!((again.partitions(), again.next_offset(0).unwrap()), (2, 0));
    store.close().unwrap();

    // After close, held handles are refused with Closed.
    assert!(matches!(again.send(&Record::new(b"x")), Err(Error::Closed { .. })));
    let store = TopicStore::open(&root, cfg()).unwrap();
    assert_eq!(store.topics(), ["audit.log_v2", "orders"]);
    assert_eq!(store.topic("orders").unwrap().partitions(), 2);
    store.close().unwrap();
}

#[test]
fn reopen_keeps_topics_configs_and_offsets() {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let config = tiny(4).with_retention(Retention::default().with_max_bytes(1 << 30));
    let t = store.create_topic("events", config).unwrap();
    let mut sent = BTreeMap::<u32, Vec<String>>::new();
    for i in 0..500 {
        let value = format!("event-{i}-{}", "x".repeat(200));
        let key = format!("k{}", i % 13);
        let (p, offset) = t.send(&Record::new(value.as_bytes()).with_key(key.as_bytes())).unwrap();
        let list = sent.entry(p).or_default();
        assert_eq!(offset, list.len() as u64);
        list.push(value);
    }
    let created = t.meta().unwrap().created_ms;
    drop(t);
    store.close().unwrap();

    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(store.topics(), ["events"]);
    let t = store.topic("events").unwrap();
    assert_eq!(t.config().unwrap(), config);
    assert_eq!(t.meta().unwrap().created_ms, created);
    for p in 0..4 {
        let expected = sent.get(&p).cloned().unwrap_or_default();
        assert_eq!(t.next_offset(p).unwrap(), expected.len() as u64);
        assert_eq!(values(&read_partition(&t, p)), expected);
        if expected.len() > 40 {
            assert!(t.partition(p).unwrap().segments().len() > 1, "4 KiB segments roll");
        }
    }
    // Sends continue after the last offset.
    let (p, offset) = t.send(&Record::new(b"more").with_key(b"k0")).unwrap();
    assert_eq!(offset, sent[&p].len() as u64);
    drop(t);
    store.close().unwrap();
}

#[test]
fn keyed_sends_land_on_hash_partitions_in_order() {
    let (_dir, store, t) = store_with_topic("users", tiny(4));
    for (key, expected) in [("user-1", 0), ("user-2", 1), ("user-3", 2), ("key-2", 3)] {
        let (p, _) = t.send(&Record::new(b"v").with_key(key.as_bytes())).unwrap();
        assert_eq!(p, expected, "{key}");
    }
    // Many keys: each record is in its key's partition, in sending order.
    let mut expected = BTreeMap::<u32, Vec<String>>::new();
    for i in 0..1_000 {
        let key = format!("user-{}", i % 37);
        let value = format!("{key}:{i}");
        let (p, _) = t.send(&Record::new(value.as_bytes()).with_key(key.as_bytes())).unwrap();
        assert_eq!(p, partition_for_key(key.as_bytes(), 4));
        expected.entry(p).or_default().push(value);
    }
    for p in 0..4 {
        let records = read_partition(&t, p);
        let got: Vec<String> = values(&records).into_iter().skip(1).collect();
        assert_eq!(got, expected[&p], "partition {p}");
        for r in &records {
            assert_eq!(partition_for_key(r.key.as_deref().unwrap(), 4), p);
        }
    }
    // A tombstone routes by its key too.
    let (p, _) = t.send(&Record::tombstone(b"user-3")).unwrap();
    assert_eq!(p, 2);
    drop(t);
    store.close().unwrap();
}

#[test]
fn keyless_sends_spread_evenly_round_robin() {
    let (_dir, store, t) = store_with_topic("logs", tiny(5));
    let mut counts = [0u64; 5];
    let mut previous = None;
    for i in 0..1_000 {
        let (p, offset) = t.send(&Record::new(format!("line {i}").as_bytes())).unwrap();
        assert_ne!(Some(p), previous, "two keyless sends in a row went to partition {p}");
        previous = Some(p);
        assert_eq!(offset, counts[p as usize]);
        counts[p as usize] += 1;
    }
    assert_eq!(counts, [200; 5]);
    // From several threads the spread is still exact.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    t.send(&Record::new(b"x")).unwrap();
                }
            });
        }
    });
    for p in 0..5 {
        assert_eq!(t.next_offset(p).unwrap(), 400, "partition {p}");
    }
    drop(t);
    store.close().unwrap();
}

#[test]
fn explicit_partition_and_out_of_range_errors() {
    let (_dir, store, t) = store_with_topic("t", tiny(3));
    // send_to ignores the key's partition.
    assert_eq!(partition_for_key(b"user-1", 3), 2);
    assert_eq!(t.send_to(0, &Record::new(b"a").with_key(b"user-1")).unwrap(), 0);
    assert_eq!(t.send_to(0, &Record::new(b"b")).unwrap(), 1);
    assert_eq!(t.send_to(2, &Record::new(b"c")).unwrap(), 0);
    assert_eq!(values(&read_partition(&t, 0)), ["a", "b"]);
    assert_eq!(t.next_offset(1).unwrap(), 0);

    let out_of_range = |e: Error| match e {
        Error::PartitionOutOfRange { topic, partition, partitions } => {
            assert_eq!((topic.as_str(), partition, partitions), ("t", 3, 3));
        }
        other => panic!("expected PartitionOutOfRange, got {other}"),
    };
    out_of_range(t.send_to(3, &Record::new(b"x")).unwrap_err());
    out_of_range(t.partition(3).unwrap_err());
    out_of_range(t.read_from(3, 0).unwrap_err());
    out_of_range(t.offset_for_timestamp(3, 0).unwrap_err());
    out_of_range(t.start_offset(3).unwrap_err());
    out_of_range(t.next_offset(3).unwrap_err());
    out_of_range(t.partition_info(3).unwrap_err());
    out_of_range(t.delete_before(3, 0).unwrap_err());
    let msg = t.send_to(u32::MAX, &Record::new(b"x")).unwrap_err().to_string();
    assert!(msg.contains("partition 4294967295") && msg.contains("\"t\" has 3"), "{msg}");

    // Offsets out of range come from the partition's log.
    match t.read_from(0, 3).unwrap_err() {
        Error::OffsetOutOfRange { requested, start, end } => assert_eq!((requested, start, end), (3, 0, 2)),
        other => panic!("expected OffsetOutOfRange, got {other}"),
    }
    assert!(matches!(t.delete_before(1, 1), Err(Error::OffsetOutOfRange { requested: 1, .. })));
    // Unknown topics.
    assert!(matches!(store.topic("nope"), Err(Error::UnknownTopic { topic }) if topic == "nope"));
    assert!(matches!(store.add_partitions("nope", 4), Err(Error::UnknownTopic { .. })));
    assert!(matches!(store.topic("../t"), Err(Error::UnknownTopic { .. })));
    drop(t);
    store.close().unwrap();
}

#[test]
fn concurrent_producers_and_readers_see_every_record_once_in_order() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 3_000;
    const KEYS: u64 = 40;
    let (_dir, store, t) =
        store_with_topic("c", TopicConfig::default().with_partitions(4).with_segment_bytes(64 << 10));
    let done = AtomicBool::new(false);
    let total = PRODUCERS * PER_PRODUCER;
    let seen: Vec<Vec<(u64, u64)>> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..4u32)
            .map(|p| {
                let (t, done) = (&t, &done);
                s.spawn(move || {
                    // Tails partition p while producers write, until they are done
                    // and the reader has caught up.
                    let log = t.partition(p).unwrap();
                    let mut reader = t.read_from(p, 0).unwrap();
                    let mut got = Vec::new();
                    loop {
                        let finished = done.load(Ordering::SeqCst);
                        let mut caught_up = false;
                        while !caught_up {
                            match reader.next_record().unwrap() {
                                Some(r) => {
                                    assert_eq!(r.offset(), got.len() as u64);
                                    let v = std::str::from_utf8(r.value().unwrap()).unwrap();
                                    let (producer, seq) = v.split_once(':').unwrap();
                                    got.push((producer.parse().unwrap(), seq.parse().unwrap()));
                                }
                                None => caught_up = true,
                            }
                        }
                        if finished && reader.next_offset() == log.next_offset() {
                            break got;
                        }
                        log.wait_for(reader.next_offset(), Duration::from_millis(5));
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let t = &t;
                s.spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        let key = format!("{id}-{}", seq % KEYS);
                        let value = format!("{id}:{seq}");
                        let (p, _) = t.send(&Record::new(value.as_bytes()).with_key(key.as_bytes())).unwrap();
                        assert_eq!(p, partition_for_key(key.as_bytes(), 4));
                    }
                })
            })
            .collect();
        for h in producers {
            h.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        readers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every record exactly once.
    let all: BTreeSet<(u64, u64)> = seen.iter().flatten().copied().collect();
    assert_eq!(seen.iter().map(Vec::len).sum::<usize>() as u64, total);
    assert_eq!(all.len() as u64, total);
    // Per partition, each key's records are in the order they were sent.
    for (p, records) in (0u32..).zip(&seen) {
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for &(producer, seq) in records {
            let key = format!("{producer}-{}", seq % KEYS);
            assert_eq!(partition_for_key(key.as_bytes(), 4), p);
            if let Some(prev) = last.insert(key.clone(), seq) {
                assert!(prev < seq, "key {key}: {seq} after {prev} in partition {p}");
            }
        }
    }
    drop(t);
    store.close().unwrap();
}

/// Sends `n` records of about 300 bytes to each partition of `t`.
fn fill(t: &Topic, n: u64, timestamp: Option<i64>) {
    let value = vec![b'v'; 300];
    for p in 0..t.partitions() {
        for _ in 0..n {
            let mut r = Record::new(&value);
            if let Some(ts) = timestamp {
                r = r.with_timestamp(ts);
            }
            t.send_to(p, &r).unwrap();
        }
    }
}

#[test]
fn retention_by_size_and_age_through_the_store() {
    let (dir, store, by_size) =
        store_with_topic("by-size", tiny(2).with_retention(Retention::default().with_max_bytes(8 << 10)));
    let day = 86_400_000i64;
    let now = 1_000 * day;
    let by_age = store
        .create_topic(
            "by-age",
            tiny(2).with_retention(Retention::default().with_max_age(Duration::from_millis(7 * day as u64))),
        )
        .unwrap();
    let compact = store
        .create_topic(
            "compacted",
            tiny(1).with_cleanup_policy(CleanupPolicy::Compact).with_retention(Retention::default().with_max_bytes(1)),
        )
        .unwrap();
    let keep = store.create_topic("keep", tiny(1)).unwrap();
    fill(&by_size, 200, None);
    fill(&by_age, 100, Some(now - 30 * day));
    for p in 0..2 {
        by_age.partition(p).unwrap().roll().unwrap();
    }
    fill(&by_age, 10, Some(now));
    fill(&compact, 100, None);
    fill(&keep, 100, None);

    let report = store.run_retention_at(now).unwrap();
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.now_ms, now);
    let of =
        |topic: &str| -> Vec<&PartitionRetention> { report.partitions.iter().filter(|p| p.topic == topic).collect() };
    assert_eq!(report.partitions.len(), 6, "every partition of every topic is reported");
    for p in of("by-size") {
        assert!(p.outcome.segments_deleted > 0, "{p:?}");
        let info = by_size.partition_info(p.partition).unwrap();
        assert_eq!(info.start_offset, p.outcome.start_offset);
        assert!(info.data_bytes <= 8 << 10, "{info:?}");
        assert_eq!(info.next_offset, 200);
    }
    for p in of("by-age") {
        // Every segment of old records goes; the new records stay.
        assert_eq!(p.outcome.start_offset, 100, "{p:?}");
        assert_eq!(values(&read_partition(&by_age, p.partition)).len(), 10);
    }
    for p in of("compacted").into_iter().chain(of("keep")) {
        assert_eq!((p.outcome.segments_deleted, p.outcome.start_offset), (0, 0), "{p:?}");
    }
    assert_eq!(
        report.segments_deleted(),
        of("by-size").iter().chain(&of("by-age")).map(|p| p.outcome.segments_deleted).sum::<usize>()
    );
    assert!(report.bytes_deleted() > 0);
    // A second pass finds nothing more to delete.
    let again = store.run_retention_at(now).unwrap();
    assert_eq!(again.segments_deleted(), 0);
    // Topic-level retention is the same policy.
    let outcomes = by_size.apply_retention_at(now).unwrap();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|o| o.segments_deleted == 0));
    // The moved start offsets survive a reopen.
    let starts: Vec<u64> = (0..2).map(|p| by_size.start_offset(p).unwrap()).collect();
    drop((by_size, by_age, compact, keep));
    store.close().unwrap();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let t = store.topic("by-size").unwrap();
    assert_eq!((0..2).map(|p| t.start_offset(p).unwrap()).collect::<Vec<_>>(), starts);
    drop(t);
    store.close().unwrap();
}

/// The number of threads of this process named `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Waits (up to 10 s) until `threads_named(name)` is `n`: a new thread names
/// itself once it runs, and a joined one leaves `/proc` a moment later.
fn await_threads_named(name: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named(name) != n {
        assert!(Instant::now() < deadline, "{} threads named {name}, expected {n}", threads_named(name));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn background_retention_thread_applies_policies_and_stops_on_close() {
    let dir = fast_tempdir();
    assert!(matches!(
        TopicStore::open(dir.path(), cfg().with_retention_interval(Duration::ZERO)),
        Err(Error::InvalidConfig(_))
    ));
    let config = cfg().with_retention_interval(Duration::from_millis(20));
    let store = TopicStore::open(dir.path(), config.clone()).unwrap();
    await_threads_named("annal-retention", 1);
    let t = store.create_topic("t", tiny(3).with_retention(Retention::default().with_max_bytes(8 << 10))).unwrap();
    fill(&t, 200, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..3).any(|p| t.start_offset(p).unwrap() == 0) {
        assert!(Instant::now() < deadline, "the retention thread did not delete anything");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The pass that moved the start offsets may still be running (its
    // compaction step follows retention), so its count may not be in yet:
    // wait for two more completed passes from whatever the count is now.
    let runs = store.retention_runs();
    while store.retention_runs() < runs + 2 {
        assert!(Instant::now() < deadline, "the retention thread stopped running");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(store.retention_runs() >= 2);
    let last = store.last_retention().unwrap();
    assert!(last.is_ok());
    assert_eq!(last.partitions.len(), 3);
    for p in 0..3 {
        assert!(t.partition_info(p).unwrap().data_bytes <= 8 << 10);
    }
    drop(t);
    store.close().unwrap();
    // Stopped on close, and on drop. (A joined thread can still be listed
    // in /proc for a moment, hence the wait.)
    await_threads_named("annal-retention", 0);
    let store = TopicStore::open(dir.path(), config).unwrap();
    await_threads_named("annal-retention", 1);
    drop(store);
    await_threads_named("annal-retention", 0);
    // Without an interval, no thread.
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(threads_named("annal-retention"), 0);
    assert_eq!((store.retention_runs(), store.last_retention().is_none()), (0, true));
    store.close().unwrap();
}

#[test]
fn delete_before_through_a_topic() {
    let (dir, store, t) = store_with_topic("t", tiny(2));
    fill(&t, 100, None);
    let out = t.delete_before(1, 60).unwrap();
    assert_eq!(out.start_offset, 60);
    assert!(out.segments_deleted > 0);
    assert_eq!((t.start_offset(1).unwrap(), t.start_offset(0).unwrap()), (60, 0));
    assert_eq!(read_partition(&t, 1).first().unwrap().offset, 60);
    assert!(matches!(t.read_from(1, 59), Err(Error::OffsetOutOfRange { requested: 59, start: 60, .. })));
    assert_eq!(read_partition(&t, 0).len(), 100);
    drop(t);
    store.close().unwrap();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(store.topic("t").unwrap().start_offset(1).unwrap(), 60);
    store.close().unwrap();
}

#[test]
fn a_damaged_topic_meta_is_corruption_and_nothing_is_lost() {
    let dir = fast_tempdir();
    let root = dir.path();
    let store = TopicStore::open(root, cfg()).unwrap();
    let t = store.create_topic("t", tiny(3)).unwrap();
    let other = store.create_topic("other", tiny(1)).unwrap();
    fill(&t, 50, None);
    other.send(&Record::new(b"fine")).unwrap();
    drop((t, other));
    store.close().unwrap();
    let path = meta_path(root, "t");
    let good = std::fs::read(&path).unwrap();

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped byte", {
            let mut b = good.clone();
            b[13] ^= 0x01; // the partition count
            b
        }),
        ("a flipped CRC byte", {
            let mut b = good.clone();
            b[66] ^= 0x80;
            b
        }),
        ("a truncation", good[..40].to_vec()),
        ("an empty file", Vec::new()),
        ("an extension", [good.as_slice(), b"junk"].concat()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&path, &bytes).unwrap();
        let store = TopicStore::open(root, cfg()).unwrap();
        // The topic is still listed, and reports the damage each time it is asked for.
        assert_eq!(store.topics(), ["other", "t"], "{what}");
        for _ in 0..2 {
            match store.topic("t").unwrap_err() {
                Error::Corruption { path: p, .. } => assert_eq!(p, path, "{what}"),
                e => panic!("{what}: expected Corruption, got {e}"),
            }
        }
        let msg = store.topic("t").unwrap_err().to_string();
        assert!(msg.contains("topic.meta"), "{what}: {msg}");
        // Retention reports it; adding partitions or creating it again is refused.
        let report = store.run_retention().unwrap();
        assert_eq!(report.failures.len(), 1, "{what}");
        assert!(report.failures[0].error.is_corruption() && report.failures[0].partition.is_none());
        assert!(matches!(store.create_topic("t", tiny(1)), Err(Error::TopicExists { .. })));
        assert!(store.add_partitions("t", 5).unwrap_err().is_corruption());
        // Other topics work.
        assert_eq!(values(&read_partition(&store.topic("other").unwrap(), 0)), ["fine"]);
        // Nothing was changed: repairing the file while the store is open makes the topic usable.
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: the damaged file was rewritten");
        std::fs::write(&path, &good).unwrap();
        let t = store.topic("t").unwrap();
        assert_eq!(t.partitions(), 3);
        for p in 0..3 {
            assert_eq!(read_partition(&t, p).len(), 50, "{what}");
        }
        drop(t);
        store.close().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        // Read-only opens report it the same way.
        let ro = TopicStore::open_read_only(root, cfg()).unwrap();
        assert!(ro.topic("t").unwrap_err().is_corruption(), "{what}");
        drop(ro);
        std::fs::write(&path, &good).unwrap();
    }

    // A missing topic.meta or partition directory is reported, not recreated.
    std::fs::remove_file(&path).unwrap();
    let store = TopicStore::open(root, cfg()).unwrap();
    assert!(matches!(store.topic("t"), Err(Error::NotALog { .. })));
    store.close().unwrap();
    std::fs::write(&path, &good).unwrap();
    let p2 = topic_dir(root, "t").join("00002");
    let moved = root.join("moved");
    std::fs::rename(&p2, &moved).unwrap();
    let store = TopicStore::open(root, cfg()).unwrap();
    match store.topic("t").unwrap_err() {
        Error::NotALog { path, reason } => {
            assert_eq!(path, p2);
            assert!(reason.contains("partition 2"), "{reason}");
        }
        e => panic!("expected NotALog, got {e}"),
    }
    assert!(!p2.exists(), "the missing partition was recreated");
    std::fs::rename(&moved, &p2).unwrap();
    let t = store.topic("t").unwrap();
    assert_eq!(read_partition(&t, 2).len(), 50);
    drop(t);
    store.close().unwrap();
}

#[test]
fn invalid_topic_names_are_refused() {
    let dir = fast_tempdir();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let long = "x".repeat(MAX_TOPIC_NAME_LEN + 1);
    for name in ["", ".", "..", ".hidden", "a/b", "/abs", "a b", "tab\t", "ä", "a~b", "a\0b", "a\\b", long.as_str()] {
        match store.create_topic(name, tiny(1)) {
            Err(Error::InvalidTopicName { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{name:?}: expected InvalidTopicName, got {other:?}"),
        }
        assert!(validate_topic_name(name).is_err());
    }
    assert_eq!(std::fs::read_dir(dir.path().join("topics")).unwrap().count(), 0, "nothing was created");
    let longest = "y".repeat(MAX_TOPIC_NAME_LEN);
    for name in ["a", "A-z_0.9", "x..y", "-", "_", "0", longest.as_str()] {
        store.create_topic(name, tiny(1)).unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
    assert_eq!(store.topics().len(), 7);
    store.close().unwrap();
}

#[test]
fn a_second_writer_is_locked_out_and_readers_are_not() {
    let (dir, store, t) = store_with_topic("t", tiny(2));
    t.send_to(1, &Record::new(b"hello")).unwrap();
    match TopicStore::open(dir.path(), cfg()) {
        Err(Error::StoreLocked { path, pid }) => {
            assert_eq!(path, dir.path());
            assert_eq!(pid, Some(std::process::id()), "the holder's pid is in the lock file");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // A read-only store sees what the writer wrote and changes nothing.
    let ro = TopicStore::open_read_only(dir.path(), cfg()).unwrap();
    let rt = ro.topic("t").unwrap();
    assert_eq!(values(&read_partition(&rt, 1)), ["hello"]);
    assert!(matches!(rt.send(&Record::new(b"x")), Err(Error::ReadOnly { .. })));
    assert!(matches!(rt.delete_before(1, 1), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.create_topic("u", tiny(1)), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.delete_topic("t"), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.add_partitions("t", 3), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.run_retention(), Err(Error::ReadOnly { .. })));
    drop((rt, ro));
    drop(t);
    store.close().unwrap();
    TopicStore::open(dir.path(), cfg()).unwrap().close().unwrap();
    // Read-only needs a store; it creates nothing.
    let missing = dir.path().join("missing");
    assert!(matches!(TopicStore::open_read_only(&missing, cfg()), Err(Error::NotAStore { .. })));
    assert!(!missing.exists());
}

#[test]
fn add_partitions_grows_and_moves_keys() {
    let (dir, store, t) = store_with_topic("t", tiny(4));
    // key-2 hashes to partition 3 of 4 and to partition 0 of 7 (keys move).
    assert_eq!(t.send(&Record::new(b"old").with_key(b"key-2")).unwrap(), (3, 0));
    store.add_partitions("t", 7).unwrap();
    assert_eq!(t.partitions(), 7);
    assert_eq!(t.meta().unwrap().partitions, 7);
    assert_eq!(partition_for_key(b"key-2", 7), 0);
    assert_eq!(t.send(&Record::new(b"new").with_key(b"key-2")).unwrap(), (0, 0));
    for p in 4..7 {
        assert_eq!(t.next_offset(p).unwrap(), 0);
        assert!(topic_dir(dir.path(), "t").join(format!("{p:05}")).is_dir());
    }
    assert_eq!(t.send_to(6, &Record::new(b"six")).unwrap(), 0);
    // Only growth.
    for n in [0, 3, 7] {
        assert!(matches!(store.add_partitions("t", n), Err(Error::InvalidConfig(_))), "{n}");
    }
    assert!(matches!(store.add_partitions("t", 100_001), Err(Error::InvalidConfig(_))));
    drop(t);
    store.close().unwrap();
    let store = TopicStore::open(dir.path(), cfg()).unwrap();
    let t = store.topic("t").unwrap();
    assert_eq!(t.partitions(), 7);
    assert_eq!(values(&read_partition(&t, 6)), ["six"]);
    assert_eq!(values(&read_partition(&t, 3)), ["old"]);
    drop(t);
    store.close().unwrap();
}

#[test]
fn an_interrupted_add_partitions_leaves_reusable_directories() {
    let dir = fast_tempdir();
    let io = Arc::new(FaultIo::new());
    let config = TopicStoreConfig::default()
        .with_log_config(LogConfig::default().with_durability(Durability::Never).with_io(io.clone()));
    let store = TopicStore::open(dir.path(), config.clone()).unwrap();
    let t = store.create_topic("t", tiny(2)).unwrap();
    // The new topic.meta cannot be renamed into place: the count stays 2.
    io.only_files_ending_with("topic.meta");
    io.set_fail_rename(true);
    assert!(matches!(store.add_partitions("t", 4), Err(Error::Io { .. })));
    io.set_fail_rename(false);
    assert_eq!(t.partitions(), 2);
    assert!(t.send(&Record::new(b"a")).unwrap().0 < 2);
    assert!(topic_dir(dir.path(), "t").join("00003").is_dir(), "the new partitions were created first");
    drop(t);
    store.close().unwrap();
    let store = TopicStore::open(dir.path(), config).unwrap();
    let t = store.topic("t").unwrap();
    assert_eq!(t.partitions(), 2);
    store.add_partitions("t", 4).unwrap();
    assert_eq!(t.partitions(), 4);
    drop(t);
    store.close().unwrap();
}

/// The store's own reads go through `Io`: a failed listing of the topics
/// directory fails the open naming it; a failed open of `topic.meta` (and of
/// the partitions' segments) leaves the topic listed but unusable, with an
/// error naming the file, until the fault is gone.
#[test]
fn a_failed_listing_or_read_of_the_store_is_an_error_naming_the_file() {
    let dir = fast_tempdir();
    let root = dir.path();
    let io = Arc::new(FaultIo::new());
    let config = TopicStoreConfig::default()
        .with_log_config(LogConfig::default().with_durability(Durability::Never).with_io(io.clone()));
    let store = TopicStore::open(root, config.clone()).unwrap();
    fill(&store.create_topic("t", tiny(2)).unwrap(), 10, None);
    store.close().unwrap();

    io.fail_read_dir.store(true, Ordering::SeqCst);
    match TopicStore::open(root, config.clone()) {
        Err(Error::Io { op, path, .. }) => assert_eq!((op, path), ("list topics directory", root.join("topics"))),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    io.fail_read_dir.store(false, Ordering::SeqCst);

    io.fail_open.store(true, Ordering::SeqCst);
    let store = TopicStore::open(root, config).unwrap();
    assert_eq!(store.topics(), ["t"]);
    match store.topic("t") {
        Err(Error::Io { op, path, .. }) => assert_eq!((op, path), ("read", topic_dir(root, "t").join("topic.meta"))),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    io.fail_open.store(false, Ordering::SeqCst);
    let t = store.topic("t").unwrap();
    assert_eq!(read_partition(&t, 0).len() + read_partition(&t, 1).len(), 20);
    drop(t);
    store.close().unwrap();
}

#[test]
fn interrupted_creations_and_deletions_are_cleaned_at_open() {
    let dir = fast_tempdir();
    let root = dir.path();
    let io = Arc::new(FaultIo::new());
    let config = TopicStoreConfig::default()
        .with_log_config(LogConfig::default().with_durability(Durability::Never).with_io(io.clone()));
    let store = TopicStore::open(root, config.clone()).unwrap();
    let t = store.create_topic("doomed", tiny(2)).unwrap();
    fill(&t, 20, None);

    // Deletion: the rename to the hidden name fails: the topic stays, whole and usable.
    io.only_files_ending_with("~deleted.0");
    io.set_fail_rename(true);
    assert!(matches!(store.delete_topic("doomed"), Err(Error::Io { .. })));
    io.set_fail_rename(false);
    assert!(matches!(t.send(&Record::new(b"x")), Err(Error::UnknownTopic { .. })), "the old handle is retired");
    let t = store.topic("doomed").unwrap();
    assert_eq!(read_partition(&t, 1).len(), 20);

    // Deletion: the directory sync after the rename fails, as if the process
    // died there: the hidden directory is left, and the next open removes it.
    io.set_fail_sync_dir(true);
    assert!(store.delete_topic("doomed").is_err());
    io.set_fail_sync_dir(false);
    assert!(root.join("topics/.doomed~deleted.0").is_dir());
    assert!(matches!(store.topic("doomed"), Err(Error::UnknownTopic { .. })));
    drop(t);

    // Creation: renaming the built topic into place fails; nothing is left.
    io.only_files_ending_with("/born");
    io.set_fail_rename(true);
    assert!(matches!(store.create_topic("born", tiny(2)), Err(Error::Io { .. })));
    io.set_fail_rename(false);
    assert!(store.topics().is_empty());
    assert_eq!(hidden_entries(&root.join("topics")), [".doomed~deleted.0"]);
    store.close().unwrap();

    // A creation cut short by a crash, and files that are not annal's.
    std::fs::create_dir_all(root.join("topics/.born~creating/00000")).unwrap();
    std::fs::write(root.join("topics/.born~creating/topic.meta"), b"partial").unwrap();
    std::fs::create_dir(root.join("topics/.not-ours")).unwrap();
    std::fs::write(root.join("topics/README"), b"hello").unwrap();
    std::fs::create_dir(root.join("topics/bad name")).unwrap();
    let store = TopicStore::open(root, config).unwrap();
    assert!(store.topics().is_empty());
    let mut hidden = hidden_entries(&root.join("topics"));
    hidden.sort();
    assert_eq!(hidden, [".not-ours"], "annal's leftovers removed, the rest kept");
    assert!(root.join("topics/README").is_file() && root.join("topics/bad name").is_dir());
    // The names are free again.
    store.create_topic("doomed", tiny(1)).unwrap();
    store.create_topic("born", tiny(1)).unwrap();
    assert_eq!(store.topics(), ["born", "doomed"]);
    store.close().unwrap();
}

#[test]
fn sends_race_with_delete_and_close_without_panics() {
    let (_dir, store, t) = store_with_topic("t", tiny(3));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let senders: Vec<_> = (0..3)
            .map(|_| {
                let (t, stop) = (&t, &stop);
                s.spawn(move || {
                    let mut ok = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        match t.send(&Record::new(b"v")) {
                            Ok(_) => ok += 1,
                            Err(Error::UnknownTopic { .. }) => return ok,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        store.delete_topic("t").unwrap();
        stop.store(true, Ordering::SeqCst);
        for h in senders {
            h.join().unwrap();
        }
    });
    assert!(matches!(t.send(&Record::new(b"v")), Err(Error::UnknownTopic { .. })));
    assert!(store.topics().is_empty());
    store.close().unwrap();
}
