//! Recovery: what reopening a log finds after a crash or after damage.
//!
//! The rules under test (ARCHITECTURE.md, invariants 1-3; `RecoveryMode`):
//! * after a crash the log holds a prefix of what was appended, with no holes
//!   and nothing that was never written;
//! * a bad record at the end of the last segment, after its durable
//!   checkpoint, is a torn write: it is cut and the cut is reported;
//! * a bad record anywhere else (a sealed segment, or data an fsync made
//!   durable) is corruption: reported with file and position, never cut,
//!   never returned as data.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use annal::segment::{DATA_START, FOOTER_LEN, SegmentFooter};
use annal::{CorruptionKind, Durability, Error, Header, Log, LogConfig, OwnedRecord, Record, RecoveryMode};
use common::{assert_same_files, removed_temp_names, segment_files, snapshot};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The record the tests store at `offset`: key, value and headers derived
/// from the offset, and a fixed timestamp.
fn expected(offset: u64, max_len: usize) -> OwnedRecord {
    let headers =
        if offset.is_multiple_of(3) { vec![("n".to_owned(), offset.to_string().into_bytes())] } else { vec![] };
    OwnedRecord {
        offset,
        timestamp: 1_000_000 + offset as i64 * 10,
        key: (!offset.is_multiple_of(5)).then(|| common::key_for(offset)),
        value: Some(common::value_for(offset, max_len)),
        headers,
    }
}

fn with_record<T>(e: &OwnedRecord, f: impl FnOnce(&Record<'_>) -> T) -> T {
    let headers: Vec<Header<'_>> = e.headers.iter().map(|(n, v)| Header { name: n, value: v }).collect();
    let mut r = Record::new(e.value.as_deref().expect("tests store values")).with_timestamp(e.timestamp);
    if let Some(k) = &e.key {
        r = r.with_key(k);
    }
    f(&r.with_headers(&headers))
}

/// Appends the expected records for the next `n` offsets, one by one.
fn append_n(log: &Log, n: u64, max_len: usize) -> Vec<OwnedRecord> {
    let start = log.next_offset();
    (start..start + n)
        .map(|o| {
            let e = expected(o, max_len);
            assert_eq!(with_record(&e, |r| log.append(r)).unwrap(), o);
            e
        })
        .collect()
}

/// The frame an `append` of `r` writes at `offset`: a batch of one record.
fn encode_to_vec(offset: u64, timestamp: i64, r: &Record<'_>) -> Option<Vec<u8>> {
    annal::record::batch::encode_to_vec(offset, timestamp, &[*r])
}

fn frame_len(e: &OwnedRecord) -> usize {
    with_record(e, |r| encode_to_vec(e.offset, e.timestamp, r).unwrap().len())
}

/// Reads from the start until the end or the first error: the records read
/// and the error, if any. The reader must stop after an error.
fn read_until_error(log: &Log) -> (Vec<OwnedRecord>, Option<Error>) {
    let mut reader = log.read_from(log.start_offset()).unwrap();
    let mut out = Vec::new();
    for r in reader.by_ref() {
        match r {
            Ok(r) => out.push(r),
            Err(e) => {
                assert!(reader.next().is_none(), "a reader must stop after an error");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

/// Asserts that the log holds exactly `want`, read in several ways.
fn assert_holds(log: &Log, want: &[OwnedRecord], what: &str) {
    let (got, err) = read_until_error(log);
    assert!(err.is_none(), "{what}: reading failed after {} records: {err:?}", got.len());
    assert_eq!(got.len(), want.len(), "{what}: record count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: record {}", w.offset);
    }
    let start = want.first().map_or(log.start_offset(), |r| r.offset);
    assert_eq!(log.start_offset(), start, "{what}: start offset");
    assert_eq!(log.next_offset(), start + want.len() as u64, "{what}: next offset");
}

fn is_corruption(r: &Result<Log, Error>) -> bool {
    matches!(r, Err(Error::Corruption { .. }))
}

/// Number of bytes a torn-tail cut of `fragment` reports: up to its last non-zero byte.
fn nonzero_extent(fragment: &[u8]) -> u64 {
    fragment.iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1)
}

fn cfg(durability: Durability) -> LogConfig {
    common::tiny_cfg().with_durability(durability)
}

/// A log of a few 4 KiB segments whose last segment holds `last_records`
/// records (small ones), then abandoned (a crash). Returns the records and
/// the path and base offset of the last segment.
fn crashed_log(dir: &Path, durability: Durability, last_records: u64) -> (Vec<OwnedRecord>, PathBuf, u64) {
    let log = Log::open(dir, cfg(durability)).unwrap();
    let mut all = append_n(&log, 40, 300);
    // Append until a roll starts a new segment (holding one record) after at least two sealed ones.
    let mut base = log.segments().last().unwrap().base_offset;
    loop {
        all.extend(append_n(&log, 1, 300));
        let b = log.segments().last().unwrap().base_offset;
        if b != base {
            base = b;
            if log.segments().len() >= 3 {
                break;
            }
        }
    }
    assert_eq!(log.next_offset(), base + 1);
    all.extend(append_n(&log, last_records - 1, 120));
    assert_eq!(log.segments().last().unwrap().base_offset, base, "the last segment must not roll");
    log.abandon();
    (all, annal::segment::log_file_name(base).into(), base)
}

// ---------------------------------------------------------------------------
// (a) Truncation of the last segment at every byte position
// ---------------------------------------------------------------------------

/// Truncates the unsealed last segment of a crashed log at every byte from
/// the header to a few bytes past its data. Allowed outcomes:
/// * `Never` (no checkpoint beyond the header): the log always opens, holding
///   every earlier segment plus exactly the records of the last segment that
///   end at or before the cut; the bytes of a partial record are reported as
///   cut; read-only open sees the same records and reports the same cut.
/// * `Always` (the checkpoint vouches for every record): a cut inside the
///   records destroyed durable data, so opening fails with `Corruption` and
///   changes nothing; read-only open works and reading ends in `Corruption`
///   after the surviving records. A cut at or after the end of the records
///   opens with every record.
/// * A file shorter than the 128-byte segment header is `Corruption`.
fn truncate_unsealed_everywhere(durability: Durability) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (all, name, base) = crashed_log(&dir, durability, 8);
    let path = dir.join(&name);
    let original = fs::read(&path).unwrap();
    assert_eq!(original.len(), 4096, "an unsealed segment is preallocated");
    let in_last: Vec<&OwnedRecord> = all.iter().filter(|r| r.offset >= base).collect();
    let mut ends = vec![DATA_START];
    for r in &in_last {
        ends.push(ends.last().unwrap() + frame_len(r));
    }
    let data_end = *ends.last().unwrap();
    assert!(original[data_end..].iter().all(|&b| b == 0), "the preallocated tail is zero");
    let before_last = (base - all[0].offset) as usize;
    let mut opened = 0;
    let mut refused = 0;

    for cut in 0..data_end + 16 {
        fs::write(&path, &original[..cut]).unwrap();
        let files_before = snapshot(&dir);
        let what = format!("{durability:?}, last segment cut to {cut} bytes");
        if cut < DATA_START {
            assert!(is_corruption(&Log::open_read_only(&dir, cfg(durability))), "{what}: read-only");
            assert!(is_corruption(&Log::open(&dir, cfg(durability))), "{what}");
            continue;
        }
        let k = ends.iter().rposition(|&e| e <= cut).unwrap();
        let survivors = &all[..before_last + k];
        let torn = nonzero_extent(&original[ends[k]..cut]);
        let durable_damage = durability == Durability::Always && cut < data_end;

        // Read-only first: it must agree with what recovery will do, and change nothing.
        let ro = Log::open_read_only(&dir, cfg(durability)).unwrap();
        let (got, err) = read_until_error(&ro);
        assert_eq!(got, survivors, "{what}: read-only records");
        if durable_damage {
            assert!(matches!(err, Some(Error::Corruption { .. })), "{what}: read-only must report corruption: {err:?}");
        } else {
            assert!(err.is_none(), "{what}: {err:?}");
            assert_eq!(ro.next_offset(), base + k as u64, "{what}: read-only next offset");
            assert_eq!(ro.recovery_report().truncated_bytes, torn, "{what}: read-only would-cut bytes");
        }
        drop(ro);
        assert_same_files(&files_before, &snapshot(&dir), &format!("{what}: read-only open"));

        match Log::open(&dir, cfg(durability)) {
            Ok(log) => {
                assert!(!durable_damage, "{what}: opened although durable records were cut");
                opened += 1;
                assert_holds(&log, survivors, &what);
                let report = log.recovery_report();
                assert_eq!(report.scanned_segment, Some(base), "{what}");
                assert_eq!(report.records_scanned, k as u64, "{what}");
                assert_eq!(report.truncated_bytes, torn, "{what}: reported cut");
                // The log continues right after the survivors, over the cut bytes.
                if cut.is_multiple_of(7) {
                    let next = expected(base + k as u64, 120);
                    assert_eq!(with_record(&next, |r| log.append(r)).unwrap(), next.offset, "{what}");
                    log.abandon();
                    let log = Log::open(&dir, cfg(durability)).unwrap();
                    let mut want = survivors.to_vec();
                    want.push(next);
                    assert_holds(&log, &want, &format!("{what}, appended and crashed again"));
                    log.abandon();
                } else {
                    log.abandon();
                }
            }
            Err(e) => {
                assert!(durable_damage, "{what}: refused to open: {e}");
                assert!(e.is_corruption(), "{what}: {e}");
                refused += 1;
                assert_same_files(&files_before, &snapshot(&dir), &format!("{what}: failed open"));
            }
        }
    }
    assert!(opened > 0);
    if durability == Durability::Always {
        assert!(refused > 0);
    }
}

#[test]
fn truncated_unsealed_last_segment_without_checkpoint_yields_prefix() {
    truncate_unsealed_everywhere(Durability::Never);
}

#[test]
fn truncated_unsealed_last_segment_below_checkpoint_is_corruption() {
    truncate_unsealed_everywhere(Durability::Always);
}

/// Closes the log cleanly (the last segment is sealed: trimmed, with a
/// footer), then truncates the last segment at every byte. The footer is then
/// gone or damaged, so the segment is no longer recognisably sealed; being the
/// last one it is scanned. Allowed outcomes:
/// * a cut inside the footer (at or after the end of the records): the log
///   opens with every record, and the footer fragment is reported as cut;
/// * a cut inside the records: records that a clean close had made durable
///   are gone, which is `Corruption` (never a silent cut), and nothing changes.
#[test]
fn truncated_sealed_last_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (all, name, base) = crashed_log(&dir, Durability::Never, 6);
    let log = Log::open(&dir, cfg(Durability::Never)).unwrap();
    assert_holds(&log, &all, "after the crash");
    log.close().unwrap();
    let path = dir.join(&name);
    let original = fs::read(&path).unwrap();
    let data_end = original.len() - FOOTER_LEN;
    let sealed_len = original.len();
    let index_files: Vec<_> = ["index", "timeindex"].iter().map(|e| path.with_extension(e)).collect();
    let index_bytes: Vec<_> = index_files.iter().map(|p| fs::read(p).unwrap()).collect();
    let in_last = all.iter().filter(|r| r.offset >= base).map(frame_len).sum::<usize>();
    assert_eq!(data_end, DATA_START + in_last);

    for cut in DATA_START..sealed_len {
        fs::write(&path, &original[..cut]).unwrap();
        for (p, b) in index_files.iter().zip(&index_bytes) {
            fs::write(p, b).unwrap();
        }
        let what = format!("sealed last segment cut to {cut} of {sealed_len} bytes");
        let files_before = snapshot(&dir);
        let ro = Log::open_read_only(&dir, cfg(Durability::Never));
        let rw = Log::open(&dir, cfg(Durability::Never));
        if cut >= data_end {
            let ro = ro.unwrap_or_else(|e| panic!("{what}: read-only: {e}"));
            assert_holds(&ro, &all, &format!("{what}, read-only"));
            let log = rw.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_holds(&log, &all, &what);
            assert_eq!(log.recovery_report().scanned_segment, Some(base), "{what}");
            assert_eq!(log.recovery_report().truncated_bytes, nonzero_extent(&original[data_end..cut]), "{what}");
            log.abandon();
        } else {
            // Read-only may open, but must not return anything past the damage as data.
            if let Ok(ro) = &ro {
                let (got, err) = read_until_error(ro);
                assert!(err.is_some_and(|e| e.is_corruption()), "{what}: read-only must report the damage");
                assert!(
                    got.len() < all.len() && all.starts_with(&got),
                    "{what}: read-only returned {} records",
                    got.len()
                );
            }
            drop(ro);
            assert!(is_corruption(&rw), "{what}: expected Corruption, got {:?}", rw.as_ref().map(|l| l.next_offset()));
            drop(rw);
            assert_same_files(&files_before, &snapshot(&dir), &format!("{what}: failed open"));
        }
    }
}

/// A sealed segment that is not the last one must keep its footer: if it is
/// cut anywhere the log refuses to open (a hole would follow).
#[test]
fn truncated_sealed_middle_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, _, _) = crashed_log(&dir, Durability::Never, 3);
    let segs = segment_files(&dir);
    let middle = &segs[1];
    let original = fs::read(middle).unwrap();
    for cut in (0..original.len()).step_by(13).chain([original.len() - 1]) {
        fs::write(middle, &original[..cut]).unwrap();
        let before = snapshot(&dir);
        let r = Log::open(&dir, cfg(Durability::Never));
        match &r {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, middle, "cut {cut}"),
            other => panic!("cut {cut}: expected Corruption of the middle segment, got {:?}", other.as_ref().err()),
        }
        assert!(is_corruption(&Log::open_read_only(&dir, cfg(Durability::Never))), "cut {cut}: read-only");
        assert_same_files(&before, &snapshot(&dir), &format!("middle segment cut to {cut}"));
    }
}

/// A missing segment between two others is a hole: refused.
#[test]
fn missing_middle_segment_is_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    crashed_log(&dir, Durability::Never, 3);
    let segs = segment_files(&dir);
    fs::remove_file(&segs[1]).unwrap();
    for r in [Log::open(&dir, cfg(Durability::Never)), Log::open_read_only(&dir, cfg(Durability::Never))] {
        match r {
            Err(Error::Corruption { kind: CorruptionKind::Gap { .. }, .. }) => {}
            other => panic!("expected a Gap, got {:?}", other.map(|l| l.next_offset())),
        }
    }
}

// ---------------------------------------------------------------------------
// (b) A damaged record inside a sealed segment
// ---------------------------------------------------------------------------

/// Flips every bit of one record in the middle of a sealed segment that is
/// not the last one. Reading from the start returns exactly the records
/// before it, then `Corruption` naming the file, the record's offset and its
/// byte position, and then nothing: never the damaged record, never a record
/// after it.
#[test]
fn bit_flip_in_sealed_segment_is_reported_never_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (all, _, _) = crashed_log(&dir, Durability::Never, 3);
    Log::open(&dir, cfg(Durability::Never)).unwrap().close().unwrap();
    let segs = segment_files(&dir);
    let log = Log::open_read_only(&dir, cfg(Durability::Never)).unwrap();
    let infos = log.segments();
    drop(log);
    assert!(infos.len() >= 3 && infos.iter().all(|s| s.sealed));
    let seg = infos[1];
    let path = &segs[1];
    // The third record of the second segment.
    let victim = seg.base_offset + 2;
    assert!(victim < seg.next_offset);
    let start: usize = DATA_START + all[seg.base_offset as usize..victim as usize].iter().map(frame_len).sum::<usize>();
    let len = frame_len(&all[victim as usize]);
    let original = fs::read(path).unwrap();

    for bit in 0..len * 8 {
        let mut damaged = original.clone();
        damaged[start + bit / 8] ^= 1 << (bit % 8);
        fs::write(path, &damaged).unwrap();
        let what = format!("bit {bit} of record {victim} flipped");
        let log = Log::open_read_only(&dir, cfg(Durability::Never)).unwrap();
        let (got, err) = read_until_error(&log);
        assert_eq!(got, all[..victim as usize], "{what}: records before the damage");
        match err {
            Some(Error::Corruption { path: p, offset, position, .. }) => {
                assert_eq!(&p, path, "{what}");
                assert_eq!(offset, victim, "{what}");
                assert_eq!(position, start as u64, "{what}");
            }
            other => panic!("{what}: expected Corruption, got {other:?}"),
        }
        assert!(log.get(victim).is_err_and(|e| e.is_corruption()), "{what}: get");
        // Reading from just after it either skips it (an index entry lies after
        // it) or reports it; never returns wrong data.
        if let Ok(reader) = log.read_from(victim + 1) {
            let rest: Vec<_> = reader.take(3).collect();
            for (i, r) in rest.iter().enumerate() {
                match r {
                    Ok(r) => assert_eq!(r, &all[victim as usize + 1 + i], "{what}"),
                    Err(e) => assert!(e.is_corruption(), "{what}: {e}"),
                }
            }
        }
    }
    fs::write(path, &original).unwrap();
    // Also through a read-write handle, once.
    let mut damaged = original.clone();
    damaged[start + len - 1] ^= 0x10;
    fs::write(path, &damaged).unwrap();
    let log = Log::open(&dir, cfg(Durability::Never)).unwrap();
    let (got, err) = read_until_error(&log);
    assert_eq!(got, all[..victim as usize]);
    assert!(err.is_some_and(|e| e.is_corruption()));
}

/// A record whose checksum is fine but that sits at the wrong place (carries
/// another offset) is detected as well: here a segment's records are replaced
/// by a valid frame from elsewhere.
#[test]
fn misplaced_record_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (all, _, _) = crashed_log(&dir, Durability::Never, 3);
    Log::open(&dir, cfg(Durability::Never)).unwrap().close().unwrap();
    let segs = segment_files(&dir);
    let mut bytes = fs::read(&segs[0]).unwrap();
    // Overwrite record 1 with a valid frame of the same length carrying offset 7.
    let len1 = frame_len(&all[1]);
    let start1 = DATA_START + frame_len(&all[0]);
    let mut fake = all[1].clone();
    fake.offset = 7;
    let frame = with_record(&fake, |r| encode_to_vec(7, fake.timestamp, r).unwrap());
    assert_eq!(frame.len(), len1);
    bytes[start1..start1 + len1].copy_from_slice(&frame);
    fs::write(&segs[0], &bytes).unwrap();
    let log = Log::open_read_only(&dir, cfg(Durability::Never)).unwrap();
    let (got, err) = read_until_error(&log);
    assert_eq!(got, all[..1]);
    match err {
        Some(Error::Corruption {
            kind: CorruptionKind::UnexpectedOffset { expected: 1, found: 7 }, position, ..
        }) => {
            assert_eq!(position, start1 as u64)
        }
        other => panic!("expected UnexpectedOffset, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// (c) Missing or damaged index files are rebuilt
// ---------------------------------------------------------------------------

fn closed_log_with_indexes(dir: &Path) -> Vec<OwnedRecord> {
    let log = Log::open(dir, common::small_cfg()).unwrap();
    let all = append_n(&log, 600, 400);
    assert!(log.segments().len() >= 3);
    log.close().unwrap();
    all
}

#[test]
fn missing_or_damaged_index_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let all = closed_log_with_indexes(&pristine);
    let segs = segment_files(&pristine);
    let victim = &segs[1];
    let victim_base: u64 = annal::segment::parse_log_file_name(victim.file_name().unwrap().to_str().unwrap()).unwrap();
    let index = victim.with_extension("index");
    let timeindex = victim.with_extension("timeindex");
    let good_index = fs::read(&index).unwrap();
    let good_timeindex = fs::read(&timeindex).unwrap();
    assert!(good_index.len() > 32 + 8, "the segment must have index entries");

    type Damage = fn(&Path, &Path);
    let damages: Vec<(&str, Damage)> = vec![
        ("index deleted", |i, _| fs::remove_file(i).unwrap()),
        ("time index deleted", |_, t| fs::remove_file(t).unwrap()),
        ("both deleted", |i, t| {
            fs::remove_file(i).unwrap();
            fs::remove_file(t).unwrap()
        }),
        ("index entry byte flipped", |i, _| flip(i, 40)),
        ("index header byte flipped", |i, _| flip(i, 3)),
        ("index crc byte flipped", |i, _| flip(i, 25)),
        ("time index entry byte flipped", |_, t| flip(t, 36)),
        ("index truncated", |i, _| {
            let b = fs::read(i).unwrap();
            fs::write(i, &b[..b.len() - 3]).unwrap()
        }),
        ("index emptied", |i, _| fs::write(i, b"").unwrap()),
        ("index zeroed", |i, _| {
            let n = fs::metadata(i).unwrap().len() as usize;
            fs::write(i, vec![0u8; n]).unwrap()
        }),
    ];
    fn flip(p: &Path, at: usize) {
        let mut b = fs::read(p).unwrap();
        b[at] ^= 0x40;
        fs::write(p, b).unwrap();
    }

    for (what, damage) in damages {
        for read_only in [true, false] {
            let dir = tmp.path().join(format!("case-{}-{read_only}", what.replace(' ', "-")));
            common::copy_dir(&pristine, &dir);
            let rel = |p: &Path| dir.join(p.file_name().unwrap());
            damage(&rel(&index), &rel(&timeindex));
            let files_before = snapshot(&dir);
            let log = if read_only {
                Log::open_read_only(&dir, common::small_cfg()).unwrap()
            } else {
                Log::open(&dir, common::small_cfg()).unwrap()
            };
            assert_eq!(log.indexes_rebuilt(), 0, "{what}: indexes are loaded lazily");
            // Read from an offset inside the damaged segment.
            let at = victim_base + 17;
            let got: Vec<_> = log.read_from(at).unwrap().take(50).map(Result::unwrap).collect();
            assert_eq!(got, all[at as usize..at as usize + 50], "{what}");
            assert_eq!(log.indexes_rebuilt(), 1, "{what}, read_only={read_only}");
            assert_eq!(log.get(victim_base + 3).unwrap(), all[victim_base as usize + 3], "{what}");
            assert_eq!(log.offset_for_timestamp(all[at as usize].timestamp).unwrap(), Some(at), "{what}");
            assert_eq!(log.indexes_rebuilt(), 1, "{what}: rebuilt once");
            assert_holds(&log, &all, what);
            drop(log);
            if read_only {
                assert_same_files(&files_before, &snapshot(&dir), &format!("{what}: read-only"));
            } else {
                // Rewritten, byte-identical to what the writer had made.
                assert_eq!(fs::read(rel(&index)).unwrap(), good_index, "{what}: .index rewritten");
                assert_eq!(fs::read(rel(&timeindex)).unwrap(), good_timeindex, "{what}: .timeindex rewritten");
                assert!(
                    !fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
                );
                let log = Log::open(&dir, common::small_cfg()).unwrap();
                assert_holds(&log, &all, what);
                assert_eq!(log.indexes_rebuilt(), 0, "{what}: the rewritten index is accepted");
            }
        }
    }
}

/// An index built with another `index_interval_bytes` than the one in force
/// (so its checksum no longer matches the footer) is either used as it is or
/// rebuilt; reads are right either way.
#[test]
fn index_interval_change_is_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let all = closed_log_with_indexes(&dir);
    for interval in [1, 100, 4096, 1 << 20] {
        let cfg = common::small_cfg().with_index_interval_bytes(interval);
        let log = Log::open(&dir, cfg).unwrap();
        assert_holds(&log, &all, &format!("interval {interval}"));
        for at in [0u64, 1, 150, 299, 599] {
            assert_eq!(log.get(at).unwrap(), all[at as usize], "interval {interval}");
            let t = all[at as usize].timestamp;
            assert_eq!(log.offset_for_timestamp(t).unwrap(), Some(at), "interval {interval}");
        }
        log.close().unwrap();
    }
}

// ---------------------------------------------------------------------------
// (d) The zeroed preallocated tail and torn writes
// ---------------------------------------------------------------------------

#[test]
fn zeroed_tail_is_never_read_as_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let mut all = append_n(&log, 250, 700);
    log.abandon();
    for round in 0..3 {
        let log = Log::open(&dir, common::small_cfg()).unwrap();
        let report = log.recovery_report().clone();
        assert!(report.scanned_segment.is_some());
        assert_eq!(report.truncated_bytes, 0, "round {round}: a clean crash cuts nothing");
        assert_holds(&log, &all, &format!("round {round}"));
        all.extend(append_n(&log, 10, 700));
        log.abandon();
    }
}

#[test]
fn torn_write_after_last_record_is_cut_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let mut all = append_n(&log, 120, 500);
    let last = log.segments().last().copied().unwrap();
    log.abandon();
    let path = dir.join(annal::segment::log_file_name(last.base_offset));
    let end = DATA_START + last.data_bytes as usize;
    let original = fs::read(&path).unwrap();

    // Several kinds of torn writes right after the last record.
    let next = expected(last.next_offset, 500);
    let next_frame = with_record(&next, |r| encode_to_vec(next.offset, next.timestamp, r).unwrap());
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
    let torn_writes: Vec<(&str, Vec<u8>)> = vec![
        ("half of the next frame", next_frame[..next_frame.len() / 2].to_vec()),
        ("the next frame minus its last byte", next_frame[..next_frame.len() - 1].to_vec()),
        ("only a length field", next_frame[..4].to_vec()),
        ("garbage", garbage.clone()),
        ("the next frame with a bad checksum", {
            let mut f = next_frame.clone();
            f[4] ^= 1;
            f
        }),
    ];
    for (what, torn) in torn_writes {
        let mut bytes = original.clone();
        bytes[end..end + torn.len()].copy_from_slice(&torn);
        fs::write(&path, &bytes).unwrap();
        let log = Log::open(&dir, common::small_cfg()).unwrap();
        assert_holds(&log, &all, what);
        let cut = log.recovery_report().truncated_bytes;
        assert!(cut > 0 && cut <= torn.len() as u64, "{what}: cut {cut}");
        assert_eq!(cut, nonzero_extent(&torn), "{what}");
        log.abandon();
        // The cut bytes were zeroed on disk: a second open finds nothing to cut.
        assert!(fs::read(&path).unwrap()[end..].iter().all(|&b| b == 0), "{what}: torn bytes zeroed");
        let log = Log::open(&dir, common::small_cfg()).unwrap();
        assert_eq!(log.recovery_report().truncated_bytes, 0, "{what}");
        assert_holds(&log, &all, what);
        log.abandon();
    }

    // Garbage further away, after a run of zeros, is cut too.
    let mut bytes = original.clone();
    bytes[end + 1000..end + 1010].copy_from_slice(&garbage[..10]);
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert_holds(&log, &all, "distant garbage");
    assert_eq!(log.recovery_report().truncated_bytes, 1010);
    all.extend(append_n(&log, 5, 500));
    log.abandon();
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert_holds(&log, &all, "appended after the cut");
}

// ---------------------------------------------------------------------------
// (e) AbsoluteConsistency
// ---------------------------------------------------------------------------

#[test]
fn absolute_consistency_refuses_torn_tail_and_changes_nothing() {
    let strict = || common::small_cfg().with_recovery_mode(RecoveryMode::AbsoluteConsistency);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let all = append_n(&log, 150, 500);
    let last = log.segments().last().copied().unwrap();
    log.abandon();

    // A crash with nothing torn is fine in strict mode.
    let log = Log::open(&dir, strict()).unwrap();
    assert_holds(&log, &all, "strict, clean crash");
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    log.abandon();

    let path = dir.join(annal::segment::log_file_name(last.base_offset));
    let end = DATA_START + last.data_bytes as usize;
    let mut bytes = fs::read(&path).unwrap();
    bytes[end..end + 20].copy_from_slice(&[0xAB; 20]);
    fs::write(&path, &bytes).unwrap();
    let before = snapshot(&dir);
    match Log::open(&dir, strict()) {
        Err(Error::Corruption { path: p, position, offset, .. }) => {
            assert_eq!(p, path);
            assert_eq!(position, end as u64);
            assert_eq!(offset, last.next_offset);
        }
        other => panic!("expected Corruption, got {:?}", other.map(|l| l.next_offset())),
    }
    assert_same_files(&before, &snapshot(&dir), "strict open of a torn tail");
    // Read-only strict: opens, and reading reports the damage at the end.
    let ro = Log::open_read_only(&dir, strict()).unwrap();
    let (got, err) = read_until_error(&ro);
    assert_eq!(got, all);
    assert!(err.is_some_and(|e| e.is_corruption()));
    drop(ro);
    assert_same_files(&before, &snapshot(&dir), "strict read-only open");
    // The default mode then cuts it.
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert_holds(&log, &all, "tolerant open after the strict refusal");
    assert_eq!(log.recovery_report().truncated_bytes, 20);
}

/// A torn tail in a last segment that is also shorter than a segment (it was
/// cut): strict mode must leave the file exactly as it was, length included.
#[test]
fn absolute_consistency_leaves_short_file_alone() {
    let strict = || common::tiny_cfg().with_recovery_mode(RecoveryMode::AbsoluteConsistency);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (_, name, _) = crashed_log(&dir, Durability::Never, 4);
    let path = dir.join(name);
    let bytes = fs::read(&path).unwrap();
    let end = DATA_START + bytes[DATA_START..].iter().rposition(|&b| b != 0).unwrap() + 1;
    fs::write(&path, &bytes[..end - 5]).unwrap();
    let before = snapshot(&dir);
    assert!(is_corruption(&Log::open(&dir, strict())));
    assert_same_files(&before, &snapshot(&dir), "strict open of a cut file");
}

// ---------------------------------------------------------------------------
// (f) Damage before the durable checkpoint
// ---------------------------------------------------------------------------

#[test]
fn damage_before_checkpoint_is_corruption_not_a_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let always = || common::small_cfg().with_durability(Durability::Always);
    let log = Log::open(&dir, always()).unwrap();
    let all = append_n(&log, 40, 300);
    let last = log.segments().last().copied().unwrap();
    assert!(last.next_offset - last.base_offset >= 10);
    log.abandon();
    let path = dir.join(annal::segment::log_file_name(last.base_offset));
    let records: Vec<_> = all.iter().filter(|r| r.offset >= last.base_offset).collect();
    let original = fs::read(&path).unwrap();

    // Damage the second record of the last segment (early, well before the checkpoint).
    let second = DATA_START + frame_len(records[0]);
    for (what, at) in [("value byte", second + 40), ("length byte", second), ("first record", DATA_START + 9)] {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let before = snapshot(&dir);
        match Log::open(&dir, always()) {
            Err(Error::Corruption { path: p, position, .. }) => {
                assert_eq!(p, path, "{what}");
                assert!(position as usize <= at, "{what}: position {position} after the damage at {at}");
            }
            other => panic!("{what}: expected Corruption, got {:?}", other.map(|l| l.next_offset())),
        }
        assert_same_files(&before, &snapshot(&dir), &format!("{what}: nothing is cut"));
        // Read-only open shows the records before the damage, then the error.
        let ro = Log::open_read_only(&dir, always()).unwrap();
        let (got, err) = read_until_error(&ro);
        assert!(all.starts_with(&got) && got.len() < all.len(), "{what}");
        assert!(err.is_some_and(|e| e.is_corruption()), "{what}");
        drop(ro);
        assert_same_files(&before, &snapshot(&dir), &format!("{what}: read-only"));
    }

    // The same damage without a checkpoint (Durability::Never) is a torn tail: cut.
    let tmp2 = tempfile::tempdir().unwrap();
    let dir2 = tmp2.path().join("log");
    let log = Log::open(&dir2, common::small_cfg()).unwrap();
    let all2 = append_n(&log, 40, 300);
    let last2 = log.segments().last().copied().unwrap();
    log.abandon();
    let path2 = dir2.join(annal::segment::log_file_name(last2.base_offset));
    let mut bytes = fs::read(&path2).unwrap();
    let second = DATA_START + frame_len(&all2[last2.base_offset as usize]);
    bytes[second + 40] ^= 0x01;
    fs::write(&path2, &bytes).unwrap();
    let log = Log::open(&dir2, common::small_cfg()).unwrap();
    assert_holds(&log, &all2[..last2.base_offset as usize + 1], "no checkpoint: cut at the damage");
    assert!(log.recovery_report().truncated_bytes > 0);
}

// ---------------------------------------------------------------------------
// (g) Temporary and unknown files
// ---------------------------------------------------------------------------

#[test]
fn temporary_and_unknown_files_are_not_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let all = append_n(&log, 200, 700);
    let next_base = log.next_offset();
    log.close().unwrap();

    let junk: &[(&str, &[u8])] = &[
        ("notes.txt", b"hello"),
        ("123.log", b"not a segment"),
        ("0000000000000000000.log", b"19 digits"),
        ("000000000000000000000.log", b"21 digits"),
        ("00000000000000000000.log.bak", b"backup"),
        ("00000000000000000abc.log", b"letters"),
        ("99999999999999999999.index", b"stray index"),
        ("README", b""),
    ];
    for (name, bytes) in junk {
        fs::write(dir.join(name), bytes).unwrap();
    }
    // Leftovers of an interrupted roll and index rewrite: a prepared next
    // segment (a valid segment file under its temporary name) and index tmps.
    let seg0 = fs::read(segment_files(&dir)[0].clone()).unwrap();
    let tmp_names = [
        format!("{}.tmp", annal::segment::log_file_name(next_base)),
        "00000000000000000000.index.tmp".to_owned(),
        "00000000000000000000.timeindex.tmp".to_owned(),
    ];
    for name in &tmp_names {
        fs::write(dir.join(name), &seg0).unwrap();
    }
    fs::create_dir(dir.join("00000000000000000001.log.d")).unwrap();

    // Read-only: ignores all of them and removes nothing.
    let before = snapshot(&dir);
    let ro = Log::open_read_only(&dir, common::small_cfg()).unwrap();
    assert_holds(&ro, &all, "read-only with junk");
    assert!(ro.recovery_report().removed_temp_files.is_empty());
    drop(ro);
    assert_same_files(&before, &snapshot(&dir), "read-only open with junk");

    // Read-write: removes its own temporary files, leaves the rest alone.
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert_holds(&log, &all, "with junk");
    let removed = removed_temp_names(&log);
    let mut want = tmp_names.to_vec();
    want.sort();
    assert_eq!(removed, want);
    let more = append_n(&log, 3, 700);
    log.close().unwrap();
    for (name, bytes) in junk {
        assert_eq!(&fs::read(dir.join(name)).unwrap(), bytes, "{name} must be left alone");
    }
    for name in &tmp_names {
        assert!(!dir.join(name).exists(), "{name} should be removed");
    }
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let mut want = all.clone();
    want.extend(more);
    assert_holds(&log, &want, "reopened with junk");
}

/// A directory that holds no log is not mistaken for one by a reader, and a
/// file whose header is damaged is never read as a segment.
#[test]
fn not_a_log_and_bad_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join("notes.txt"), b"x").unwrap();
    assert!(matches!(Log::open_read_only(&empty, common::small_cfg()), Err(Error::NotALog { .. })));
    assert!(matches!(Log::open_read_only(tmp.path().join("missing"), common::small_cfg()), Err(Error::NotALog { .. })));

    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    append_n(&log, 10, 100);
    log.close().unwrap();
    let seg = segment_files(&dir)[0].clone();
    let original = fs::read(&seg).unwrap();
    for at in [0usize, 8, 16, 24, 33] {
        let mut b = original.clone();
        b[at] ^= 0x02;
        fs::write(&seg, &b).unwrap();
        assert!(is_corruption(&Log::open(&dir, common::small_cfg())), "header byte {at}");
        assert!(is_corruption(&Log::open_read_only(&dir, common::small_cfg())), "header byte {at}, read-only");
    }
    // A segment whose header names another base offset than its file name.
    fs::write(&seg, &original).unwrap();
    fs::rename(&seg, dir.join(annal::segment::log_file_name(5))).unwrap();
    assert!(is_corruption(&Log::open(&dir, common::small_cfg())));
}

// ---------------------------------------------------------------------------
// (h) Read-only opens never change a file
// ---------------------------------------------------------------------------

#[test]
fn read_only_open_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let all = append_n(&log, 300, 600);
    let last = log.segments().last().copied().unwrap();
    log.abandon();
    // A torn tail after the last record, and a missing index of a sealed segment.
    let path = dir.join(annal::segment::log_file_name(last.base_offset));
    let mut bytes = fs::read(&path).unwrap();
    let end = DATA_START + last.data_bytes as usize;
    bytes[end..end + 7].copy_from_slice(&[9, 9, 9, 9, 9, 9, 9]);
    fs::write(&path, &bytes).unwrap();
    fs::remove_file(segment_files(&dir)[0].with_extension("index")).unwrap();
    fs::write(dir.join("00000000000000000000.log.tmp"), b"leftover").unwrap();
    let before = snapshot(&dir);
    let modified: Vec<_> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();

    for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::AbsoluteConsistency] {
        let ro = Log::open_read_only(&dir, common::small_cfg().with_recovery_mode(mode)).unwrap();
        let (got, err) = read_until_error(&ro);
        assert_eq!(got, all, "{mode:?}");
        assert_eq!(err.is_some(), mode == RecoveryMode::AbsoluteConsistency, "{mode:?}: {err:?}");
        assert_eq!(ro.recovery_report().truncated_bytes, 7, "{mode:?}: bytes a writer would cut");
        assert_eq!(ro.recovery_report().scanned_segment, Some(last.base_offset));
        assert!(ro.read_from(0).unwrap().any(|r| r.is_ok()));
        assert_eq!(ro.get(0).unwrap(), all[0]);
        assert!(matches!(ro.append(&Record::new(b"x")), Err(Error::ReadOnly { .. })));
        assert!(matches!(ro.append_batch(&[Record::new(b"x")]), Err(Error::ReadOnly { .. })));
        ro.sync().unwrap();
        assert_eq!(ro.indexes_rebuilt(), 1, "{mode:?}: rebuilt in memory only");
        ro.close().unwrap();
        assert_same_files(&before, &snapshot(&dir), &format!("{mode:?}: read-only open"));
    }
    let modified_after: Vec<_> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    assert_eq!(modified, modified_after, "no file was rewritten in place");

    // A read-only handle can be open next to the writer.
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    let ro = Log::open_read_only(&dir, common::small_cfg()).unwrap();
    assert_eq!(ro.next_offset(), log.next_offset());
    assert!(matches!(Log::open(&dir, common::small_cfg()), Err(Error::Locked { .. })));
}

// ---------------------------------------------------------------------------
// (i) What only some files hold: frames and segments larger than the window
//     of positioned reads, frames with the wrong offsets, footers that do not
//     match their records
// ---------------------------------------------------------------------------

/// The frames of an unsealed segment file: (position, length), from the
/// header to the first zero length.
fn frames_of(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = DATA_START;
    while pos + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push((pos, len));
        pos += len;
    }
    out
}

/// Opens `dir` read-only, then writable, and checks that both, and
/// `verify`, see `records` records and a cut of `cut` bytes.
fn opens_agree(dir: &Path, cfg: &LogConfig, records: u64, cut: u64, what: &str) {
    let ro = Log::open_read_only(dir, cfg.clone()).unwrap();
    assert_eq!(ro.next_offset(), records, "{what}: read-only open");
    assert_eq!(ro.recovery_report().truncated_bytes, cut, "{what}: read-only open");
    assert_eq!(ro.read_from(0).unwrap().count() as u64, records, "{what}: read-only read");
    drop(ro);
    let report = annal::inspect::verify(dir).unwrap();
    assert_eq!(report.records, records, "{what}: verify: {:?}", report.problems);
    assert_eq!(report.problems.is_empty(), cut == 0, "{what}: verify: {:?}", report.problems);
    let log = Log::open(dir, cfg.clone()).unwrap();
    assert_eq!(log.next_offset(), records, "{what}: writable open");
    assert_eq!(log.recovery_report().truncated_bytes, cut, "{what}: writable open");
    let mut n = 0;
    for r in log.read_from(0).unwrap() {
        let r = r.unwrap();
        assert_eq!(r.value.as_deref().map(<[u8]>::len), Some(value_len(r.offset)), "{what}: offset {}", r.offset);
        n += 1;
    }
    assert_eq!(n, records, "{what}: writable read");
}

/// Record sizes of [`a_large_unsealed_segment_reads_the_same_through_positioned_reads`]:
/// small ones, and at offset 300 one of 6 MiB (a frame longer than the
/// 4 MiB that positioned reads take at a time).
fn value_len(offset: u64) -> usize {
    if offset == 300 { 6 << 20 } else { 20_000 + (offset as usize * 7919) % 20_000 }
}

#[test]
fn a_large_unsealed_segment_reads_the_same_through_positioned_reads() {
    // The writer recovers through its map; a read-only open and `verify` read
    // the file in bounded windows, and check a frame longer than the window
    // in chunks before reading it whole. Over a 20 MB segment with a 6 MiB
    // frame, intact, cut and damaged, all three must agree.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let cfg = LogConfig::default()
        .with_segment_bytes(64 << 20)
        .with_max_record_bytes(8 << 20)
        .with_durability(Durability::Never);
    let log = Log::open(&dir, cfg.clone()).unwrap();
    let records = 700u64;
    let mut i = 0;
    while i < records {
        // Batches of 1 to 4 records, the 6 MiB one alone.
        let room = if i < 300 { 300 - i } else { records - i };
        let n = if i == 300 { 1 } else { (1 + i % 4).min(room) };
        let values: Vec<Vec<u8>> = (i..i + n).map(|o| vec![(o % 251) as u8 + 1; value_len(o)]).collect();
        let batch: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
        assert_eq!(log.append_batch(&batch).unwrap(), i..i + n);
        i += n;
    }
    log.abandon();
    let name = annal::segment::log_file_name(0);
    let original = fs::read(dir.join(&name)).unwrap();
    let frames = frames_of(&original);
    let big = frames.iter().position(|&(_, len)| len > 6 << 20).expect("the 6 MiB frame");
    let (big_pos, big_len) = frames[big];
    assert!(big_pos > 4 << 20 && frames.last().unwrap().0 > big_pos + big_len + (4 << 20), "{big_pos} {frames:?}");

    let variant = |what: &str, edit: &dyn Fn(&mut Vec<u8>), records: u64, cut: u64| {
        let dir = tmp.path().join(what.replace(' ', "-"));
        common::copy_dir(&tmp.path().join("log"), &dir);
        let mut bytes = original.clone();
        edit(&mut bytes);
        fs::write(dir.join(&name), &bytes).unwrap();
        opens_agree(&dir, &cfg, records, cut, what);
    };
    let data_end = frames.last().map(|&(p, l)| p + l).unwrap();
    variant("intact", &|_| {}, records, 0);
    // Cut inside the large frame, past the first window: the frame is torn.
    variant("cut in the large frame", &|b| b.truncate(big_pos + (5 << 20)), 300, (5 << 20) as u64);
    // One byte of the large frame changed, past its first window.
    let damaged_tail = (data_end - big_pos) as u64;
    variant("damage in the large frame", &|b| b[big_pos + (5 << 20)] ^= 1, 300, damaged_tail);
    // One byte of a small frame changed, far past the first window.
    let (late_pos, _) = *frames.iter().find(|&&(p, _)| p > big_pos + big_len + (4 << 20)).unwrap();
    let late = frames.iter().position(|&(p, _)| p == late_pos).unwrap();
    let late_first = count_records_in(&original, &frames[..late]);
    variant("damage in a late frame", &|b| b[late_pos + 40] ^= 1, late_first, (data_end - late_pos) as u64);
}

/// Records held by the batch frames `frames` of `bytes` (the count field at byte 28 of each).
fn count_records_in(bytes: &[u8], frames: &[(usize, usize)]) -> u64 {
    frames.iter().map(|&(p, _)| u64::from(u32::from_le_bytes(bytes[p + 28..p + 32].try_into().unwrap()))).sum()
}

#[test]
fn a_valid_frame_with_the_wrong_offsets_after_the_records_is_a_torn_tail() {
    // A copy of the last segment's first frame written after its last one:
    // its checksum is right, its offsets are not the next ones. Recovery
    // stops at it as at any frame that does not follow, and cuts it.
    for durability in [Durability::Never, Durability::Always] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let (all, name, _) = crashed_log(&dir, durability, 4);
        let path = dir.join(&name);
        let mut bytes = fs::read(&path).unwrap();
        let frames = frames_of(&bytes);
        let (first, first_len) = frames[0];
        let (last, last_len) = *frames.last().unwrap();
        let end = last + last_len;
        let copy = bytes[first..first + first_len].to_vec();
        bytes[end..end + first_len].copy_from_slice(&copy);
        // What is cut runs to the last non-zero byte.
        let cut = copy.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
        fs::write(&path, &bytes).unwrap();
        let what = format!("{durability:?}");
        let records = all.len() as u64;
        for log in [Log::open_read_only(&dir, cfg(durability)).unwrap(), Log::open(&dir, cfg(durability)).unwrap()] {
            assert_eq!(log.next_offset(), records, "{what}");
            assert_eq!(log.recovery_report().truncated_bytes, cut, "{what}");
            assert_eq!(log.read_from(0).unwrap().count() as u64, records, "{what}");
        }
        // The writer cut it: nothing is left to cut.
        let log = Log::open(&dir, cfg(durability)).unwrap();
        assert_eq!((log.next_offset(), log.recovery_report().truncated_bytes), (records, 0), "{what}");
    }
}

#[test]
fn a_footer_after_the_records_that_does_not_match_them_is_a_torn_tail() {
    // A crash while sealing leaves a valid footer right after the records in
    // an untrimmed file: that footer is not torn data. A valid footer that
    // describes other records (another count, another end) is.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (all, name, base) = crashed_log(&dir, Durability::Never, 4);
    let path = dir.join(&name);
    let original = fs::read(&path).unwrap();
    let frames = frames_of(&original);
    let end = frames.last().map(|&(p, l)| p + l).unwrap();
    let records = all.len() as u64;
    let footer = SegmentFooter {
        base_offset: base,
        data_end: end as u64,
        record_count: frames.len() as u64,
        next_offset: records,
        max_timestamp: all.iter().filter(|r| r.offset >= base).map(|r| r.timestamp).max().unwrap(),
        index_crc: 0,
        timeindex_crc: 0,
    };
    let cases = [
        ("the footer of these records", footer, 0),
        // Footers that decode (their count matches their offsets, and they
        // end where they stand) but describe other records.
        (
            "a footer of fewer records",
            SegmentFooter { next_offset: records - 1, record_count: frames.len() as u64 - 1, ..footer },
            FOOTER_LEN as u64,
        ),
        (
            "a footer of more records",
            SegmentFooter { next_offset: records + 1, record_count: frames.len() as u64 + 1, ..footer },
            FOOTER_LEN as u64,
        ),
        (
            "a footer of another base offset",
            SegmentFooter { base_offset: base + 1, record_count: frames.len() as u64 - 1, ..footer },
            FOOTER_LEN as u64,
        ),
    ];
    for (what, f, cut) in cases {
        let mut bytes = original.clone();
        bytes[end..end + FOOTER_LEN].copy_from_slice(&f.encode());
        fs::write(&path, &bytes).unwrap();
        for log in [
            Log::open_read_only(&dir, cfg(Durability::Never)).unwrap(),
            Log::open(&dir, cfg(Durability::Never)).unwrap(),
        ] {
            assert_eq!(log.next_offset(), records, "{what}");
            assert_eq!(log.recovery_report().truncated_bytes, cut, "{what}");
        }
        log_reopens_clean(&dir, records, what);
    }
}

/// Opens `dir` again (after a writer's recovery) and checks that it holds
/// `records` records and that `verify` finds nothing wrong.
fn log_reopens_clean(dir: &Path, records: u64, what: &str) {
    let log = Log::open(dir, cfg(Durability::Never)).unwrap();
    assert_eq!(log.read_from(0).unwrap().count() as u64, records, "{what}");
    assert_eq!(log.recovery_report().truncated_bytes, 0, "{what}: nothing left to cut");
    log.abandon();
}

#[test]
fn a_sealed_footer_that_disagrees_with_its_records_is_corruption() {
    // A footer whose checksum is right but whose count or largest timestamp
    // is not the records': found when the segment's index is rebuilt (its
    // index files are gone) and by `verify`.
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let log = Log::open(&original, cfg(Durability::Never)).unwrap();
    append_n(&log, 30, 300);
    log.close().unwrap();
    // The last segment: a footer of another end offset is refused only by
    // the scan there (before it, the next segment's base would disagree).
    let first = segment_files(&original).last().unwrap().clone();
    let bytes = fs::read(&first).unwrap();
    let len = bytes.len();
    let footer = SegmentFooter::decode(&bytes[len - FOOTER_LEN..], len as u64).unwrap();
    let cases = [
        (
            "end offset",
            SegmentFooter { record_count: footer.record_count + 1, next_offset: footer.next_offset + 1, ..footer },
            "ends at offset",
        ),
        ("largest timestamp", SegmentFooter { max_timestamp: footer.max_timestamp - 1, ..footer }, "largest timestamp"),
    ];
    for (what, f, says) in cases {
        let dir = tmp.path().join(what.replace(' ', "-"));
        common::copy_dir(&original, &dir);
        let path = dir.join(first.file_name().unwrap());
        let mut b = bytes.clone();
        b[len - FOOTER_LEN..].copy_from_slice(&f.encode());
        fs::write(&path, &b).unwrap();
        let report = annal::inspect::verify(&dir).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.severity == annal::inspect::Severity::Corruption && p.message.contains(says)),
            "{what}: {:?}",
            report.problems
        );
        for ext in ["index", "timeindex"] {
            fs::remove_file(path.with_extension(ext)).unwrap();
        }
        let log = Log::open(&dir, cfg(Durability::Never)).unwrap();
        match log.read_from(0).unwrap().find_map(Result::err) {
            Some(Error::Corruption { kind: CorruptionKind::BadFooter(why), .. }) => {
                assert!(why.contains(says), "{what}: {why}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn a_recovered_segment_that_ends_at_its_last_record_seals() {
    // A crashed segment file cut right after its last record (the file
    // system kept what was written, not the allocation after it): recovery
    // takes it as it is, and sealing first grows the file to hold the footer.
    for durability in [Durability::Never, Durability::Always] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let (all, name, _) = crashed_log(&dir, durability, 4);
        let path = dir.join(&name);
        let bytes = fs::read(&path).unwrap();
        let end = frames_of(&bytes).last().map(|&(p, l)| p + l).unwrap();
        fs::write(&path, &bytes[..end]).unwrap();
        let what = format!("{durability:?}");
        let log = Log::open(&dir, cfg(durability)).unwrap();
        assert_eq!((log.next_offset(), log.recovery_report().truncated_bytes), (all.len() as u64, 0), "{what}");
        log.close().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), (end + FOOTER_LEN) as u64, "{what}: sealed after its records");
        let log = Log::open(&dir, cfg(durability)).unwrap();
        assert_eq!(log.recovery_report().scanned_segment, None, "{what}: closed cleanly");
        assert_eq!(common::read_all(&log).unwrap().len(), all.len(), "{what}");
        drop(log);
        let report = annal::inspect::verify(&dir).unwrap();
        assert!(report.is_clean(), "{what}: {:?}", report.problems);
    }
}

// ---------------------------------------------------------------------------
// (j) Faults in the reads recovery makes, through the Io seam
// ---------------------------------------------------------------------------

/// A log left unsealed by a crash (its writer abandoned it) with `n` synced
/// records, in `tmp/log`.
fn abandoned_log(tmp: &Path, n: u64) -> PathBuf {
    let dir = tmp.join("log");
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    for i in 0..n {
        log.append(&Record::new(&common::value_for(i, 200))).unwrap();
    }
    log.sync().unwrap();
    log.abandon();
    dir
}

fn faulty_cfg(io: &std::sync::Arc<common::FaultIo>) -> LogConfig {
    common::small_cfg().with_io(io.clone())
}

/// Reads interrupted by a signal (EINTR) are retried: recovery reads what it
/// would have read without them.
#[test]
fn interrupted_reads_are_retried_by_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = abandoned_log(tmp.path(), 300);
    let io = std::sync::Arc::new(common::FaultIo::new());
    io.interrupt_reads.store(25, std::sync::atomic::Ordering::SeqCst);
    let log = Log::open_read_only(&dir, faulty_cfg(&io)).unwrap();
    assert_eq!(log.next_offset(), 300);
    assert_eq!(common::read_all(&log).unwrap().len(), 300);
    assert_eq!(io.interrupt_reads.load(std::sync::atomic::Ordering::SeqCst), 0, "every interruption was met");
}

/// A read that fails (EIO), or a `SEEK_DATA` probe that fails, during
/// recovery is an I/O error naming the segment: never retried forever, never
/// taken for the end of the data.
#[test]
fn a_failed_read_or_seek_during_recovery_is_an_error_naming_the_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = abandoned_log(tmp.path(), 300);
    let segment = dir.join(format!("{:020}.log", 0));
    for fault in ["read", "seek_data"] {
        let io = std::sync::Arc::new(common::FaultIo::new());
        match fault {
            "read" => io.fail_reads.store(true, std::sync::atomic::Ordering::SeqCst),
            _ => io.fail_seek_data.store(true, std::sync::atomic::Ordering::SeqCst),
        }
        match Log::open_read_only(&dir, faulty_cfg(&io)) {
            Err(Error::Io { path, source, .. }) => {
                assert_eq!(path, segment, "{fault}");
                assert_eq!(source.raw_os_error(), Some(common::EIO), "{fault}");
            }
            other => panic!("{fault}: expected an I/O error, got {other:?}"),
        }
    }
    // The writer's recovery reads the same way.
    let io = std::sync::Arc::new(common::FaultIo::new());
    io.fail_seek_data.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(Log::open(&dir, faulty_cfg(&io)), Err(Error::Io { .. })));
}

/// Every other file operation recovery makes goes through `Io` too: a
/// failed listing of the log directory, open of a segment or `fstat` of one
/// is an I/O error naming the directory or the segment, for the writer's
/// open and the read-only one alike, and the log opens whole once the fault
/// is gone.
#[test]
fn a_failed_listing_open_or_stat_during_recovery_is_an_error_naming_what_failed() {
    use std::sync::atomic::Ordering::SeqCst;
    let tmp = tempfile::tempdir().unwrap();
    let dir = abandoned_log(tmp.path(), 300);
    let segment = dir.join(format!("{:020}.log", 0));
    for (fault, op, path) in [
        ("read_dir", "list log directory", &dir),
        ("open", "open segment", &segment),
        ("file_len", "stat segment", &segment),
    ] {
        for read_only in [true, false] {
            let io = std::sync::Arc::new(common::FaultIo::new());
            let switch = match fault {
                "read_dir" => &io.fail_read_dir,
                "open" => &io.fail_open,
                _ => &io.fail_file_len,
            };
            switch.store(true, SeqCst);
            let opened =
                if read_only { Log::open_read_only(&dir, faulty_cfg(&io)) } else { Log::open(&dir, faulty_cfg(&io)) };
            match opened {
                Err(Error::Io { op: got, path: p, source }) => {
                    assert_eq!((got, &p, source.raw_os_error()), (op, path, Some(common::EIO)), "{fault}");
                }
                other => panic!("{fault} (read-only: {read_only}): expected an I/O error, got {other:?}"),
            }
            switch.store(false, SeqCst);
        }
    }
    let log = Log::open(&dir, common::small_cfg()).unwrap();
    assert_eq!(common::read_all(&log).unwrap().len(), 300);
}

/// A file cut between the measure of its length and the reads of its tail
/// (a writer trimming it at a seal) gives short reads: the tail probe stops
/// there instead of reading on forever, and the records before are intact.
#[test]
fn a_file_cut_under_the_tail_probe_ends_the_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = abandoned_log(tmp.path(), 300);
    let len = fs::metadata(dir.join(format!("{:020}.log", 0))).unwrap().len();
    let io = std::sync::Arc::new(common::FaultIo::new());
    io.reads_end_at.store(len - 1000, std::sync::atomic::Ordering::SeqCst);
    let log = Log::open_read_only(&dir, faulty_cfg(&io)).unwrap();
    assert_eq!(log.next_offset(), 300);
    assert_eq!(common::read_all(&log).unwrap().len(), 300);
}

/// A log directory that cannot be created (a full disk) is an error naming
/// it, and nothing is left behind.
#[test]
fn a_log_directory_that_cannot_be_created_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new-log");
    let io = std::sync::Arc::new(common::FaultIo::new());
    io.fail_create_dir.store(true, std::sync::atomic::Ordering::SeqCst);
    match Log::open(&dir, faulty_cfg(&io)) {
        Err(Error::Io { op, path, source }) => {
            assert_eq!((op, path.as_path(), source.raw_os_error()), ("create log directory", dir.as_path(), Some(28)));
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(!dir.exists());
}
