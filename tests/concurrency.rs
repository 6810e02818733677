//! Concurrency: readers next to a writer that rolls segments, tailing with
//! `wait_for`, and many appenders sharing fsyncs (group commit).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use annal::{Durability, Error, Log, Record};
use common::{FaultIo, Rng, key_for, read_all, value_for};

const MAX_VALUE: usize = 1500;

fn check_record(offset: u64, key: Option<&[u8]>, value: Option<&[u8]>, what: &str) {
    assert_eq!(key, Some(&key_for(offset)[..]), "{what}: key of {offset}");
    assert_eq!(value, Some(&value_for(offset, MAX_VALUE)[..]), "{what}: value of {offset}");
}

/// One writer appends batches (rolling 64 KiB segments about every hundred
/// records, with at most two sealed segments mapped at once) while three
/// readers read from the start or from random offsets to the current end,
/// over and over, and a fourth follows the tail. Every reader sees only
/// complete records, in order, with dense offsets and the right contents, and
/// at least as many as `next_offset()` said existed before it started.
#[test]
fn readers_see_complete_dense_records_while_the_writer_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::small_cfg().with_max_open_segments(2);
    let log = Log::open(tmp.path(), cfg).unwrap();
    const TOTAL: u64 = 8_000;
    let done = AtomicBool::new(false);
    let passes = AtomicU64::new(0);

    thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng::new(1);
            let mut next = 0;
            while next < TOTAL {
                let n = rng.range(1, 17).min(TOTAL - next);
                let keys: Vec<Vec<u8>> = (next..next + n).map(key_for).collect();
                let values: Vec<Vec<u8>> = (next..next + n).map(|o| value_for(o, MAX_VALUE)).collect();
                let batch: Vec<Record<'_>> =
                    keys.iter().zip(&values).map(|(k, v)| Record::new(v).with_key(k)).collect();
                assert_eq!(log.append_batch(&batch).unwrap(), next..next + n);
                next += n;
                if rng.range(0, 8) == 0 {
                    thread::yield_now();
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        for id in 0..3u64 {
            let log = &log;
            let done = &done;
            let passes = &passes;
            s.spawn(move || {
                let mut rng = Rng::new(100 + id);
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let end = log.next_offset();
                    let from = if rng.range(0, 3) == 0 || end == 0 { 0 } else { rng.range(0, end) };
                    let what = format!("reader {id} from {from} (end {end})");
                    let mut reader = log.read_from(from).unwrap();
                    let mut expect = from;
                    while let Some(r) = reader.next_record().unwrap() {
                        assert_eq!(r.offset(), expect, "{what}: offsets are dense");
                        check_record(r.offset(), r.key(), r.value(), &what);
                        expect += 1;
                    }
                    assert!(expect >= end, "{what}: saw only up to {expect}");
                    if end > 0 {
                        let at = rng.range(0, end);
                        let r = log.get(at).unwrap();
                        check_record(r.offset, r.key.as_deref(), r.value.as_deref(), &what);
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                    if finished {
                        assert_eq!(expect, TOTAL);
                        break;
                    }
                }
            });
        }
        // The tail follower: one reader for the whole run, waiting at the end.
        s.spawn(|| {
            let mut reader = log.read_from(0).unwrap();
            let mut expect = 0;
            while expect < TOTAL {
                match reader.next_record().unwrap() {
                    Some(r) => {
                        assert_eq!(r.offset(), expect);
                        check_record(r.offset(), r.key(), r.value(), "tail follower");
                        expect += 1;
                    }
                    None => {
                        log.wait_for(expect, Duration::from_millis(100));
                    }
                }
            }
            assert!(reader.next_record().unwrap().is_none());
        });
    });
    assert!(passes.load(Ordering::Relaxed) >= 3);
    let segments = log.segments();
    assert!(segments.len() > 20, "the writer must roll often: {} segments", segments.len());
    let all = read_all(&log).unwrap();
    assert_eq!(all.len() as u64, TOTAL);
    log.close().unwrap();
}

/// Readers keep working on what they hold while the log is closed under them
/// and while segments roll: they never see half a record.
#[test]
fn readers_survive_close_of_the_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path(), common::tiny_cfg()).unwrap();
    for o in 0..200 {
        log.append(&Record::new(&value_for(o, MAX_VALUE)).with_key(&key_for(o))).unwrap();
    }
    let mut reader = log.read_from(0).unwrap();
    let mut tail = log.read_from(200).unwrap();
    log.close().unwrap();
    let mut n = 0;
    while let Some(r) = reader.next_record().unwrap() {
        check_record(r.offset(), r.key(), r.value(), "after close");
        n += 1;
    }
    assert_eq!(n, 200);
    assert!(tail.next_record().unwrap().is_none());
}

#[test]
fn wait_for_wakes_promptly_and_times_out() {
    let tmp = common::fast_tempdir();
    let log = Log::open(tmp.path(), common::tiny_cfg()).unwrap();
    let value = vec![7u8; 1000];

    // Nothing appended: false after about the timeout.
    let t = Instant::now();
    assert!(!log.wait_for(0, Duration::from_millis(150)));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(5), "{waited:?}");

    for round in 0..10u64 {
        // Several waiters for the next record; it lands in a new segment every few rounds.
        let target = log.next_offset();
        let woke: Vec<(bool, Duration)> = thread::scope(|s| {
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let log = &log;
                    s.spawn(move || {
                        let ok = log.wait_for(target, Duration::from_secs(20));
                        (ok, Instant::now())
                    })
                })
                .collect();
            thread::sleep(Duration::from_millis(30));
            assert!(waiters.iter().all(|w| !w.is_finished()), "round {round}: a waiter returned early");
            let appended = Instant::now();
            assert_eq!(log.append(&Record::new(&value)).unwrap(), target);
            waiters
                .into_iter()
                .map(|w| {
                    let (ok, at) = w.join().unwrap();
                    (ok, at.saturating_duration_since(appended))
                })
                .collect()
        });
        for (ok, latency) in &woke {
            assert!(ok, "round {round}: a waiter must see record {target}");
            assert!(*latency < Duration::from_secs(5), "round {round}: woke {latency:?} after the append");
        }
    }

    // Promptness, measured from the append to the waiter's return.
    for _ in 0..5 {
        let target = log.next_offset() + 2;
        let (ok, latency) = thread::scope(|s| {
            let w = s.spawn(|| {
                let ok = log.wait_for(target, Duration::from_secs(20));
                (ok, Instant::now())
            });
            thread::sleep(Duration::from_millis(20));
            // A batch of one is not enough; the waiter keeps waiting.
            log.append(&Record::new(b"one")).unwrap();
            thread::sleep(Duration::from_millis(20));
            assert!(!w.is_finished(), "woke for a record before the one it waits for");
            let appended = Instant::now();
            log.append_batch(&[Record::new(b"two"), Record::new(b"three")]).unwrap();
            let (ok, at) = w.join().unwrap();
            (ok, at.saturating_duration_since(appended))
        });
        assert!(ok);
        assert!(latency < Duration::from_secs(5), "woke {latency:?} after the append");
    }

    // Already there: true at once, even with a zero timeout.
    assert!(log.wait_for(0, Duration::ZERO));
    assert!(log.wait_for(log.next_offset() - 1, Duration::ZERO));
    assert!(!log.wait_for(log.next_offset(), Duration::ZERO));
}

/// Many threads append one record at a time under `Durability::Always`: every
/// append gets a distinct offset, together dense from 0; each thread's offsets
/// increase; every record is readable with the right contents, also after a
/// crash; and fsyncs are shared (fewer than one per append is typical, never
/// more than one per append plus the rolls').
#[test]
fn concurrent_appenders_with_group_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    let cfg = || common::small_cfg().with_durability(Durability::Always).with_io(io.clone());
    let log = Log::open(&dir, cfg()).unwrap();
    const THREADS: u64 = 6;
    const PER_THREAD: u64 = 120;
    let syncs_before = io.sync_count();

    let offsets: Vec<Vec<u64>> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..PER_THREAD {
                        let value = format!("thread {t} record {i} ").repeat(1 + (i as usize % 40));
                        let key = t.to_le_bytes();
                        if i % 10 == 9 {
                            let v2 = format!("thread {t} record {i}b ");
                            let r = log
                                .append_batch(&[
                                    Record::new(value.as_bytes()).with_key(&key),
                                    Record::new(v2.as_bytes()).with_key(&key),
                                ])
                                .unwrap();
                            assert_eq!(r.end - r.start, 2);
                            mine.extend(r);
                        } else {
                            mine.push(log.append(&Record::new(value.as_bytes()).with_key(&key)).unwrap());
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let appends = THREADS * PER_THREAD;
    let total = appends + THREADS * (PER_THREAD / 10);
    let mut all: Vec<u64> = offsets.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..total).collect::<Vec<_>>(), "distinct, dense offsets");
    for mine in &offsets {
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "a thread's offsets increase");
    }
    let check = |log: &Log| {
        for (t, mine) in offsets.iter().enumerate() {
            let mut i = 0;
            let mut k = 0;
            while k < mine.len() {
                let r = log.get(mine[k]).unwrap();
                assert_eq!(r.key.as_deref(), Some(&(t as u64).to_le_bytes()[..]));
                let want = format!("thread {t} record {i} ").repeat(1 + (i as usize % 40));
                assert_eq!(r.value.as_deref(), Some(want.as_bytes()));
                if i % 10 == 9 {
                    let r = log.get(mine[k + 1]).unwrap();
                    assert_eq!(r.value.as_deref(), Some(format!("thread {t} record {i}b ").as_bytes()));
                    k += 1;
                }
                k += 1;
                i += 1;
            }
        }
    };
    check(&log);
    let syncs = io.sync_count() - syncs_before;
    let rolls = log.segments().len() as u64;
    assert!(syncs <= appends + rolls * 6, "{syncs} fsyncs for {appends} appends");
    eprintln!("group commit: {syncs} fsyncs for {appends} appends by {THREADS} threads ({rolls} segments)");
    log.abandon();
    let log = Log::open(&dir, cfg()).unwrap();
    assert_eq!(log.next_offset(), total);
    check(&log);
}

/// An fsync fails while several threads append under `Durability::Always`:
/// no thread is told that a record is durable unless an fsync covering it
/// succeeded. Once a thread saw an error it sees only errors; the log is
/// failed; and every acknowledged record is present after reopening.
#[test]
fn failed_fsync_with_concurrent_appenders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    let log = Log::open(&dir, common::small_cfg().with_durability(Durability::Always).with_io(io.clone())).unwrap();
    io.fail_sync_after(40);
    let acked: Vec<Vec<(u64, String)>> = thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let mut acked = Vec::new();
                    let mut failed = false;
                    for i in 0..200 {
                        let value = format!("t{t}-{i}");
                        match log.append(&Record::new(value.as_bytes())) {
                            Ok(o) => {
                                assert!(!failed, "thread {t}: an append succeeded after one failed");
                                acked.push((o, value));
                            }
                            Err(e) => {
                                if failed {
                                    assert!(matches!(e, Error::Failed { .. }), "{e}");
                                }
                                failed = true;
                            }
                        }
                    }
                    assert!(failed, "thread {t}: the fsync failure must reach every appender");
                    acked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(log.failure().is_some());
    let n_acked: usize = acked.iter().map(Vec::len).sum();
    assert!(n_acked > 0 && n_acked < 800);
    drop(log);
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    for (o, v) in acked.iter().flatten() {
        assert_eq!(log.get(*o).unwrap().value.as_deref(), Some(v.as_bytes()), "acknowledged offset {o}");
    }
    let all = read_all(&log).unwrap();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        assert!(v.starts_with('t'), "{v}: a record nobody wrote");
    }
}

/// A reader that rebuilds the missing index of the last sealed segment while
/// the writer reopens that segment for appending and seals it again: the
/// rebuilt index files are written only while the segment is still sealed as
/// it was, under the writer's lock, so the two never write the same files at
/// once (they used to share a temporary file name, and one rename failed).
#[test]
fn a_reader_rebuilding_an_index_races_the_writer_reopening_the_segment() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let cfg = || common::small_cfg().with_index_interval_bytes(64);
    let mut next = 0u64;
    for round in 0..150u64 {
        let log = Log::open(&dir, cfg()).unwrap();
        for _ in 0..3 {
            log.append(&Record::new(&value_for(next, 200))).unwrap();
            next += 1;
        }
        // Reopened with the last segment sealed and its index files gone.
        log.close().unwrap();
        let last = common::segment_files(&dir).pop().unwrap();
        for ext in ["index", "timeindex"] {
            let _ = std::fs::remove_file(last.with_extension(ext));
        }
        let log = Log::open(&dir, cfg()).unwrap();
        thread::scope(|s| {
            s.spawn(|| {
                let n = log.read_from(0).unwrap().map(Result::unwrap).count() as u64;
                assert!(n >= next, "round {round}: read {n} of {next}");
            });
            s.spawn(|| {
                log.append(&Record::new(b"x")).unwrap();
                log.roll().unwrap();
            });
        });
        next += 1;
        log.close().unwrap();
    }
    let report = annal::inspect::verify(&dir).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
}
