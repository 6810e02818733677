//! Retention of one log: `delete_before` (the log start offset), retention by
//! age and by size, live readers, crashes between the steps, and the
//! start-offset file.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use annal::{Error, Log, LogConfig, Record, Retention};
use common::{FaultIo, await_workers, fast_tempdir, read_all, segment_files, small_cfg, value_for};
use tempfile::TempDir;

/// Appends `n` records whose values derive from their offsets (`value_for`).
fn fill(log: &Log, n: u64) {
    for _ in 0..n {
        let o = log.next_offset();
        log.append(&Record::new(&value_for(o, 300))).unwrap();
    }
}

/// A log in a fresh directory holding `n` records (`fill`).
fn filled_log(n: u64) -> (TempDir, Log) {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    fill(&log, n);
    (dir, log)
}

/// The same over a [`FaultIo`]: (directory, io, configuration, log).
fn filled_faulty_log(n: u64) -> (TempDir, Arc<FaultIo>, LogConfig, Log) {
    let dir = fast_tempdir();
    let io = Arc::new(FaultIo::new());
    let cfg = small_cfg().with_io(io.clone());
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    fill(&log, n);
    (dir, io, cfg, log)
}

fn assert_out_of_range(e: Error, requested: u64, start: u64) {
    match e {
        Error::OffsetOutOfRange { requested: r, start: s, .. } => assert_eq!((r, s), (requested, start)),
        other => panic!("expected OffsetOutOfRange({requested}, start {start}), got {other}"),
    }
}

fn sealed_bases(log: &Log) -> Vec<u64> {
    log.segments().iter().filter(|s| s.sealed).map(|s| s.base_offset).collect()
}

#[test]
fn delete_before_moves_the_start_and_deletes_whole_segments_durably() {
    let (dir, log) = filled_log(2_000);
    let segs = log.segments();
    assert!(segs.len() >= 4, "{segs:?}");
    // A cut in the middle of the third segment.
    let cut = segs[2].base_offset + (segs[2].next_offset - segs[2].base_offset) / 2;
    let files_before = segment_files(dir.path()).len();

    let out = log.delete_before(cut).unwrap();
    assert_eq!(out.start_offset, cut);
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(out.deferred, 0);
    assert_eq!(log.start_offset(), cut);
    assert_eq!(segment_files(dir.path()).len(), files_before - 2);
    assert!(!dir.path().join(format!("{:020}.log", segs[0].base_offset)).exists());
    assert_eq!(sealed_bases(&log)[0], segs[2].base_offset);

    // Below the start: typed errors carrying the start; at the start: records.
    assert_out_of_range(log.read_from(cut - 1).unwrap_err(), cut - 1, cut);
    assert_out_of_range(log.get(0).unwrap_err(), 0, cut);
    let rest = read_all(&log).unwrap();
    assert_eq!(rest.len() as u64, 2_000 - cut);
    for r in &rest {
        assert_eq!(r.value.as_deref(), Some(&value_for(r.offset, 300)[..]));
    }
    // Backwards does nothing; past the end is refused.
    assert_eq!(log.delete_before(5).unwrap().segments_deleted, 0);
    assert_eq!(log.start_offset(), cut);
    assert_out_of_range(log.delete_before(2_001).unwrap_err(), 2_001, cut);
    log.close().unwrap();

    // The start survives a reopen, read-only and read-write.
    let ro = Log::open_read_only(dir.path(), small_cfg()).unwrap();
    assert_eq!(ro.start_offset(), cut);
    assert_eq!(read_all(&ro).unwrap().len() as u64, 2_000 - cut);
    drop(ro);
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    assert_eq!((log.start_offset(), log.next_offset()), (cut, 2_000));
    assert_out_of_range(log.read_from(0).unwrap_err(), 0, cut);
    log.close().unwrap();
}

#[test]
fn a_log_emptied_by_retention_keeps_its_offsets_across_close() {
    let (dir, log) = filled_log(500);
    log.roll().unwrap();
    let out = log.delete_before(500).unwrap();
    assert!(out.segments_deleted >= 1);
    // The active segment is empty: close removes it, leaving no segment at all.
    log.close().unwrap();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    assert_eq!((log.start_offset(), log.next_offset()), (500, 500));
    assert_eq!(log.append(&Record::new(b"after")).unwrap(), 500);
    assert_eq!(log.get(500).unwrap().value.as_deref(), Some(&b"after"[..]));
    log.close().unwrap();
}

#[test]
fn a_reader_in_a_deleted_segment_gets_out_of_range_and_the_file_goes_when_it_lets_go() {
    let (dir, log) = filled_log(2_000);
    let segs = log.segments();
    let first = dir.path().join(format!("{:020}.log", segs[0].base_offset));

    // A reader in the middle of the first segment, holding a borrowed record.
    let mut reader = log.read_from(3).unwrap();
    let held = reader.next_record().unwrap().unwrap().value().unwrap().to_vec();
    assert_eq!(held, value_for(3, 300));

    let out = log.delete_before(segs[1].next_offset).unwrap();
    assert_eq!(out.segments_deleted, 2);
    assert_eq!(out.deferred, 1, "the reader holds the first segment");
    assert!(first.exists(), "deleted under a reader");

    // Its next read is below the start: a typed error with the new start, no crash.
    assert_out_of_range(reader.next_record().unwrap_err(), 4, segs[1].next_offset);
    drop(reader);
    assert!(!first.exists(), "the last holder let go: the file must go");

    // Repositioning at the start works.
    let mut reader = log.read_from(log.start_offset()).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().offset(), segs[1].next_offset);
    log.close().unwrap();
}

#[test]
fn retention_by_size_keeps_the_newest_segments_and_never_the_active_one() {
    let (_dir, log) = filled_log(3_000);
    let before = log.segments();
    let total: u64 = before.iter().map(|s| s.data_bytes).sum();
    let limit = total / 3;
    let out = log.apply_retention(&Retention::default().with_max_bytes(limit)).unwrap();
    let after = log.segments();
    let kept: u64 = after.iter().map(|s| s.data_bytes).sum();
    assert!(kept <= limit, "kept {kept} > {limit}");
    // Minimal: putting back the newest deleted segment would pass the limit.
    let newest_deleted = before.iter().rev().find(|s| s.base_offset < after[0].base_offset).unwrap();
    assert!(kept + newest_deleted.data_bytes > limit);
    assert_eq!(out.bytes_deleted, total - kept);
    assert_eq!(log.start_offset(), after[0].base_offset);

    // A limit of zero deletes every sealed segment, never the active one.
    let _ = log.apply_retention(&Retention::default().with_max_bytes(0)).unwrap();
    let left = log.segments();
    assert_eq!(left.len(), 1);
    assert!(!left[0].sealed);
    assert_eq!(read_all(&log).unwrap().last().unwrap().offset, 2_999);
    log.close().unwrap();
}

#[test]
fn retention_by_age_uses_each_segments_newest_timestamp() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    let day = 86_400_000i64;
    let now = 100 * day;
    // Three segments of records 10, 5 and 1 days old, then the active one.
    for age in [10, 5, 1] {
        for i in 0..50 {
            log.append(&Record::new(b"v").with_timestamp(now - age * day + i)).unwrap();
        }
        log.roll().unwrap();
    }
    log.append(&Record::new(b"now").with_timestamp(now)).unwrap();
    let week = Duration::from_millis(7 * day as u64);
    let out = log.apply_retention_at(&Retention::default().with_max_age(week), now).unwrap();
    assert_eq!((out.segments_deleted, out.start_offset), (1, 50));
    let two_days = Duration::from_millis(2 * day as u64);
    let out = log.apply_retention_at(&Retention::default().with_max_age(two_days), now).unwrap();
    assert_eq!((out.segments_deleted, out.start_offset), (1, 100));
    // The timestamp index answers from the start, never below it.
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(100));
    assert_eq!(log.offset_for_timestamp(now).unwrap(), Some(150));
    // Nothing is old enough for an hour-long limit to reach the active segment.
    let out = log.apply_retention_at(&Retention::default().with_max_age(Duration::from_secs(3600)), now).unwrap();
    assert_eq!(out.start_offset, 150);
    assert_eq!(log.segments().len(), 1);
    log.close().unwrap();
}

#[test]
fn files_left_by_a_failed_delete_are_removed_at_the_next_open() {
    let (dir, io, cfg, log) = filled_faulty_log(2_000);
    let segs = log.segments();
    io.fail_remove.store(true, Ordering::SeqCst);
    // The start moves (it is recorded first); the deletion fails and says so.
    let err = log.delete_before(segs[1].next_offset).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(log.start_offset(), segs[1].next_offset);
    assert!(dir.path().join(format!("{:020}.log", segs[0].base_offset)).exists());
    io.fail_remove.store(false, Ordering::SeqCst);
    log.close().unwrap();

    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.recovery_report().removed_below_start.len(), 2);
    assert!(!dir.path().join(format!("{:020}.log", segs[0].base_offset)).exists());
    assert_eq!(log.start_offset(), segs[1].next_offset);
    assert_eq!(read_all(&log).unwrap().len() as u64, 2_000 - segs[1].next_offset);
    log.close().unwrap();
}

#[test]
fn a_failed_start_offset_write_changes_nothing() {
    let (dir, io, _, log) = filled_faulty_log(2_000);
    let files = segment_files(dir.path());
    io.set_fail_rename(true);
    assert!(log.delete_before(1_000).is_err());
    io.set_fail_rename(false);
    assert_eq!(log.start_offset(), 0);
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(read_all(&log).unwrap().len(), 2_000);
    log.close().unwrap();
}

#[test]
fn a_damaged_start_offset_file_is_reported_not_ignored() {
    let (dir, log) = filled_log(2_000);
    let _ = log.delete_before(1_500).unwrap();
    log.close().unwrap();
    let path = dir.path().join(annal::log::START_OFFSET_FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    assert_eq!(good.len(), 32);
    for (what, bytes) in [
        ("a flipped bit", {
            let mut b = good.clone();
            b[17] ^= 0x01;
            b
        }),
        ("truncated", good[..20].to_vec()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        for result in [Log::open(dir.path(), small_cfg()), Log::open_read_only(dir.path(), small_cfg())] {
            match result {
                Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path, "{what}"),
                other => panic!("{what}: expected corruption, got {other:?}"),
            }
        }
    }
    std::fs::write(&path, &good).unwrap();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    assert_eq!(log.start_offset(), 1_500);
    log.close().unwrap();
}

#[test]
fn the_start_offset_file_bytes_are_pinned() {
    let (dir, log) = filled_log(10);
    let _ = log.delete_before(7).unwrap();
    log.close().unwrap();
    let path = dir.path().join(annal::log::START_OFFSET_FILE_NAME);
    let bytes = std::fs::read(&path).unwrap();
    // Version 2: the small-file envelope around the offset.
    let mut expected = Vec::new();
    expected.extend_from_slice(b"ANNALSTO");
    expected.extend_from_slice(&2u16.to_le_bytes()); // version
    expected.extend_from_slice(&0u16.to_le_bytes()); // flags
    expected.extend_from_slice(&8u32.to_le_bytes()); // body length
    expected.extend_from_slice(&7u64.to_le_bytes()); // the start offset
    let crc = crc32fast::hash(&expected);
    expected.extend_from_slice(&crc.to_le_bytes());
    expected.extend_from_slice(&[0; 4]);
    assert_eq!(bytes, expected);

    // Version 1, written before the envelope, is still read.
    let mut v1 = Vec::new();
    v1.extend_from_slice(b"ANNALSTO");
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&[0; 4]);
    v1.extend_from_slice(&8u64.to_le_bytes());
    let crc = crc32fast::hash(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    v1.extend_from_slice(&[0; 4]);
    std::fs::write(&path, &v1).unwrap();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    assert_eq!(log.start_offset(), 8);
    // Moving the start again writes version 2.
    let _ = log.delete_before(9).unwrap();
    log.close().unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[8..10], &2u16.to_le_bytes());
    // A damaged version 1 file is corruption, as a damaged version 2 one is.
    v1[17] ^= 1;
    std::fs::write(&path, &v1).unwrap();
    assert!(matches!(Log::open(dir.path(), small_cfg()), Err(Error::Corruption { .. })));
}

/// Readers scan from the start over and over while a writer appends and
/// retention deletes behind them. Every record a reader returns is the right
/// one; a reader overtaken by the start gets `OffsetOutOfRange` and restarts.
#[test]
fn readers_race_retention_without_crashing_or_misreading() {
    let (dir, log) = filled_log(1_000);
    let stop = AtomicBool::new(false);
    let running = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (mut read, mut overtaken) = (0u64, 0u64);
                    while !stop.load(Ordering::SeqCst) {
                        let mut reader = match log.read_from(log.start_offset()) {
                            Ok(r) => r,
                            Err(Error::OffsetOutOfRange { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        };
                        loop {
                            match reader.next_record() {
                                Ok(Some(r)) => {
                                    assert_eq!(r.value().unwrap(), &value_for(r.offset(), 300)[..]);
                                    read += 1;
                                    if read == 1 {
                                        running.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                Ok(None) => break,
                                Err(Error::OffsetOutOfRange { start, .. }) => {
                                    assert!(start > reader.next_offset());
                                    overtaken += 1;
                                    break;
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    (read, overtaken)
                })
            })
            .collect();
        // The workload starts once every worker is under way, so they race it.
        await_workers(&running, 2);
        for round in 0..40 {
            fill(&log, 200);
            let keep_from = log.next_offset().saturating_sub(600);
            if round % 2 == 0 {
                let _ = log.delete_before(keep_from).unwrap();
            } else {
                let _ = log.apply_retention(&Retention::default().with_max_bytes(100_000)).unwrap();
            }
        }
        stop.store(true, Ordering::SeqCst);
        for r in readers {
            let (read, _overtaken) = r.join().unwrap();
            assert!(read > 0);
        }
    });
    let start = log.start_offset();
    assert!(start > 0);
    let rest = read_all(&log).unwrap();
    assert_eq!(rest.first().unwrap().offset, start);
    assert_eq!(rest.last().unwrap().offset, log.next_offset() - 1);
    log.close().unwrap();
    // Nothing below the start is left on disk once every reader let go.
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    assert!(log.recovery_report().removed_below_start.is_empty());
    log.close().unwrap();
}
