//! The log against a model: a state machine of appends (single and batched),
//! reads from random offsets (with readers kept open across later operations),
//! lookups by time, syncs, rolls, reopen after a clean close and after a
//! crash, and read-only opens; size limits; and failure semantics with a
//! fault-injecting `Io`.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annal::segment::{DATA_START, FOOTER_LEN};
use annal::{Durability, Error, Header, Log, LogConfig, OwnedRecord, Record};
use common::{FaultIo, Rng, assert_same_files, header_refs, make_record, read_all, snapshot};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// A record to append, owned.
#[derive(Debug, Clone)]
struct Rec {
    key: Option<Vec<u8>>,
    /// `None`: a tombstone (which always has a key).
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: Option<i64>,
}

impl Rec {
    fn with<T>(&self, f: impl FnOnce(&Record<'_>) -> T) -> T {
        let headers = header_refs(&self.headers);
        f(&self.record(&headers))
    }

    fn record<'a>(&'a self, headers: &'a [Header<'a>]) -> Record<'a> {
        make_record(self.key.as_deref(), self.value.as_deref(), self.timestamp, headers)
    }

    /// The record as the log should return it; a missing timestamp is filled in later.
    fn owned(&self, offset: u64) -> OwnedRecord {
        OwnedRecord {
            offset,
            timestamp: self.timestamp.unwrap_or(i64::MIN),
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.headers.clone(),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Appends `recs` (one by one if `single`, else as one batch), checks the
/// offsets and extends the model, filling in append-time timestamps.
fn append_to_model(log: &Log, model: &mut Vec<OwnedRecord>, recs: &[Rec], single: bool) {
    let start = model.len() as u64;
    assert_eq!(log.next_offset(), start);
    let before = now_ms();
    if single {
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.with(|rec| log.append(rec)).unwrap(), start + i as u64);
        }
    } else {
        let headers: Vec<Vec<Header<'_>>> = recs.iter().map(|r| header_refs(&r.headers)).collect();
        let batch: Vec<Record<'_>> = recs.iter().zip(&headers).map(|(r, h)| r.record(h)).collect();
        // A batch is stored whole in one segment, or refused with nothing written.
        let room = log.config().segment_bytes() - (DATA_START + FOOTER_LEN) as u64;
        let size = annal::record::batch::encoded_len(&batch).map_or(0, |l| l as u64);
        if size > room {
            match log.append_batch(&batch) {
                Err(Error::BatchTooLarge { size: s, max }) => assert_eq!((s, max), (size, room)),
                other => panic!("a batch of {size} bytes in segments of {room}: {other:?}"),
            }
            assert_eq!(log.next_offset(), start, "a refused batch writes nothing");
            return;
        }
        assert_eq!(log.append_batch(&batch).unwrap(), start..start + recs.len() as u64);
    }
    let after = now_ms();
    for (i, r) in recs.iter().enumerate() {
        let offset = start + i as u64;
        let mut o = r.owned(offset);
        if r.timestamp.is_none() {
            let got = log.get(offset).unwrap().timestamp;
            assert!((before..=after).contains(&got), "append-time timestamp {got} outside {before}..={after}");
            o.timestamp = got;
        }
        model.push(o);
    }
    assert_eq!(log.next_offset(), model.len() as u64);
}

/// Compares the log with the model in every way the API offers.
fn check(log: &Log, model: &[OwnedRecord], rng: &mut Rng, what: &str) {
    let n = model.len() as u64;
    assert_eq!(log.start_offset(), 0, "{what}");
    assert_eq!(log.next_offset(), n, "{what}");
    let all = read_all(log).unwrap();
    assert_eq!(all.len(), model.len(), "{what}: record count");
    for (g, m) in all.iter().zip(model) {
        assert_eq!(g, m, "{what}");
    }
    // The borrowed reader agrees with the owned iterator.
    let mut reader = log.read_from(0).unwrap();
    let mut i = 0;
    while let Some(r) = reader.next_record().unwrap() {
        let m = &model[i];
        assert_eq!(
            (r.offset(), r.timestamp(), r.key(), r.value()),
            (m.offset, m.timestamp, m.key.as_deref(), m.value.as_deref()),
            "{what}"
        );
        i += 1;
    }
    assert_eq!(i, model.len(), "{what}");
    assert_eq!(reader.next_offset(), n);

    for _ in 0..5 {
        if n == 0 {
            break;
        }
        let at = rng.range(0, n);
        assert_eq!(log.get(at).unwrap(), model[at as usize], "{what}: get({at})");
        let suffix: Vec<_> = log.read_from(at).unwrap().map(Result::unwrap).collect();
        assert_eq!(suffix, model[at as usize..], "{what}: read_from({at})");
    }
    // Scattered reads: offsets in any order, with runs and repeats.
    if n > 0 {
        let mut offsets: Vec<u64> = (0..rng.range(1, 40)).map(|_| rng.range(0, n)).collect();
        let run_from = rng.range(0, n);
        offsets.extend(run_from..(run_from + rng.range(1, 20)).min(n));
        let mut got: Vec<Option<OwnedRecord>> = vec![None; offsets.len()];
        let mut seen = Vec::new();
        log.read_at(&offsets, |i, r| {
            assert!(got[i].is_none(), "{what}: read_at visited index {i} twice");
            seen.push(r.offset());
            got[i] = Some(r.to_owned());
            Ok::<(), Error>(())
        })
        .unwrap();
        assert!(seen.is_sorted(), "{what}: read_at visits in offset order: {seen:?}");
        for (i, &at) in offsets.iter().enumerate() {
            assert_eq!(got[i].as_ref(), Some(&model[at as usize]), "{what}: read_at(.., {at})");
        }
        let past = [0, n];
        match log.read_at(&past, |_, _| Ok::<(), Error>(())) {
            Err(Error::OffsetOutOfRange { requested, start, end }) => assert_eq!((requested, start, end), (n, 0, n)),
            other => panic!("{what}: read_at({past:?}) = {other:?}"),
        }
    }
    // The end: an empty reader; beyond it, out of range.
    assert_eq!(log.read_from(n).unwrap().count(), 0, "{what}");
    match log.get(n) {
        Err(Error::OffsetOutOfRange { requested, start, end }) => assert_eq!((requested, start, end), (n, 0, n)),
        other => panic!("{what}: get({n}) = {other:?}"),
    }
    for past in [n + 1, n + 1000, u64::MAX] {
        assert!(matches!(log.read_from(past), Err(Error::OffsetOutOfRange { .. })), "{what}: read_from({past})");
        assert!(matches!(log.get(past), Err(Error::OffsetOutOfRange { .. })), "{what}: get({past})");
    }
    // Timestamps are not monotonic: the first offset at or after t.
    let mut probes: Vec<i64> = vec![i64::MIN, i64::MAX, 0, 999_900, 1_000_100, now_ms() + 100_000];
    for _ in 0..12 {
        if let Some(r) = model.get(rng.range(0, n.max(1)) as usize) {
            probes.extend([r.timestamp - 1, r.timestamp, r.timestamp + 1]);
        }
        probes.push(999_940 + rng.range(0, 120) as i64);
    }
    for t in probes {
        let want = model.iter().find(|r| r.timestamp >= t).map(|r| r.offset);
        assert_eq!(log.offset_for_timestamp(t).unwrap(), want, "{what}: offset_for_timestamp({t})");
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `append` of one record.
    One(Rec),
    /// `append_batch` (or, at random, the same records one by one).
    Batch(Vec<Rec>),
    /// Reads up to `count` records with the reader kept from earlier reads
    /// (it has seen appends and rolls since), or with a new one at offset
    /// `at % (next_offset + 1)`.
    Read {
        at: u64,
        count: usize,
        fresh: bool,
    },
    /// `offset_for_timestamp`.
    ReadFromTimestamp(i64),
    Sync,
    /// `Log::roll`: seal the active segment, if it holds records.
    Roll,
    /// Close, then open.
    Reopen,
    /// `abandon` (nothing more reaches the files, the page cache survives),
    /// then open: nothing may be lost.
    Crash,
    /// A read-only handle next to the writer.
    ReadOnly,
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..24)),
        prop::option::weighted(0.95, 0usize..2000),
        prop::collection::vec(("[a-z-]{0,8}", prop::collection::vec(any::<u8>(), 0..16)), 0..=3),
        prop::option::of(-50i64..50),
        any::<u8>(),
    )
        .prop_map(|(key, value_len, headers, ts, fill)| {
            let value: Option<Vec<u8>> =
                value_len.map(|n| (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(fill)).collect());
            let key = if value.is_none() && key.is_none() { Some(b"tombstone".to_vec()) } else { key };
            Rec { key, value, headers, timestamp: ts.map(|t| 1_000_000 + t) }
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => rec_strategy().prop_map(Op::One),
        4 => prop::collection::vec(rec_strategy(), 0..10).prop_map(Op::Batch),
        3 => (any::<u64>(), 0usize..40, prop::bool::weighted(0.3))
            .prop_map(|(at, count, fresh)| Op::Read { at, count, fresh }),
        2 => prop_oneof![Just(i64::MIN), Just(i64::MAX), 999_940i64..1_000_060, any::<i64>()]
            .prop_map(Op::ReadFromTimestamp),
        1 => Just(Op::Sync),
        1 => Just(Op::Roll),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => Just(Op::ReadOnly),
    ]
}

/// Reads up to `count` records with `reader`, which must return the model's
/// records in order, and `None` only at the model's end.
fn read_some(reader: &mut annal::LogReader, model: &[OwnedRecord], count: usize, what: &str) {
    for _ in 0..count {
        let at = reader.next_offset();
        match reader.next_record().unwrap() {
            Some(r) => {
                let m = &model[at as usize];
                assert_eq!(r.to_owned(), *m, "{what}: the reader's record at {at}");
            }
            None => {
                assert_eq!(at, model.len() as u64, "{what}: the reader stopped before the end");
                break;
            }
        }
    }
}

fn model_cfg(segment_bytes: u64, interval: u32) -> LogConfig {
    LogConfig::default()
        .with_segment_bytes(segment_bytes)
        .with_index_interval_bytes(interval)
        .with_durability(Durability::Never)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(
        ops in prop::collection::vec(op_strategy(), 1..40),
        segment_bytes in prop_oneof![Just(8192u64), Just(16384), Just(65536)],
        interval in prop_oneof![Just(1u32), Just(200), Just(512), Just(8192)],
        seed in any::<u64>(),
    ) {
        let tmp = common::fast_tempdir();
        let dir = tmp.path().join("log");
        let cfg = || model_cfg(segment_bytes, interval);
        let mut rng = Rng::new(seed);
        let mut model: Vec<OwnedRecord> = Vec::new();
        let mut log = Log::open(&dir, cfg()).unwrap();
        let mut reader: Option<annal::LogReader> = None;
        for (i, op) in ops.iter().enumerate() {
            let what = format!("op {i} {:?}", std::mem::discriminant(op));
            let n = model.len() as u64;
            match op {
                Op::One(r) => append_to_model(&log, &mut model, std::slice::from_ref(r), true),
                Op::Batch(rs) => {
                    let single = rng.range(0, 4) == 0;
                    append_to_model(&log, &mut model, rs, single)
                }
                Op::Read { at, count, fresh } => {
                    if *fresh || reader.is_none() {
                        reader = Some(log.read_from(at % (n + 1)).unwrap());
                    }
                    read_some(reader.as_mut().unwrap(), &model, *count, &what);
                    continue;
                }
                Op::ReadFromTimestamp(t) => {
                    let want = model.iter().find(|r| r.timestamp >= *t).map(|r| r.offset);
                    prop_assert_eq!(log.offset_for_timestamp(*t).unwrap(), want, "{}: offset_for_timestamp({})", what, t);
                    continue;
                }
                Op::Sync => {
                    log.sync().unwrap();
                    prop_assert!(log.failure().is_none());
                }
                Op::Roll => {
                    let before = log.segments();
                    log.roll().unwrap();
                    let after = log.segments();
                    // An open log has no active segment until its first append.
                    let active = before.last().copied().filter(|s| !s.sealed);
                    if let Some(active) = active.filter(|a| a.next_offset > a.base_offset) {
                        prop_assert_eq!(after.len(), before.len() + 1, "{}: a roll adds a segment", what);
                        let sealed = after[after.len() - 2];
                        prop_assert!(sealed.sealed && sealed.base_offset == active.base_offset && sealed.next_offset == n);
                        let new = *after.last().unwrap();
                        prop_assert!(!new.sealed && new.base_offset == n && new.next_offset == n, "{}: {:?}", what, new);
                    } else {
                        prop_assert_eq!(&after, &before, "{}: rolling an empty segment changes nothing", what);
                    }
                }
                Op::Reopen => {
                    reader = None;
                    log.close().unwrap();
                    log = Log::open(&dir, cfg()).unwrap();
                    prop_assert_eq!(log.recovery_report().scanned_segment, None, "a clean close needs no scan");
                }
                Op::Crash => {
                    reader = None;
                    // An open log has no active segment until its first append.
                    let had_active = log.segments().last().is_some_and(|s| !s.sealed);
                    log.abandon();
                    log = Log::open(&dir, cfg()).unwrap();
                    prop_assert_eq!(log.recovery_report().scanned_segment.is_some(), had_active);
                    prop_assert_eq!(log.recovery_report().truncated_bytes, 0, "an in-process crash tears nothing");
                }
                Op::ReadOnly => {
                    let ro = Log::open_read_only(&dir, cfg()).unwrap();
                    check(&ro, &model, &mut rng, &format!("{what}, read-only next to the writer"));
                }
            }
            check(&log, &model, &mut rng, &what);
        }
        // Sizes reported per segment add up, and segments are dense.
        let segs = log.segments();
        let mut next = 0;
        for s in &segs {
            prop_assert_eq!(s.base_offset, next);
            next = s.next_offset;
        }
        prop_assert_eq!(next, model.len() as u64);
        prop_assert!(segs[..segs.len().saturating_sub(1)].iter().all(|s| s.sealed));

        log.close().unwrap();
        let log = Log::open(&dir, cfg()).unwrap();
        check(&log, &model, &mut rng, "final reopen");
        log.abandon();
        let log = Log::open(&dir, cfg()).unwrap();
        check(&log, &model, &mut rng, "final crash");
        drop(log);
        let ro = Log::open_read_only(&dir, cfg()).unwrap();
        check(&ro, &model, &mut rng, "final read-only");
    }
}

#[test]
fn reader_at_the_end_sees_later_appends_across_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path(), common::tiny_cfg()).unwrap();
    let mut reader = log.read_from(0).unwrap();
    assert!(reader.next_record().unwrap().is_none());
    let value = vec![3u8; 1500];
    for round in 0..20u64 {
        assert_eq!(log.append(&Record::new(&value).with_key(&round.to_le_bytes())).unwrap(), round);
        let r = reader.next_record().unwrap().expect("the new record");
        assert_eq!((r.offset(), r.key()), (round, Some(&round.to_le_bytes()[..])));
        assert!(reader.next_record().unwrap().is_none());
    }
    assert!(log.segments().len() > 5, "records of 1.5 KiB roll 4 KiB segments");
}

// ---------------------------------------------------------------------------
// Size limits and empty batches
// ---------------------------------------------------------------------------

#[test]
fn oversized_record_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let cfg = common::small_cfg();
    let max = cfg.max_record_bytes() as usize;
    assert_eq!(max, 64 * 1024 - 128 - 64 - 32, "by default a record may fill a segment, as a batch of its own");
    let log = Log::open(&dir, cfg.clone()).unwrap();
    for i in 0..10u64 {
        log.append(&Record::new(&common::value_for(i, 3000))).unwrap();
    }
    log.sync().unwrap();
    let before = snapshot(&dir);

    let too_big = vec![1u8; max - 24 + 1];
    match log.append(&Record::new(&too_big)) {
        Err(Error::RecordTooLarge { size, max: m }) => assert_eq!((size, m), (max as u64 + 1, max as u64)),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // With a key and headers counted in the size too.
    let headers = [Header { name: "h", value: b"v" }];
    let exact_value = vec![2u8; max - 24 - 1 - 8];
    assert!(matches!(
        log.append(&Record::new(&exact_value[..]).with_key(b"kk").with_headers(&headers)),
        Err(Error::RecordTooLarge { .. })
    ));
    // A header name longer than the format allows.
    let long_name = "n".repeat(70_000);
    let bad_headers = [Header { name: &long_name, value: b"" }];
    assert!(matches!(log.append(&Record::new(b"x").with_headers(&bad_headers)), Err(Error::RecordTooLarge { .. })));
    // A batch with one oversized record writes none of it.
    let small = Record::new(b"small");
    for batch in [
        vec![small, Record::new(&too_big), small],
        vec![Record::new(&too_big)],
        vec![small, small, Record::new(&too_big)],
    ] {
        assert!(matches!(log.append_batch(&batch), Err(Error::RecordTooLarge { .. })));
    }
    assert_eq!(log.next_offset(), 10);
    assert_eq!(read_all(&log).unwrap().len(), 10);
    assert_same_files(&before, &snapshot(&dir), "refused records");
    assert!(log.failure().is_none(), "a refused record does not fail the log");

    // Exactly the maximum is accepted (it needs a segment of its own).
    let exact = vec![4u8; max - 24];
    assert_eq!(log.append(&Record::new(&exact)).unwrap(), 10);
    assert_eq!(log.get(10).unwrap().value.unwrap().len(), max - 24);
    assert_eq!(log.append(&Record::new(b"after")).unwrap(), 11);

    // Records that each fit, in a batch that does not fit in one segment:
    // refused whole, since a batch is never split across segments.
    let half = vec![5u8; max / 2 + 1];
    let before = snapshot(&dir);
    match log.append_batch(&[Record::new(&half), Record::new(&half)]) {
        Err(Error::BatchTooLarge { size, max: room }) => {
            assert_eq!((size, room), (32 + 2 * (24 + half.len() as u64), 64 * 1024 - 128 - 64));
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(log.next_offset(), 12);
    assert_same_files(&before, &snapshot(&dir), "a refused batch");
    log.close().unwrap();

    // A configured maximum below the segment size.
    let log = Log::open(&dir, common::small_cfg().with_max_record_bytes(1000)).unwrap();
    assert!(matches!(log.append(&Record::new(&[0u8; 977])), Err(Error::RecordTooLarge { size: 1001, max: 1000 })));
    assert_eq!(log.append(&Record::new(&[0u8; 976])).unwrap(), 12);
    // A maximum that does not fit in a segment is a configuration error.
    drop(log);
    assert!(matches!(
        Log::open(&dir, common::small_cfg().with_max_record_bytes(64 * 1024)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn empty_batch_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert_eq!(log.append_batch(&[]).unwrap(), 0..0);
    log.append_batch(&[Record::new(b"a"), Record::new(b"b")]).unwrap();
    log.sync().unwrap();
    let before = snapshot(&dir);
    assert_eq!(log.append_batch(&[]).unwrap(), 2..2);
    assert_eq!(log.next_offset(), 2);
    assert_same_files(&before, &snapshot(&dir), "empty batch");
    drop(log);
    let log = Log::open(&dir, common::small_cfg().with_durability(Durability::Always)).unwrap();
    assert_eq!(log.append_batch(&[]).unwrap(), 2..2);
    assert_eq!(log.append(&Record::new(b"c")).unwrap(), 2);
    assert_eq!(read_all(&log).unwrap().len(), 3);
}

#[test]
fn invalid_configurations_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = [
        LogConfig::default().with_segment_bytes(4095),
        LogConfig::default().with_segment_bytes(u64::from(u32::MAX) + 1),
        LogConfig::default().with_index_interval_bytes(0),
        LogConfig::default().with_max_open_segments(0),
        LogConfig::default().with_max_record_bytes(10),
        LogConfig::default().with_durability(Durability::Interval(std::time::Duration::ZERO)),
    ];
    for cfg in bad {
        let what = format!("{cfg:?}");
        assert!(matches!(Log::open(tmp.path(), cfg), Err(Error::InvalidConfig(_))), "{what}");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing created for a bad configuration");
}

#[test]
fn second_writer_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path(), common::small_cfg()).unwrap();
    match Log::open(tmp.path(), common::small_cfg()) {
        Err(e @ Error::Locked { pid: Some(pid), .. }) if pid == std::process::id() => {
            assert!(e.to_string().ends_with(&format!("locked by another writer (process {pid}: this one)")), "{e}");
        }
        other => panic!("expected Locked naming this process, got {other:?}"),
    }
    log.close().unwrap();
    let log = Log::open(tmp.path(), common::small_cfg()).unwrap();
    log.abandon();
    assert!(Log::open(tmp.path(), common::small_cfg()).is_ok(), "abandon releases the lock");
}

// ---------------------------------------------------------------------------
// Failure semantics (fault-injecting Io)
// ---------------------------------------------------------------------------

fn faulty(io: &Arc<FaultIo>, durability: Durability) -> LogConfig {
    common::small_cfg().with_durability(durability).with_io(io.clone())
}

fn value(i: u64) -> Vec<u8> {
    common::value_for(i, 900)
}

/// Checks that `dir`, reopened with the real file system, holds a dense
/// prefix of the values `value(0..)` that includes `0..acked`.
fn reopen_holds_prefix(dir: &std::path::Path, acked: u64) -> u64 {
    let log = Log::open(dir, common::small_cfg()).unwrap();
    let all = read_all(&log).unwrap();
    assert!(all.len() as u64 >= acked, "acknowledged records lost: {} < {acked}", all.len());
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.value.as_deref(), Some(&value(i as u64)[..]), "record {i}");
    }
    all.len() as u64
}

#[test]
fn failed_fsync_under_always_fails_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    let log = Log::open(&dir, faulty(&io, Durability::Always)).unwrap();
    for i in 0..20 {
        assert_eq!(log.append(&Record::new(&value(i))).unwrap(), i);
    }
    assert!(log.failure().is_none());

    io.set_fail_sync(true);
    let err = log.append(&Record::new(&value(20))).unwrap_err();
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(common::EIO), "{err}"),
        other => panic!("expected the fsync error, got {other:?}"),
    }
    let first = log.failure().expect("the log is failed");
    assert_eq!(first.to_string(), err.to_string(), "the first failure is kept as it was returned");

    // Every later refusal carries the first failure as its source, down to the OS error.
    let refused = log.append(&Record::new(&value(21))).unwrap_err();
    let source = std::error::Error::source(&refused).expect("Failed has a source");
    assert_eq!(source.to_string(), err.to_string(), "{refused}");
    let os = std::error::Error::source(source).and_then(|e| e.downcast_ref::<std::io::Error>());
    assert_eq!(os.and_then(std::io::Error::raw_os_error), Some(common::EIO), "{refused}");
    assert!(refused.to_string().ends_with(&format!("refuses writes: {err}")), "{refused}");

    // Even with the disk healthy again, nothing more is accepted or acknowledged.
    io.set_fail_sync(false);
    for attempt in 0..3 {
        assert!(matches!(log.append(&Record::new(&value(21))), Err(Error::Failed { .. })), "attempt {attempt}");
        assert!(matches!(log.append_batch(&[Record::new(&value(21))]), Err(Error::Failed { .. })));
        assert!(matches!(log.sync(), Err(Error::Failed { .. })));
    }
    assert!(log.append_batch(&[]).is_err(), "not even an empty batch is acknowledged");
    // What was written stays readable.
    let visible = read_all(&log).unwrap();
    assert!(visible.len() == 20 || visible.len() == 21, "{}", visible.len());
    assert!(matches!(log.close(), Err(Error::Failed { .. })), "close reports the failure");

    // Reopened: every acknowledged record, possibly the unacknowledged one too, nothing else.
    let n = reopen_holds_prefix(&dir, 20);
    assert!(n <= 21);
}

/// Appends `value(i)` records until one fails; returns the error and the
/// number of acknowledged records.
fn append_until_error(log: &Log, mut i: u64) -> (Error, u64) {
    loop {
        match log.append(&Record::new(&value(i))) {
            Ok(o) => {
                assert_eq!(o, i);
                i += 1;
            }
            Err(e) => return (e, i),
        }
        assert!(i < 5000, "no fault was hit");
    }
}

/// After an I/O error that did not fail the log: with the fault gone, appends
/// work again, the log rolls, and nothing is lost. After one that failed it:
/// every later write is refused and `close` reports the failure. Either way
/// reopening finds every acknowledged record and no leftover temporary file.
fn continue_or_refuse(log: Log, io: &FaultIo, dir: &std::path::Path, acked: u64, what: &str) {
    io.set_fail_sync(false);
    io.set_fail_rename(false);
    io.set_fail_sync_dir(false);
    let mut acked = acked;
    if log.failure().is_some() {
        assert!(matches!(log.append(&Record::new(&value(acked))), Err(Error::Failed { .. })), "{what}");
        assert_eq!(read_all(&log).unwrap().len() as u64, acked, "{what}: everything appended stays readable");
        assert!(matches!(log.close(), Err(Error::Failed { .. })), "{what}: close must report the failure");
    } else {
        let segments = log.segments().len();
        while log.segments().len() < segments + 2 {
            assert_eq!(log.append(&Record::new(&value(acked))).unwrap(), acked, "{what}: append after the fault");
            acked += 1;
        }
        log.close().unwrap();
    }
    let n = reopen_holds_prefix(dir, acked);
    assert!(n <= acked + 1, "{what}: {n} records after {acked} acknowledged");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
}

/// A failed fsync of a segment's data file while it is sealed (the fsync of
/// records and footer, then the one after trimming) fails the log.
#[test]
fn failed_fsync_of_segment_data_while_sealing_fails_the_log() {
    for syncs_before_failure in 0..2 {
        let what = format!("segment fsync {} of the seal fails", syncs_before_failure + 1);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let io = Arc::new(FaultIo::new());
        io.only_files_ending_with(".log");
        let log = Log::open(&dir, faulty(&io, Durability::Never)).unwrap();
        io.fail_sync_after(syncs_before_failure);
        let (err, acked) = append_until_error(&log, 0);
        assert!(
            matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(common::EIO)),
            "{what}: {err}"
        );
        assert!(log.failure().is_some(), "{what}: a failed fsync of segment data fails the log");
        continue_or_refuse(log, &io, &dir, acked, &what);
    }
}

/// A failed fsync of a file that holds no record yet (the new index files,
/// the prepared next segment) fails the append that rolls; whether it also
/// fails the log is the engine's choice, but nothing may be lost, and if the
/// log goes on it must work normally once the disk does.
#[test]
fn failed_fsync_of_new_files_while_rolling_loses_nothing() {
    for syncs_before_failure in 0..3 {
        let what = format!("fsync {} of a new file while rolling fails", syncs_before_failure + 1);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let io = Arc::new(FaultIo::new());
        io.only_files_ending_with(".tmp");
        let log = Log::open(&dir, faulty(&io, Durability::Never)).unwrap();
        io.fail_sync_after(syncs_before_failure);
        let (err, acked) = append_until_error(&log, 0);
        assert!(matches!(err, Error::Io { .. }), "{what}: {err}");
        continue_or_refuse(log, &io, &dir, acked, &what);
    }
}

/// A failed directory fsync while rolling: once the next segment has been
/// renamed into place its name is only durable after a directory fsync, so if
/// that fsync failed the log must be failed. Earlier directory fsyncs may be
/// the engine's choice; nothing may be lost either way.
#[test]
fn failed_directory_fsync_while_rolling() {
    let mut fatal = 0;
    for dir_syncs_before_failure in 0..4 {
        let what = format!("directory fsync {} of the roll fails", dir_syncs_before_failure + 1);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let io = Arc::new(FaultIo::new());
        let log = Log::open(&dir, faulty(&io, Durability::Never)).unwrap();
        io.fail_sync_dir_after(dir_syncs_before_failure);
        let (err, acked) = append_until_error(&log, 0);
        assert!(matches!(err, Error::Io { .. }), "{what}: {err}");
        let next_segment = dir.join(annal::segment::log_file_name(acked));
        if next_segment.exists() {
            assert!(log.failure().is_some(), "{what}: the new segment's name is not durable, the log must fail");
        }
        if log.failure().is_some() {
            fatal += 1;
        }
        continue_or_refuse(log, &io, &dir, acked, &what);
    }
    assert!(fatal > 0, "some directory fsync of a roll must be fatal");
}

/// A failed rename while rolling: of the next segment into place, it fails
/// the log; of a new index file, the engine may go on, losing nothing.
#[test]
fn failed_rename_during_roll() {
    for (suffix, must_fail) in [(".log", true), (".index", false), (".timeindex", false)] {
        let what = format!("the rename to a {suffix} file fails");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let io = Arc::new(FaultIo::new());
        io.only_files_ending_with(suffix);
        let log = Log::open(&dir, faulty(&io, Durability::Never)).unwrap();
        io.set_fail_rename(true);
        let (err, acked) = append_until_error(&log, 0);
        assert!(matches!(err, Error::Io { .. }), "{what}: {err}");
        if must_fail {
            assert!(log.failure().is_some(), "{what}: the log must fail");
        }
        assert_eq!(read_all(&log).unwrap().len() as u64, acked, "{what}");
        continue_or_refuse(log, &io, &dir, acked, &what);
    }
}

#[test]
fn a_full_disk_is_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    for durability in [Durability::Never, Durability::Always] {
        let log = Log::open(&dir, faulty(&io, durability)).unwrap();
        let mut i = log.next_offset();
        let start_segments = log.segments().len();
        io.set_fail_allocate(true);
        // Append until the file cannot grow, or the next segment cannot be
        // made, for lack of space (with the space already allocated used up first).
        let err = loop {
            match log.append(&Record::new(&value(i))) {
                Ok(o) => {
                    assert_eq!(o, i);
                    i += 1;
                }
                Err(e) => break e,
            }
            assert!(i < 10_000);
        };
        match &err {
            Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(common::ENOSPC), "{err}"),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert!(log.failure().is_none(), "a full disk does not fail the log");
        assert_eq!(log.next_offset(), i, "the refused record was not written");
        // The file could not grow, or the next segment could not be made:
        // either way no segment was added.
        assert!(log.segments().len() <= start_segments + 1);
        assert!(
            !std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp")),
            "the prepared segment is removed"
        );
        // Everything before it is readable; retrying while the disk is full fails again.
        assert_eq!(read_all(&log).unwrap().len() as u64, i);
        assert!(log.append(&Record::new(&value(i))).is_err());
        // A batch: nothing of it is written.
        let batch_values: Vec<Vec<u8>> = (i..i + 3).map(value).collect();
        let batch: Vec<Record<'_>> = batch_values.iter().map(|v| Record::new(v)).collect();
        assert!(log.append_batch(&batch).is_err());
        assert_eq!(log.next_offset(), i, "nothing of the batch is written");

        io.set_fail_allocate(false);
        assert_eq!(log.append(&Record::new(&value(i))).unwrap(), i);
        i += 1;
        assert_eq!(log.append_batch(&batch[1..]).unwrap(), i..i + 2);
        i += 2;
        let all = read_all(&log).unwrap();
        assert_eq!(all.len() as u64, i);
        for (k, r) in all.iter().enumerate() {
            assert_eq!(r.value.as_deref(), Some(&value(k as u64)[..]));
        }
        log.close().unwrap();
        assert_eq!(reopen_holds_prefix(&dir, i), i);
    }
}

#[test]
fn a_full_disk_fails_the_first_append_not_the_open() {
    // Opening creates no segment: the first append does, and a full disk
    // fails it, writing nothing and leaving the log usable.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    io.set_fail_allocate(true);
    let log = Log::open(&dir, faulty(&io, Durability::Never)).unwrap();
    match log.append(&Record::new(&value(0))) {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(common::ENOSPC)),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert!(log.failure().is_none(), "a full disk does not fail the log");
    assert_eq!(log.next_offset(), 0);
    io.set_fail_allocate(false);
    assert_eq!(log.append(&Record::new(&value(0))).unwrap(), 0);
    log.close().unwrap();
    reopen_holds_prefix(&dir, 1);
}

#[test]
fn a_busy_segment_is_allocated_ahead_of_its_writer_and_a_failure_there_is_no_error() {
    // A new segment file takes its first step (256 KiB). Once the writer has
    // written 128 KiB it asks for pages ahead of it, and the file is
    // allocated ahead as far as the segment already holds, up to 32 MiB: best
    // effort, so a full disk at that moment fails no append; the append that
    // needs the room reports it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    let cfg = LogConfig::default().with_segment_bytes(64 << 20).with_durability(Durability::Never).with_io(io.clone());
    let log = Log::open(&dir, cfg).unwrap();
    let file = dir.join(format!("{:020}.log", 0));
    let len = || std::fs::metadata(&file).unwrap().len();
    let batch_values: Vec<Vec<u8>> = (0..10).map(value).collect();
    let batch: Vec<Record<'_>> = batch_values.iter().map(|v| Record::new(v)).collect();
    log.append_batch(&batch).unwrap();
    assert_eq!(len(), 256 << 10, "a new segment takes its first step");

    // Past 128 KiB with the disk full: the allocation ahead fails, the
    // appends do not, up to what the first step holds.
    io.set_fail_allocate(true);
    let mut acked = 10;
    let err = loop {
        match log.append_batch(&batch) {
            Ok(r) => acked = r.end,
            Err(e) => break e,
        }
        assert!(acked < 1_000, "the first step cannot hold this much");
    };
    assert!(acked * 900 > 200 << 10, "appends went on past 128 KiB: {acked} records");
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(common::ENOSPC), "{err}"),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert_eq!(len(), 256 << 10, "nothing was allocated while the disk was full");
    assert_eq!(log.next_offset(), acked);

    // With room again, the writer's next requests for pages (one per 4 MiB
    // written) allocate ahead as far as the segment holds (up to 32 MiB):
    // from 9 to 16 MiB written the file never ends close to the writer, as it
    // would if it grew only when an append needed the room.
    io.set_fail_allocate(false);
    let mut least_ahead = u64::MAX;
    loop {
        acked = log.append_batch(&batch).unwrap().end;
        let written = log.segments()[0].data_bytes;
        if written >= 16 << 20 {
            break;
        }
        if written >= 9 << 20 {
            least_ahead = least_ahead.min(len() - written);
        }
    }
    assert!(least_ahead >= 2 << 20, "the file ended {least_ahead} bytes ahead of the writer");
    assert_eq!(read_all(&log).unwrap().len() as u64, acked);
    log.close().unwrap();
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let all = read_all(&log).unwrap();
    assert_eq!(all.len() as u64, acked);
    assert!(all.iter().enumerate().all(|(i, r)| r.value.as_deref() == Some(&batch_values[i % 10][..])));
}

// ---------------------------------------------------------------------------
// Rolling by age, and the background flusher
// ---------------------------------------------------------------------------

#[test]
fn segments_roll_by_age() {
    use std::time::{Duration, Instant};
    // Long enough that opening and three appends fit well inside it even on a
    // loaded machine; the checks that need "not yet old" are made only while
    // that is known to hold (the clock starts before the log reads its own).
    const AGE: Duration = Duration::from_millis(500);
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let cfg = || common::small_cfg().with_segment_max_age(Some(AGE));
    let opened = Instant::now();
    let log = Log::open(&dir, cfg()).unwrap();
    for i in 0..3 {
        log.append(&Record::new(&value(i))).unwrap();
    }
    if opened.elapsed() < AGE {
        assert_eq!(log.segments().len(), 1);
    }
    std::thread::sleep(AGE + Duration::from_millis(100));
    let before_roll = log.segments().len();
    assert_eq!(log.append(&Record::new(&value(3))).unwrap(), 3);
    let segs = log.segments();
    assert_eq!(segs.len(), before_roll + 1, "an old segment rolls on the next append");
    assert_eq!((segs[segs.len() - 2].next_offset, segs[segs.len() - 1].base_offset), (3, 3));
    log.close().unwrap();
    std::thread::sleep(AGE + Duration::from_millis(100));
    // The last segment is too old to be reused after a reopen.
    let reopened = Instant::now();
    let log = Log::open(&dir, cfg()).unwrap();
    assert_eq!(log.append(&Record::new(&value(4))).unwrap(), 4);
    if reopened.elapsed() < AGE {
        assert_eq!(log.segments().len(), before_roll + 2);
    }
    let all = read_all(&log).unwrap();
    assert_eq!(all.len(), 5);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.value.as_deref(), Some(&value(i as u64)[..]));
    }
    // Without an age limit, a young last segment is reused.
    log.close().unwrap();
    let segments = Log::open_read_only(&dir, common::small_cfg()).unwrap().segments().len();
    let log = Log::open(&dir, common::small_cfg().with_segment_max_age(None)).unwrap();
    log.append(&Record::new(&value(5))).unwrap();
    assert_eq!(log.segments().len(), segments);
}

#[test]
fn interval_durability_syncs_in_the_background_and_fails_on_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    let log = Log::open(&dir, faulty(&io, Durability::Interval(std::time::Duration::from_millis(10)))).unwrap();
    // Read before the append: the flusher has nothing to sync until then, and
    // may sync the record as soon as the append lets go of the writer.
    let before = io.sync_count();
    log.append(&Record::new(&value(0))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while io.sync_count() == before {
        assert!(std::time::Instant::now() < deadline, "the flusher never synced");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A failed background fsync fails the log: the next append is refused.
    io.set_fail_sync(true);
    log.append(&Record::new(&value(1))).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while log.failure().is_none() {
        assert!(std::time::Instant::now() < deadline, "the flusher's fsync failure was not recorded");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    io.set_fail_sync(false);
    assert!(matches!(log.append(&Record::new(&value(2))), Err(Error::Failed { .. })));
    drop(log);
    let n = reopen_holds_prefix(&dir, 1);
    assert!(n <= 2);
}

// ---------------------------------------------------------------------------
// Atomic batches under I/O errors
// ---------------------------------------------------------------------------

/// An `Io` that fails one chosen persistence call (counted from 1 after it
/// is armed) with a chosen errno; every other call goes to the file system.
#[derive(Debug, Default)]
struct NthCallFails {
    calls: std::sync::atomic::AtomicU64,
    /// `Some((k, errno))`: call k fails with errno.
    armed: std::sync::Mutex<Option<(u64, i32)>>,
}

impl NthCallFails {
    fn arm(&self, k: u64, errno: i32) {
        self.calls.store(0, std::sync::atomic::Ordering::SeqCst);
        *self.armed.lock().unwrap() = Some((k, errno));
    }

    fn disarm(&self) -> u64 {
        *self.armed.lock().unwrap() = None;
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check(&self) -> std::io::Result<()> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        match *self.armed.lock().unwrap() {
            Some((k, errno)) if k == n => Err(std::io::Error::from_raw_os_error(errno)),
            _ => Ok(()),
        }
    }
}

impl annal::io::Io for NthCallFails {
    fn create(&self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
        self.check().and_then(|()| annal::io::OsIo.create(path))
    }
    fn write_all_at(&self, file: &std::fs::File, buf: &[u8], pos: u64) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.write_all_at(file, buf, pos))
    }
    fn allocate(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.allocate(file, len))
    }
    fn sync_data(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.sync_data(file))
    }
    fn sync_all(&self, file: &std::fs::File) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.sync_all(file))
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.sync_dir(dir))
    }
    fn set_len(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.set_len(file, len))
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.rename(from, to))
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.check().and_then(|()| annal::io::OsIo.remove_file(path))
    }
}

/// A batch that needs a roll, with one of the roll's or the append's
/// persistence calls failing (ENOSPC or EIO, at every call in turn): the
/// batch is stored whole or not at all. An error leaves nothing of it
/// visible, and nothing of it after a reopen either (an error before its
/// bytes are written), unless the error came from the fsync that makes it
/// durable, which fails the log and leaves it whole or absent after reopen.
#[test]
fn a_batch_survives_an_io_error_at_any_call_whole_or_not_at_all() {
    for durability in [Durability::Never, Durability::Always] {
        for errno in [common::ENOSPC, common::EIO] {
            let mut k = 1;
            loop {
                let tmp = common::fast_tempdir();
                let dir = tmp.path().join("log");
                let io = Arc::new(NthCallFails::default());
                let cfg = common::small_cfg().with_durability(durability).with_io(io.clone());
                let log = Log::open(&dir, cfg).unwrap();
                // Fill the active segment so that the batch of the next 3
                // records needs a roll.
                let batch_size = |n: u64| {
                    let values: Vec<Vec<u8>> = (n..n + 3).map(value).collect();
                    let batch: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
                    annal::record::batch::encoded_len(&batch).unwrap() as u64
                };
                let mut n = 0;
                let active_bytes = |log: &Log| log.segments().last().filter(|s| !s.sealed).map_or(0, |s| s.data_bytes);
                while active_bytes(&log) + batch_size(n) <= 64 * 1024 - 192 {
                    log.append(&Record::new(&value(n))).unwrap();
                    n += 1;
                }
                let values: Vec<Vec<u8>> = (n..n + 3).map(value).collect();
                let batch: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
                io.arm(k, errno);
                let result = log.append_batch(&batch);
                let calls = io.disarm();
                let what = format!("{durability:?}, errno {errno} at call {k} of {calls}");
                match &result {
                    Ok(range) => assert_eq!(*range, n..n + 3, "{what}"),
                    Err(_) if log.failure().is_some() => {}
                    Err(_) => {
                        assert_eq!(log.next_offset(), n, "{what}: a failed batch left records visible");
                        assert_eq!(read_all(&log).unwrap().len() as u64, n, "{what}");
                    }
                }
                let failed = log.failure().is_some();
                log.abandon();
                let after = reopen_holds_prefix(&dir, n);
                assert!(after == n || after == n + 3, "{what}: {after} records after reopen, a part of the batch");
                if result.is_ok() {
                    assert_eq!(after, n + 3, "{what}: an acknowledged batch is lost");
                } else if !failed {
                    assert_eq!(after, n, "{what}: a refused batch is back after reopen");
                }
                if k > calls {
                    break;
                }
                k += 1;
            }
            assert!(k > 8, "a roll makes more calls than that: {k}");
        }
    }
}

// ---------------------------------------------------------------------------
// Durable reads
// ---------------------------------------------------------------------------

/// Reads every record a durable reader returns from `from`.
fn read_durable(log: &Log, from: u64) -> Vec<OwnedRecord> {
    log.read_from(from).unwrap().durable_only().map(Result::unwrap).collect()
}

#[test]
fn under_never_the_durable_watermark_moves_with_syncs_rolls_and_close() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg().with_durability(Durability::Never)).unwrap();
    assert_eq!(log.durable_offset(), 0);
    let values: Vec<Vec<u8>> = (0..10).map(value).collect();
    let batch: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
    log.append_batch(&batch[..4]).unwrap();
    assert_eq!((log.next_offset(), log.durable_offset()), (4, 0), "an append under Never syncs nothing");
    assert!(read_durable(&log, 0).is_empty());
    assert_eq!(read_all(&log).unwrap().len(), 4, "a plain reader sees what is appended");
    // A durable reader at the watermark returns records once they are durable.
    let mut reader = log.read_from(0).unwrap().durable_only();
    assert!(reader.next_record().unwrap().is_none());
    log.sync().unwrap();
    assert_eq!(log.durable_offset(), 4);
    assert_eq!(reader.by_ref().map(Result::unwrap).map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2, 3]);
    log.append_batch(&batch[4..7]).unwrap();
    assert_eq!(log.durable_offset(), 4);
    assert!(reader.next_record().unwrap().is_none(), "the new batch is not durable yet");
    // Rolling seals the segment: its records are durable.
    log.roll().unwrap();
    assert_eq!(log.durable_offset(), 7);
    assert_eq!(reader.next_record().unwrap().unwrap().offset(), 4);
    assert_eq!(read_durable(&log, 5).len(), 2);
    log.append_batch(&batch[7..]).unwrap();
    assert_eq!(log.durable_offset(), 7);
    log.close().unwrap();
    // After a clean close everything is durable; after a crash, the reopen makes it so.
    let log = Log::open(&dir, common::small_cfg().with_durability(Durability::Never)).unwrap();
    assert_eq!(log.durable_offset(), 10);
    assert_eq!(read_durable(&log, 0).len(), 10);
    log.append(&Record::new(b"after")).unwrap();
    assert_eq!(log.durable_offset(), 10);
    log.abandon();
    let ro = Log::open_read_only(&dir, common::small_cfg()).unwrap();
    assert_eq!((ro.next_offset(), ro.durable_offset()), (11, 10), "read-only: durable up to the checkpoint");
    assert_eq!(read_durable(&ro, 0).len(), 10);
    drop(ro);
    let log = Log::open(&dir, common::small_cfg().with_durability(Durability::Never)).unwrap();
    assert!(log.recovery_report().scanned_segment.is_some());
    assert_eq!((log.next_offset(), log.durable_offset()), (11, 11), "recovery makes what it found durable");
}

#[test]
fn under_always_every_acknowledged_append_is_below_the_watermark() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg().with_durability(Durability::Always)).unwrap();
    for i in 0..200u64 {
        let o = log.append(&Record::new(&value(i))).unwrap();
        assert_eq!(log.durable_offset(), o + 1, "append {i} returned before it was durable");
        assert!(log.wait_for_durable(o, Duration::ZERO));
    }
    assert!(log.segments().len() > 1);
    assert_eq!(read_durable(&log, 0).len(), 200);
}

#[test]
fn under_interval_the_flusher_moves_the_watermark_and_wakes_waiters() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let cfg = common::small_cfg().with_durability(Durability::Interval(Duration::from_millis(20)));
    let log = Arc::new(Log::open(&dir, cfg).unwrap());
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            // A consumer of durable records only: it waits on the watermark.
            let mut reader = log.read_from(0).unwrap().durable_only();
            let mut seen = 0u64;
            while seen < 300 {
                match reader.next_record().unwrap() {
                    Some(r) => {
                        assert_eq!(r.offset(), seen);
                        assert!(r.offset() < log.durable_offset(), "a record above the watermark");
                        seen += 1;
                    }
                    None => assert!(log.wait_for_durable(seen, Duration::from_secs(60)), "the flusher stalled"),
                }
            }
            seen
        })
    };
    for i in 0..300u64 {
        log.append(&Record::new(&value(i))).unwrap();
    }
    assert_eq!(reader.join().unwrap(), 300);
    assert_eq!(log.durable_offset(), 300);
}

#[test]
fn a_durable_wait_ends_when_another_thread_syncs() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let log = Arc::new(Log::open(&dir, common::small_cfg().with_durability(Durability::Never)).unwrap());
    log.append(&Record::new(b"x")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // The waiter's timeout is far longer than any wake-up takes: had the sync
    // not woken it, it would return only at the timeout (finding the record
    // durable then), so the time it took is what tells.
    const TIMEOUT: Duration = Duration::from_secs(60);
    let waiter = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            tx.send(()).unwrap();
            let started = std::time::Instant::now();
            (log.wait_for_durable(0, TIMEOUT), started.elapsed())
        })
    };
    rx.recv().unwrap();
    assert!(!log.wait_for_durable(0, Duration::ZERO), "not durable before the sync");
    log.sync().unwrap();
    let (durable, waited) = waiter.join().unwrap();
    assert!(durable, "the record is durable");
    assert!(waited < TIMEOUT, "the sync did not wake the waiter: it slept until its timeout");
}

/// A reader made at the end of a log that has no active segment (none is
/// active until the first append) finds the segment that later holds its
/// position, also if appends rolled past it or reopened the last sealed
/// segment meanwhile.
#[test]
fn a_reader_at_the_end_of_a_log_without_an_active_segment_finds_what_comes() {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let cfg = || common::tiny_cfg();
    // A new log: the reader is made before any segment exists; rolls follow.
    let log = Log::open(&dir, cfg()).unwrap();
    let mut reader = log.read_from(0).unwrap();
    for i in 0..40 {
        log.append(&Record::new(&value(i))).unwrap();
    }
    assert!(log.segments().len() > 3);
    let got: Vec<u64> = reader.by_ref().map(|r| r.unwrap().offset).collect();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    log.close().unwrap();
    // A closed log: its last segment is sealed until an append reopens it
    // (it has room), and that segment holds earlier records.
    let dir = tmp.path().join("reopened");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    log.append_batch(&[Record::new(b"a"), Record::new(b"b")]).unwrap();
    log.close().unwrap();
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert!(log.segments().iter().all(|s| s.sealed));
    let mut reader = log.read_from(2).unwrap();
    assert!(reader.next_record().unwrap().is_none());
    log.append(&Record::new(b"after")).unwrap();
    assert_eq!(log.segments().len(), 1, "the sealed segment was reopened");
    let r = reader.next_record().unwrap().expect("the new record");
    assert_eq!((r.offset(), r.value()), (2, Some(&b"after"[..])));
}

/// Appending to a cleanly closed log takes up its last sealed segment again
/// and first removes that segment's index files (the active segment keeps
/// its index in memory). A removal that fails is an error, not ignored: a
/// stale index left beside a growing segment would describe fewer records.
#[test]
fn taking_up_a_sealed_segment_fails_if_its_index_files_cannot_be_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let io = Arc::new(FaultIo::new());
    let log = Log::open(&dir, faulty(&io, Durability::Always)).unwrap();
    for i in 0..3 {
        log.append(&Record::new(&value(i))).unwrap();
    }
    log.close().unwrap();
    let index = dir.join(format!("{:020}.index", 0));
    assert!(index.exists(), "a sealed segment has its index file");

    let log = Log::open(&dir, faulty(&io, Durability::Always)).unwrap();
    io.fail_remove.store(true, std::sync::atomic::Ordering::SeqCst);
    match log.append(&Record::new(&value(3))) {
        Err(Error::Io { op, path, source }) => {
            assert_eq!((op, source.raw_os_error()), ("remove stale index", Some(common::EIO)));
            assert_eq!(path, index);
        }
        other => panic!("expected the failed removal, got {other:?}"),
    }
    io.fail_remove.store(false, std::sync::atomic::Ordering::SeqCst);
    drop(log);
    reopen_holds_prefix(&dir, 3);
}

/// A thread that panics in the group-commit fsync (here a panicking `Io`)
/// fails the log, as a failed fsync does, instead of leaving the threads
/// waiting for that fsync waiting forever; a panic while the writer lock is
/// held (an fsync of a roll) fails it too. Reads keep working, and a reopen
/// holds every acknowledged record.
#[test]
fn a_panic_in_an_fsync_or_under_the_writer_lock_fails_the_log() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::atomic::Ordering::SeqCst;
    for under_writer_lock in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let io = Arc::new(FaultIo::new());
        let durability = if under_writer_lock { Durability::Never } else { Durability::Always };
        let log = Arc::new(Log::open(&dir, faulty(&io, durability)).unwrap());
        for i in 0..5 {
            log.append(&Record::new(&value(i))).unwrap();
        }
        if !under_writer_lock {
            log.sync().unwrap();
        }
        io.panic_sync.store(true, SeqCst);
        let panicked = catch_unwind(AssertUnwindSafe(|| match under_writer_lock {
            true => log.roll(),
            false => log.append(&Record::new(&value(5))).map(drop),
        }));
        assert!(panicked.is_err(), "the Io panicked");
        io.panic_sync.store(false, SeqCst);
        // Another thread's write does not wait for the fsync that never ends:
        // it gets the failure, whose first cause says what happened.
        let writer = Arc::clone(&log);
        let err = std::thread::spawn(move || writer.append(&Record::new(&value(6)))).join().unwrap().unwrap_err();
        match &err {
            Error::Failed { first, .. } => {
                let expected = if under_writer_lock { "a write" } else { "a group-commit fsync" };
                assert!(matches!(**first, Error::Panicked { during, .. } if during == expected), "{err}");
            }
            other => panic!("expected the log to have failed, got {other:?}"),
        }
        assert!(matches!(log.sync(), Err(Error::Failed { .. })));
        assert!(read_all(&log).unwrap().len() >= 5, "reads keep working");
        let log = Arc::try_unwrap(log).unwrap();
        assert!(log.close().is_err(), "close reports the failure");
        reopen_holds_prefix(&dir, 5);
    }
}
