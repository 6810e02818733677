//! Harness of the `compact_ops` fuzz target (shared with tests/fuzz_regressions.rs).
//!
//! Runs a sequence of operations on a log with tiny segments, compactions
//! among them, and checks every answer against an in-memory model of a
//! compacted log: the records still held, in offset order (with gaps), the
//! start offset and the next offset. Reads return exactly the model's
//! records, `get` of a removed offset is `Error::Compacted`, timestamp
//! lookups find the model's record, `verify` is clean, and reopening
//! (read-write, read-only, after a simulated crash) changes nothing.
//!
//! Input layout: byte 0 chooses the configuration (bit 0: 8 KiB segments
//! instead of 4 KiB; bits 1-2: index interval 1, 64, 512 or 4096 bytes; bit 3:
//! at most one sealed segment mapped at a time). Then each operation is an
//! opcode byte (modulo [`OPS`]) followed by its argument bytes; missing bytes
//! read as zero.

use std::collections::HashMap;
use std::time::Duration;

use annal::{Compaction, Error, Log, LogConfig, OwnedRecord, Record, inspect};

use super::common::{Bytes, ops_config, tempdir};

/// Number of opcodes.
pub const OPS: u8 = 11;
/// Opcodes.
pub mod op {
    /// `append`: 3 bytes (key, value length, flags).
    pub const APPEND: u8 = 0;
    /// `roll`.
    pub const ROLL: u8 = 1;
    /// `compact_at(now)`: 1 byte (how far now is past the newest timestamp).
    pub const COMPACT: u8 = 2;
    /// `get(x)`: 1 byte.
    pub const GET: u8 = 3;
    /// `read_from(x)`, up to 8 records: 1 byte.
    pub const READ_FROM: u8 = 4;
    /// `offset_for_timestamp(t)`: 1 byte.
    pub const OFFSET_FOR_TIMESTAMP: u8 = 5;
    /// `close`, then open again.
    pub const CLOSE_REOPEN: u8 = 6;
    /// `abandon` (a simulated crash), then open again.
    pub const ABANDON_REOPEN: u8 = 7;
    /// Open the log read-only next to the writer and read it all.
    pub const READ_ONLY: u8 = 8;
    /// `inspect::verify` next to the writer.
    pub const VERIFY: u8 = 9;
    /// `delete_before(x)`: 1 byte.
    pub const DELETE_BEFORE: u8 = 10;
}

/// At most this many operations run per input.
const MAX_OPS: usize = 200;
const BASE_TS: i64 = 1_700_000_000_000;
/// Tombstone retention of every compaction, in milliseconds.
const RETENTION_MS: i64 = 5_000;

/// The log as it must be: the records its segment files hold (some below
/// the start offset, in a segment retention only partly passed).
#[derive(Default)]
struct Model {
    records: Vec<OwnedRecord>,
    start: u64,
    next: u64,
    /// Timestamp of the newest record appended.
    newest: i64,
}

impl Model {
    fn visible(&self) -> impl Iterator<Item = &OwnedRecord> {
        self.records.iter().filter(|r| r.offset >= self.start)
    }

    /// Compaction of the records below `sealed_end` with tombstones older than `cutoff` dropped.
    fn compact(&mut self, sealed_end: u64, cutoff: i64) -> u64 {
        let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
        for r in self.records.iter().filter(|r| r.offset < sealed_end) {
            if let Some(k) = &r.key {
                latest.insert(k.clone(), r.offset);
            }
        }
        let before = self.records.len();
        self.records.retain(|r| {
            r.offset >= sealed_end
                || match &r.key {
                    None => true,
                    Some(k) => latest[k] == r.offset && !(r.value.is_none() && r.timestamp < cutoff),
                }
        });
        (before - self.records.len()) as u64
    }
}

fn check_all(log: &Log, model: &Model, what: &str) {
    assert_eq!(log.next_offset(), model.next, "{what}: next_offset");
    assert_eq!(log.start_offset(), model.start, "{what}: start_offset");
    let got: Vec<OwnedRecord> = log
        .read_from(model.start)
        .unwrap_or_else(|e| panic!("{what}: read_from(start): {e}"))
        .collect::<annal::Result<_>>()
        .unwrap_or_else(|e| panic!("{what}: reading: {e}"));
    let want: Vec<&OwnedRecord> = model.visible().collect();
    assert_eq!(got.len(), want.len(), "{what}: number of records");
    assert!(got.iter().zip(want).all(|(g, w)| g == w), "{what}: records differ from the model");
}

fn sealed_end(log: &Log) -> u64 {
    log.segments().iter().find(|s| !s.sealed).map_or(log.next_offset(), |s| s.base_offset)
}

fn reopen(dir: &std::path::Path, config: &LogConfig, model: &Model, what: &str) -> Log {
    let log = Log::open(dir, config.clone()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    check_all(&log, model, what);
    log
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&c, ops)) = data.split_first() else { return };
    let config = ops_config(c);
    let tmp = tempdir();
    let dir = tmp.path().join("log");
    let mut log = Some(Log::open(&dir, config.clone()).expect("open a new log"));
    let mut model = Model::default();
    let policy = Compaction::default().with_tombstone_retention(Duration::from_millis(RETENTION_MS as u64));
    let mut b = Bytes::new(ops);
    let mut n = 0;
    while b.more() && n < MAX_OPS {
        n += 1;
        let l = log.as_ref().expect("a log is open");
        let span = model.next - model.start;
        match b.next() % OPS {
            op::APPEND => {
                let (k, len, f) = (b.next(), b.next(), b.next());
                let key = (k < 200).then(|| vec![b'k', k % 8]);
                let tombstone = f & 1 != 0 && key.is_some();
                let value = (!tombstone).then(|| vec![f; usize::from(len) * 3]);
                // Timestamps advance by about a second, sometimes backwards.
                let timestamp = model.newest.max(BASE_TS) + i64::from(f >> 1) * 40 - 1_000;
                let mut r = match (&key, &value) {
                    (Some(k), None) => Record::tombstone(k),
                    (k, v) => {
                        let r = Record::new(v.as_deref().expect("a value"));
                        k.as_deref().map_or(r, |k| r.with_key(k))
                    }
                };
                r = r.with_timestamp(timestamp);
                let offset = l.append(&r).unwrap_or_else(|e| panic!("append: {e}"));
                assert_eq!(offset, model.next, "offset of an appended record");
                model.records.push(OwnedRecord { offset, timestamp, key, value, headers: Vec::new() });
                model.next += 1;
                model.newest = model.newest.max(timestamp);
            }
            op::ROLL => l.roll().unwrap_or_else(|e| panic!("roll: {e}")),
            op::COMPACT => {
                let now = model.newest + i64::from(b.next()) * 100 - 2_000;
                let removed = model.compact(sealed_end(l), now - RETENTION_MS);
                let out = l.compact_at(&policy, now).unwrap_or_else(|e| panic!("compact: {e}"));
                assert_eq!(out.records_removed, removed, "records removed by compaction");
                check_all(l, &model, "after compaction");
            }
            op::GET => {
                let at = model.start + u64::from(b.next()) % (span + 2);
                let want = model.visible().find(|r| r.offset == at);
                match (l.get(at), want) {
                    (Ok(r), Some(w)) => assert_eq!(&r, w, "get({at})"),
                    (Err(Error::Compacted { offset }), None) if at < model.next => assert_eq!(offset, at),
                    (Err(Error::OffsetOutOfRange { .. }), None) if at >= model.next => {}
                    (got, want) => panic!("get({at}): {got:?}, the model has {want:?}"),
                }
            }
            op::READ_FROM => {
                let from = model.start + u64::from(b.next()) % (span + 1);
                let got: Vec<OwnedRecord> = l
                    .read_from(from)
                    .unwrap_or_else(|e| panic!("read_from({from}): {e}"))
                    .take(8)
                    .collect::<annal::Result<_>>()
                    .unwrap_or_else(|e| panic!("read_from({from}): {e}"));
                let want: Vec<&OwnedRecord> = model.visible().filter(|r| r.offset >= from).take(8).collect();
                assert_eq!(got.len(), want.len(), "read_from({from}): number of records");
                assert!(got.iter().zip(want).all(|(g, w)| g == w), "read_from({from}): records differ");
            }
            op::OFFSET_FOR_TIMESTAMP => {
                let ts = BASE_TS + (i64::from(b.next()) - 20) * 500;
                let want = model.visible().find(|r| r.timestamp >= ts).map(|r| r.offset);
                let got = l.offset_for_timestamp(ts).unwrap_or_else(|e| panic!("offset_for_timestamp({ts}): {e}"));
                assert_eq!(got, want, "offset_for_timestamp({ts})");
            }
            op::CLOSE_REOPEN => {
                log.take().expect("a log is open").close().unwrap_or_else(|e| panic!("close: {e}"));
                log = Some(reopen(&dir, &config, &model, "after close and reopen"));
            }
            op::ABANDON_REOPEN => {
                log.take().expect("a log is open").abandon();
                log = Some(reopen(&dir, &config, &model, "after a crash and reopen"));
            }
            op::READ_ONLY => {
                let ro = Log::open_read_only(&dir, config.clone()).unwrap_or_else(|e| panic!("open read-only: {e}"));
                check_all(&ro, &model, "read-only open next to the writer");
            }
            op::VERIFY => {
                let report = inspect::verify(&dir).unwrap_or_else(|e| panic!("verify: {e}"));
                assert!(report.is_clean(), "verify next to the writer: {:?}", report.problems);
                // verify leaves out segments wholly below the start (the next
                // one begins at or below it), as a writable open deletes them.
                let segs = l.segments();
                let kept = segs.windows(2).take_while(|w| w[1].base_offset <= model.start).count();
                let from = segs.get(kept).map_or(model.next, |s| s.base_offset);
                assert_eq!(
                    report.records,
                    model.records.iter().filter(|r| r.offset >= from).count() as u64,
                    "records verify counts (start {}, next {}, segments {:?}, notes {:?})",
                    model.start,
                    model.next,
                    l.segments(),
                    report.notes
                );
            }
            op::DELETE_BEFORE => {
                let to = model.start + u64::from(b.next()) % (span + 1);
                let _ = l.delete_before(to).unwrap_or_else(|e| panic!("delete_before({to}): {e}"));
                model.start = model.start.max(to);
            }
            _ => unreachable!("opcodes are taken modulo OPS"),
        }
        // Segments wholly below the start offset go (at once, or when the log
        // is next opened), and with them records nobody can read any more.
        let l = log.as_ref().expect("a log is open");
        let first = l.segments().first().map_or(model.next, |s| s.base_offset);
        model.records.retain(|r| r.offset >= first || r.offset >= model.start);
    }
    let l = log.take().expect("a log is open");
    check_all(&l, &model, "at the end");
    l.close().unwrap_or_else(|e| panic!("close at the end: {e}"));
    let report = inspect::verify(&dir).unwrap_or_else(|e| panic!("verify at the end: {e}"));
    assert!(report.is_clean(), "verify after close: {:?}", report.problems);
    let ro = Log::open_read_only(&dir, config).unwrap_or_else(|e| panic!("open read-only at the end: {e}"));
    check_all(&ro, &model, "read-only after close");
}
