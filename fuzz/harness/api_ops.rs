//! Harness of the `api_ops` fuzz target (shared with tests/fuzz_regressions.rs).
//!
//! Runs a sequence of operations on a log with tiny segments and checks every
//! answer against an in-memory model (the records appended so far): reads
//! return exactly the model's records, `next_offset()` is the model's length,
//! and nothing fails that should not.
//!
//! Input layout: byte 0 chooses the configuration (bit 0: 8 KiB segments
//! instead of 4 KiB; bits 1-2: index interval 1, 64, 512 or 4096 bytes; bit 3:
//! at most one sealed segment mapped at a time). Then each operation is an
//! opcode byte (modulo [`OPS`]) followed by its argument bytes; missing bytes
//! read as zero.

use annal::{Error, Header, Log, LogConfig, LogReader, OwnedRecord, Record, inspect};

use super::common::{Bytes, model_offset_for_timestamp, ops_config, read_all, tempdir};

/// Number of opcodes.
pub const OPS: u8 = 13;
/// Opcodes.
pub mod op {
    /// `append`: 3 bytes of record spec.
    pub const APPEND: u8 = 0;
    /// `append_batch`: a count byte (modulo 6), then 3 bytes per record.
    pub const APPEND_BATCH: u8 = 1;
    /// `read_from(x)` and read to the end: 1 byte.
    pub const READ_FROM: u8 = 2;
    /// `get(x)`: 1 byte.
    pub const GET: u8 = 3;
    /// `offset_for_timestamp(t)`: 1 byte.
    pub const OFFSET_FOR_TIMESTAMP: u8 = 4;
    /// `sync`.
    pub const SYNC: u8 = 5;
    /// `roll`.
    pub const ROLL: u8 = 6;
    /// `close`, then open again.
    pub const CLOSE_REOPEN: u8 = 7;
    /// `abandon` (a simulated crash), then open again.
    pub const ABANDON_REOPEN: u8 = 8;
    /// Advance a reader kept across operations: 1 byte.
    pub const READER_STEP: u8 = 9;
    /// Open the log read-only next to the writer and read it all.
    pub const READ_ONLY: u8 = 10;
    /// Check `segments()`.
    pub const SEGMENTS: u8 = 11;
    /// `inspect::verify` next to the writer.
    pub const VERIFY: u8 = 12;
}

/// At most this many operations run per input.
const MAX_OPS: usize = 256;
const BASE_TS: i64 = 1_700_000_000_000;

/// The parts of a record to append, built from 3 input bytes.
struct Spec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    header: Option<Vec<u8>>,
    timestamp: i64,
}

impl Spec {
    fn parse(b: &mut Bytes<'_>) -> Spec {
        let (a, f, t) = (b.next(), b.next(), b.next());
        let key = (f & 1 != 0).then(|| vec![f; usize::from(f >> 4) + 1]);
        let tombstone = f & 2 != 0 && key.is_some();
        let value = (!tombstone).then(|| (0..usize::from(a) * 17).map(|i| a ^ i as u8).collect());
        let header = (f & 4 != 0).then(|| vec![t; usize::from(f >> 5)]);
        Spec { key, value, header, timestamp: timestamp(t) }
    }

    fn record<'a>(&'a self, headers: &'a [Header<'a>]) -> Record<'a> {
        let r = match (&self.key, &self.value) {
            (Some(k), None) => Record::tombstone(k),
            (k, v) => {
                let r = Record::new(v.as_deref().unwrap_or(&[]));
                match k {
                    Some(k) => r.with_key(k),
                    None => r,
                }
            }
        };
        r.with_timestamp(self.timestamp).with_headers(headers)
    }

    fn headers(&self) -> Vec<Header<'_>> {
        self.header.iter().map(|v| Header { name: "h", value: v }).collect()
    }

    fn owned(&self, offset: u64) -> OwnedRecord {
        OwnedRecord {
            offset,
            timestamp: self.timestamp,
            key: self.key.clone(),
            value: self.value.clone(),
            headers: self.header.iter().map(|v| ("h".to_owned(), v.clone())).collect(),
        }
    }
}

/// Timestamps go back and forth around a fixed point; the extremes map to
/// `i64::MIN` and `i64::MAX`.
fn timestamp(t: u8) -> i64 {
    match t {
        0 => i64::MIN,
        255 => i64::MAX,
        t => BASE_TS + (i64::from(t) - 64) * 1000,
    }
}

fn check_all(log: &Log, model: &[OwnedRecord], from: u64, what: &str) {
    let (records, err) = read_all(log, from);
    if let Some(e) = err {
        panic!("{what}: reading from {from} fails after {} records: {e}", records.len());
    }
    assert_eq!(records.len(), model.len() - from as usize, "{what}: number of records read from {from}");
    assert!(records == model[from as usize..], "{what}: records read from {from} differ from the model");
}

fn reopen(dir: &std::path::Path, config: &LogConfig, model: &[OwnedRecord]) -> Log {
    let log = Log::open(dir, config.clone()).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_eq!(log.next_offset(), model.len() as u64, "next_offset after reopening");
    log
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&c, ops)) = data.split_first() else { return };
    let config = ops_config(c);
    let max = u64::from(config.max_record_bytes());
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let mut log = Some(Log::open(&dir, config.clone()).expect("open a new log"));
    let mut model: Vec<OwnedRecord> = Vec::new();
    let mut reader: Option<LogReader> = None;
    let mut b = Bytes::new(ops);
    let mut n = 0;
    while b.more() && n < MAX_OPS {
        n += 1;
        let l = log.as_ref().expect("a log is open");
        let len = model.len() as u64;
        match b.next() % OPS {
            op::APPEND => {
                let spec = Spec::parse(&mut b);
                let headers = spec.headers();
                let record = spec.record(&headers);
                let size = record.encoded_len().expect("small record") as u64;
                match l.append(&record) {
                    Ok(offset) => {
                        assert!(size <= max, "a record of {size} bytes over the maximum {max} was appended");
                        assert_eq!(offset, len, "offset of an appended record");
                        model.push(spec.owned(offset));
                    }
                    Err(Error::RecordTooLarge { .. }) if size > max => {}
                    Err(e) => panic!("append of a {size}-byte record: {e}"),
                }
            }
            op::APPEND_BATCH => {
                let count = b.next() % 6;
                let specs: Vec<Spec> = (0..count).map(|_| Spec::parse(&mut b)).collect();
                let headers: Vec<Vec<Header<'_>>> = specs.iter().map(Spec::headers).collect();
                let records: Vec<Record<'_>> = specs.iter().zip(&headers).map(|(s, h)| s.record(h)).collect();
                let too_large = records.iter().any(|r| r.encoded_len().expect("small record") as u64 > max);
                // A batch is stored whole in one segment, or refused.
                let room = config.segment_bytes() - 192;
                let batch_bytes = annal::record::batch::encoded_len(&records).map_or(0, |l| l as u64);
                match l.append_batch(&records) {
                    Ok(range) => {
                        assert!(!too_large, "a batch with a record over the maximum was appended");
                        assert!(batch_bytes <= room, "a batch of {batch_bytes} bytes in segments of {room}");
                        assert_eq!(range, len..len + u64::from(count), "offsets of an appended batch");
                        for (i, s) in specs.iter().enumerate() {
                            model.push(s.owned(len + i as u64));
                        }
                    }
                    Err(Error::RecordTooLarge { .. }) if too_large => {}
                    Err(Error::BatchTooLarge { size, max }) if !too_large && batch_bytes > room => {
                        assert_eq!((size, max), (batch_bytes, room), "BatchTooLarge figures");
                    }
                    Err(e) => panic!("append_batch of {count} records: {e}"),
                }
            }
            op::READ_FROM => {
                let from = u64::from(b.next()) % (len + 3);
                if from > len {
                    assert!(
                        matches!(l.read_from(from), Err(Error::OffsetOutOfRange { .. })),
                        "read_from({from}) past the end of a log of {len} records"
                    );
                } else {
                    check_all(l, &model, from, "read_from");
                }
            }
            op::GET => {
                let at = u64::from(b.next()) % (len + 2);
                match l.get(at) {
                    Ok(r) => assert_eq!(Some(&r), model.get(at as usize), "get({at})"),
                    Err(Error::OffsetOutOfRange { .. }) if at >= len => {}
                    Err(e) => panic!("get({at}) in a log of {len} records: {e}"),
                }
            }
            op::OFFSET_FOR_TIMESTAMP => {
                let ts = timestamp(b.next());
                let found = l.offset_for_timestamp(ts).unwrap_or_else(|e| panic!("offset_for_timestamp({ts}): {e}"));
                assert_eq!(found, model_offset_for_timestamp(&model, 0, ts), "offset_for_timestamp({ts})");
            }
            op::SYNC => l.sync().unwrap_or_else(|e| panic!("sync: {e}")),
            op::ROLL => l.roll().unwrap_or_else(|e| panic!("roll: {e}")),
            op::CLOSE_REOPEN => {
                reader = None;
                log.take().expect("a log is open").close().unwrap_or_else(|e| panic!("close: {e}"));
                log = Some(reopen(&dir, &config, &model));
            }
            op::ABANDON_REOPEN => {
                reader = None;
                log.take().expect("a log is open").abandon();
                log = Some(reopen(&dir, &config, &model));
            }
            op::READER_STEP => {
                let x = b.next();
                let r = match &mut reader {
                    Some(r) => r,
                    None => {
                        let from = u64::from(x) % (len + 1);
                        reader.insert(l.read_from(from).unwrap_or_else(|e| panic!("read_from({from}): {e}")))
                    }
                };
                for _ in 0..(x % 5) + 1 {
                    let at = r.next_offset();
                    match r.next_record() {
                        Ok(Some(rec)) => {
                            assert_eq!(Some(&rec.to_owned()), model.get(at as usize), "kept reader at {at}")
                        }
                        Ok(None) => assert_eq!(at, len, "kept reader found no record at {at} of {len}"),
                        Err(e) => panic!("kept reader at {at}: {e}"),
                    }
                }
            }
            op::READ_ONLY => {
                let ro = Log::open_read_only(&dir, config.clone()).unwrap_or_else(|e| panic!("open read-only: {e}"));
                assert_eq!(ro.next_offset(), len, "next_offset of a read-only open next to the writer");
                check_all(&ro, &model, 0, "read-only open next to the writer");
            }
            op::SEGMENTS => {
                let segments = l.segments();
                for pair in segments.windows(2) {
                    assert!(pair[0].sealed, "a segment before the last is not sealed: {segments:?}");
                    assert_eq!(pair[0].next_offset, pair[1].base_offset, "segments not dense: {segments:?}");
                }
                if let Some(last) = segments.last() {
                    assert_eq!(last.next_offset, len, "last segment's next offset: {segments:?}");
                }
            }
            op::VERIFY => {
                let report = inspect::verify(&dir).unwrap_or_else(|e| panic!("verify: {e}"));
                assert!(report.is_clean(), "verify next to the writer: {:?}", report.problems);
                assert_eq!(report.records, len, "records verify counts next to the writer");
            }
            _ => unreachable!("opcodes are taken modulo OPS"),
        }
        let l = log.as_ref().expect("a log is open");
        assert_eq!(l.next_offset(), model.len() as u64, "next_offset after an operation");
    }
    drop(reader);
    let l = log.take().expect("a log is open");
    check_all(&l, &model, 0, "at the end");
    l.close().unwrap_or_else(|e| panic!("close at the end: {e}"));
    let report = inspect::verify(&dir).unwrap_or_else(|e| panic!("verify at the end: {e}"));
    assert!(report.is_clean(), "verify after close: {:?}", report.problems);
    assert_eq!(report.records, model.len() as u64, "records verify counts after close");
    let ro = Log::open_read_only(&dir, config).unwrap_or_else(|e| panic!("open read-only at the end: {e}"));
    assert_eq!(ro.next_offset(), model.len() as u64, "next_offset of the closed log");
    check_all(&ro, &model, 0, "read-only after close");
}
