//! Sparse offset index and time index of one segment, and their files.
//!
//! Entries are added every `index_interval_bytes` of record data, at the same
//! records for both indexes, by a deterministic rule (`SegmentIndex::observe`),
//! so an index rebuilt from the data is byte-identical to the one the writer
//! kept. Index files (docs/FORMAT.md, "Index files"):
//!
//! ```text
//!  0  8  magic        "ANNALIDX" (offset index) or "ANNALTIX" (time index)
//!  8  2  version      u16 = 1
//! 10  2  entry_size   u16 = 8 (offset index) or 12 (time index)
//! 12  4  entry_count  u32
//! 16  8  base_offset  u64
//! 24  4  crc          u32  CRC-32 of bytes [0,24) ++ entries
//! 28  4  reserved     u32 = 0
//! 32  .  entries      offset index: rel_offset u32, position u32
//!                     time index:   max_timestamp_before i64, rel_offset u32
//! ```

use crate::format::DATA_START;

/// Length of an index file header.
pub const INDEX_HEADER_LEN: usize = 32;
const OFFSET_MAGIC: &[u8; 8] = b"ANNALIDX";
const TIME_MAGIC: &[u8; 8] = b"ANNALTIX";
const INDEX_VERSION: u16 = 1;

/// An offset-index entry: the record with offset `base + rel_offset` starts at byte `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset relative to the segment's base offset.
    pub rel_offset: u32,
    /// Byte position of the record in the segment file.
    pub position: u32,
}

/// A time-index entry: every record before `base + rel_offset` in the segment
/// has a timestamp `<= max_timestamp_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp of the records before this entry's record.
    pub max_timestamp_before: i64,
    /// Offset relative to the segment's base offset.
    pub rel_offset: u32,
}

/// Both indexes of a segment plus what is needed to extend them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub(crate) offsets: Vec<IndexEntry>,
    pub(crate) times: Vec<TimeEntry>,
    interval: u32,
    last_position: usize,
}

impl SegmentIndex {
    pub(crate) fn new(interval: u32) -> SegmentIndex {
        SegmentIndex { offsets: Vec::new(), times: Vec::new(), interval, last_position: DATA_START }
    }

    /// Called for every record, in order, with its relative offset, position and
    /// the largest timestamp of the records before it. Adds an entry when at
    /// least `interval` bytes of records lie between the last entry and this record.
    #[inline]
    pub(crate) fn observe(&mut self, rel_offset: u32, position: usize, max_ts_before: i64) {
        if position - self.last_position >= self.interval as usize {
            self.offsets.push(IndexEntry { rel_offset, position: position as u32 });
            self.times.push(TimeEntry { max_timestamp_before: max_ts_before, rel_offset });
            self.last_position = position;
        }
    }

    /// Byte position and relative offset to start scanning at to find `rel_offset`.
    ///
    /// Offsets grow about evenly through a segment, so the entry is first
    /// guessed from where `rel_offset` lies between the first and the last,
    /// then found by galloping from the guess: a couple of probes near it,
    /// where a binary search of a large segment's index would take about
    /// twenty, most of them cache misses.
    pub(crate) fn lookup(&self, rel_offset: u32) -> (usize, u32) {
        let last = self.offsets.last().map_or(0, |e| e.rel_offset);
        let guess = match last {
            0 => 0,
            last => (u64::from(rel_offset.min(last)) * (self.offsets.len() as u64 - 1) / u64::from(last)) as usize,
        };
        let i = partition_point_near(&self.offsets, guess, |e| e.rel_offset <= rel_offset);
        if i == 0 {
            (DATA_START, 0)
        } else {
            let e = self.offsets[i - 1];
            (e.position as usize, e.rel_offset)
        }
    }

    /// Relative offset to start scanning at to find the first record with a
    /// timestamp `>= ts`: all records before it have smaller timestamps.
    pub(crate) fn lookup_time(&self, ts: i64) -> u32 {
        let i = self.times.partition_point(|e| e.max_timestamp_before < ts);
        if i == 0 { 0 } else { self.times[i - 1].rel_offset }
    }

    pub(crate) fn encode_offsets(&self, base_offset: u64) -> Vec<u8> {
        let mut buf = Vec::with_capacity(INDEX_HEADER_LEN + self.offsets.len() * 8);
        write_header(&mut buf, OFFSET_MAGIC, 8, self.offsets.len(), base_offset);
        for e in &self.offsets {
            buf.extend_from_slice(&e.rel_offset.to_le_bytes());
            buf.extend_from_slice(&e.position.to_le_bytes());
        }
        seal_crc(&mut buf);
        buf
    }

    pub(crate) fn encode_times(&self, base_offset: u64) -> Vec<u8> {
        let mut buf = Vec::with_capacity(INDEX_HEADER_LEN + self.times.len() * 12);
        write_header(&mut buf, TIME_MAGIC, 12, self.times.len(), base_offset);
        for e in &self.times {
            buf.extend_from_slice(&e.max_timestamp_before.to_le_bytes());
            buf.extend_from_slice(&e.rel_offset.to_le_bytes());
        }
        seal_crc(&mut buf);
        buf
    }

    /// Loads both index files' bytes, checking magic, version, base offset,
    /// CRC, that positions lie inside `[DATA_START, data_end)` in order, and
    /// that every entry's offset is below `u64::MAX` (never a record's).
    pub(crate) fn decode(
        offsets: &[u8],
        times: &[u8],
        base_offset: u64,
        data_end: usize,
        interval: u32,
    ) -> Result<SegmentIndex, String> {
        let o = check_file(offsets, OFFSET_MAGIC, 8, base_offset).map_err(|e| format!("offset index: {e}"))?;
        let t = check_file(times, TIME_MAGIC, 12, base_offset).map_err(|e| format!("time index: {e}"))?;
        if o.len() / 8 != t.len() / 12 {
            return Err("offset and time index differ in length".into());
        }
        let mut index = SegmentIndex::new(interval);
        for c in o.chunks_exact(8) {
            let e = IndexEntry {
                rel_offset: u32::from_le_bytes(c[0..4].try_into().expect("4 bytes")),
                position: u32::from_le_bytes(c[4..8].try_into().expect("4 bytes")),
            };
            let prev = index.offsets.last();
            if (e.position as usize) < DATA_START
                || e.position as usize >= data_end
                || base_offset.checked_add(u64::from(e.rel_offset)).is_none_or(|o| o == u64::MAX)
                || prev.is_some_and(|p| p.rel_offset >= e.rel_offset || p.position >= e.position)
            {
                return Err(format!("offset index: entry {e:?} out of order or out of range"));
            }
            index.offsets.push(e);
        }
        for (c, o) in t.chunks_exact(12).zip(&index.offsets) {
            let e = TimeEntry {
                max_timestamp_before: i64::from_le_bytes(c[0..8].try_into().expect("8 bytes")),
                rel_offset: u32::from_le_bytes(c[8..12].try_into().expect("4 bytes")),
            };
            if e.rel_offset != o.rel_offset {
                return Err("time index: entry does not match the offset index".into());
            }
            index.times.push(e);
        }
        index.last_position = index.offsets.last().map_or(DATA_START, |e| e.position as usize);
        Ok(index)
    }
}

/// CRC stored in an encoded index file.
pub(crate) fn stored_crc(file: &[u8]) -> u32 {
    u32::from_le_bytes(file[24..28].try_into().expect("4 bytes"))
}

fn write_header(buf: &mut Vec<u8>, magic: &[u8; 8], entry_size: u16, count: usize, base: u64) {
    buf.extend_from_slice(magic);
    buf.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    buf.extend_from_slice(&entry_size.to_le_bytes());
    buf.extend_from_slice(&(count as u32).to_le_bytes());
    buf.extend_from_slice(&base.to_le_bytes());
    buf.extend_from_slice(&[0; 8]);
}

fn crc_of(file: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&file[..24]);
    h.update(&file[INDEX_HEADER_LEN..]);
    h.finalize()
}

fn seal_crc(buf: &mut [u8]) {
    let crc = crc_of(buf);
    buf[24..28].copy_from_slice(&crc.to_le_bytes());
}

fn check_file<'a>(file: &'a [u8], magic: &[u8; 8], entry_size: usize, base: u64) -> Result<&'a [u8], String> {
    if file.len() < INDEX_HEADER_LEN {
        return Err(format!("index file of {} bytes is shorter than its header", file.len()));
    }
    if &file[0..8] != magic {
        return Err("bad magic".into());
    }
    let version = u16::from_le_bytes(file[8..10].try_into().expect("2 bytes"));
    if version != INDEX_VERSION {
        return Err(format!("unknown index version {version}"));
    }
    if usize::from(u16::from_le_bytes(file[10..12].try_into().expect("2 bytes"))) != entry_size {
        return Err("wrong entry size".into());
    }
    let count = u32::from_le_bytes(file[12..16].try_into().expect("4 bytes")) as usize;
    if file.len() - INDEX_HEADER_LEN != count.saturating_mul(entry_size) {
        return Err(format!("entry count {count} does not match the file length {}", file.len()));
    }
    let file_base = u64::from_le_bytes(file[16..24].try_into().expect("8 bytes"));
    if file_base != base {
        return Err(format!("index is for base offset {file_base}, not {base}"));
    }
    if stored_crc(file) != crc_of(file) || file[28..32] != [0; 4] {
        return Err("checksum mismatch".into());
    }
    Ok(&file[INDEX_HEADER_LEN..])
}

/// The first index of `v` at which `pred` is false, `pred` being true on a
/// prefix of `v` (as [`slice::partition_point`]), searched from `guess`
/// outward in doubling steps, then by bisection between the last two probes.
pub(crate) fn partition_point_near<T>(v: &[T], guess: usize, pred: impl Fn(&T) -> bool) -> usize {
    if v.is_empty() {
        return 0;
    }
    let g = guess.min(v.len() - 1);
    // The answer lies in [lo, hi].
    let (mut lo, mut hi) = (0, v.len());
    let mut step = 1;
    if pred(&v[g]) {
        lo = g + 1;
        while lo < v.len() {
            let probe = (lo + step - 1).min(v.len() - 1);
            if pred(&v[probe]) {
                lo = probe + 1;
                step *= 2;
            } else {
                hi = probe;
                break;
            }
        }
    } else {
        hi = g;
        while hi > 0 {
            let probe = hi.saturating_sub(step);
            if pred(&v[probe]) {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step *= 2;
        }
    }
    lo + v[lo..hi].partition_point(pred)
}

#[cfg(test)]
mod tests {
    use super::partition_point_near;

    /// From any guess, the same answer as `partition_point`: every split of
    /// arrays of every length up to 40, and every guess (out of range too).
    #[test]
    fn a_search_from_a_guess_finds_what_bisection_finds() {
        for len in 0..40usize {
            let v: Vec<usize> = (0..len).collect();
            for split in 0..=len {
                let want = v.partition_point(|&x| x < split);
                for guess in 0..len + 3 {
                    assert_eq!(partition_point_near(&v, guess, |&x| x < split), want, "len {len} split {split} guess {guess}");
                }
            }
        }
    }
}
