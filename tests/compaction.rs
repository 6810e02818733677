//! Compaction (`Log::compact`): random workloads checked against a model,
//! tombstone retention, reopening, readers racing compaction, crashes at every
//! persistence call of a compaction (simulated power loss), injected I/O
//! failures, and damage to compacted segments.

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use annal::inspect::{self, Severity};
use annal::segment::{DATA_START, FOOTER_LEN, SegmentFlags, SegmentFooter, SegmentHeader};
use annal::{Compaction, Error, Log, LogConfig, OwnedRecord, Record};
use common::{
    FaultIo, Rng, await_workers, copy_dir, fast_tempdir, read_all, removed_temp_names, segment_files, small_cfg,
    tiny_cfg,
};
use powerloss::{LossMode, PowerLossIo, SplitMix};

/// Timestamp of the first record of the workloads (ms since the epoch).
const T0: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// A record appended to the log, as the model keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    offset: u64,
    key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    value: Option<Vec<u8>>,
    timestamp: i64,
}

impl Rec {
    fn owned(&self) -> OwnedRecord {
        OwnedRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: Vec::new(),
        }
    }

    fn record(&self) -> Record<'_> {
        let r = match (&self.value, &self.key) {
            (Some(v), Some(k)) => Record::new(v).with_key(k),
            (Some(v), None) => Record::new(v),
            (None, Some(k)) => Record::tombstone(k),
            (None, None) => unreachable!("a tombstone has a key"),
        };
        r.with_timestamp(self.timestamp)
    }
}

/// A record to append: key, value (`None`: a tombstone) and timestamp.
type Spec = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// What the log must hold: every record still in a segment file (in offset
/// order), and the start offset below which none is readable.
#[derive(Debug, Clone, Default)]
struct Model {
    recs: Vec<Rec>,
    next: u64,
    start: u64,
}

impl Model {
    /// The records a reader from the start returns.
    fn visible(&self) -> Vec<OwnedRecord> {
        self.recs.iter().filter(|r| r.offset >= self.start).map(Rec::owned).collect()
    }

    fn append(&mut self, log: &Log, recs: Vec<Spec>) {
        let recs: Vec<Rec> = recs
            .into_iter()
            .enumerate()
            .map(|(i, (key, value, timestamp))| Rec { offset: self.next + i as u64, key, value, timestamp })
            .collect();
        let records: Vec<Record<'_>> = recs.iter().map(Rec::record).collect();
        let range = log.append_batch(&records).unwrap();
        assert_eq!(range, self.next..self.next + recs.len() as u64);
        self.next = range.end;
        self.recs.extend(recs);
    }

    /// Applies one compaction: `sealed_end` is the base of the active
    /// segment, `cutoff` the timestamp below which a latest tombstone goes.
    fn compact(&mut self, sealed_end: u64, cutoff: i64) -> u64 {
        let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
        for r in self.recs.iter().filter(|r| r.offset < sealed_end) {
            if let Some(k) = &r.key {
                latest.insert(k.clone(), r.offset);
            }
        }
        let before = self.recs.len();
        self.recs.retain(|r| {
            r.offset >= sealed_end
                || match &r.key {
                    None => true,
                    Some(k) => latest[k] == r.offset && !(r.value.is_none() && r.timestamp < cutoff),
                }
        });
        (before - self.recs.len()) as u64
    }

    /// The first visible record at or after `offset`.
    fn first_from(&self, offset: u64) -> Option<&Rec> {
        self.recs.iter().find(|r| r.offset >= offset.max(self.start))
    }
}

/// The base offset of the active segment: records below it are sealed.
fn sealed_end(log: &Log) -> u64 {
    log.segments().iter().find(|s| !s.sealed).map_or(log.next_offset(), |s| s.base_offset)
}

fn policy(retention_ms: u64) -> Compaction {
    Compaction::default().with_tombstone_retention(Duration::from_millis(retention_ms))
}

/// Everything a log must answer like the model.
fn check_log(log: &Log, model: &Model, rng: &mut Rng, what: &str) {
    assert_eq!(log.next_offset(), model.next, "{what}: next_offset");
    assert_eq!(log.start_offset(), model.start, "{what}: start_offset");
    let got = read_all(log).unwrap_or_else(|e| panic!("{what}: reading the log: {e}"));
    let want = model.visible();
    if got != want {
        let got_offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
        let want_offsets: Vec<u64> = want.iter().map(|r| r.offset).collect();
        panic!("{what}: the log holds offsets {got_offsets:?}, the model {want_offsets:?}");
    }
    assert!(got.windows(2).all(|w| w[0].offset < w[1].offset), "{what}: offsets not strictly increasing");
    // Random gets and reads: a removed offset is `Compacted`, a kept one its record.
    let span = model.next - model.start;
    for _ in 0..20.min(span) {
        let o = model.start + rng.range(0, span);
        match (log.get(o), model.recs.iter().find(|r| r.offset == o)) {
            (Ok(r), Some(m)) => assert_eq!(r, m.owned(), "{what}: get({o})"),
            (Err(Error::Compacted { offset }), None) => assert_eq!(offset, o),
            (got, want) => panic!("{what}: get({o}) gave {got:?}, the model has {want:?}"),
        }
        let mut reader = log.read_from(o).unwrap();
        let first = reader.next_record().unwrap().map(|r| r.to_owned());
        assert_eq!(first, model.first_from(o).map(Rec::owned), "{what}: first record read from {o}");
    }
    // Scattered reads skip what compaction removed: a run of offsets from a
    // random one, and random offsets in any order.
    if span > 0 {
        let from = model.start + rng.range(0, span);
        let mut offsets: Vec<u64> = (from..(from + 12).min(model.next)).collect();
        offsets.extend((0..8).map(|_| model.start + rng.range(0, span)));
        let mut got: Vec<Option<OwnedRecord>> = vec![None; offsets.len()];
        log.read_at(&offsets, |i, r| {
            got[i] = Some(r.to_owned());
            Ok::<(), Error>(())
        })
        .unwrap_or_else(|e| panic!("{what}: read_at({offsets:?}): {e}"));
        for (i, &o) in offsets.iter().enumerate() {
            let want = model.recs.iter().find(|r| r.offset == o).map(Rec::owned);
            assert_eq!(got[i], want, "{what}: read_at(.., {o})");
        }
        assert!(matches!(log.get(model.next), Err(Error::OffsetOutOfRange { .. })), "{what}: get(next)");
    }
    // Timestamp lookups, from a few timestamps around the records'.
    for _ in 0..10 {
        let ts = T0 - 500 + rng.range(0, (model.next * 100 + 1000).max(1)) as i64;
        let want = model.recs.iter().filter(|r| r.offset >= model.start).find(|r| r.timestamp >= ts).map(|r| r.offset);
        assert_eq!(log.offset_for_timestamp(ts).unwrap(), want, "{what}: offset_for_timestamp({ts})");
    }
}

fn check_verify(dir: &Path, model: &Model, what: &str) {
    let report = inspect::verify(dir).unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert!(report.is_clean(), "{what}: verify: {:?}", report.problems);
    assert_eq!(report.records, model.recs.len() as u64, "{what}: records counted by verify");
}

// ---------------------------------------------------------------------------
// Random workloads
// ---------------------------------------------------------------------------

/// A workload of keyed values (a few keys), tombstones, records without a
/// key, batches, rolls, compactions at various times, close and reopen,
/// read-only opens and `delete_before`, checked against the model after every
/// compaction and at the end.
fn random_workload(seed: u64) {
    let mut rng = Rng::new(seed);
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let interval = [1u32, 64, 256, 4096][rng.range(0, 4) as usize];
    let cfg = tiny_cfg().with_index_interval_bytes(interval).with_max_open_segments(1 + rng.range(0, 4) as usize);
    let keys = 1 + rng.range(0, 10);
    let retention = 1_000u64;
    let mut log = Log::open(&dir, cfg.clone()).unwrap();
    let mut model = Model::default();
    let mut counter = 0i64;
    let mut compactions = 0;
    for step in 0..220 {
        let what = format!("seed {seed} step {step}");
        let mut one = |rng: &mut Rng| {
            counter += 1;
            // Mostly increasing timestamps, sometimes a little backwards.
            let ts = T0 + counter * 100 - rng.range(0, 150) as i64;
            let key = format!("k{}", rng.range(0, keys)).into_bytes();
            let value: Vec<u8> = (0..rng.range(1, 300)).map(|_| rng.next_u64() as u8).collect();
            match rng.range(0, 10) {
                0..6 => (Some(key), Some(value), ts),
                6..8 => (Some(key), None, ts),
                _ => (None, Some(value), ts),
            }
        };
        match rng.range(0, 100) {
            0..55 => {
                let r = one(&mut rng);
                model.append(&log, vec![r]);
            }
            55..65 => {
                let n = rng.range(1, 6);
                let batch = (0..n).map(|_| one(&mut rng)).collect();
                model.append(&log, batch);
            }
            65..75 => log.roll().unwrap(),
            75..87 => {
                // Now is around the newest timestamp: some tombstones are
                // past the retention, some not.
                let now = T0 + counter * 100 + rng.range(0, 3 * retention) as i64 - retention as i64;
                let end = sealed_end(&log);
                let removed = model.compact(end, now - retention as i64);
                let out = log.compact_at(&policy(retention), now).unwrap_or_else(|e| panic!("{what}: compact: {e}"));
                assert_eq!(out.records_removed, removed, "{what}: records removed");
                compactions += 1;
                check_log(&log, &model, &mut rng, &format!("{what} after compaction"));
            }
            87..91 => {
                log.close().unwrap();
                log = Log::open(&dir, cfg.clone()).unwrap();
                // Open deletes segments left wholly below the start offset.
                let first = log.segments().first().map_or(model.next, |s| s.base_offset);
                model.recs.retain(|r| r.offset >= first || r.offset >= model.start);
                check_log(&log, &model, &mut rng, &format!("{what} after reopen"));
            }
            91..94 => {
                let ro = Log::open_read_only(&dir, cfg.clone()).unwrap();
                check_log(&ro, &model, &mut rng, &format!("{what} read-only"));
            }
            94..96 if model.next > model.start => {
                let to = model.start + rng.range(0, model.next - model.start + 1);
                let _ = log.delete_before(to).unwrap();
                model.start = to;
                // Segments wholly below the start are deleted with their records.
                let first = log.segments().first().map_or(model.next, |s| s.base_offset);
                model.recs.retain(|r| r.offset >= first);
            }
            _ => {
                let o = model.start + rng.range(0, model.next - model.start + 1);
                let mut reader = log.read_from(o).unwrap();
                let got: Vec<OwnedRecord> = (&mut reader).take(10).collect::<annal::Result<_>>().unwrap();
                let want: Vec<OwnedRecord> =
                    model.recs.iter().filter(|r| r.offset >= o.max(model.start)).take(10).map(Rec::owned).collect();
                assert_eq!(got, want, "{what}: read_from({o})");
            }
        }
    }
    let mut rng2 = rng.clone();
    check_log(&log, &model, &mut rng2, &format!("seed {seed} at the end"));
    log.close().unwrap();
    check_verify(&dir, &model, &format!("seed {seed} after close"));
    let ro = Log::open_read_only(&dir, cfg.clone()).unwrap();
    check_log(&ro, &model, &mut rng, &format!("seed {seed} read-only after close"));
    drop(ro);
    let log = Log::open(&dir, cfg).unwrap();
    check_log(&log, &model, &mut rng, &format!("seed {seed} reopened after close"));
    assert_eq!(log.recovery_report().scanned_segment, None);
    log.close().unwrap();
    assert!(compactions > 0 || seed == u64::MAX);
}

#[test]
fn random_workloads_match_the_model() {
    if let Some(seed) = std::env::var("ANNAL_COMPACTION_SEED").ok().and_then(|s| s.parse().ok()) {
        return random_workload(seed);
    }
    let seeds: u64 = std::env::var("ANNAL_COMPACTION_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    for seed in 1..=seeds {
        random_workload(seed);
    }
}

// ---------------------------------------------------------------------------
// Tombstones, gaps, reopening
// ---------------------------------------------------------------------------

#[test]
fn a_tombstone_removes_its_key_at_once_and_goes_itself_after_its_delay() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    log.append(&Record::new(b"v1").with_key(b"k").with_timestamp(T0)).unwrap();
    log.append(&Record::new(b"other").with_key(b"j").with_timestamp(T0 + 1)).unwrap();
    log.append(&Record::new(b"v2").with_key(b"k").with_timestamp(T0 + 2)).unwrap();
    let t = log.append(&Record::tombstone(b"k").with_timestamp(T0 + 10)).unwrap();
    log.roll().unwrap();
    let hour = 3_600_000;
    let policy = policy(hour as u64);

    // Before its delay: the older values go, the tombstone stays.
    let out = log.compact_at(&policy, T0 + 10 + hour).unwrap();
    assert_eq!((out.records_removed, out.tombstones_removed, out.segments_rewritten), (2, 0, 1));
    let all = read_all(&log).unwrap();
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1, t]);
    assert_eq!(all[1].value, None);
    assert!(matches!(log.get(0), Err(Error::Compacted { offset: 0 })));
    assert!(matches!(log.get(2), Err(Error::Compacted { offset: 2 })));
    // Exactly at the delay it is still there (it goes once it is older).
    assert_eq!(log.compact_at(&policy, T0 + 10 + hour).unwrap().records_removed, 0);

    // After its delay: the key is gone altogether.
    let out = log.compact_at(&policy, T0 + 11 + hour).unwrap();
    assert_eq!((out.records_removed, out.tombstones_removed), (1, 1));
    let all = read_all(&log).unwrap();
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1]);
    assert!(matches!(log.get(t), Err(Error::Compacted { .. })));
    // Offsets are never reused, and the segments keep their ranges.
    assert_eq!(log.next_offset(), 4);
    assert_eq!(log.append(&Record::new(b"next")).unwrap(), 4);
    assert_eq!(log.segments()[0].base_offset, 0);
    assert_eq!(log.segments()[0].next_offset, 4);
    log.close().unwrap();
}

#[test]
fn the_active_segment_is_left_alone_and_supersedes_nothing_until_sealed() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    log.append(&Record::new(b"old").with_key(b"k")).unwrap();
    log.roll().unwrap();
    log.append(&Record::new(b"new").with_key(b"k")).unwrap();
    log.append(&Record::new(b"newer").with_key(b"k")).unwrap();
    let out = log.compact(&Compaction::default()).unwrap();
    assert_eq!((out.segments_examined, out.records_removed), (1, 0));
    assert_eq!(read_all(&log).unwrap().len(), 3);
    log.roll().unwrap();
    let out = log.compact(&Compaction::default()).unwrap();
    assert_eq!(out.records_removed, 2);
    let all = read_all(&log).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].offset, all[0].value.as_deref()), (2, Some(&b"newer"[..])));
    log.close().unwrap();
}

#[test]
fn compacted_segments_are_sparse_on_disk_and_reopen_the_same() {
    let dir = fast_tempdir();
    let cfg = small_cfg();
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    let mut model = Model::default();
    for i in 0..600i64 {
        let key = format!("k{}", i % 7).into_bytes();
        let value = if i % 50 == 49 { None } else { Some(vec![i as u8; 100]) };
        let key = if i % 11 == 0 { None } else { Some(key) };
        let value = if key.is_none() { Some(vec![1; 10]) } else { value };
        model.append(&log, vec![(key, value, T0 + i)]);
    }
    log.roll().unwrap();
    let removed = model.compact(sealed_end(&log), T0 + 300);
    let out = log.compact_at(&policy(0), T0 + 300).unwrap();
    assert_eq!(out.records_removed, removed);
    assert!(out.segments_rewritten >= 1 && out.keys == 7, "{out:?}");
    let before: Vec<_> = log.segments();
    log.close().unwrap();

    // Every compacted segment: the sparse flag, a footer that keeps the range
    // and counts only the records left.
    for path in segment_files(dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        let (header, flags) = SegmentHeader::decode_with_flags(&bytes[..64]).unwrap();
        assert_eq!(flags, SegmentFlags::SPARSE, "{}", path.display());
        assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]), 1);
        assert!(SegmentHeader::decode(&bytes[..64]).is_ok());
        let footer = SegmentFooter::decode_with_flags(&bytes[bytes.len() - 64..], bytes.len() as u64, flags).unwrap();
        assert!(SegmentFooter::decode(&bytes[bytes.len() - 64..], bytes.len() as u64).is_err());
        assert!(footer.record_count < footer.next_offset - footer.base_offset);
        assert_eq!(footer.base_offset, header.base_offset);
    }
    check_verify(dir.path(), &model, "after compaction and close");
    let mut dump = Vec::new();
    inspect::dump(dir.path(), None, &mut dump).unwrap();
    let dump = String::from_utf8(dump).unwrap();
    assert!(dump.contains("flags: sparse"), "{dump}");

    let mut rng = Rng::new(7);
    let ro = Log::open_read_only(dir.path(), cfg.clone()).unwrap();
    check_log(&ro, &model, &mut rng, "read-only");
    assert_eq!(ro.segments().iter().filter(|s| s.sealed).count(), before.iter().filter(|s| s.sealed).count());
    drop(ro);
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.indexes_rebuilt(), 0);
    check_log(&log, &model, &mut rng, "reopened");
    // The last segment is compacted: appends go to a new, dense segment.
    model.append(&log, vec![(Some(b"k1".to_vec()), Some(b"after".to_vec()), T0 + 1_000)]);
    assert_eq!(model.next, 601);
    log.close().unwrap();
    check_verify(dir.path(), &model, "after appending to a compacted log");
}

#[test]
fn a_trailing_gap_in_the_last_segment_never_lets_offsets_be_reused() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    log.append(&Record::new(b"v").with_key(b"a").with_timestamp(T0)).unwrap();
    log.append(&Record::new(b"v").with_key(b"k").with_timestamp(T0)).unwrap();
    log.append(&Record::tombstone(b"k").with_timestamp(T0)).unwrap();
    log.append(&Record::tombstone(b"k").with_timestamp(T0)).unwrap();
    log.roll().unwrap();
    let _ = log.compact_at(&policy(0), T0 + 1).unwrap();
    assert_eq!(read_all(&log).unwrap().len(), 1);
    // The active segment is empty: close removes it, the compacted one is last.
    log.close().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    for read_only in [true, false] {
        let log =
            if read_only { Log::open_read_only(dir.path(), small_cfg()) } else { Log::open(dir.path(), small_cfg()) };
        let log = log.unwrap();
        assert_eq!(log.next_offset(), 4, "read-only: {read_only}");
        assert!(matches!(log.get(3), Err(Error::Compacted { offset: 3 })));
        let mut reader = log.read_from(2).unwrap();
        assert!(reader.next_record().unwrap().is_none());
        assert_eq!(reader.next_offset(), 4);
        if !read_only {
            assert_eq!(log.append(&Record::new(b"x")).unwrap(), 4);
            let mut reader = log.read_from(1).unwrap();
            assert_eq!(reader.next_record().unwrap().unwrap().offset(), 4);
        }
        log.close().unwrap();
    }
}

#[test]
fn a_segment_left_empty_keeps_its_range() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), tiny_cfg()).unwrap();
    // Segment 0: only values of k; segment 1: values of k and a kept record.
    while log.segments().len() < 2 {
        log.append(&Record::new(&[7; 200]).with_key(b"k")).unwrap();
    }
    let first_end = log.segments()[0].next_offset;
    log.append(&Record::new(b"keep")).unwrap();
    log.append(&Record::new(b"last").with_key(b"k")).unwrap();
    log.roll().unwrap();
    let out = log.compact(&Compaction::default()).unwrap();
    assert_eq!(out.segments_rewritten, 2);
    let segs = log.segments();
    assert_eq!((segs[0].base_offset, segs[0].next_offset, segs[0].data_bytes), (0, first_end, 0));
    let all = read_all(&log).unwrap();
    assert_eq!(all.iter().map(|r| r.value.as_deref().unwrap()).collect::<Vec<_>>(), vec![&b"keep"[..], b"last"]);
    let mut reader = log.read_from(0).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().value(), Some(&b"keep"[..]));
    assert!(matches!(log.get(0), Err(Error::Compacted { .. })));
    log.close().unwrap();
    let report = inspect::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let log = Log::open(dir.path(), tiny_cfg()).unwrap();
    assert_eq!(read_all(&log).unwrap(), all);
    log.close().unwrap();
}

#[test]
fn a_read_only_log_follows_a_compaction_by_the_writer() {
    let dir = fast_tempdir();
    let cfg = small_cfg().with_max_open_segments(1);
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..2_000u32 {
        log.append(&Record::new(&[i as u8; 90]).with_key(format!("k{}", i % 5).as_bytes())).unwrap();
    }
    log.roll().unwrap();
    // The read-only log looked at the segments before compaction; it opens
    // them lazily, after the writer replaced them.
    let ro = Log::open_read_only(dir.path(), cfg.clone()).unwrap();
    let out = log.compact(&Compaction::default()).unwrap();
    assert!(out.segments_rewritten > 1);
    let writer_view = read_all(&log).unwrap();
    assert_eq!(writer_view.len(), 5);
    assert_eq!(read_all(&ro).unwrap(), writer_view);
    assert_eq!(ro.offset_for_timestamp(0).unwrap(), Some(writer_view[0].offset));
    log.close().unwrap();
}

// ---------------------------------------------------------------------------
// Readers and compaction at the same time
// ---------------------------------------------------------------------------

fn keyed_value(offset: u64) -> Vec<u8> {
    common::value_for(offset, 120)
}

fn key_of(offset: u64) -> Vec<u8> {
    format!("key-{}", offset % 13).into_bytes()
}

#[test]
fn a_reader_inside_a_segment_being_compacted_reads_the_old_file_consistently() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg().with_max_open_segments(1)).unwrap();
    while log.segments().len() < 4 {
        let o = log.next_offset();
        log.append(&Record::new(&keyed_value(o)).with_key(&key_of(o))).unwrap();
    }
    log.roll().unwrap();
    let first = log.segments()[0];
    let mut reader = log.read_from(3).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(reader.next_record().unwrap().unwrap().to_owned());
    }
    let out = log.compact(&Compaction::default()).unwrap();
    // Every sealed segment but the last (which holds one record) had records to drop.
    assert_eq!(out.segments_rewritten, log.segments().iter().filter(|s| s.sealed).count() - 1);
    // No temporary file is left, and the first segment's file was replaced
    // under the reader (which still has the old one mapped).
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // Touch every page of the other segments through other readers meanwhile.
    assert_eq!(read_all(&log).unwrap().len(), 13);
    while let Some(r) = reader.next_record().unwrap() {
        seen.push(r.to_owned());
    }
    assert!(seen.windows(2).all(|w| w[0].offset < w[1].offset));
    for r in &seen {
        assert_eq!(r.value.as_deref(), Some(&keyed_value(r.offset)[..]), "offset {}", r.offset);
        assert_eq!(r.key.as_deref(), Some(&key_of(r.offset)[..]));
    }
    // The rest of the first segment came from the old file: dense.
    let in_first: Vec<u64> = seen.iter().map(|r| r.offset).filter(|&o| o < first.next_offset).collect();
    assert_eq!(in_first, (3..first.next_offset).collect::<Vec<_>>());
    // Later segments are the compacted ones: only the latest of each key.
    let later: Vec<u64> = seen.iter().map(|r| r.offset).filter(|&o| o >= first.next_offset).collect();
    let n = log.next_offset();
    let latest: Vec<u64> = (n.saturating_sub(13)..n).filter(|&o| o >= first.next_offset).collect();
    assert_eq!(later, latest);
    log.close().unwrap();
}

/// Readers scan the log over and over while a writer appends (keyed values
/// and tombstones) and rolls, and compaction and retention run in a loop.
/// Every record a reader returns is the one appended at its offset, offsets
/// strictly increase, and nothing fails.
#[test]
fn readers_race_compaction_appends_and_retention() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg().with_max_open_segments(2)).unwrap();
    let stop = AtomicBool::new(false);
    let running = AtomicUsize::new(0);
    let is_tombstone = |o: u64| o % 17 == 5;
    let append = |log: &Log| {
        let o = log.next_offset();
        let key = key_of(o);
        let value = keyed_value(o);
        let r = if is_tombstone(o) { Record::tombstone(&key) } else { Record::new(&value).with_key(&key) };
        log.append(&r.with_timestamp(T0 + o as i64)).unwrap();
    };
    for _ in 0..500 {
        append(&log);
    }
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut read = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let mut reader = match log.read_from(log.start_offset()) {
                            Ok(r) => r,
                            Err(Error::OffsetOutOfRange { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        };
                        let mut last = None;
                        loop {
                            match reader.next_record() {
                                Ok(Some(r)) => {
                                    let o = r.offset();
                                    assert!(last.is_none_or(|l| l < o), "offset {o} after {last:?}");
                                    last = Some(o);
                                    assert_eq!(r.key(), Some(&key_of(o)[..]));
                                    if is_tombstone(o) {
                                        assert_eq!(r.value(), None);
                                    } else {
                                        assert_eq!(r.value(), Some(&keyed_value(o)[..]), "offset {o}");
                                    }
                                    read += 1;
                                    if read == 1 {
                                        running.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                Ok(None) => break,
                                Err(Error::OffsetOutOfRange { .. }) => break,
                                Err(e) => panic!("reader: {e}"),
                            }
                        }
                    }
                    read
                })
            })
            .collect();
        let compactor = s.spawn(|| {
            let mut rounds = 0;
            while !stop.load(Ordering::SeqCst) {
                let now = T0 + log.next_offset() as i64;
                let _ = log.compact_at(&policy(100), now).unwrap();
                rounds += 1;
                if rounds == 1 {
                    running.fetch_add(1, Ordering::SeqCst);
                }
            }
            rounds
        });
        // The workload starts once every worker is under way, so they race it.
        await_workers(&running, 3);
        for round in 0..60 {
            for _ in 0..100 {
                append(&log);
            }
            if round % 3 == 0 {
                log.roll().unwrap();
            }
            if round % 10 == 9 {
                let _ = log.delete_before(log.next_offset().saturating_sub(3_000).max(log.start_offset())).unwrap();
            }
        }
        stop.store(true, Ordering::SeqCst);
        assert!(compactor.join().unwrap() > 0);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    // A last compaction of everything: one record per key at most, the latest.
    log.roll().unwrap();
    let n = log.next_offset();
    let _ = log.compact_at(&policy(100), T0 + n as i64 + 1_000).unwrap();
    let all = read_all(&log).unwrap();
    let want: Vec<u64> = (n - 13..n).filter(|&o| !is_tombstone(o)).collect();
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), want);
    log.close().unwrap();
    let report = inspect::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

// ---------------------------------------------------------------------------
// Failures and crashes
// ---------------------------------------------------------------------------

/// A log of several sealed segments with keyed values, tombstones (some
/// old, some recent) and records without a key, closed; and its model. Keys
/// drift over time, so that many keys end with a tombstone in the first half
/// of the log while older values of theirs lie in earlier segments: the case
/// where compacting segments in the wrong order, or without making each step
/// durable, would bring a deleted key back.
fn build_crash_fixture(dir: &Path, cfg: &LogConfig, seed: u64) -> (Model, Vec<u64>) {
    let mut rng = Rng::new(seed);
    let log = Log::open(dir, cfg.clone()).unwrap();
    let mut model = Model::default();
    let mut i = 0i64;
    while log.segments().len() < 7 {
        i += 1;
        let key = format!("k{}", i / 12 + rng.range(0, 3) as i64).into_bytes();
        let value: Vec<u8> = (0..rng.range(20, 300)).map(|_| rng.next_u64() as u8).collect();
        let rec = match rng.range(0, 20) {
            0..11 => (Some(key), Some(value)),
            11..18 => (Some(key), None),
            _ => (None, Some(value)),
        };
        model.append(&log, vec![(rec.0, rec.1, T0 + i * 100)]);
        // A key that leaves the window of keys in use is often deleted.
        if i % 12 == 0 && rng.range(0, 10) < 7 {
            let gone = format!("k{}", i / 12 - 1).into_bytes();
            model.append(&log, vec![(Some(gone), None, T0 + i * 100 + 50)]);
        }
    }
    let bases = log.segments().iter().map(|s| s.base_offset).collect();
    log.close().unwrap();
    (model, bases)
}

/// Keys whose latest record is a tombstone older than `cutoff`, in a later
/// segment than one of their older values.
fn keys_deleted_across_segments(model: &Model, bases: &[u64], cutoff: i64) -> usize {
    let segment = |o: u64| bases.partition_point(|&b| b <= o);
    let mut first: HashMap<&Vec<u8>, u64> = HashMap::new();
    let mut last: HashMap<&Vec<u8>, &Rec> = HashMap::new();
    for r in &model.recs {
        if let Some(k) = &r.key {
            first.entry(k).or_insert(r.offset);
            last.insert(k, r);
        }
    }
    last.iter()
        .filter(|(k, r)| r.value.is_none() && r.timestamp < cutoff && segment(first[*k]) < segment(r.offset))
        .count()
}

/// Checks a log recovered after a crash during compaction: every record is
/// one that was appended, at its offset, offsets strictly increase; every
/// record the finished compaction keeps is there; for every key, the last
/// record there is its last one appended (or, if that was a tombstone,
/// nothing).
fn check_crashed(log: &Log, original: &Model, compacted: &Model) -> Result<(), String> {
    let got = read_all(log).map_err(|e| format!("reading: {e}"))?;
    let by_offset: BTreeMap<u64, &Rec> = original.recs.iter().map(|r| (r.offset, r)).collect();
    let mut last_seen: HashMap<Vec<u8>, &OwnedRecord> = HashMap::new();
    for (i, r) in got.iter().enumerate() {
        let want = by_offset.get(&r.offset).ok_or(format!("offset {} was never appended", r.offset))?;
        if *r != want.owned() {
            return Err(format!("the record at offset {} is not the one appended there", r.offset));
        }
        if i > 0 && got[i - 1].offset >= r.offset {
            return Err(format!("offset {} after {}", r.offset, got[i - 1].offset));
        }
        if let Some(k) = &r.key {
            last_seen.insert(k.clone(), r);
        }
    }
    let offsets: std::collections::BTreeSet<u64> = got.iter().map(|r| r.offset).collect();
    for r in &compacted.recs {
        if !offsets.contains(&r.offset) {
            return Err(format!("offset {} (kept by compaction) is missing", r.offset));
        }
    }
    let mut latest: HashMap<&Vec<u8>, &Rec> = HashMap::new();
    for r in &original.recs {
        if let Some(k) = &r.key {
            latest.insert(k, r);
        }
    }
    for (k, r) in latest {
        let seen = last_seen.get(k);
        match (&r.value, seen) {
            (Some(_), Some(s)) if s.offset == r.offset => {}
            (Some(_), _) => return Err(format!("key {k:?}: its latest value (offset {}) is not the last", r.offset)),
            (None, None) => {}
            (None, Some(s)) if s.offset == r.offset => {}
            (None, Some(s)) => {
                return Err(format!("key {k:?} was deleted at offset {} but offset {} is back", r.offset, s.offset));
            }
        }
    }
    if log.next_offset() != original.next {
        return Err(format!("next_offset {} instead of {}", log.next_offset(), original.next));
    }
    Ok(())
}

/// Crashes a compaction at every persistence call (the open before it
/// included), loses power in a few ways, and checks what reopens: never a
/// key's latest value lost, never a deleted key back, never a record that
/// was not appended; and a compaction after recovery finishes the job. Some
/// of those recovery compactions are crashed too (at a random call), and the
/// result is checked again. `ANNAL_COMPACTION_CRASH_SEEDS=n` runs n fixtures.
#[test]
fn a_crash_at_any_call_of_a_compaction_loses_no_latest_value_and_revives_no_key() {
    let seeds: u64 = std::env::var("ANNAL_COMPACTION_CRASH_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let (mut points, mut states, mut dangerous) = (0, 0, 0);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let (p, s, d) = crash_sweep(41 + seed, &mut failures);
        points += p;
        states += s;
        dangerous += d;
        if failures.len() > 5 {
            break;
        }
    }
    eprintln!(
        "compaction crash sweep: {seeds} fixtures ({dangerous} keys deleted across segments), {points} crash points, \
         {states} post-crash states checked, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(dangerous >= 3 * seeds as usize, "the fixtures have too few keys deleted across segments");
}

/// One fixture of [`a_crash_at_any_call_of_a_compaction_loses_no_latest_value_and_revives_no_key`]:
/// returns the crash points, the post-crash states checked and the keys
/// deleted across segments in the fixture.
fn crash_sweep(seed: u64, failures: &mut Vec<String>) -> (u64, usize, usize) {
    let tmp = fast_tempdir();
    let fixture = tmp.path().join("fixture");
    let cfg = LogConfig::default()
        .with_segment_bytes(8192)
        .with_index_interval_bytes(256)
        .with_durability(annal::Durability::Never);
    let (original, bases) = build_crash_fixture(&fixture, &cfg, seed);
    let now = T0 + (original.next as i64 / 2) * 100;
    let retention = 1u64;
    let policy = policy(retention);
    let dangerous = keys_deleted_across_segments(&original, &bases, now - retention as i64);
    // Copies `from` into `dir`, opens it through a simulated disk that dies
    // at call `crash_at`, compacts, and abandons the log (the process dies).
    let run = |from: &Path, dir: &Path, crash_at: Option<u64>| -> (Arc<PowerLossIo>, Option<u64>) {
        copy_dir(from, dir);
        let io = Arc::new(PowerLossIo::new(dir, crash_at));
        let mut compacted_below = None;
        if let Ok(log) = Log::open(dir, cfg.clone().with_io(io.clone() as Arc<dyn annal::io::Io>)) {
            compacted_below = Some(sealed_end(&log));
            let result = log.compact_at(&policy, now);
            if crash_at.is_none() && from == fixture {
                let out = result.unwrap();
                assert!(out.segments_rewritten >= 3 && out.tombstones_removed > 0, "{out:?}");
            }
            log.abandon();
        }
        (io, compacted_below)
    };
    // The whole compaction once, to count its calls and know its result.
    let dry = tmp.path().join("dry");
    let (io, sealed_end) = run(&fixture, &dry, None);
    let calls = io.calls();
    let mut compacted = original.clone();
    compacted.compact(sealed_end.unwrap(), now - retention as i64);
    {
        let log = Log::open(&dry, cfg.clone()).unwrap();
        let got = read_all(&log).unwrap();
        assert_eq!(got, compacted.visible(), "the compaction without a crash");
        log.close().unwrap();
    }
    // What a log recovered from a crash must hold; with `finish`, a
    // compaction after recovery must then give the uninterrupted result.
    let check = |target: &Path, finish: bool| -> Result<(), String> {
        let log = Log::open(target, cfg.clone()).map_err(|e| format!("open: {e}"))?;
        check_crashed(&log, &original, &compacted)?;
        let ro = Log::open_read_only(target, cfg.clone()).map_err(|e| format!("read-only open: {e}"))?;
        check_crashed(&ro, &original, &compacted).map_err(|e| format!("read-only: {e}"))?;
        drop(ro);
        if !finish {
            return log.close().map_err(|e| format!("close: {e}"));
        }
        let _ = log.compact_at(&policy, now).map_err(|e| format!("compaction after recovery: {e}"))?;
        let got = read_all(&log).map_err(|e| format!("reading after compaction: {e}"))?;
        if got != compacted.visible() {
            return Err("after a second compaction the log differs from the uninterrupted one".into());
        }
        log.close().map_err(|e| format!("close: {e}"))?;
        let report = inspect::verify(target).map_err(|e| format!("verify: {e}"))?;
        if !report.is_clean() {
            return Err(format!("verify: {:?}", report.problems));
        }
        Ok(())
    };

    let modes = [
        LossMode::ProcessCrash,
        LossMode::Clean,
        LossMode::Random { keep_percent: 50, torn: true },
        LossMode::Random { keep_percent: 10, torn: false },
        LossMode::Random { keep_percent: 90, torn: true },
    ];
    let mut states = 0;
    for k in 1..=calls + 1 {
        let case = tmp.path().join(format!("case-{k}"));
        let (io, _) = run(&fixture, &case, Some(k));
        for (v, mode) in modes.into_iter().enumerate() {
            let target = tmp.path().join(format!("case-{k}-{v}"));
            let mut rng = SplitMix::new(seed * 1_000_003 + k * 31 + v as u64);
            let report = io.power_loss_into(&target, mode, &mut rng);
            let what = format!(
                "fixture {seed}: crash at call {k} ({}), {mode}",
                io.describe_call(k).unwrap_or_else(|| "none".into())
            );
            states += 1;
            // Every other state: the recovery's compaction crashes too.
            let result = if (k + v as u64).is_multiple_of(2) {
                check(&target, true)
            } else {
                check(&target, false).and_then(|()| {
                    let again = tmp.path().join(format!("case-{k}-{v}-again"));
                    let k2 = 1 + rng.below(calls);
                    let (io2, _) = run(&target, &again, Some(k2));
                    let mode2 = modes[rng.below(modes.len() as u64) as usize];
                    let after = tmp.path().join(format!("case-{k}-{v}-after"));
                    io2.power_loss_into(&after, mode2, &mut rng);
                    states += 1;
                    let result = check(&after, true).map_err(|e| {
                        let call = io2.describe_call(k2).unwrap_or_else(|| "none".into());
                        format!("then a crash of the recovery's compaction at its call {k2} ({call}), {mode2}: {e}")
                    });
                    let _ = std::fs::remove_dir_all(&again);
                    let _ = std::fs::remove_dir_all(&after);
                    result
                })
            };
            if let Err(e) = result {
                failures.push(format!("{what}: {e}\n    power loss: {report}"));
            }
            let _ = std::fs::remove_dir_all(&target);
        }
        let _ = std::fs::remove_dir_all(&case);
        if failures.len() > 5 {
            break;
        }
    }
    (calls + 1, states, dangerous)
}

/// A log in `dir` over a [`FaultIo`] holding 1,000 records of 80 bytes under
/// 3 keys, all sealed: (io, configuration, log).
fn three_keys_over_fault_io(dir: &Path) -> (Arc<FaultIo>, LogConfig, Log) {
    let io = Arc::new(FaultIo::new());
    let cfg = small_cfg().with_io(io.clone());
    let log = Log::open(dir, cfg.clone()).unwrap();
    for i in 0..1_000u32 {
        log.append(&Record::new(&[i as u8; 80]).with_key(format!("k{}", i % 3).as_bytes())).unwrap();
    }
    log.roll().unwrap();
    (io, cfg, log)
}

#[test]
fn a_failed_rename_or_fsync_before_the_swap_changes_nothing() {
    let dir = fast_tempdir();
    let (io, cfg, log) = three_keys_over_fault_io(dir.path());
    let before = read_all(&log).unwrap();
    let files = segment_files(dir.path());
    let no_temp = |dir: &Path| {
        std::fs::read_dir(dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    };

    // The data file's rename fails (the index files' went through).
    io.only_files_ending_with(".log");
    io.set_fail_rename(true);
    assert!(matches!(log.compact(&Compaction::default()), Err(Error::Io { .. })));
    io.set_fail_rename(false);
    assert!(log.failure().is_none(), "{:?}", log.failure());
    assert_eq!(read_all(&log).unwrap(), before);
    assert!(no_temp(dir.path()));

    // The new file's fsync fails.
    io.only_files_ending_with(".compact.tmp");
    io.set_fail_sync(true);
    assert!(matches!(log.compact(&Compaction::default()), Err(Error::Io { .. })));
    io.set_fail_sync(false);
    assert!(log.failure().is_none(), "{:?}", log.failure());
    assert_eq!(read_all(&log).unwrap(), before);
    assert!(no_temp(dir.path()));
    assert_eq!(segment_files(dir.path()), files);

    // A reopen after the failures reads the same records (index files that
    // do not match their data, if any, are rebuilt).
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(read_all(&log).unwrap(), before);
    // The last segment was reopened for appending: seal it again.
    log.roll().unwrap();
    let out = log.compact(&Compaction::default()).unwrap();
    assert_eq!(out.records_removed, 997);
    assert_eq!(read_all(&log).unwrap(), before[before.len() - 3..]);
    log.close().unwrap();
}

#[test]
fn a_failed_directory_fsync_after_the_swap_fails_the_log() {
    let dir = fast_tempdir();
    let (io, cfg, log) = three_keys_over_fault_io(dir.path());
    let after: Vec<OwnedRecord> = read_all(&log).unwrap()[997..].to_vec();
    io.set_fail_sync_dir(true);
    assert!(log.compact(&Compaction::default()).is_err());
    assert!(log.failure().is_some());
    assert!(matches!(log.append(&Record::new(b"x")), Err(Error::Failed { .. })));
    assert!(matches!(log.compact(&Compaction::default()), Err(Error::Failed { .. })));
    io.set_fail_sync_dir(false);
    drop(log);
    // The first segment was replaced; the others are intact: every latest value is there.
    let log = Log::open(dir.path(), cfg).unwrap();
    let got = read_all(&log).unwrap();
    assert!(got.ends_with(&after));
    let _ = log.compact(&Compaction::default()).unwrap();
    assert_eq!(read_all(&log).unwrap(), after);
    log.close().unwrap();
}

#[test]
fn compaction_refuses_a_read_only_log() {
    let dir = fast_tempdir();
    Log::open(dir.path(), small_cfg()).unwrap().close().unwrap();
    let ro = Log::open_read_only(dir.path(), small_cfg()).unwrap();
    assert!(matches!(ro.compact(&Compaction::default()), Err(Error::ReadOnly { .. })));
}

// ---------------------------------------------------------------------------
// Damage to compacted segments
// ---------------------------------------------------------------------------

/// A closed log whose sealed segments are compacted, and its model.
fn compacted_fixture(dir: &Path) -> Model {
    let log = Log::open(dir, tiny_cfg()).unwrap();
    let mut model = Model::default();
    let mut i = 0i64;
    while log.segments().len() < 4 {
        i += 1;
        let key = format!("k{}", i % 9).into_bytes();
        let rec = if i % 4 == 0 { (None, Some(vec![i as u8; 60])) } else { (Some(key), Some(vec![i as u8; 150])) };
        model.append(&log, vec![(rec.0, rec.1, T0 + i)]);
    }
    log.roll().unwrap();
    model.compact(sealed_end(&log), i64::MIN);
    let _ = log.compact(&Compaction::default()).unwrap();
    // One more record so that the last segment is a dense one.
    model.append(&log, vec![(None, Some(b"tail".to_vec()), T0 + i + 1)]);
    log.close().unwrap();
    model
}

/// Flips bytes of a compacted segment, one at a time: every header and
/// footer byte, and bytes in and around every record. Each case must open
/// and read back exactly, or report `Error::Corruption` naming the file (at
/// open, or when a reader reaches the damaged record, after exactly the
/// records before it and with that record's position); `verify` agrees.
#[test]
fn damage_in_a_compacted_segment_is_reported_with_its_position() {
    let tmp = fast_tempdir();
    let pristine = tmp.path().join("pristine");
    let model = compacted_fixture(&pristine);
    let want = model.visible();
    let files = segment_files(&pristine);
    let target = files
        .iter()
        .find(|p| {
            let b = std::fs::read(p).unwrap();
            b[10] == 1 && b.len() > DATA_START + FOOTER_LEN + 200
        })
        .expect("a compacted segment with records")
        .clone();
    let name = target.file_name().unwrap().to_owned();
    let bytes = std::fs::read(&target).unwrap();
    let data_end = bytes.len() - FOOTER_LEN;
    // Frame starts, and the records' offsets.
    let mut frames = Vec::new();
    let mut pos = DATA_START;
    while pos < data_end {
        let f = annal::record::decode_frame(&bytes[pos..data_end]).unwrap();
        frames.push((pos, f.base_offset()));
        pos += f.len();
    }
    assert!(frames.len() >= 3);
    let mut positions: Vec<usize> = (0..DATA_START).chain(data_end..bytes.len()).collect();
    for &(start, _) in &frames {
        positions.extend([start, start + 4, start + 9, start + 17, start + 25, start + 37]);
    }
    let (mut intact, mut corrupt) = (0, 0);
    for p in positions {
        let case = tmp.path().join(format!("flip-{p}"));
        copy_dir(&pristine, &case);
        let mut damaged = bytes.clone();
        damaged[p] ^= 0x10;
        std::fs::write(case.join(&name), &damaged).unwrap();
        let frame = frames.iter().rev().find(|(s, _)| *s <= p && p < data_end).copied();
        let what = format!("byte {p} of {}", name.to_string_lossy());
        for read_only in [false, true] {
            let opened = if read_only { Log::open_read_only(&case, tiny_cfg()) } else { Log::open(&case, tiny_cfg()) };
            let log = match opened {
                Ok(log) => log,
                Err(Error::Corruption { path, .. }) => {
                    assert_eq!(path.file_name(), Some(name.as_os_str()), "{what}");
                    assert!(p < 64 || p >= data_end, "{what}: open failed for damage in the records");
                    corrupt += 1;
                    continue;
                }
                Err(e) => panic!("{what}: open: {e}"),
            };
            let mut reader = log.read_from(log.start_offset()).unwrap();
            let mut got = Vec::new();
            let err = loop {
                match reader.next_record() {
                    Ok(Some(r)) => got.push(r.to_owned()),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            match err {
                None => {
                    assert_eq!(got, want, "{what}: read without an error, but not what was written");
                    intact += 1;
                }
                Some(Error::Corruption { path, position, .. }) => {
                    assert_eq!(path.file_name(), Some(name.as_os_str()), "{what}");
                    let (start, offset) = frame.unwrap_or_else(|| panic!("{what}: corruption outside the records"));
                    assert_eq!(position, start as u64, "{what}: position of the damage");
                    assert_eq!(got, want.iter().filter(|r| r.offset < offset).cloned().collect::<Vec<_>>(), "{what}");
                    corrupt += 1;
                }
                Some(e) => panic!("{what}: {e}"),
            }
            drop(reader);
            log.close().unwrap();
        }
        let report = inspect::verify(&case).unwrap();
        let damaged_file = report.problems_of(Severity::Corruption).any(|pr| pr.path.file_name() == Some(&name));
        // The header and reserved bytes, the records and the footer are
        // checked; a sealed segment's checkpoint is not used.
        let in_checked_bytes = !(64..DATA_START).contains(&p);
        assert_eq!(damaged_file, in_checked_bytes, "{what}: verify: {:?}", report.problems);
        std::fs::remove_dir_all(&case).unwrap();
    }
    assert!(intact > 0 && corrupt > 0);
}

/// A compacted segment without a valid footer is corrupt, even as the last
/// segment (where a missing footer otherwise means a crash to recover from):
/// it was written whole before it was renamed into place, so it was never torn.
#[test]
fn a_compacted_last_segment_without_its_footer_is_corruption_not_a_torn_tail() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    for i in 0..50u8 {
        log.append(&Record::new(&[i; 10]).with_key(&[i % 3])).unwrap();
    }
    log.roll().unwrap();
    let _ = log.compact(&Compaction::default()).unwrap();
    log.close().unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1, "the empty active segment was removed on close");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&files[0], &bytes).unwrap();
    for result in [Log::open(dir.path(), small_cfg()), Log::open_read_only(dir.path(), small_cfg())] {
        match result {
            Err(Error::Corruption { path, position, .. }) => {
                assert_eq!(path, files[0]);
                assert_eq!(position, (n - 64) as u64);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }
    let report = inspect::verify(dir.path()).unwrap();
    assert!(!report.is_intact() && report.problems_of(Severity::TornTail).next().is_none(), "{:?}", report.problems);
    // Nothing was cut.
    assert_eq!(std::fs::read(&files[0]).unwrap(), bytes);
}

// ---------------------------------------------------------------------------
// The command line on a compacted log
// ---------------------------------------------------------------------------

/// `annal read`, `stats`, `verify`, `dump` and `tail` on a compacted log
/// whose last segment is compacted and ends in a gap; `tail` then follows a
/// writer that appends after it.
#[cfg(feature = "cli")]
#[test]
fn the_command_line_reads_and_follows_a_compacted_log() {
    use common::cli::{annal, spawn_lines};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, small_cfg()).unwrap();
    for i in 0..300u32 {
        log.append(
            &Record::new(format!("v{i}").as_bytes()).with_key(format!("k{}", i % 4).as_bytes()).with_timestamp(T0),
        )
        .unwrap();
    }
    log.append(&Record::tombstone(b"k3").with_timestamp(T0)).unwrap();
    log.roll().unwrap();
    let _ = log.compact_at(&policy(0), T0 + 1).unwrap();
    let kept: Vec<u64> = read_all(&log).unwrap().iter().map(|r| r.offset).collect();
    assert_eq!(kept, vec![296, 297, 298]);
    log.close().unwrap();
    let d = dir.to_str().unwrap();

    let out = annal().args(["read", d]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let offsets: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(offsets, kept);
    let out = annal().args(["stats", d]).output().unwrap();
    let stats = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() && stats.contains("records: 3\n"), "{stats}");
    assert!(stats.contains(", at offset 296"), "{stats}");
    let out = annal().args(["verify", d]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = annal().args(["dump", d]).output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("sparse"));

    let (mut tail, rx) = spawn_lines(&["tail", d, "--from", "0"]);
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line from tail");
    for o in &kept {
        assert!(next().starts_with(&format!("{o}\t")));
    }
    // A writer opens the log: it starts a new segment at 301, after the
    // compacted last one, and holds no record there yet. tail moves on to it
    // and waits; the empty segment is not "a later segment" of itself.
    let log = Log::open(&dir, small_cfg()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(tail.try_wait().unwrap().is_none(), "tail gave up on the writer's empty segment");
    assert_eq!(log.append(&Record::new(b"after")).unwrap(), 301);
    log.sync().unwrap();
    assert!(next().starts_with("301\t"));
    tail.kill().unwrap();
    tail.wait().unwrap();
    log.close().unwrap();
}

/// The temporary files of a compaction a crash interrupted are removed at open.
#[test]
fn leftover_compaction_files_are_removed_at_open() {
    let dir = fast_tempdir();
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    log.append(&Record::new(b"v").with_key(b"k")).unwrap();
    log.close().unwrap();
    let names = [
        "00000000000000000000.log.compact.tmp",
        "00000000000000000000.index.compact.tmp",
        "00000000000000000000.timeindex.compact.tmp",
    ];
    for n in names {
        std::fs::write(dir.path().join(n), b"partial").unwrap();
    }
    let log = Log::open(dir.path(), small_cfg()).unwrap();
    let removed = removed_temp_names(&log);
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(read_all(&log).unwrap().len(), 1);
    log.close().unwrap();
}

/// `Log::retain_sealed` keeps what its predicate accepts in the sealed
/// segments, leaves the active one alone, and its gaps read like
/// compaction's, also after a reopen and under `verify`.
#[test]
fn retain_sealed_keeps_what_the_caller_accepts() {
    let dir = common::fast_tempdir();
    let log = Log::open(dir.path(), common::tiny_cfg()).unwrap();
    for i in 0..200u64 {
        log.append(&Record::new(format!("v{i}").as_bytes()).with_key(format!("k{}", i % 7).as_bytes())).unwrap();
    }
    let sealed = sealed_end(&log);
    assert!(sealed > 20 && sealed < 200, "a few sealed segments and an active one ({sealed})");
    let mut seen = Vec::new();
    let mut segments = 0;
    let outcome = log
        .retain_sealed(
            &mut |r| {
                seen.push(r.offset());
                r.offset() % 3 == 0
            },
            &mut |_| segments += 1,
        )
        .unwrap();
    assert_eq!(seen, (0..sealed).collect::<Vec<_>>(), "each sealed record once, in order");
    assert_eq!(outcome.segments_examined, segments);
    assert_eq!(outcome.records_removed, sealed - sealed.div_ceil(3));
    let check = |log: &Log| {
        let offsets: Vec<u64> = common::read_all(log).unwrap().iter().map(|r| r.offset).collect();
        let want: Vec<u64> = (0..200).filter(|o| *o >= sealed || o % 3 == 0).collect();
        assert_eq!(offsets, want);
        assert!(matches!(log.get(1), Err(Error::Compacted { offset: 1 })));
        assert_eq!(log.get(3).unwrap().value.as_deref(), Some(&b"v3"[..]));
        assert_eq!(log.next_offset(), 200);
    };
    check(&log);
    log.close().unwrap();
    let log = Log::open(dir.path(), common::tiny_cfg()).unwrap();
    check(&log);
    log.close().unwrap();
    assert!(inspect::verify(dir.path()).unwrap().is_clean());
}
