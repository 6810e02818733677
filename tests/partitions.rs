//! Many logs in one process: parked active segments, limits shared by many
//! logs, and a store of thousands of partitions whose threads, open files
//! and maps stay within the documented bounds (docs/DESIGN.md, "Resources").

mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use annal::{Durability, Log, LogConfig, Record, SharedLimits, TopicConfig, TopicStore, TopicStoreConfig};
use common::read_all;

/// The tests of this file count the process's threads, files and maps: one
/// at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entries in a `/proc/self` directory (threads, open files).
fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Mappings of this process.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn value(i: u64) -> Vec<u8> {
    common::value_for(i, 300)
}

#[test]
fn a_parked_log_reads_appends_syncs_closes_and_recovers_as_before() {
    let _serial = serial();
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let io = Arc::new(common::FaultIo::new());
    let cfg = || common::small_cfg().with_durability(Durability::Never).with_io(io.clone());
    let log = Log::open(&dir, cfg()).unwrap();
    assert!(!log.park().unwrap(), "an open log has no active segment until its first append");
    for i in 0..10 {
        log.append(&Record::new(&value(i)).with_timestamp(1_000 + (i as i64 * 7) % 5)).unwrap();
    }
    // What the segment list says of the active segment, then of the parked one.
    let max_timestamp = read_all(&log).unwrap().iter().map(|r| r.timestamp).max().unwrap();
    assert_eq!(log.segments()[0].max_timestamp, max_timestamp);
    let mut reader = log.read_from(0).unwrap();
    for i in 0..4 {
        assert_eq!(reader.next_record().unwrap().unwrap().offset(), i);
    }
    let fds = count("/proc/self/fd");
    assert!(log.park().unwrap());
    assert!(!log.park().unwrap(), "already parked");
    assert_eq!(count("/proc/self/fd"), fds - 1, "parking closes the segment's file");
    // Readers, old and new, read everything; appends take the segment up again.
    assert_eq!(read_all(&log).unwrap().len(), 10);
    assert_eq!(log.get(7).unwrap().value.unwrap(), value(7));
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.segments()[0].records, 10);
    assert_eq!(log.segments()[0].max_timestamp, max_timestamp);
    for i in 4..10 {
        assert_eq!(reader.next_record().unwrap().unwrap().offset(), i);
    }
    assert!(reader.next_record().unwrap().is_none());
    // A sync of a parked log: durable, without opening its map: an fsync of
    // the file, then the checkpoint in its header.
    assert_eq!(log.durable_offset(), 0);
    let syncs = io.sync_count();
    log.sync().unwrap();
    assert_eq!(log.durable_offset(), 10);
    assert!(io.sync_count() > syncs, "the parked segment was not fsynced");
    let data_end = annal::segment::DATA_START as u64 + log.segments()[0].data_bytes;
    let head = std::fs::read(dir.join(annal::segment::log_file_name(0))).unwrap();
    let checkpoint = annal::segment::header::decode_checkpoint(&head[..annal::segment::DATA_START]);
    assert_eq!(checkpoint, Some(data_end), "the checkpoint vouches for the synced records");
    log.append(&Record::new(&value(10))).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().offset(), 10, "the reader goes on into the taken-up segment");
    // Park and crash: recovery finds everything (the page cache kept it),
    // and the checkpoint the parked sync wrote.
    log.park().unwrap();
    log.abandon();
    let log = Log::open(&dir, cfg()).unwrap();
    assert!(log.recovery_report().scanned_segment.is_some());
    assert_eq!(read_all(&log).unwrap().len(), 11);
    // Park, then close: the segment is sealed as usual.
    log.append(&Record::new(&value(11))).unwrap();
    log.park().unwrap();
    log.close().unwrap();
    let log = Log::open(&dir, cfg()).unwrap();
    assert_eq!(log.recovery_report().scanned_segment, None, "closed cleanly");
    let all = read_all(&log).unwrap();
    assert_eq!(all.len(), 12);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.value.as_deref(), Some(&value(i as u64)[..]));
    }
    drop(log);
    let report = annal::inspect::verify(&dir).unwrap();
    assert!(report.is_clean() && report.records == 12, "{:?}", report.problems);
}

#[test]
fn logs_sharing_limits_park_each_other_and_lose_nothing() {
    let _serial = serial();
    let tmp = common::fast_tempdir();
    let limits = SharedLimits::new(4, 8);
    let cfg = LogConfig::default()
        .with_segment_bytes(4096)
        .with_durability(Durability::Never)
        .with_max_open_segments(64)
        .with_shared_limits(Arc::clone(&limits));
    let logs: Vec<Log> = (0..40).map(|i| Log::open(tmp.path().join(i.to_string()), cfg.clone()).unwrap()).collect();
    let fds = count("/proc/self/fd");
    for round in 0..30u64 {
        for log in &logs {
            log.append(&Record::new(&value(round))).unwrap();
            // A moment over the limit is allowed while one log parks another.
            assert!(limits.open_active() <= 5, "{} open active segments", limits.open_active());
        }
    }
    assert!(count("/proc/self/fd") <= fds + 5, "open files grew with the logs");
    // Reading every log maps its sealed segments; the caches stay within 8 (+1 in flight).
    for log in &logs {
        let all = read_all(log).unwrap();
        assert_eq!(all.len(), 30);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.value.as_deref(), Some(&value(i as u64)[..]));
        }
        assert!(limits.cached_sealed() <= 9, "{} cached sealed segments", limits.cached_sealed());
        assert!(log.segments().len() > 1, "the workload rolls segments");
    }
    for log in logs {
        log.close().unwrap();
    }
    assert_eq!(limits.open_active(), 0);
}

#[test]
fn readers_follow_a_log_that_is_parked_and_taken_up_again_meanwhile() {
    let _serial = serial();
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let log = Arc::new(Log::open(&dir, common::small_cfg().with_durability(Durability::Never)).unwrap());
    const N: u64 = 3_000;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut reader = log.read_from(0).unwrap();
                let mut next = 0;
                while next < N {
                    match reader.next_record().unwrap() {
                        Some(r) => {
                            assert_eq!(r.offset(), next);
                            assert_eq!(r.value(), Some(&value(next)[..]));
                            next += 1;
                        }
                        None => assert!(log.wait_for(next, Duration::from_secs(60)), "stalled at {next}"),
                    }
                }
            })
        })
        .collect();
    for i in 0..N {
        log.append(&Record::new(&value(i))).unwrap();
        if i % 7 == 0 {
            log.park().unwrap();
        }
    }
    for r in readers {
        r.join().unwrap();
    }
}

/// The documented bounds, at thousands of partitions: threads do not grow
/// with partitions (at most the prefault and flusher threads, shared, and the
/// store's cleanup thread), nor open files and maps (at most
/// `max_open_partitions` active segments, and `max_cached_segments` sealed
/// ones, plus a few in flight).
#[test]
fn a_store_of_thousands_of_partitions_stays_within_its_limits() {
    const PARTITIONS: u32 = 3_000;
    const OPEN: usize = 200;
    const CACHED: usize = 100;
    let _serial = serial();
    let tmp = common::fast_tempdir();
    let (threads0, fds0, maps0) = (count("/proc/self/task"), count("/proc/self/fd"), mappings());
    let config = TopicStoreConfig::default()
        .with_log_config(LogConfig::default().with_durability(Durability::Never))
        .with_max_open_partitions(OPEN)
        .with_max_cached_segments(CACHED);
    let store = TopicStore::open(tmp.path(), config).unwrap();
    let topic = store
        .create_topic("t", TopicConfig::default().with_partitions(PARTITIONS).with_segment_bytes(16 << 10))
        .unwrap();
    let check = |what: &str| {
        let threads = count("/proc/self/task");
        let fds = count("/proc/self/fd");
        let maps = mappings();
        // The shared prefault thread (the flusher runs only under Interval),
        // one active segment per open partition (+1 while one parks
        // another), the store's lock, and what a test harness thread may hold.
        assert!(threads <= threads0 + 1 + 1, "{what}: {threads} threads (from {threads0})");
        assert!(fds <= fds0 + OPEN + 1 + 1 + 4, "{what}: {fds} open files (from {fds0})");
        assert!(maps <= maps0 + OPEN + 1 + CACHED + 1 + 8, "{what}: {maps} mappings (from {maps0})");
    };
    check("after creating the topic");
    let payload = vec![7u8; 300];
    // Round-robin: every partition in turn, several times (rolls included).
    for _ in 0..3 * PARTITIONS as usize {
        topic.send(&Record::new(&payload)).unwrap();
    }
    check("after round-robin sends");
    // Keyed: spread by hash.
    for i in 0..3 * PARTITIONS {
        topic.send(&Record::new(&payload).with_key(format!("key-{i}").as_bytes())).unwrap();
    }
    check("after keyed sends");
    let mut total = 0;
    for p in 0..PARTITIONS {
        let n = topic.read_from(p, 0).unwrap().map(Result::unwrap).count();
        total += n;
    }
    assert_eq!(total, 6 * PARTITIONS as usize);
    check("after consuming every partition");
    drop(topic);
    store.close().unwrap();
}
