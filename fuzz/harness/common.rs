//! Helpers shared by the fuzz harnesses.

use annal::{Error, Log, OwnedRecord};

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
