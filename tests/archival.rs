//! The archive tier of a log: archival runs by policy, transparent reads of
//! archived offsets through the bounded cache, failures of the store at each
//! step, crashes between the steps, retention of archived segments, and the
//! archive manifest.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use annal::archive::{ArchiveStore, LocalDirArchive, ObjectDigest, ObjectMeta};
use annal::log::{ARCHIVE_MANIFEST_FILE_NAME, ArchivePolicy, ArchivedSegmentInfo};
use annal::{ArchiveErrorKind, Error, Log, LogConfig, OwnedRecord, Record};
use common::{FaultIo, fast_tempdir, read_all, segment_files, small_cfg, value_for};
use tempfile::TempDir;

/// A store that forwards to a [`LocalDirArchive`] unless a switch makes it fail
/// as an unreachable network store would.
#[derive(Debug)]
struct Flaky {
    inner: LocalDirArchive,
    /// `put_file` fails.
    fail_put: AtomicBool,
    /// `put_file` succeeds this many more times, then `fail_put` turns on.
    puts_left: AtomicU64,
    /// `verify` fails (after the upload went through).
    fail_verify: AtomicBool,
    /// `get_range` fails.
    fail_get: AtomicBool,
    /// `delete` fails.
    fail_delete: AtomicBool,
    /// Calls of `get_range`.
    gets: AtomicU64,
}

impl Flaky {
    fn new(root: &Path) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: LocalDirArchive::open(root).unwrap(),
            fail_put: AtomicBool::new(false),
            puts_left: AtomicU64::new(u64::MAX),
            fail_verify: AtomicBool::new(false),
            fail_get: AtomicBool::new(false),
            fail_delete: AtomicBool::new(false),
            gets: AtomicU64::new(0),
        })
    }

    fn down(&self, key: &str) -> Error {
        Error::Archive {
            store: "flaky".into(),
            key: key.into(),
            kind: ArchiveErrorKind::Unreachable,
            message: "connection refused".into(),
            source: None,
        }
    }
}

impl ArchiveStore for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn put(&self, key: &str, bytes: &[u8]) -> annal::Result<ObjectDigest> {
        self.inner.put(key, bytes)
    }
    fn put_file(&self, key: &str, path: &Path) -> annal::Result<ObjectDigest> {
        let left = self.puts_left.load(Ordering::SeqCst);
        if left == 0 {
            self.fail_put.store(true, Ordering::SeqCst);
        } else if left != u64::MAX {
            self.puts_left.store(left - 1, Ordering::SeqCst);
        }
        if self.fail_put.load(Ordering::SeqCst) {
            return Err(self.down(key));
        }
        self.inner.put_file(key, path)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> annal::Result<Vec<u8>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.fail_get.load(Ordering::SeqCst) {
            return Err(self.down(key));
        }
        self.inner.get_range(key, range)
    }
    fn head(&self, key: &str) -> annal::Result<Option<ObjectMeta>> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> annal::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> annal::Result<()> {
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(self.down(key));
        }
        self.inner.delete(key)
    }
    fn verify(&self, key: &str, expected: &ObjectDigest) -> annal::Result<()> {
        if self.fail_verify.load(Ordering::SeqCst) {
            return Err(self.down(key));
        }
        self.inner.verify(key, expected)
    }
}

fn fill(log: &Log, n: u64) {
    for _ in 0..n {
        let o = log.next_offset();
        log.append(&Record::new(&value_for(o, 300)).with_timestamp(o as i64)).unwrap();
    }
}

/// Every record from the start of the log, checked against `value_for`.
fn check_all(log: &Log, expected_end: u64) {
    let records = read_all(log).unwrap();
    assert_eq!(records.len() as u64, expected_end - log.start_offset());
    for r in &records {
        assert_eq!(r.value.as_deref(), Some(&value_for(r.offset, 300)[..]), "offset {}", r.offset);
    }
}

fn cfg(store: Arc<dyn ArchiveStore>) -> LogConfig {
    small_cfg().with_archive(store, "t/0")
}

/// A log in a fresh directory archiving to the store `open_store` makes over
/// another fresh directory, filled with `n` records: (log directory, archive
/// directory, store, log).
fn archiving_log<S: ArchiveStore + 'static>(
    open_store: impl FnOnce(&Path) -> Arc<S>,
    n: u64,
) -> (TempDir, TempDir, Arc<S>, Log) {
    let dir = fast_tempdir();
    let arch = fast_tempdir();
    let store = open_store(arch.path());
    let log = Log::open(dir.path(), cfg(store.clone())).unwrap();
    fill(&log, n);
    (dir, arch, store, log)
}

/// A [`LocalDirArchive`] in `root`.
fn local_store(root: &Path) -> Arc<LocalDirArchive> {
    Arc::new(LocalDirArchive::open(root).unwrap())
}

/// Archives all but about one segment's worth of data (`max_local_bytes`
/// 70,000 over 64 KiB segments): at least three segments, from offset 0.
fn archive_all_but_about_one_segment(log: &Log) -> Vec<ArchivedSegmentInfo> {
    let out = log.archive_at(&ArchivePolicy::default().with_max_local_bytes(70_000), 0).unwrap();
    assert!(out.segments_archived >= 3, "{out:?}");
    let archived = log.archived_segments();
    assert_eq!(archived.len(), out.segments_archived);
    assert_eq!(archived[0].base_offset, 0);
    archived
}

/// Reopens the log in `dir` over `store`: the manifest lists `archived`, the
/// records read back as `before`, and 10 more append after them.
fn reopen_and_append(
    dir: &Path,
    store: Arc<dyn ArchiveStore>,
    archived: &[ArchivedSegmentInfo],
    before: &[OwnedRecord],
) {
    let log = Log::open(dir, cfg(store)).unwrap();
    assert_eq!(log.archived_segments(), archived);
    assert_eq!(read_all(&log).unwrap(), before);
    fill(&log, 10);
    check_all(&log, before.len() as u64 + 10);
    log.close().unwrap();
}

fn local_segment_count(dir: &Path) -> usize {
    segment_files(dir).len()
}

#[test]
fn archived_offsets_read_back_identical_and_survive_reopen() {
    let (dir, _arch, store, log) = archiving_log(local_store, 2_000);
    let sealed: Vec<_> = log.segments().into_iter().filter(|s| s.sealed).collect();
    assert!(sealed.len() >= 4, "{sealed:?}");
    let before = read_all(&log).unwrap();

    // Keep about one segment's worth of data local.
    let archived = archive_all_but_about_one_segment(&log);
    for a in &archived {
        assert!(!dir.path().join(format!("{:020}.log", a.base_offset)).exists());
        let meta = store.head(&a.key).unwrap().expect("object");
        assert_eq!(meta.size, a.size);
        assert_eq!(a.key, annal::archive::segment_key("t", 0, a.base_offset));
    }
    assert_eq!(local_segment_count(dir.path()), sealed.len() + 1 - archived.len());
    assert_eq!(read_all(&log).unwrap(), before);
    assert_eq!(log.get(5).unwrap(), before[5]);
    assert_eq!(log.offset_for_timestamp(3).unwrap(), Some(3));
    // Another run with the same policy has nothing left to do.
    assert_eq!(log.archive_at(&ArchivePolicy::default().with_max_local_bytes(70_000), 0).unwrap().segments_archived, 0);
    log.close().unwrap();

    reopen_and_append(dir.path(), store.clone(), &archived, &before);

    // Read-only, the cache lives outside the log directory.
    let snapshot = common::snapshot(dir.path());
    let ro = Log::open_read_only(dir.path(), cfg(store.clone())).unwrap();
    check_all(&ro, 2_010);
    drop(ro);
    common::assert_same_files(&snapshot, &common::snapshot(dir.path()), "read-only open");
}

#[test]
fn archives_by_age_oldest_first_never_the_active_segment() {
    let (dir, _arch, _store, log) = archiving_log(local_store, 2_000);
    let segs = log.segments();
    // Records carry their offset as timestamp: everything older than the
    // third segment's newest record goes.
    let now = segs[2].max_timestamp + 1 + 1_000;
    let candidates = log.archival_backlog_at(&ArchivePolicy::default().with_max_local_age(Duration::from_secs(1)), now);
    assert_eq!(
        candidates.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
        vec![0, segs[1].base_offset, segs[2].base_offset]
    );
    let mut seen = Vec::new();
    let out = log
        .archive_with_progress(&ArchivePolicy::default().with_max_local_age(Duration::from_secs(1)), now, &mut |s| {
            seen.push(s.base_offset)
        })
        .unwrap();
    assert_eq!(out.segments_archived, 3);
    assert_eq!(seen, vec![0, segs[1].base_offset, segs[2].base_offset]);
    // Everything sealed: the active segment stays.
    let _ = log.archive_at(&ArchivePolicy::everything_sealed(), now).unwrap();
    assert_eq!(local_segment_count(dir.path()), 1);
    assert!(log.segments().last().is_some_and(|s| !s.sealed));
    check_all(&log, 2_000);
}

#[test]
fn upload_failures_leave_segments_local_and_the_next_run_succeeds() {
    let (dir, _arch, flaky, log) = archiving_log(Flaky::new, 2_000);
    let local = local_segment_count(dir.path());

    // Two uploads go through, the third fails: the first two are archived.
    flaky.puts_left.store(2, Ordering::SeqCst);
    let e = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap_err();
    assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{e}");
    assert_eq!(log.archived_segments().len(), 2);
    assert_eq!(local_segment_count(dir.path()), local - 2);
    check_all(&log, 2_000);

    // A failed verification: nothing more is archived or deleted.
    flaky.fail_put.store(false, Ordering::SeqCst);
    flaky.puts_left.store(u64::MAX, Ordering::SeqCst);
    flaky.fail_verify.store(true, Ordering::SeqCst);
    assert!(log.archive_at(&ArchivePolicy::everything_sealed(), 0).is_err());
    assert_eq!(log.archived_segments().len(), 2);
    assert_eq!(local_segment_count(dir.path()), local - 2);
    check_all(&log, 2_000);

    flaky.fail_verify.store(false, Ordering::SeqCst);
    let out = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    assert_eq!(out.segments_archived, local - 3);
    assert_eq!(local_segment_count(dir.path()), 1);
    check_all(&log, 2_000);
}

#[test]
fn unreachable_archive_on_read_is_a_typed_error_then_reads_work() {
    let (dir, _arch, flaky, log) = archiving_log(Flaky::new, 2_000);
    let _ = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    log.close().unwrap();

    let log = Log::open(dir.path(), cfg(flaky.clone())).unwrap();
    flaky.fail_get.store(true, Ordering::SeqCst);
    let e = log.get(0).unwrap_err();
    assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{e}");
    let mut reader = log.read_from(0).map(Some).unwrap_or(None);
    if let Some(r) = reader.as_mut() {
        assert!(r.next_record().is_err());
    }
    flaky.fail_get.store(false, Ordering::SeqCst);
    check_all(&log, 2_000);
    log.close().unwrap();

    // Without a store configured: a typed error naming the configuration.
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    let e = log.get(0).unwrap_err();
    assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{e}");
    assert!(e.to_string().contains("no archive store"), "{e}");
    // The local tail is still readable.
    let last = log.next_offset() - 1;
    assert_eq!(log.get(last).unwrap().value.as_deref(), Some(&value_for(last, 300)[..]));
    // Archiving needs a store.
    assert!(matches!(log.archive_at(&ArchivePolicy::everything_sealed(), 0), Err(Error::InvalidConfig(_))));
}

#[test]
fn the_cache_stays_within_its_bound_and_fetches_in_ranges() {
    let dir = fast_tempdir();
    let arch = fast_tempdir();
    let flaky = Flaky::new(arch.path());
    // Segments of 64 KiB: the cache holds two of them at most.
    let config = cfg(flaky.clone()).with_archive_cache_bytes(140 * 1024).with_max_open_segments(1);
    let log = Log::open(dir.path(), config).unwrap();
    fill(&log, 3_000);
    let _ = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    let archived = log.archived_segments();
    assert!(archived.len() >= 5);
    let cache = dir.path().join(annal::log::ARCHIVE_CACHE_DIR_NAME);
    let cache_bytes =
        || -> u64 { std::fs::read_dir(&cache).map_or(0, |d| d.map(|e| e.unwrap().metadata().unwrap().len()).sum()) };
    for _ in 0..2 {
        for a in &archived {
            let r = log.get(a.base_offset + 1).unwrap();
            assert_eq!(r.value.as_deref(), Some(&value_for(a.base_offset + 1, 300)[..]));
            assert!(cache_bytes() <= 140 * 1024, "{} bytes cached", cache_bytes());
            assert!(log.archive_cache_bytes() <= 140 * 1024);
        }
    }
    // Every fetch read the object in FETCH_CHUNK pieces (one per small segment).
    assert!(flaky.gets.load(Ordering::SeqCst) >= 2 * archived.len() as u64);
    check_all(&log, 3_000);
}

#[test]
fn readers_cross_the_archived_local_boundary_while_archival_runs() {
    let (dir, _arch, _store, log) = archiving_log(local_store, 2_000);
    let _ = log.archive_at(&ArchivePolicy::default().with_max_local_bytes(130_000), 0).unwrap();
    let boundary = log.archived_segments().last().unwrap().next_offset;
    // A reader positioned in the last archived segment, holding it mapped...
    let mut reader = log.read_from(boundary - 3).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().offset(), boundary - 3);
    // ...while the segments after it are archived too: their local files go
    // only when the reader lets go of them.
    let mut mid = log.read_from(boundary + 1).unwrap();
    mid.next_record().unwrap().unwrap();
    let out = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    assert!(out.deferred >= 1, "{out:?}");
    let mut next = boundary - 2;
    while let Some(r) = reader.next_record().unwrap() {
        assert_eq!(r.offset(), next);
        assert_eq!(r.value(), Some(&value_for(next, 300)[..]));
        next += 1;
    }
    assert_eq!(next, 2_000);
    drop((reader, mid));
    assert_eq!(local_segment_count(dir.path()), 1);
    check_all(&log, 2_000);
}

#[test]
fn retention_deletes_archived_segments_and_their_objects() {
    let (dir, _arch, flaky, log) = archiving_log(Flaky::new, 2_000);
    let _ = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    let archived = log.archived_segments();
    log.get(0).unwrap(); // cached
    let cut = archived[2].base_offset + 1;
    let out = log.delete_before(cut).unwrap();
    assert_eq!((out.segments_deleted, out.archived_deleted), (2, 2));
    for a in &archived[..2] {
        assert!(flaky.head(&a.key).unwrap().is_none(), "{} still stored", a.key);
    }
    assert_eq!(log.archived_segments(), archived[2..].to_vec());
    assert!(matches!(log.get(0), Err(Error::OffsetOutOfRange { .. })));
    check_all(&log, 2_000);

    // Deletion failures leave orphans that the next archival run removes.
    flaky.fail_delete.store(true, Ordering::SeqCst);
    let cut = archived[4].base_offset;
    assert_eq!(log.delete_before(cut).unwrap().archived_deleted, 2);
    assert!(flaky.head(&archived[2].key).unwrap().is_some());
    flaky.fail_delete.store(false, Ordering::SeqCst);
    assert_eq!(log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap().orphans_deleted, 2);
    assert!(flaky.head(&archived[2].key).unwrap().is_none());
    log.close().unwrap();

    // Size retention counts archived bytes as part of the log.
    let log = Log::open(dir.path(), cfg(flaky.clone())).unwrap();
    assert_eq!(log.archived_segments(), archived[4..].to_vec());
    let out = log.apply_retention_at(&annal::Retention::default().with_max_bytes(1), 0).unwrap();
    assert_eq!(out.archived_deleted, archived.len() - 4);
    assert!(log.archived_segments().is_empty());
    assert!(flaky.list("t/").unwrap().is_empty());
}

#[test]
fn a_damaged_manifest_is_corruption_naming_it() {
    let (dir, _arch, store, log) = archiving_log(local_store, 1_000);
    let _ = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    log.close().unwrap();
    let path = dir.path().join(ARCHIVE_MANIFEST_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    for result in [Log::open(dir.path(), cfg(store.clone())), Log::open_read_only(dir.path(), cfg(store))] {
        match result {
            Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn a_corrupted_object_is_an_integrity_error_not_bad_records() {
    let (_dir, arch, _store, log) = archiving_log(local_store, 1_000);
    let _ = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    let key = log.archived_segments()[0].key.clone();
    let object = arch.path().join(&key);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[300] ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let e = log.get(0).unwrap_err();
    assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Integrity), "{e}");
}

/// A crash (the handle abandoned, as if the process died) after a failure at
/// each step of an archival run: the log reopens with every record readable.
#[test]
fn a_crash_at_each_step_of_an_archival_run_loses_nothing() {
    // Steps: upload, verify, manifest rename, directory fsync after it, local delete.
    for step in 0..5 {
        let dir = fast_tempdir();
        let arch = fast_tempdir();
        let flaky = Flaky::new(arch.path());
        let fault = Arc::new(FaultIo::new());
        let log = Log::open(dir.path(), cfg(flaky.clone()).with_io(fault.clone())).unwrap();
        fill(&log, 1_500);
        log.sync().unwrap();
        let _ = log.archive_at(&ArchivePolicy::default().with_max_local_bytes(150_000), 0).unwrap();
        match step {
            0 => flaky.fail_put.store(true, Ordering::SeqCst),
            1 => flaky.fail_verify.store(true, Ordering::SeqCst),
            2 => {
                fault.only_files_ending_with(ARCHIVE_MANIFEST_FILE_NAME);
                fault.set_fail_rename(true);
            }
            3 => fault.set_fail_sync_dir(true),
            _ => fault.fail_remove.store(true, Ordering::SeqCst),
        }
        let result = log.archive_at(&ArchivePolicy::everything_sealed(), 0);
        assert_eq!(result.is_ok(), step == 4, "step {step}: {result:?}");
        log.abandon();
        flaky.fail_put.store(false, Ordering::SeqCst);
        flaky.fail_verify.store(false, Ordering::SeqCst);

        let log = Log::open(dir.path(), cfg(flaky.clone())).unwrap();
        check_all(&log, 1_500);
        let report = log.recovery_report();
        if step >= 3 {
            // The manifest was replaced: its segments are archived, and the
            // local copies left behind were removed at open.
            assert!(!report.removed_archived_copies.is_empty(), "step {step}: {report:?}");
        }
        // The next run completes.
        let _ = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
        assert_eq!(local_segment_count(dir.path()), 1, "step {step}");
        check_all(&log, 1_500);
    }
}

#[test]
fn a_store_archives_every_topic_and_its_background_thread_too() {
    use annal::{TopicConfig, TopicStore, TopicStoreConfig};
    let dir = fast_tempdir();
    let arch = fast_tempdir();
    let archive: Arc<dyn ArchiveStore> = Arc::new(LocalDirArchive::open(arch.path()).unwrap());
    let config = TopicStoreConfig::default()
        .with_log_config(small_cfg())
        .with_archive(Arc::clone(&archive), ArchivePolicy::everything_sealed());
    let store = TopicStore::open(dir.path(), config.clone()).unwrap();
    let topic =
        store.create_topic("orders", TopicConfig::default().with_partitions(2).with_segment_bytes(64 * 1024)).unwrap();
    for i in 0..2_000u64 {
        topic.send_to((i % 2) as u32, &Record::new(&value_for(i, 300))).unwrap();
    }
    let report = store.run_archival().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.partitions.len(), 2);
    assert!(report.segments_archived() >= 4, "{report:?}");
    assert!(archive.head(&annal::archive::segment_key("orders", 1, 0)).unwrap().is_some());
    store.close().unwrap();

    let store = TopicStore::open(dir.path(), config.with_retention_interval(Duration::from_millis(20))).unwrap();
    let topic = store.topic("orders").unwrap();
    let archived_before = topic.archived_segments().unwrap().len();
    for i in 2_000..4_000u64 {
        topic.send_to((i % 2) as u32, &Record::new(&value_for(i, 300))).unwrap();
    }
    // Wait on the archived count, which only grows: the latest report may
    // already be of a later pass that found nothing left to move.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while topic.archived_segments().unwrap().len() <= archived_before {
        assert!(std::time::Instant::now() < deadline, "the background thread archived nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.last_archival().is_none() {
        assert!(std::time::Instant::now() < deadline, "the background thread kept no report");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(store.last_archival().unwrap().is_ok());
    for part in 0..2u32 {
        let mut reader = topic.read_from(part, 0).unwrap();
        let mut i = u64::from(part);
        while let Some(r) = reader.next_record().unwrap() {
            assert_eq!(r.value(), Some(&value_for(i, 300)[..]));
            i += 2;
        }
        assert_eq!(i, 4_000 + u64::from(part));
    }
}

/// A compacted (sparse) segment archived and read back: the manifest has no
/// flag for it, so the engine must tell it from its record count.
#[test]
fn compacted_segments_are_archived_and_read_back_with_their_gaps() {
    let (dir, _arch, store, log) = archiving_log(local_store, 0);
    // 40 keys rewritten many times: compaction leaves gaps everywhere.
    let mut latest = std::collections::BTreeMap::new();
    for i in 0..3_000u64 {
        let key = format!("k{}", i % 40);
        let value = value_for(i, 200);
        let o = log.append(&Record::new(&value).with_key(key.as_bytes())).unwrap();
        latest.insert(key, (o, value));
    }
    log.roll().unwrap();
    let out = log.compact(&annal::Compaction::default()).unwrap();
    assert!(out.records_removed > 2_000, "{out:?}");
    let _ = log.archive(&ArchivePolicy::everything_sealed()).unwrap();
    assert!(!log.archived_segments().is_empty());
    let check = |log: &Log| {
        let got: Vec<_> = read_all(log).unwrap();
        let want: Vec<_> = latest.values().map(|(o, v)| (*o, v.clone())).collect();
        let mut want = want;
        want.sort();
        let got: Vec<_> = got.into_iter().map(|r| (r.offset, r.value.unwrap())).collect();
        assert_eq!(got, want);
    };
    check(&log);
    // Compaction leaves archived segments whole, and while any exist it keeps
    // tombstones: an older value of their key may be in the archive.
    let archived_before = log.archived_segments();
    log.append(&Record::tombstone(b"k7").with_key(b"k7").with_timestamp(0)).unwrap();
    log.roll().unwrap();
    let out = log.compact_at(&annal::Compaction::default(), i64::MAX).unwrap();
    assert_eq!(out.tombstones_removed, 0, "{out:?}");
    assert_eq!(log.archived_segments(), archived_before);
    latest.remove("k7");
    let live: Vec<_> = read_all(&log).unwrap().into_iter().filter(|r| r.value.is_some()).collect();
    assert!(live.iter().all(|r| latest.values().any(|(o, _)| *o == r.offset) || r.key.as_deref() == Some(b"k7")));
    assert_eq!(read_all(&log).unwrap().last().unwrap().value, None, "the tombstone is kept");
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg(store)).unwrap();
    assert_eq!(log.archived_segments(), archived_before);
    assert_eq!(read_all(&log).unwrap().last().unwrap().value, None);
    log.close().unwrap();
}

/// The archive tier's core round trip against a real S3-compatible server
/// (s3s-fs on loopback, `tests/common/s3.rs`) through `ObjectStoreArchive`:
/// archive, read back identical, reopen, an unreachable store on read, then
/// success, and retention deleting the objects.
#[cfg(feature = "object-store")]
mod s3 {
    use annal::archive::{ObjectStoreArchive, S3Config};

    use super::*;
    use crate::common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, test_options};

    #[test]
    fn archival_round_trip_against_a_real_s3_server() {
        let server = S3Server::start();
        let store: Arc<dyn ArchiveStore> = Arc::new(ObjectStoreArchive::s3(&server.config(), test_options()).unwrap());
        let dir = fast_tempdir();
        let log = Log::open(dir.path(), cfg(Arc::clone(&store))).unwrap();
        fill(&log, 2_000);
        let sealed = log.segments().into_iter().filter(|s| s.sealed).count();
        assert!(sealed >= 4, "{sealed} sealed segments");
        let before = read_all(&log).unwrap();

        // Archive all but about one segment's worth of data.
        let archived = archive_all_but_about_one_segment(&log);
        for a in &archived {
            assert!(!dir.path().join(format!("{:020}.log", a.base_offset)).exists(), "local copy of {}", a.key);
            // What the server holds is what the manifest says.
            let on_server = std::fs::read(server.root.path().join(BUCKET).join(&a.key)).unwrap();
            assert_eq!(ObjectDigest::of(&on_server), ObjectDigest { size: a.size, crc32: a.crc32 }, "{}", a.key);
            assert_eq!(store.head(&a.key).unwrap().expect("object").size, a.size);
        }
        assert_eq!(local_segment_count(dir.path()), sealed + 1 - archived.len());
        assert_eq!(read_all(&log).unwrap(), before, "archived offsets read back through S3");
        assert_eq!(log.get(5).unwrap(), before[5]);
        log.close().unwrap();

        // Reopen: the manifest lists the same segments, fetched again from S3.
        reopen_and_append(dir.path(), Arc::clone(&store), &archived, &before);
        let ro = Log::open_read_only(dir.path(), cfg(Arc::clone(&store))).unwrap();
        check_all(&ro, 2_010);
        drop(ro);

        // An unreachable endpoint: reads of archived offsets fail with a typed
        // error, the local tail still reads; with the server back, all reads work.
        let dead = S3Config::new("http://127.0.0.1:1", BUCKET, ACCESS_KEY, SECRET_KEY).allow_http(true);
        let dead: Arc<dyn ArchiveStore> = Arc::new(ObjectStoreArchive::s3(&dead, test_options()).unwrap());
        let log = Log::open(dir.path(), cfg(dead)).unwrap();
        let e = log.get(0).unwrap_err();
        assert_eq!(e.archive_kind(), Some(ArchiveErrorKind::Unreachable), "{e}");
        if let Ok(mut reader) = log.read_from(0) {
            assert!(reader.next_record().is_err());
        }
        let last = log.next_offset() - 1;
        assert_eq!(log.get(last).unwrap().value.as_deref(), Some(&value_for(last, 300)[..]));
        log.close().unwrap();
        let log = Log::open(dir.path(), cfg(Arc::clone(&store))).unwrap();
        assert_eq!(log.get(0).unwrap(), before[0]);
        check_all(&log, 2_010);

        // Retention deletes archived segments' objects from the server.
        let cut = archived[2].base_offset + 1;
        let out = log.delete_before(cut).unwrap();
        assert_eq!((out.segments_deleted, out.archived_deleted), (2, 2));
        for a in &archived[..2] {
            assert!(store.head(&a.key).unwrap().is_none(), "{} still stored", a.key);
            assert!(!server.root.path().join(BUCKET).join(&a.key).exists());
        }
        assert_eq!(log.archived_segments(), archived[2..].to_vec());
        assert!(matches!(log.get(0), Err(Error::OffsetOutOfRange { .. })));
        check_all(&log, 2_010);
        log.close().unwrap();
        let log = Log::open(dir.path(), cfg(Arc::clone(&store))).unwrap();
        assert_eq!(log.archived_segments(), archived[2..].to_vec());
        let out = log.apply_retention_at(&annal::Retention::default().with_max_bytes(1), 0).unwrap();
        assert_eq!(out.archived_deleted, archived.len() - 2);
        assert!(log.archived_segments().is_empty());
        assert!(store.list("t/").unwrap().is_empty(), "objects left on the server");
        check_all(&log, 2_010);
        log.close().unwrap();
    }
}
