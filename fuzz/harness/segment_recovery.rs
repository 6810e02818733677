//! Harness of the `segment_recovery` fuzz target (shared with tests/fuzz_regressions.rs).
//!
//! The input is a log directory: the bytes of `00000000000000000000.log`,
//! optionally followed by more files. The directory is then checked with
//! `inspect::verify`, opened read-only and opened for writing (recovery), and
//! read back. Any `Err` is fine; a panic, or a disagreement between these
//! views of the same files, is a bug.
//!
//! Input layout:
//!
//! ```text
//! byte 0      flags (below)
//! bytes 1..   the first segment file, then for each further file:
//!             SEPARATOR, a kind byte (b'L' segment, b'I' .index, b'T' .timeindex,
//!             b'X' leftover `.log.tmp`; anything else: segment), the file's bytes.
//! ```
//!
//! Further files (and the first one too with `FIRST_BASE_FROM_HEADER`) are
//! named after the base offset at bytes 16..24 of their contents (where both
//! segment and index headers keep it), or 0.

use std::path::Path;

use annal::inspect;
use annal::record::batch::BATCH_HEADER_LEN;
use annal::segment::header::CHECKPOINT_POS;
use annal::segment::{DATA_START, FOOTER_LEN, HEADER_LEN, SegmentHeader, log_file_name};
use annal::{Durability, Error, Log, LogConfig, OwnedRecord, Record, RecoveryMode};

use super::common::{model_offset_for_timestamp, read_all, tempdir};

/// Flag: put a valid header for base offset 0 before the first file's bytes.
pub const PREFIX_HEADER: u8 = 1;
/// Flag: recompute every checksum the files appear to have (segment header,
/// checkpoint, record frames from byte 128 on, a footer at the end, index
/// files), so that mutations reach the checks behind the checksums.
pub const FIX_CRCS: u8 = 2;
/// Flag: open with `RecoveryMode::AbsoluteConsistency`.
pub const STRICT: u8 = 4;
/// Flag: 4 KiB segments instead of 64 KiB.
pub const SMALL_SEGMENTS: u8 = 8;
/// Flag: an index entry every 64 bytes instead of every 4096.
pub const SMALL_INTERVAL: u8 = 16;
/// Flag: name the first file after the base offset at its bytes 16..24 too,
/// instead of 0 (ignored with `PREFIX_HEADER`).
pub const FIRST_BASE_FROM_HEADER: u8 = 32;

/// Separates the files of an input.
pub const SEPARATOR: &[u8] = b"--file--";
/// At most this many files are written.
const MAX_FILES: usize = 8;

/// What kind of file a piece of the input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{base:020}.log`
    Log,
    /// `{base:020}.index`
    Index,
    /// `{base:020}.timeindex`
    TimeIndex,
    /// `{base:020}.log.tmp`, a leftover temporary file.
    Temp,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Log => b'L',
            Kind::Index => b'I',
            Kind::TimeIndex => b'T',
            Kind::Temp => b'X',
        }
    }

    fn from_tag(tag: u8) -> Kind {
        match tag {
            b'I' => Kind::Index,
            b'T' => Kind::TimeIndex,
            b'X' => Kind::Temp,
            _ => Kind::Log,
        }
    }

    fn file_name(self, base: u64) -> String {
        match self {
            Kind::Log => log_file_name(base),
            Kind::Index => format!("{base:020}.index"),
            Kind::TimeIndex => format!("{base:020}.timeindex"),
            Kind::Temp => format!("{base:020}.log.tmp"),
        }
    }
}

/// One file of an input: its kind, its name and its bytes.
pub type InputFile = (Kind, String, Vec<u8>);

/// Builds an input from files (for seeds and tests). The first file must be
/// a segment (the one with base offset 0, unless `FIRST_BASE_FROM_HEADER`).
/// Returns `None` if a file contains the separator.
pub fn encode_input(flags: u8, files: &[(Kind, &[u8])]) -> Option<Vec<u8>> {
    let mut out = vec![flags];
    for (i, (kind, bytes)) in files.iter().enumerate() {
        if bytes.windows(SEPARATOR.len()).any(|w| w == SEPARATOR) {
            return None;
        }
        if i > 0 {
            out.extend_from_slice(SEPARATOR);
            out.push(kind.tag());
        }
        out.extend_from_slice(bytes);
    }
    Some(out)
}

/// Splits an input into flags and named files.
pub fn parse(data: &[u8]) -> Option<(u8, Vec<InputFile>)> {
    let (&flags, mut rest) = data.split_first()?;
    let mut pieces = Vec::new();
    loop {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) if pieces.len() + 1 < MAX_FILES => {
                pieces.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            _ => {
                pieces.push(rest);
                break;
            }
        }
    }
    let mut files = Vec::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let (kind, mut bytes) = if i == 0 {
            (Kind::Log, piece.to_vec())
        } else {
            match piece.split_first() {
                Some((&tag, bytes)) => (Kind::from_tag(tag), bytes.to_vec()),
                None => continue,
            }
        };
        if i == 0 && flags & PREFIX_HEADER != 0 {
            let mut header = vec![0u8; HEADER_LEN];
            SegmentHeader::new(0, 1_700_000_000_000).encode(&mut header);
            header.extend_from_slice(&bytes);
            bytes = header;
        }
        if flags & FIX_CRCS != 0 {
            match kind {
                Kind::Log | Kind::Temp => fix_segment_crcs(&mut bytes),
                Kind::Index | Kind::TimeIndex => fix_index_crc(&mut bytes),
            }
        }
        let base = if i == 0 && flags & (FIRST_BASE_FROM_HEADER | PREFIX_HEADER) != FIRST_BASE_FROM_HEADER {
            0
        } else {
            bytes.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        files.push((kind, kind.file_name(base), bytes));
    }
    Some((flags, files))
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Recomputes the checksums of what looks like a segment file.
pub fn fix_segment_crcs(b: &mut [u8]) {
    if b.len() >= HEADER_LEN && &b[0..8] == b"ANNALSEG" {
        let c = crc(&[&b[0..32]]);
        b[32..36].copy_from_slice(&c.to_le_bytes());
    }
    if b.len() >= CHECKPOINT_POS + 16 {
        let c = crc(&[&b[CHECKPOINT_POS..CHECKPOINT_POS + 8]]);
        b[CHECKPOINT_POS + 8..CHECKPOINT_POS + 12].copy_from_slice(&c.to_le_bytes());
    }
    let mut pos = DATA_START;
    while pos + BATCH_HEADER_LEN <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if len < BATCH_HEADER_LEN || len > b.len() - pos {
            break;
        }
        let frame = &b[pos..pos + len];
        let c = crc(&[&frame[0..4], &frame[8..]]);
        b[pos + 4..pos + 8].copy_from_slice(&c.to_le_bytes());
        pos += len;
    }
    let n = b.len();
    if n >= DATA_START + FOOTER_LEN && &b[n - FOOTER_LEN..n - FOOTER_LEN + 8] == b"ANNALEND" {
        let c = crc(&[&b[n - FOOTER_LEN..n - 4]]);
        b[n - 4..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Recomputes the checksum of what looks like an index file.
pub fn fix_index_crc(b: &mut [u8]) {
    if b.len() >= 32 {
        let c = crc(&[&b[0..24], &b[32..]]);
        b[24..28].copy_from_slice(&c.to_le_bytes());
    }
}

/// Writes the files of an input into `dir`.
pub fn write_files(dir: &Path, files: &[InputFile]) {
    for (_, name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write an input file");
    }
}

/// The log configuration an input asks for.
pub fn config(flags: u8) -> LogConfig {
    LogConfig::default()
        .with_segment_bytes(if flags & SMALL_SEGMENTS != 0 { 4096 } else { 64 << 10 })
        .with_index_interval_bytes(if flags & SMALL_INTERVAL != 0 { 64 } else { 4096 })
        .with_recovery_mode(if flags & STRICT != 0 {
            RecoveryMode::AbsoluteConsistency
        } else {
            RecoveryMode::TolerateTornTail
        })
        .with_durability(Durability::Never)
        .with_segment_max_age(None)
}

/// A few timestamps worth searching for in `records`.
fn probe_timestamps(records: &[OwnedRecord]) -> Vec<i64> {
    let mut ts = vec![i64::MIN, 0, i64::MAX];
    for r in records.iter().take(4).chain(records.iter().rev().take(2)) {
        ts.push(r.timestamp);
        ts.push(r.timestamp.saturating_add(1));
    }
    ts
}

/// Reads a log every way the API offers and checks what it can check without
/// knowing what the log should hold. Returns the records and whether reading
/// them all succeeded.
fn exercise(log: &Log) -> (Vec<OwnedRecord>, bool) {
    let start = log.start_offset();
    let next = log.next_offset();
    assert!(start <= next, "start offset {start} after next offset {next}");
    let _ = log.segments();
    let _ = log.recovery_report();
    let (records, err) = read_all(log, start);
    let complete = err.is_none() && records.len() as u64 == next - start;
    for probe in [start, start + records.len() as u64 / 2, next.saturating_sub(1), next] {
        match log.get(probe) {
            Ok(r) => {
                assert_eq!(r.offset, probe, "get({probe}) returned another offset");
                if let Some(seen) = records.get((probe - start) as usize) {
                    assert_eq!(&r, seen, "get({probe}) differs from the reader");
                }
            }
            Err(_) => assert!(
                !complete || !(start..next).contains(&probe),
                "get({probe}) failed on a log that reads back whole"
            ),
        }
    }
    for ts in probe_timestamps(&records) {
        if let Ok(Some(o)) = log.offset_for_timestamp(ts) {
            assert!((start..next).contains(&o), "offset_for_timestamp({ts}) = {o} outside {start}..{next}");
        }
    }
    (records, complete)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((flags, files)) = parse(data) else { return };
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).expect("create the log directory");
    write_files(&dir, &files);
    let config = config(flags);

    // What `inspect::verify` says decides what the default-configuration
    // read-only open (the configuration verify assumes) must do: a log that
    // verify finds intact opens, and every record reads back.
    let report = inspect::verify(&dir);
    let intact = report.as_ref().is_ok_and(|r| r.is_intact());
    if let Ok(report) = &report
        && intact
    {
        let log = Log::open_read_only(&dir, LogConfig::default())
            .unwrap_or_else(|e| panic!("verify found the log intact, but it does not open read-only: {e}"));
        let start = log.start_offset();
        let (records, err) = read_all(&log, start);
        if let Some(e) = err {
            panic!("verify found the log intact, but reading it fails after {} records: {e}", records.len());
        }
        assert_eq!(records.len() as u64, report.records, "verify and a reader count different records");
        if let Some(next) = report.next_offset {
            assert_eq!(log.next_offset(), next, "verify and the log disagree on the next offset");
        }
        assert_eq!(log.next_offset() - start, records.len() as u64, "records read versus next_offset");
        for ts in probe_timestamps(&records) {
            let found = log.offset_for_timestamp(ts).unwrap_or_else(|e| panic!("offset_for_timestamp({ts}): {e}"));
            assert_eq!(found, model_offset_for_timestamp(&records, start, ts), "offset_for_timestamp({ts})");
        }
    }

    // Read-only, with the input's configuration.
    let read_only = Log::open_read_only(&dir, config.clone()).ok().map(|log| exercise(&log));

    // Writable: recovery.
    let Ok(log) = Log::open(&dir, config.clone()) else {
        if let Some((records, true)) = &read_only
            && flags & STRICT == 0
        {
            // A writer must be able to open what a read-only open reads whole
            // (in tolerant mode, where both accept a torn tail).
            let e = Log::open(&dir, config.clone()).expect_err("failed once");
            panic!("a read-only open reads {} records, but the writable open fails: {e}", records.len());
        }
        return;
    };
    let start = log.start_offset();
    let (records, complete) = exercise(&log);
    if let Some((ro_records, true)) = &read_only
        && complete
    {
        assert_eq!(&records, ro_records, "the read-only and the writable open read different records");
    }
    if !complete {
        return;
    }
    // A recovered log takes appends, and a clean close keeps everything.
    let value = b"appended after recovery";
    let appended = log.append(&Record::new(value).with_timestamp(7));
    if log.next_offset() == u64::MAX {
        // u64::MAX is never a record's offset: the offsets are used up.
        assert!(
            matches!(appended, Err(Error::OffsetOutOfRange { requested: u64::MAX, .. })),
            "append at the end of the offset space: {appended:?}"
        );
        return;
    }
    let offset = appended.expect("append to a recovered log");
    assert_eq!(offset, start + records.len() as u64, "offset of the appended record");
    log.close().expect("close a recovered log");
    let log = Log::open(&dir, config).expect("reopen a recovered, cleanly closed log");
    let (again, err) = read_all(&log, start);
    assert!(err.is_none(), "reading the reopened log fails: {err:?}");
    assert_eq!(again.len(), records.len() + 1, "records after append, close and reopen");
    assert_eq!(&again[..records.len()], &records[..], "records changed across close and reopen");
    assert_eq!(again[records.len()].value.as_deref(), Some(&value[..]));
    drop(log);
    // A log that verified intact still does. (Damage that opening does not
    // look for, such as a footer with a valid CRC and a wrong largest
    // timestamp, is trusted by design and carried forward.)
    let report = inspect::verify(&dir).expect("verify a cleanly closed log");
    if intact {
        assert!(report.is_intact(), "a recovered, cleanly closed log does not verify: {:?}", report.problems);
        assert_eq!(report.records, again.len() as u64, "verify counts other records than the log holds");
    }
}
