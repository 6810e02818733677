//! Regression tests for what the fuzz targets in `fuzz/` found, run through
//! the very harnesses the targets use (`fuzz/harness/*.rs`, included below),
//! and the generator of the fuzzers' committed seed corpus.
//!
//! Regenerate the seeds (`fuzz/seeds/<target>/`) only on purpose:
//! `cargo test --test fuzz_regressions -- --ignored generate_fuzz_seeds`
//! (`generate_compact_ops_seeds` for the `compact_ops` target).

#![allow(dead_code)]

#[path = "../fuzz/harness/api_ops.rs"]
mod api_ops;
#[path = "../fuzz/harness/common.rs"]
mod common;
#[path = "../fuzz/harness/compact_ops.rs"]
mod compact_ops;
#[path = "../fuzz/harness/consumer_records.rs"]
mod consumer_records;
#[path = "../fuzz/harness/es_records.rs"]
mod es_records;
#[path = "../fuzz/harness/event_files.rs"]
mod event_files;
#[path = "../fuzz/harness/index_load.rs"]
mod index_load;
#[path = "../fuzz/harness/record_decode.rs"]
mod record_decode;
#[path = "../fuzz/harness/segment_recovery.rs"]
mod segment_recovery;
#[path = "../fuzz/harness/small_files.rs"]
mod small_files;
/// The integration tests' helpers (`common` here is the harnesses').
#[path = "common/mod.rs"]
mod test_common;

use std::fs;
use std::path::{Path, PathBuf};

use annal::segment::header::decode_checkpoint;
use annal::segment::{DATA_START, FOOTER_LEN, SegmentHeader};
use annal::{Durability, Error, Header, Log, LogConfig, Record};

use segment_recovery::Kind;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Crashes found by fuzzing
// ---------------------------------------------------------------------------

/// index_load: a checkpoint whose reserved bytes (76..80) are not zero was
/// accepted (FORMAT.md: a non-zero reserved byte makes the structure
/// invalid), so it had two encodings. It now counts as invalid, like one with
/// a bad CRC.
#[test]
fn index_load_checkpoint_with_nonzero_reserved_bytes() {
    #[rustfmt::skip]
    let crash: &[u8] = &[
        0xb1, 0xb1, 0xb1, 0xf1, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x2f, 0x00, 0x00,
        0x00, 0x68, 0x3f, 0x3f, 0x3f, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2f, 0x3f, 0x3f, 0x3f,
        0xb1, 0x24, 0xb1, 0x4f, 0x4e, 0x0a, 0xff, 0xff, 0xff, 0xff, 0xb1, 0xb1, 0xb1, 0xb1, 0x3f, 0x3f,
        0x3f, 0x3f, 0x3f, 0x3f, 0xb1, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3f, 0x3f,
        0x3f, 0x3f, 0xb1, 0x3f, 0xb1, 0x00, 0x00, 0x00, 0x00, 0xb1, 0x3f, 0xb1, 0xb1, 0xb1, 0xb1, 0x0a,
        0x00, 0x00, 0x00, 0x00, 0x70, 0x70, 0x70, 0x3b, 0xa3, 0x29, 0xdf, 0x70, 0x70, 0x70, 0x7a, 0x7a,
        0x7a, 0x7a, 0x20, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
    ];
    index_load::run(crash);
    // The checkpoint in it (payload bytes 64..80): valid CRC, reserved bytes "pppz".
    let payload = &crash[index_load::PREFIX_LEN..];
    assert_eq!(&payload[76..80], b"pppz");
    assert_eq!(decode_checkpoint(payload), None);
    let mut zeroed = payload.to_vec();
    zeroed[76..80].fill(0);
    assert_eq!(decode_checkpoint(&zeroed), Some(0x7070_7000_0000_000a));
}

/// Found with the checkpoint case: the segment header's reserved bytes
/// (36..64) were not checked either. A header with any of them set is now
/// refused, and so is a log whose segment has one.
#[test]
fn segment_header_with_nonzero_reserved_bytes() {
    let mut buf = [0u8; 64];
    SegmentHeader::new(0, 1_700_000_000_000).encode(&mut buf);
    assert!(SegmentHeader::decode(&buf).is_ok());
    buf[63] = 1;
    assert_eq!(SegmentHeader::decode(&buf), Err("reserved header bytes are not zero".to_owned()));

    let tmp = common::tempdir();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir, small_config()).unwrap();
    log.append(&Record::new(b"x")).unwrap();
    log.close().unwrap();
    let path = dir.join("00000000000000000000.log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] = 0x5a;
    fs::write(&path, &bytes).unwrap();
    let err = Log::open_read_only(&dir, small_config()).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("reserved header bytes"), "{err}");
    let report = annal::inspect::verify(&dir).unwrap();
    assert!(!report.is_intact());
}

/// A segment file holding `records` (offset, value) after a header for `base`.
fn segment_bytes_with(base: u64, records: &[(u64, &[u8])]) -> Vec<u8> {
    let mut bytes = vec![0u8; DATA_START];
    // Format version 1: one v1 frame per record.
    SegmentHeader { base_offset: base, created_ms: TS, version: 1 }.encode(&mut bytes);
    for &(offset, value) in records {
        bytes.extend(annal::record::v1::encode_to_vec(offset, TS, &Record::new(value)).unwrap());
    }
    bytes
}

/// An index file (offset or time index) with no entries, and its CRC.
fn empty_index_file(magic: &[u8; 8], entry_size: u16, base: u64) -> (Vec<u8>, u32) {
    let mut b = Vec::new();
    b.extend_from_slice(magic);
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&entry_size.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    (b, crc)
}

/// segment_recovery: a segment with base offset u64::MAX holding a record at
/// offset u64::MAX overflowed the scan's next offset (a panic with overflow
/// checks, a wrap to 0 without). u64::MAX is now never a record's offset:
/// such a record is invalid like any bad record (a torn tail, cut by a
/// writer), and appending at next offset u64::MAX fails with
/// `OffsetOutOfRange` instead of overflowing.
#[test]
fn segment_recovery_record_at_the_last_offset() {
    let mut file = segment_bytes_with(u64::MAX, &[(u64::MAX, b"v")]);
    file.extend_from_slice(&[0; 200]);
    let input =
        segment_recovery::encode_input(segment_recovery::FIRST_BASE_FROM_HEADER, &[(Kind::Log, &file)]).unwrap();
    segment_recovery::run(&input);

    let tmp = common::tempdir();
    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(annal::segment::log_file_name(u64::MAX)), &file).unwrap();
    let config = segment_recovery::config(0);
    let ro = Log::open_read_only(&dir, config.clone()).unwrap();
    assert_eq!((ro.start_offset(), ro.next_offset()), (u64::MAX, u64::MAX));
    assert_eq!(ro.recovery_report().truncated_bytes, 37);
    drop(ro);
    let strict = config.clone().with_recovery_mode(annal::RecoveryMode::AbsoluteConsistency);
    let err = Log::open(&dir, strict).unwrap_err();
    assert!(err.to_string().contains("u64::MAX"), "{err}");
    let log = Log::open(&dir, config).unwrap();
    assert_eq!(log.next_offset(), u64::MAX);
    match log.append(&Record::new(b"x")) {
        Err(Error::OffsetOutOfRange { requested: u64::MAX, end: u64::MAX, .. }) => {}
        other => panic!("append at next offset u64::MAX: {other:?}"),
    }
    assert_eq!(log.append_batch(&[]).unwrap(), u64::MAX..u64::MAX);
    log.close().unwrap();
}

/// Readers: a sealed segment whose footer (CRC valid, index files matching)
/// ends at u64::MAX but whose data holds one more record, at offset u64::MAX,
/// overflowed the reader's next offset. The reader now reports corruption.
#[test]
fn reader_stops_before_the_last_offset() {
    let base = u64::MAX - 1;
    let file = segment_bytes_with(base, &[(base, b"a"), (u64::MAX, b"b")]);
    let (index, index_crc) = empty_index_file(b"ANNALIDX", 8, base);
    let (timeindex, timeindex_crc) = empty_index_file(b"ANNALTIX", 12, base);
    let footer = annal::segment::SegmentFooter {
        base_offset: base,
        data_end: file.len() as u64,
        record_count: 1,
        next_offset: u64::MAX,
        max_timestamp: TS,
        index_crc,
        timeindex_crc,
    };
    let mut file = file;
    file.extend_from_slice(&footer.encode());
    let tmp = common::tempdir();
    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(annal::segment::log_file_name(base)), &file).unwrap();
    fs::write(dir.join(format!("{base:020}.index")), &index).unwrap();
    fs::write(dir.join(format!("{base:020}.timeindex")), &timeindex).unwrap();

    let input = segment_recovery::encode_input(
        segment_recovery::FIRST_BASE_FROM_HEADER,
        &[(Kind::Log, &file), (Kind::Index, &index), (Kind::TimeIndex, &timeindex)],
    )
    .unwrap();
    segment_recovery::run(&input);

    let log = Log::open_read_only(&dir, segment_recovery::config(0)).unwrap();
    let mut reader = log.read_from(base).unwrap();
    assert_eq!(reader.next_record().unwrap().unwrap().value(), Some(&b"a"[..]));
    let err = reader.next_record().unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("u64::MAX"), "{err}");
    assert!(log.offset_for_timestamp(i64::MAX).unwrap().is_none());
}

/// segment_recovery (the check that a log `verify` finds intact answers
/// `offset_for_timestamp` like its records do): index files whose CRCs differ
/// from the footer's were used when every offset entry pointed at its record,
/// without looking at the time entries. A time entry claiming a too small
/// largest-earlier-timestamp made `offset_for_timestamp` skip the records
/// before it, and return a later offset, while verify called the index
/// "will be rebuilt on open". Such index files are now used only if every
/// entry, time entries included, is what a scan of the data finds.
#[test]
fn segment_recovery_time_index_that_lies() {
    let fixture = root().join("tests/fixtures/v1-log");
    let tmp = common::tempdir();
    let dir = tmp.path().join("log");
    test_common::copy_dir(&fixture, &dir);
    // The first time entry of segment 0 (record 2): the records before it reach
    // 1_600_000_000_001; claim i64::MIN, with a valid CRC for the file.
    let tp = dir.join("00000000000000000000.timeindex");
    let mut t = fs::read(&tp).unwrap();
    assert_eq!(&t[32..40], &1_600_000_000_001i64.to_le_bytes());
    t[32..40].copy_from_slice(&i64::MIN.to_le_bytes());
    segment_recovery::fix_index_crc(&mut t);
    fs::write(&tp, &t).unwrap();

    let report = annal::inspect::verify(&dir).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.problems_of(annal::inspect::Severity::Index).count(), 1, "{:?}", report.problems);

    for read_only in [true, false] {
        let config = segment_recovery::config(segment_recovery::SMALL_SEGMENTS);
        let log = if read_only { Log::open_read_only(&dir, config) } else { Log::open(&dir, config) }.unwrap();
        // Record 0 has timestamp 1_600_000_000_000.
        assert_eq!(log.offset_for_timestamp(1_600_000_000_000).unwrap(), Some(0), "read-only: {read_only}");
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0), "read-only: {read_only}");
        assert_eq!(log.indexes_rebuilt(), 1, "read-only: {read_only}");
        drop(log);
    }
    // The writer rewrote the index files; verify is clean again.
    assert!(annal::inspect::verify(&dir).unwrap().is_clean());

    // The same input through the fuzz harness.
    let files = log_files(&fixture)
        .into_iter()
        .map(|(kind, mut bytes)| {
            if kind == Kind::TimeIndex && bytes[16..24] == [0; 8] {
                bytes[32..40].copy_from_slice(&i64::MIN.to_le_bytes());
            }
            (kind, bytes)
        })
        .collect::<Vec<_>>();
    let files: Vec<(Kind, &[u8])> = files.iter().map(|(k, b)| (*k, &b[..])).collect();
    let flags = segment_recovery::SMALL_SEGMENTS | segment_recovery::FIX_CRCS;
    segment_recovery::run(&segment_recovery::encode_input(flags, &files).unwrap());
}

/// Index files with one entry each, with valid CRCs.
fn one_entry_index_files(base: u64, rel: u32, position: u32) -> (Vec<u8>, Vec<u8>) {
    let mut o = Vec::new();
    o.extend_from_slice(b"ANNALIDX");
    o.extend_from_slice(&1u16.to_le_bytes());
    o.extend_from_slice(&8u16.to_le_bytes());
    o.extend_from_slice(&1u32.to_le_bytes());
    o.extend_from_slice(&base.to_le_bytes());
    o.extend_from_slice(&[0; 8]);
    o.extend_from_slice(&rel.to_le_bytes());
    o.extend_from_slice(&position.to_le_bytes());
    let mut t = o[..32].to_vec();
    t[..8].copy_from_slice(b"ANNALTIX");
    t[10..12].copy_from_slice(&12u16.to_le_bytes());
    t.extend_from_slice(&TS.to_le_bytes());
    t.extend_from_slice(&rel.to_le_bytes());
    segment_recovery::fix_index_crc(&mut o);
    segment_recovery::fix_index_crc(&mut t);
    (o, t)
}

/// Index entries name offsets base + rel_offset, which readers compute: an
/// entry whose offset would be u64::MAX or more (never a record's) is refused
/// when the index is loaded, so that no reader adds its way past u64::MAX.
#[test]
fn index_entry_offsets_stay_below_the_last_offset() {
    let (o, t) = one_entry_index_files(u64::MAX - 2, 1, 200);
    assert!(annal::fuzzing::decode_index_files(&o, &t, u64::MAX - 2, 1000));
    index_load::run(&index_load::encode_input(0, u64::MAX - 2, 1000, &o, &t));
    for rel in [2, u32::MAX] {
        let (o, t) = one_entry_index_files(u64::MAX - 2, rel, 200);
        assert!(!annal::fuzzing::decode_index_files(&o, &t, u64::MAX - 2, 1000), "rel {rel}");
        index_load::run(&index_load::encode_input(0, u64::MAX - 2, 1000, &o, &t));
    }
}

// ---------------------------------------------------------------------------
// The seeds, run through the harnesses (so that a harness or format change
// that breaks them shows up in `cargo test`)
// ---------------------------------------------------------------------------

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("fuzz/seeds").join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Runs every seed of `target` through its harness `run`.
fn run_seeds(target: &str, run: fn(&[u8])) {
    for (_, bytes) in seeds(target) {
        run(&bytes);
    }
}

#[test]
fn record_decode_seeds_pass() {
    run_seeds("record_decode", record_decode::run);
}

#[test]
fn segment_recovery_seeds_pass() {
    run_seeds("segment_recovery", segment_recovery::run);
}

#[test]
fn index_load_seeds_pass() {
    run_seeds("index_load", index_load::run);
}

#[test]
fn api_ops_seeds_pass() {
    run_seeds("api_ops", api_ops::run);
}

#[test]
fn compact_ops_seeds_pass() {
    run_seeds("compact_ops", compact_ops::run);
}

#[test]
fn small_files_seeds_pass() {
    // Every seed is a valid file, so that the fuzzer starts from each
    // structure and version and mutates from there.
    for (path, bytes) in seeds("small_files") {
        assert!(small_files::decodes(&bytes), "{} does not decode", path.display());
    }
}

/// Every small file of the seeds, with each single byte changed, through
/// the harness: the decoders refuse or round-trip, and never panic.
#[test]
fn small_files_seeds_with_every_byte_changed() {
    for (_, seed) in seeds("small_files") {
        for i in 1..seed.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = seed.clone();
                b[i] ^= x;
                small_files::run(&b);
            }
        }
    }
}

#[test]
fn event_files_seeds_pass() {
    // Every seed decodes: the fuzzer starts from each structure.
    for (path, bytes) in seeds("event_files") {
        assert!(event_files::decodes(&bytes), "{} does not decode", path.display());
    }
}

/// Every event-store seed with each single byte changed, through the
/// harness: the decoders refuse or round-trip, and never panic.
#[test]
fn event_files_seeds_with_every_byte_changed() {
    for (_, seed) in seeds("event_files") {
        for i in 1..seed.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = seed.clone();
                b[i] ^= x;
                event_files::run(&b);
            }
        }
    }
}

#[test]
fn consumer_records_seeds_pass_and_survive_every_byte_changed() {
    for (path, bytes) in seeds("consumer_records") {
        assert!(consumer_records::decodes(&bytes), "{} does not decode", path.display());
        for i in 0..bytes.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                consumer_records::run(&b);
            }
        }
    }
}

/// A cheap stand-in for fuzzing `compact_ops` in every test run: seeded
/// random inputs, biased towards appends, rolls and compactions.
/// `ANNAL_PRINT_INPUT=1` prints each input before it runs (the last one
/// printed is the one that failed).
#[test]
fn compact_ops_random_inputs() {
    use compact_ops::op::*;
    let mut state = 0x243F_6A88_85A3_08D3u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..150 {
        let mut input = vec![next() as u8];
        for _ in 0..(20 + next() % 80) {
            let op = match next() % 21 {
                0..9 => APPEND,
                9..11 => ROLL,
                11..13 => COMPACT,
                // GET ..= DELETE_BEFORE
                r => (r - 13) as u8 + GET,
            };
            input.push(op);
            input.extend((0..3).map(|_| next() as u8));
        }
        if std::env::var_os("ANNAL_PRINT_INPUT").is_some() {
            eprintln!("input: {input:?}");
        }
        compact_ops::run(&input);
    }
}

// ---------------------------------------------------------------------------
// Seed generator
// ---------------------------------------------------------------------------

const TS: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig::default().with_segment_bytes(4096).with_index_interval_bytes(256).with_durability(Durability::Never)
}

/// Appends `n` varied records (keys, headers, tombstones, timestamps going
/// back now and then) starting with record number `from`.
fn append_records(log: &Log, from: usize, n: usize) {
    for i in from..from + n {
        let key = format!("key-{}", i % 5);
        let value: Vec<u8> = (0..(i * 37) % 300).map(|j| (i + j) as u8).collect();
        let header_value = [i as u8];
        let headers = [Header { name: "n", value: &header_value }];
        let mut record = if i % 7 == 6 { Record::tombstone(key.as_bytes()) } else { Record::new(&value) };
        if i % 3 == 0 {
            record = record.with_key(key.as_bytes());
        }
        if i % 4 == 1 {
            record = record.with_headers(&headers);
        }
        let ts = if i % 9 == 8 { TS - 5_000 } else { TS + i as i64 };
        log.append(&record.with_timestamp(ts)).unwrap();
    }
}

/// The files of a log directory, segment data files first (in order), then
/// index files.
fn log_files(dir: &Path) -> Vec<(Kind, Vec<u8>)> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort_by_key(|n| (!n.ends_with(".log"), n.clone()));
    names
        .into_iter()
        .filter_map(|n| {
            let kind = if n.ends_with(".log") {
                Kind::Log
            } else if n.ends_with(".timeindex") {
                Kind::TimeIndex
            } else if n.ends_with(".index") {
                Kind::Index
            } else {
                return None;
            };
            Some((kind, fs::read(dir.join(n)).unwrap()))
        })
        .collect()
}

struct SeedWriter {
    dir: PathBuf,
}

impl SeedWriter {
    fn new(target: &str) -> SeedWriter {
        let dir = root().join("fuzz/seeds").join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        SeedWriter { dir }
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        assert!(bytes.len() <= 16 << 10, "seed {name} is {} bytes", bytes.len());
        fs::write(self.dir.join(name), bytes).unwrap();
    }
}

fn recovery_seed(w: &SeedWriter, name: &str, flags: u8, files: &[(Kind, Vec<u8>)]) {
    let files: Vec<(Kind, &[u8])> = files.iter().map(|(k, b)| (*k, &b[..])).collect();
    let input = segment_recovery::encode_input(flags, &files).expect("no separator in the files");
    segment_recovery::run(&input);
    w.write(name, &input);
}

/// Writes `fuzz/seeds/compact_ops/` (its own generator: the other targets'
/// seeds hold creation times, so regenerating them changes their bytes).
/// Run only on purpose:
/// `cargo test --test fuzz_regressions -- --ignored generate_compact_ops_seeds`.
#[test]
#[ignore = "writes the committed fuzz seeds"]
fn generate_compact_ops_seeds() {
    use compact_ops::op::*;
    let w = SeedWriter::new("compact_ops");
    // An append: key byte (< 200: one of 8 keys), value length / 3, flags
    // (bit 0: tombstone; the other bits move the timestamp).
    let rec = |k: u8, len: u8, f: u8| [APPEND, k, len, f];
    let mut basic = vec![0b0000_0010];
    for i in 0..30u8 {
        basic.extend(rec(i % 5, 20 + i, if i % 7 == 6 { 0x41 } else { 0x40 }));
        if i % 10 == 9 {
            basic.push(ROLL);
        }
    }
    basic.extend([COMPACT, 0, GET, 3, READ_FROM, 0, OFFSET_FOR_TIMESTAMP, 22, VERIFY, READ_ONLY]);
    basic.extend([COMPACT, 200, GET, 29, CLOSE_REOPEN, READ_FROM, 5]);
    w.write("basic", &basic);

    let mut tombstones = vec![0b0000_1001];
    for i in 0..24u8 {
        tombstones.extend(rec(i % 3, 60, 0x40));
        if i % 6 == 5 {
            tombstones.extend(rec(i % 3, 0, 0x41));
            tombstones.push(ROLL);
        }
    }
    tombstones.extend([COMPACT, 10, ABANDON_REOPEN, COMPACT, 250, GET, 0, VERIFY, DELETE_BEFORE, 9, COMPACT, 250]);
    tombstones.extend([READ_ONLY, CLOSE_REOPEN]);
    w.write("tombstones", &tombstones);

    let mut empty = vec![0b0000_0000];
    for i in 0..40u8 {
        empty.extend(rec(1, 100, 0x40 + (i & 1)));
    }
    empty.extend([ROLL, COMPACT, 255, GET, 39, READ_FROM, 20, CLOSE_REOPEN]);
    empty.extend(rec(250, 5, 0x40));
    empty.extend([OFFSET_FOR_TIMESTAMP, 255, VERIFY]);
    w.write("empty-segments", &empty);

    run_seeds("compact_ops", compact_ops::run);
}

/// Writes `fuzz/seeds/<target>/` for every target. Run only on purpose:
/// `cargo test --test fuzz_regressions -- --ignored generate_fuzz_seeds`.
#[test]
#[ignore = "writes the committed fuzz seeds"]
fn generate_fuzz_seeds() {
    // record_decode: the golden frames of tests/format.rs, and a few more.
    let w = SeedWriter::new("record_decode");
    let h = [Header { name: "h", value: b"v" }];
    let many = [
        Header { name: "content-type", value: b"text/plain" },
        Header { name: "", value: b"" },
        Header { name: "\u{e9}t\u{e9}", value: &[0, 255, 1] },
    ];
    let frames: [(&str, u64, i64, Record<'_>); 8] = [
        ("golden-full", 5, TS, Record::new(b"hello").with_key(b"k").with_headers(&h)),
        ("golden-no-key", 6, TS, Record::new(b"hello")),
        ("golden-tombstone", 7, TS, Record::tombstone(b"k")),
        ("empty-key-empty-value", 0, 0, Record::new(b"").with_key(b"")),
        ("many-headers", u64::MAX - 1, i64::MIN, Record::new(&[7; 100]).with_key(b"key").with_headers(&many)),
        ("tombstone-with-headers", 1 << 40, -1, Record::tombstone(b"gone").with_headers(&h)),
        ("negative-timestamp", 3, i64::MAX, Record::new(b"\x00\x01\x02")),
        ("binary-value", 9, TS, Record::new(&[0xa1; 300])),
    ];
    // The mode byte (see the harness): bit 0 fixes the checksum, bits 1-2
    // choose the format (0 batch, 1 v1, 2 by the magic byte).
    let seed = |mode: u8, frame: &[u8]| -> Vec<u8> {
        let mut input = vec![mode];
        input.extend_from_slice(frame);
        assert!(annal::record::decode_frame(frame).is_ok(), "a seed frame must decode");
        record_decode::run(&input);
        input
    };
    for (name, offset, ts, record) in frames {
        let v1 = annal::record::v1::encode_to_vec(offset, ts, &record).unwrap();
        w.write(&format!("v1-{name}"), &seed(0b010, &v1));
        let record = record.with_timestamp(ts);
        let batch = annal::record::batch::encode_to_vec(offset, 0, &[record]).unwrap();
        w.write(&format!("batch-{name}"), &seed(0b000, &batch));
    }
    // Batches of several records, one with every shape above; the checksum
    // left wrong, for the fixing mode to repair (mutations then reach the
    // layout checks).
    let all: Vec<Record<'_>> = frames.iter().map(|(_, _, ts, r)| r.with_timestamp(*ts)).collect();
    let mut big = annal::record::batch::encode_to_vec(100, TS, &all).unwrap();
    w.write("batch-of-eight", &seed(0b100, &big));
    big[4] ^= 0xff;
    w.write("batch-of-eight-fix-crc", &[&[0b101u8][..], &big].concat());
    // Two frames back to back: the decoder takes the first.
    let mut two = annal::record::batch::encode_to_vec(1, TS, &[Record::new(b"a"), Record::new(b"b")]).unwrap();
    two.extend(annal::record::batch::encode_to_vec(3, TS, &[Record::new(b"c")]).unwrap());
    w.write("two-frames", &seed(0b000, &two));

    // segment_recovery: real logs, sealed and not, and the v1 fixture.
    let w = SeedWriter::new("segment_recovery");
    let tmp = common::tempdir();
    {
        let dir = tmp.path().join("sealed");
        let log = Log::open(&dir, small_config()).unwrap();
        append_records(&log, 0, 30);
        log.close().unwrap();
        let files = log_files(&dir);
        assert!(files.iter().filter(|(k, _)| *k == Kind::Log).count() >= 2, "several segments");
        recovery_seed(&w, "sealed-first-segment", 0, &files[..1]);
        let first_with_index: Vec<(Kind, Vec<u8>)> =
            files.iter().filter(|(k, b)| *k != Kind::Log && b[16..24] == [0; 8]).cloned().collect();
        let mut first = files[..1].to_vec();
        first.extend(first_with_index);
        recovery_seed(&w, "sealed-first-segment-with-index", segment_recovery::SMALL_SEGMENTS, &first);
        recovery_seed(&w, "sealed-log", segment_recovery::SMALL_SEGMENTS, &files);
        recovery_seed(&w, "sealed-log-fix-crcs-strict", segment_recovery::FIX_CRCS | segment_recovery::STRICT, &files);
        // The header as the PREFIX_HEADER flag supplies it, then the rest.
        let mut rest = files[0].1[64..].to_vec();
        rest.truncate(1500);
        recovery_seed(&w, "prefixed-header-cut", segment_recovery::PREFIX_HEADER, &[(Kind::Log, rest)]);
    }
    {
        // Unsealed: a crash (abandon) leaves the preallocated segment, with
        // and without a checkpoint from a sync.
        let dir = tmp.path().join("unsealed");
        let log = Log::open(&dir, small_config()).unwrap();
        append_records(&log, 0, 8);
        log.abandon();
        let files = log_files(&dir);
        recovery_seed(&w, "unsealed-after-crash", segment_recovery::SMALL_SEGMENTS, &files);
        let mut torn = files.clone();
        torn[0].1.truncate(1000);
        recovery_seed(&w, "unsealed-torn", segment_recovery::SMALL_SEGMENTS | segment_recovery::SMALL_INTERVAL, &torn);

        let dir = tmp.path().join("synced");
        let log = Log::open(&dir, small_config()).unwrap();
        append_records(&log, 0, 30);
        log.sync().unwrap();
        append_records(&log, 30, 2);
        log.abandon();
        let files = log_files(&dir);
        recovery_seed(&w, "synced-then-crash", segment_recovery::SMALL_SEGMENTS, &files);
        let mut with_temp = files.clone();
        with_temp.push((Kind::Temp, files[0].1[..200].to_vec()));
        recovery_seed(&w, "leftover-temp-file", segment_recovery::SMALL_SEGMENTS, &with_temp);
    }
    let fixture = log_files(&root().join("tests/fixtures/v1-log"));
    recovery_seed(&w, "v1-fixture", segment_recovery::SMALL_SEGMENTS, &fixture);
    let fixture_first: Vec<(Kind, Vec<u8>)> = fixture.iter().filter(|(_, b)| b[16..24] == [0; 8]).cloned().collect();
    recovery_seed(&w, "v1-fixture-first-segment", 0, &fixture_first);

    // index_load: the fixture's index files, and its segments' headers and footers.
    let w = SeedWriter::new("index_load");
    let fixture_dir = root().join("tests/fixtures/v1-log");
    let mut bases: Vec<u64> = fs::read_dir(&fixture_dir)
        .unwrap()
        .filter_map(|e| annal::segment::parse_log_file_name(e.unwrap().file_name().to_str().unwrap()))
        .collect();
    bases.sort_unstable();
    for base in bases {
        let seg = fs::read(fixture_dir.join(format!("{base:020}.log"))).unwrap();
        let index = fs::read(fixture_dir.join(format!("{base:020}.index"))).unwrap();
        let timeindex = fs::read(fixture_dir.join(format!("{base:020}.timeindex"))).unwrap();
        let data_end = (seg.len() - FOOTER_LEN) as u32;
        let input = index_load::encode_input(0, base, data_end, &index, &timeindex);
        index_load::run(&input);
        w.write(&format!("v1-index-{base}"), &input);
        let mut header_and_footer = seg[..128].to_vec();
        header_and_footer.extend_from_slice(&seg[seg.len() - FOOTER_LEN..]);
        let input = index_load::encode_input(index_load::FIX_CRCS, base, data_end, &[], &header_and_footer);
        index_load::run(&input);
        w.write(&format!("v1-header-footer-{base}"), &input);
    }

    // api_ops: short operation sequences.
    let w = SeedWriter::new("api_ops");
    use api_ops::op::*;
    let rec = |a: u8, f: u8, t: u8| [a, f, t];
    let mut basic = vec![0b0000_0010, APPEND];
    basic.extend(rec(3, 1, 64));
    basic.push(APPEND);
    basic.extend(rec(10, 0b0100_0101, 70));
    basic.extend([APPEND_BATCH, 3]);
    basic.extend(rec(1, 3, 60).into_iter().chain(rec(50, 4, 90)).chain(rec(0, 0, 65)));
    basic.extend([READ_FROM, 0, GET, 1, OFFSET_FOR_TIMESTAMP, 66, SEGMENTS, VERIFY]);
    w.write("basic", &basic);

    let mut rolls = vec![0b0000_0001];
    for i in 0..12u8 {
        rolls.push(APPEND);
        rolls.extend(rec(40 + i, i, 64 + i));
        if i % 4 == 3 {
            rolls.push(ROLL);
        }
    }
    rolls.extend([READ_FROM, 2, READER_STEP, 0, ROLL, READER_STEP, 4, READ_ONLY, SEGMENTS, VERIFY]);
    w.write("rolls", &rolls);

    let mut reopen = vec![0b0000_1100];
    reopen.extend([APPEND_BATCH, 5]);
    for i in 0..5u8 {
        reopen.extend(rec(200 - i * 30, i * 3, 100 - i * 10));
    }
    reopen.extend([SYNC, CLOSE_REOPEN, GET, 4, APPEND]);
    reopen.extend(rec(5, 0, 1));
    reopen.extend([ABANDON_REOPEN, READ_FROM, 1, OFFSET_FOR_TIMESTAMP, 0, OFFSET_FOR_TIMESTAMP, 255]);
    reopen.extend([CLOSE_REOPEN, ROLL, CLOSE_REOPEN, SEGMENTS]);
    w.write("reopen", &reopen);

    let mut too_large = vec![0b0000_0000, APPEND];
    too_large.extend(rec(250, 0, 64));
    too_large.extend([APPEND_BATCH, 2]);
    too_large.extend(rec(1, 0, 64).into_iter().chain(rec(240, 0, 64)));
    too_large.extend([GET, 0, READ_FROM, 0, APPEND_BATCH, 0, READ_ONLY]);
    w.write("too-large-and-empty", &too_large);

    let mut crashes = vec![0b0000_0110];
    for i in 0..6u8 {
        crashes.push(APPEND);
        crashes.extend(rec(100, i, 64));
        if i % 2 == 0 {
            crashes.push(ABANDON_REOPEN);
        } else {
            crashes.extend([READER_STEP, i]);
        }
    }
    crashes.extend([VERIFY, READ_ONLY]);
    w.write("crashes", &crashes);

    run_seeds("api_ops", api_ops::run);
}

#[test]
fn es_records_seeds_pass_and_survive_every_byte_changed() {
    for (path, bytes) in seeds("es_records") {
        assert!(es_records::decodes(&bytes), "{} does not decode", path.display());
        for i in 0..bytes.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                es_records::run(&b);
            }
        }
    }
}
