//! Helpers shared by the fuzz harnesses.

use annal::{Durability, Error, Log, LogConfig, OwnedRecord};

/// A temporary directory, in memory (`/dev/shm`) where there is one: the
/// harnesses create, map and fsync files on every input.
pub fn tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("annal-fuzz-").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::Builder::new().prefix("annal-fuzz-").tempdir().expect("create a temporary directory")
}

/// Everything a reader returns from `from` on: the records (checked to carry
/// dense offsets starting at `from`, all below `next_offset()`) and the error
/// that stopped it, if one did.
pub fn read_all(log: &Log, from: u64) -> (Vec<OwnedRecord>, Option<Error>) {
    let next = log.next_offset();
    let mut reader = match log.read_from(from) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out: Vec<OwnedRecord> = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(r)) => {
                let expected = from + out.len() as u64;
                assert_eq!(r.offset(), expected, "reader returned offset {} where {expected} was due", r.offset());
                assert!(r.offset() < next, "reader returned offset {} at or past next_offset {next}", r.offset());
                out.push(r.to_owned());
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// The offset of the first record with a timestamp `>= ts`, as
/// `Log::offset_for_timestamp` defines it, over records starting at `start`.
pub fn model_offset_for_timestamp(records: &[OwnedRecord], start: u64, ts: i64) -> Option<u64> {
    records.iter().position(|r| r.timestamp >= ts).map(|i| start + i as u64)
}

/// The log configuration the first input byte of the operation harnesses
/// (`api_ops`, `compact_ops`) asks for: bit 0, 8 KiB segments instead of
/// 4 KiB; bits 1-2, an index interval of 1, 64, 512 or 4096 bytes; bit 3, at
/// most one sealed segment mapped at a time.
pub fn ops_config(c: u8) -> LogConfig {
    LogConfig::default()
        .with_segment_bytes(if c & 1 != 0 { 8192 } else { 4096 })
        .with_index_interval_bytes([1, 64, 512, 4096][usize::from((c >> 1) & 3)])
        .with_max_open_segments(if c & 8 != 0 { 1 } else { 64 })
        .with_durability(Durability::Never)
        .with_segment_max_age(None)
}

/// The operation bytes of an input, read one at a time; past the end they
/// read as zero.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, pos: 0 }
    }

    /// Whether any byte is left.
    pub fn more(&self) -> bool {
        self.pos < self.data.len()
    }

    pub fn next(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
}
