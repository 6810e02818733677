//! The one scanner of segment data, and the one decision about what follows it.
//!
//! Every reader of a segment file's records that cannot trust a footer goes
//! through here: the writer's recovery of the last segment (over its map),
//! a read-only open (with positioned reads, since a writer in another process
//! may trim the file), `verify` and `dump` (positioned reads in bounded
//! chunks), `annal tail` (positioned reads of a file that grows), and the
//! rebuilding of a sealed segment's index. They differ only in the
//! [`ByteSource`] they scan; [`scan`] validates frames by one rule, and
//! [`examine_tail`] classifies what lies after the last valid frame by one
//! pure function ([`classify_tail`]), so that they cannot disagree
//! (docs/DESIGN.md, "Recovery").

use std::fs::File;
use std::path::Path;

use super::{DATA_START, FOOTER_LEN, SegmentFooter};
use crate::error::{CorruptionKind, IoContext, Result};
use crate::index::SegmentIndex;
use crate::record::{self, Frame, FrameFormat};
use crate::io::Io;

/// Bytes a file source reads at a time (more only for a larger frame, once
/// its checksum has vouched for its length).
const CHUNK: usize = 4 << 20;

/// The bytes of one segment file, addressed by file position.
pub(crate) trait ByteSource {
    /// The bytes from file position `pos` up to at most `limit`: at least
    /// `min(need, limit - pos)` of them unless the file ends first. A source
    /// may return more than `need`.
    fn window(&mut self, pos: usize, need: usize, limit: usize) -> Result<&[u8]>;

    /// The largest window the source hands out without a check of the frame
    /// first: a frame longer than this is read only once its checksum,
    /// computed in chunks, has vouched for its length.
    fn max_window(&self) -> usize;
}

/// A segment's bytes in memory (a map), from file position `start` on.
pub(crate) struct SliceSource<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) start: usize,
}

impl ByteSource for SliceSource<'_> {
    fn window(&mut self, pos: usize, _need: usize, limit: usize) -> Result<&[u8]> {
        let end = (limit - self.start).min(self.bytes.len());
        Ok(self.bytes.get(pos - self.start..end).unwrap_or(&[]))
    }

    fn max_window(&self) -> usize {
        usize::MAX
    }
}

/// A segment file read with positioned reads through a bounded buffer.
pub(crate) struct FileSource<'a> {
    io: &'a dyn Io,
    file: &'a File,
    path: &'a Path,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    start: usize,
}

impl<'a> FileSource<'a> {
    pub(crate) fn new(io: &'a dyn Io, file: &'a File, path: &'a Path) -> FileSource<'a> {
        FileSource { io, file, path, buf: Vec::new(), start: 0 }
    }
}

impl ByteSource for FileSource<'_> {
    fn window(&mut self, pos: usize, need: usize, limit: usize) -> Result<&[u8]> {
        let want_end = pos.saturating_add(need).min(limit);
        if pos < self.start || want_end > self.start + self.buf.len() {
            let len = (limit - pos).min(need.max(CHUNK));
            self.buf.resize(len, 0);
            let got = read_up_to(self.io, self.file, &mut self.buf, pos as u64).ctx("read segment", self.path)?;
            self.buf.truncate(got);
            self.start = pos;
        }
        let from = pos - self.start;
        let to = (limit - self.start).min(self.buf.len());
        Ok(&self.buf[from.min(to)..to])
    }

    fn max_window(&self) -> usize {
        CHUNK
    }
}

/// Reads as much of `buf` as the file holds at `pos` (short at end of file),
/// through `io`, retrying a read that a signal interrupted.
pub(crate) fn read_up_to(io: &dyn Io, file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match io.read_at(file, &mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The result of scanning a segment's frames from `DATA_START`.
#[derive(Debug)]
pub(crate) struct Scan {
    format: FrameFormat,
    base_offset: u64,
    /// For a sparse segment, the end of its offset range (see [`super::offset_fits`]).
    sparse_end: Option<u64>,
    /// File position after the last valid frame.
    pub(crate) end: usize,
    /// The offset after the last valid record (the base offset if none).
    pub(crate) next_offset: u64,
    /// Records in the valid frames.
    pub(crate) count: u64,
    /// Largest timestamp of those records (`i64::MIN` if none).
    pub(crate) max_timestamp: i64,
    /// The index of the valid frames (entries by the usual interval rule).
    pub(crate) index: SegmentIndex,
    /// Why the scan stopped before its limit, if it did.
    pub(crate) bad: Option<CorruptionKind>,
}

impl Scan {
    /// An empty scan of a segment whose records are framed as `format`.
    pub(crate) fn new(format: FrameFormat, base_offset: u64, sparse_end: Option<u64>, interval: u32) -> Scan {
        Scan {
            format,
            base_offset,
            sparse_end,
            end: DATA_START,
            next_offset: base_offset,
            count: 0,
            max_timestamp: i64::MIN,
            index: SegmentIndex::new(interval),
            bad: None,
        }
    }

    /// Takes the decoding of the frame at file position `pos`. A valid frame
    /// whose offsets fit (the next ones; in a sparse segment, larger ones
    /// within its range) is counted and indexed, and its length returned;
    /// anything else records why the scan stops, and returns `None`.
    pub(crate) fn accept(
        &mut self,
        pos: usize,
        decoded: std::result::Result<Frame<'_>, CorruptionKind>,
    ) -> Option<usize> {
        match decoded {
            Ok(f) if super::frame_fits(&f, self.next_offset, self.sparse_end) => {
                // The relative offset is the frame's first record's own (in a
                // dense segment also the count before it): what index files store.
                self.index.observe((f.base_offset() - self.base_offset) as u32, pos, self.max_timestamp);
                self.max_timestamp = self.max_timestamp.max(f.max_timestamp());
                self.count += u64::from(f.count());
                self.next_offset = f.next_offset();
                self.end = pos + f.len();
                Some(f.len())
            }
            Ok(f) => {
                self.bad =
                    Some(CorruptionKind::UnexpectedOffset { expected: self.next_offset, found: f.base_offset() });
                None
            }
            Err(kind) => {
                self.bad = Some(kind);
                None
            }
        }
    }

    /// How a complete scan of a sealed segment's data disagrees with its
    /// footer, each disagreement described: the offsets (dense: the same next
    /// offset; sparse: every offset below the footer's next offset, which the
    /// scan's bound already ensures), the record count and the largest
    /// timestamp. Recovery (rebuilding a segment's index) and `verify` both
    /// judge a footer by this.
    pub(crate) fn footer_mismatches(&self, footer: &SegmentFooter) -> Vec<String> {
        let mut out = Vec::new();
        let offsets_ok = match self.sparse_end {
            None => self.next_offset == footer.next_offset,
            Some(_) => self.next_offset <= footer.next_offset,
        };
        if !offsets_ok {
            out.push(format!(
                "footer says the segment ends at offset {}, its records end at {}",
                footer.next_offset, self.next_offset
            ));
        }
        if self.count != footer.record_count {
            out.push(format!("footer counts {} records, the segment holds {}", footer.record_count, self.count));
        }
        if self.max_timestamp != footer.max_timestamp {
            out.push(format!(
                "footer says the largest timestamp is {}, the records' is {}",
                footer.max_timestamp, self.max_timestamp
            ));
        }
        out
    }
}

/// Scans the frames in `[DATA_START, limit)` of `src` in order into `s`,
/// validating each one and its offsets and indexing them, and calls
/// `each(position, frame, largest timestamp before it)` for every valid one.
/// Stops at the first frame that fails, recording why in `s.bad`, or at
/// `limit`. A frame longer than the source's window is read whole only once
/// its checksum, computed in chunks, has vouched for its length.
pub(crate) fn scan(
    src: &mut dyn ByteSource,
    mut s: Scan,
    limit: usize,
    mut each: impl FnMut(usize, &Frame<'_>, i64) -> Result<()>,
) -> Result<Scan> {
    let format = s.format;
    let mut pos = DATA_START;
    while pos < limit {
        let head = src.window(pos, format.min_len(), limit)?;
        let frame_len = record::peek_len(head).map_or(0, |l| l as usize);
        let max_window = src.max_window();
        let decoded = if frame_len > max_window && frame_len <= limit - pos {
            match crc_in_chunks(src, pos, frame_len, limit)? {
                Ok(()) => record::decode_frame_as(src.window(pos, frame_len, limit)?, format),
                Err(kind) => Err(kind),
            }
        } else {
            record::decode_frame_as(src.window(pos, frame_len.max(format.min_len()), limit)?, format)
        };
        let max_before = s.max_timestamp;
        match decoded {
            Ok(frame) if s.accept(pos, Ok(frame)).is_some() => {
                each(pos, &frame, max_before)?;
                pos += frame.len();
            }
            Ok(_) => break,
            Err(kind) => {
                s.accept(pos, Err(kind));
                break;
            }
        }
    }
    Ok(s)
}

/// Whether the `len` bytes at `pos` have the checksum their frame header
/// stores, reading them in windows; the mismatch if not.
fn crc_in_chunks(
    src: &mut dyn ByteSource,
    pos: usize,
    len: usize,
    limit: usize,
) -> Result<std::result::Result<(), CorruptionKind>> {
    let head = src.window(pos, 8, limit)?;
    if head.len() < 8 {
        return Ok(Err(CorruptionKind::BadLength(len as u32)));
    }
    let stored = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let mut h = crc32fast::Hasher::new();
    h.update(&head[0..4]);
    let mut at = pos + 8;
    while at < pos + len {
        let w = src.window(at, (pos + len - at).min(CHUNK), limit)?;
        let w = &w[..w.len().min(pos + len - at)];
        if w.is_empty() {
            return Ok(Err(CorruptionKind::BadLength(len as u32)));
        }
        h.update(w);
        at += w.len();
    }
    let computed = h.finalize();
    Ok(if computed == stored { Ok(()) } else { Err(CorruptionKind::BadChecksum { stored, computed }) })
}

/// End (exclusive) of the bytes recovery scans for records in an unsealed
/// segment file of `file_len` bytes: what the file holds, but never the last
/// footer-sized room of a full-size segment, where records are never written.
/// Writable and read-only opens use the same bound so that they agree.
pub(crate) fn scan_end(file_len: u64, segment_bytes: u64) -> usize {
    let capacity = file_len.max(segment_bytes).saturating_sub(FOOTER_LEN as u64);
    (capacity.min(file_len) as usize).max(DATA_START)
}

/// What follows the last valid frame of an unsealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Only zeros follow (after the footer of an interrupted seal, if there
    /// is one): the clean end of the data.
    Clean,
    /// Non-zero bytes in `[from, to)` after the durable checkpoint: a write
    /// torn by a crash. Nothing there was acknowledged as durable.
    Torn {
        /// Where the cut starts: the end of the valid frames, or of the
        /// footer of an interrupted seal that follows them.
        from: u64,
        /// The position after the last non-zero byte.
        to: u64,
    },
    /// The valid frames end before the durable checkpoint: bytes an fsync
    /// had made durable are damaged (or were zeroed). Corruption.
    Damaged,
}

/// The one classification of the end of an unsealed segment (used by the
/// log's recovery, its read-only open, `verify` and `annal tail`), from the facts
/// the scan and the file give: where the valid frames end, the durable
/// checkpoint (`DATA_START` if the checkpoint is invalid), where the footer
/// of an interrupted seal right after the frames ends (if there is one), and
/// the last non-zero byte from there on (if any).
pub fn classify_tail(
    records_end: u64,
    checkpoint: u64,
    seal_footer_end: Option<u64>,
    last_nonzero: Option<u64>,
) -> Tail {
    if records_end < checkpoint {
        return Tail::Damaged;
    }
    let from = seal_footer_end.unwrap_or(records_end);
    match last_nonzero {
        Some(last) if last >= from => Tail::Torn { from, to: last + 1 },
        _ => Tail::Clean,
    }
}

/// Looks at what follows the scanned frames of an unsealed segment file of
/// `file_len` bytes (through `src` and `file`, which are the same file) and
/// classifies it with [`classify_tail`]. Also returns where the footer of an
/// interrupted seal ends, if one follows the frames.
pub(crate) fn examine_tail(
    io: &dyn Io,
    src: &mut dyn ByteSource,
    file: &File,
    path: &Path,
    s: &Scan,
    file_len: u64,
    checkpoint: u64,
) -> Result<(Tail, Option<u64>)> {
    let seal = interrupted_seal(src, s, file_len)?;
    let from = seal.unwrap_or(s.end as u64);
    let last = last_nonzero_in_file(io, file, from, file_len).ctx("read segment", path)?;
    Ok((classify_tail(s.end as u64, checkpoint, seal, last), seal))
}

/// If a valid footer for exactly the scanned records sits right after them,
/// within the file's `file_len` bytes, a seal (or the reopening of a sealed
/// segment) was interrupted by a crash: the footer is not a torn record.
/// Returns the position after it.
fn interrupted_seal(src: &mut dyn ByteSource, s: &Scan, file_len: u64) -> Result<Option<u64>> {
    let end = s.end as u64 + FOOTER_LEN as u64;
    if end > file_len {
        return Ok(None);
    }
    let w = src.window(s.end, FOOTER_LEN, end as usize)?;
    Ok(match SegmentFooter::decode(w.get(..FOOTER_LEN).unwrap_or(w), end) {
        Ok(f) if f.base_offset == s.base_offset && f.next_offset == s.next_offset && f.data_end == s.end as u64 => {
            Some(end)
        }
        _ => None,
    })
}

/// Index of the last non-zero byte of `data`.
pub(crate) fn last_nonzero(data: &[u8]) -> Option<usize> {
    let mut chunks = data.rchunks_exact(8);
    let mut end = data.len();
    for c in chunks.by_ref() {
        if u64::from_ne_bytes(c.try_into().expect("8 bytes")) != 0 {
            return c.iter().rposition(|&b| b != 0).map(|i| end - 8 + i);
        }
        end -= 8;
    }
    chunks.remainder().iter().rposition(|&b| b != 0)
}

/// Position of the last non-zero byte of the file in `[from, to)`. Reads only
/// what the file system reports as data (`SEEK_DATA`), so the untouched
/// preallocated tail of a segment costs nothing.
pub(crate) fn last_nonzero_in_file(io: &dyn Io, file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; 1 << 20];
    let mut last = None;
    let mut pos = from;
    while pos < to {
        let Some(data) = io.seek_data(file, pos)? else { break };
        if data >= to {
            break;
        }
        let hole = io.seek_hole(file, data)?.min(to);
        let mut p = data;
        while p < hole {
            let n = ((hole - p) as usize).min(buf.len());
            let got = read_up_to(io, file, &mut buf[..n], p)?;
            if let Some(i) = last_nonzero(&buf[..got]) {
                last = Some(p + i as u64);
            }
            // A short read: the file ended before the hole did (it was cut
            // meanwhile); nothing lies beyond.
            if got < n {
                return Ok(last);
            }
            p += got as u64;
        }
        pos = hole;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::{Tail, classify_tail};

    #[test]
    fn the_tail_is_classified_by_one_rule() {
        // Records end at 500, checkpoint at 300.
        assert_eq!(classify_tail(500, 300, None, None), Tail::Clean);
        assert_eq!(classify_tail(500, 300, None, Some(499)), Tail::Clean, "a byte before the end is the records'");
        assert_eq!(classify_tail(500, 300, None, Some(600)), Tail::Torn { from: 500, to: 601 });
        // An interrupted seal's footer is not torn; what follows it is.
        assert_eq!(classify_tail(500, 300, Some(564), Some(563)), Tail::Clean);
        assert_eq!(classify_tail(500, 300, Some(564), Some(564)), Tail::Torn { from: 564, to: 565 });
        // The records stop before the checkpoint: durable data is damaged.
        assert_eq!(classify_tail(200, 300, None, None), Tail::Damaged);
        assert_eq!(classify_tail(200, 300, None, Some(900)), Tail::Damaged);
        assert_eq!(classify_tail(300, 300, None, None), Tail::Clean);
    }
}
