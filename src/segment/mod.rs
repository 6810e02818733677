//! One segment: a `.log` data file (header, records, footer once sealed) and,
//! once sealed, its `.index` and `.timeindex` files.

pub mod footer;
pub mod header;

mod active;
mod compacted;
pub(crate) mod scan;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

pub(crate) use active::{ActiveSegment, ParkedSegment, ParkedView, PreparedSegment};
pub(crate) use compacted::{Compacted, write_compacted};
pub use footer::{FOOTER_LEN, SegmentFooter};
pub use header::{HEADER_LEN, SegmentFlags, SegmentHeader};

use crate::config::{LogConfig, RecoveryMode};
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::index::{SegmentIndex, stored_crc};
use crate::io::Io;
use crate::mmap::MapArea;
use crate::record::{self, Frame, FrameFormat};
use scan::{FileSource, Scan, SliceSource};
pub use scan::{Tail, classify_tail};

pub use crate::format::DATA_START;

/// File name of the data file of the segment starting at `base`.
pub fn log_file_name(base: u64) -> String {
    format!("{base:020}.log")
}

pub(crate) fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(log_file_name(base))
}

pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

pub(crate) fn timeindex_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// The base offset named by a segment data file name: exactly twenty decimal
/// digits and `.log`. Anything else (temporary files, other files) is not a segment.
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the log keeps in memory for every sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedMeta {
    pub(crate) footer: SegmentFooter,
    pub(crate) created_ms: i64,
    /// Written by compaction: offsets may have gaps (header flag `SPARSE`).
    pub(crate) sparse: bool,
}

impl SealedMeta {
    /// For a sparse segment, the offset after its range (its footer's
    /// `next_offset`), which bounds the offsets its records may carry.
    pub(crate) fn sparse_end(&self) -> Option<u64> {
        self.sparse.then_some(self.footer.next_offset)
    }

    /// Bytes of record data (header and footer excluded).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.footer.data_end.saturating_sub(DATA_START as u64)
    }
}

/// A segment as readers see it: a map with a published end, and its index.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    /// How its records are framed (from its header's format version).
    pub(crate) format: FrameFormat,
    pub(crate) path: PathBuf,
    pub(crate) area: Arc<MapArea>,
    pub(crate) index: RwLock<SegmentIndex>,
    /// For a segment opened read-only whose valid data ends in corruption:
    /// readers that reach the end get this error instead of moving on.
    pub(crate) tail_error: Option<(u64, CorruptionKind)>,
    /// Set when retention removed the segment from its log: its files are
    /// deleted when the last holder (the cache, a reader) lets go of it.
    pub(crate) retired: OnceLock<(PathBuf, Arc<dyn Io>)>,
    /// The metadata a sealed segment was opened with (`None` for the active
    /// segment and a read-only log's unsealed last one). Compaction replaces
    /// a sealed segment's file: the cache compares this with the log's
    /// current metadata to tell the old file from the new.
    pub(crate) sealed: Option<SealedMeta>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some((dir, io)) = self.retired.get() {
            // Nothing to report to: a file left behind (an I/O error, a crash
            // before this) is below the start offset and removed at next open.
            let _ = remove_segment_files(io.as_ref(), dir, self.base_offset);
        }
    }
}

/// Deletes a segment's data and index files (those that exist).
pub(crate) fn remove_segment_files(io: &dyn Io, dir: &Path, base: u64) -> std::io::Result<()> {
    let mut first_error = None;
    for p in [index_path(dir, base), timeindex_path(dir, base), log_path(dir, base)] {
        match io.remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

impl Segment {
    /// For a sparse (compacted) segment, the offset after its range.
    pub(crate) fn sparse_end(&self) -> Option<u64> {
        self.sealed.and_then(|m| m.sparse_end())
    }

    /// Decodes and validates the frame at file position `pos`, which must be
    /// below the published end, and checks its offsets: its first record's
    /// offset is `expected` (the offset after the previous frame, or the base
    /// offset) in a dense segment; in a sparse one it is at least `expected`
    /// and the frame ends within the segment's range.
    #[inline]
    pub(crate) fn frame_at(&self, pos: usize, expected: u64) -> Result<Frame<'_>> {
        let data = self.area.published_data();
        let f = record::decode_frame_as(&data[pos - DATA_START..], self.format)
            .map_err(|kind| self.corruption(expected, pos, kind))?;
        if !frame_fits(&f, expected, self.sparse_end()) {
            let kind = CorruptionKind::UnexpectedOffset { expected, found: f.base_offset() };
            return Err(self.corruption(expected, pos, kind));
        }
        Ok(f)
    }

    /// Calls `f` with every published record, in order, each frame checked as
    /// [`Segment::frame_at`] checks it. Returns the position after the last
    /// frame, the offset after its last record, and how many records there were.
    pub(crate) fn for_each_record(&self, mut f: impl FnMut(&record::RecordRef<'_>)) -> Result<(usize, u64, u64)> {
        self.for_each_frame(|_, frame| frame.records().for_each(|r| f(&r)))
    }

    /// Calls `f` with the position of every published frame and the frame,
    /// in order, each checked as [`Segment::frame_at`] checks it. Returns the
    /// position after the last frame, the offset after its last record, and
    /// how many records there were.
    pub(crate) fn for_each_frame(&self, mut f: impl FnMut(usize, &Frame<'_>)) -> Result<(usize, u64, u64)> {
        let end = self.area.published();
        let (mut pos, mut next, mut count) = (DATA_START, self.base_offset, 0u64);
        while pos < end {
            let frame = self.frame_at(pos, next)?;
            f(pos, &frame);
            pos += frame.len();
            next = frame.next_offset();
            count += u64::from(frame.count());
        }
        Ok((pos, next, count))
    }

    pub(crate) fn corruption(&self, offset: u64, position: usize, kind: CorruptionKind) -> Error {
        Error::Corruption { path: self.path.clone(), offset, position: position as u64, kind }
    }
}

impl Segment {
    /// The length and next offset of the frame at file position `pos`,
    /// whose first record's offset should be `expected`, from its header
    /// alone ([`record::peek_span`]): to step over a frame none of whose
    /// records a reader returns, without reading all of its bytes.
    pub(crate) fn frame_span_at(&self, pos: usize, expected: u64) -> Result<(usize, u64)> {
        let data = self.area.published_data();
        let (len, base, next) =
            record::peek_span(&data[pos - DATA_START..], self.format).map_err(|kind| self.corruption(expected, pos, kind))?;
        let fits = match self.sparse_end() {
            None => base == expected,
            Some(end) => base >= expected && next <= end,
        };
        if !fits {
            let kind = CorruptionKind::UnexpectedOffset { expected, found: base };
            return Err(self.corruption(expected, pos, kind));
        }
        Ok((len, next))
    }
}

/// Whether a frame may hold its offsets where `expected` is due: its first
/// record's offset is exactly `expected` in a dense segment; in a sparse one
/// whose range ends at `sparse_end`, at least `expected`, and its last
/// record's below that end (offsets strictly increase, with gaps where
/// compaction removed records).
pub(crate) fn frame_fits(frame: &Frame<'_>, expected: u64, sparse_end: Option<u64>) -> bool {
    match sparse_end {
        None => frame.base_offset() == expected,
        Some(end) => frame.base_offset() >= expected && frame.next_offset() <= end,
    }
}

/// What a segment file on disk is, judged from its header and its last 64 bytes.
#[derive(Debug)]
pub(crate) enum OnDisk {
    /// A sealed segment, and its format version.
    Sealed(SealedMeta, u16),
    Unsealed {
        len: u64,
    },
}

/// Reads a segment file's header and footer without mapping it.
pub(crate) fn inspect_file(io: &dyn Io, path: &Path, base: u64) -> Result<OnDisk> {
    let file = io.open_read(path).ctx("open segment", path)?;
    let len = io.file_len(&file).ctx("stat segment", path)?;
    let (header, flags, _) = read_header(io, &file, path, base)?;
    let mut why = format!("file of {len} bytes is too short for a footer");
    if len >= (DATA_START + FOOTER_LEN) as u64 {
        let mut fbuf = [0u8; FOOTER_LEN];
        let got = scan::read_up_to(io, &file, &mut fbuf, len - FOOTER_LEN as u64).ctx("read segment footer", path)?;
        if got < FOOTER_LEN {
            // The file was cut after it was measured: no footer there.
            return Ok(OnDisk::Unsealed { len: len - (FOOTER_LEN - got) as u64 });
        }
        match SegmentFooter::decode_with_flags(&fbuf, len, flags) {
            Ok(footer) if footer.base_offset == base => {
                let meta = SealedMeta { footer, created_ms: header.created_ms, sparse: flags.is_sparse() };
                return Ok(OnDisk::Sealed(meta, header.version));
            }
            Ok(footer) => why = format!("footer names base offset {}", footer.base_offset),
            Err(e) => why = e,
        }
    }
    if flags.is_sparse() {
        // Compaction writes a whole segment, footer included, and makes it
        // durable before renaming it into place: it is never torn, so one
        // without a valid footer is damaged, never a tail to cut.
        return Err(Error::Corruption {
            path: path.to_owned(),
            offset: base,
            position: len.saturating_sub(FOOTER_LEN as u64),
            kind: CorruptionKind::BadFooter(format!("a compacted (sparse) segment without a valid footer: {why}")),
        });
    }
    Ok(OnDisk::Unsealed { len })
}


/// Loads a sealed segment's index files if they are valid for its data:
/// their checksums match the footer, or (if they were rebuilt after sealing,
/// for example with another index interval) every entry is what a scan of the
/// data finds: a frame whose first record has the entry's offset at its
/// position, and the largest timestamp of the records before it. `None` otherwise.
fn load_index(
    io: &dyn Io,
    dir: &Path,
    meta: &SealedMeta,
    format: FrameFormat,
    data: &[u8],
    interval: u32,
) -> Option<SegmentIndex> {
    let base = meta.footer.base_offset;
    let bound = |p: &Path| std::fs::metadata(p).ok().filter(|m| m.len() <= meta.footer.data_end * 2 + 64);
    let ip = index_path(dir, base);
    let tp = timeindex_path(dir, base);
    bound(&ip)?;
    bound(&tp)?;
    let ob = io.read_file(&ip).ok()?;
    let tb = io.read_file(&tp).ok()?;
    let index = SegmentIndex::decode(&ob, &tb, base, meta.footer.data_end as usize, interval).ok()?;
    if stored_crc(&ob) == meta.footer.index_crc && stored_crc(&tb) == meta.footer.timeindex_crc {
        return Some(index);
    }
    // Checking only that each entry points at its frame is not enough: a
    // wrong time entry makes offset_for_timestamp skip matching records.
    let mut entries = index.offsets.iter().zip(&index.times).peekable();
    let mut s = Scan::new(format, base, meta.sparse_end(), u32::MAX);
    let mut at = 0;
    while at < data.len() && entries.peek().is_some() {
        let max_before = s.max_timestamp;
        let pos = DATA_START + at;
        let decoded = record::decode_frame_as(&data[at..], format);
        // The offset of the frame's first record, relative to the base (a
        // frame below the base is not this segment's: `accept` refuses it).
        let rel = decoded.as_ref().map_or(0, |f| f.base_offset().wrapping_sub(base));
        let len = s.accept(pos, decoded)?;
        if let Some((o, t)) = entries.next_if(|(o, _)| o.position as usize == pos)
            && (u64::from(o.rel_offset) != rel || t.max_timestamp_before != max_before)
        {
            return None;
        }
        at += len;
    }
    entries.peek().is_none().then_some(index)
}

/// Opens a sealed segment for reading: maps it and loads (or rebuilds, in
/// memory) its index. Returns the segment and whether the index had to be
/// rebuilt (the caller may write the rebuilt index files).
pub(crate) fn open_sealed(
    io: &dyn Io,
    dir: &Path,
    meta: &SealedMeta,
    interval: u32,
) -> Result<(Arc<Segment>, bool)> {
    let base = meta.footer.base_offset;
    let path = log_path(dir, base);
    let file = io.open_read(&path).ctx("open segment", &path)?;
    let len = io.file_len(&file).ctx("stat segment", &path)?;
    let data_end = meta.footer.data_end as usize;
    // A longer file is a sealed segment that a writer (another process) has
    // since reopened for appending: its records up to `data_end` are unchanged.
    if len < meta.footer.data_end + FOOTER_LEN as u64 {
        return Err(Error::Corruption {
            path,
            offset: base,
            position: len,
            kind: CorruptionKind::BadFooter(format!("sealed segment changed size to {len} bytes")),
        });
    }
    // The header says how the records are framed; the metadata (from a footer
    // read at open, or from the archive manifest) does not.
    let format = read_header(io, &file, &path, base)?.0.frame_format();
    let area = MapArea::read_only(&file, data_end + FOOTER_LEN, DATA_START, data_end).ctx("map segment", &path)?;
    let data = area.published_data();
    let (index, rebuilt) = match load_index(io, dir, meta, format, data, interval) {
        Some(index) => (index, false),
        None => {
            let start = Scan::new(format, base, meta.sparse_end(), interval);
            let s = scan::scan(&mut SliceSource { bytes: data, start: DATA_START }, start, data_end, |_, _, _| Ok(()))?;
            if let Some(kind) = s.bad {
                return Err(Error::Corruption { path, offset: s.next_offset, position: s.end as u64, kind });
            }
            if let Some(why) = s.footer_mismatches(&meta.footer).into_iter().next() {
                return Err(Error::Corruption {
                    path,
                    offset: s.next_offset,
                    position: s.end as u64,
                    kind: CorruptionKind::BadFooter(why),
                });
            }
            (s.index, true)
        }
    };
    Ok((
        Arc::new(Segment {
            base_offset: base,
            format,
            path,
            area,
            index: RwLock::new(index),
            tail_error: None,
            retired: OnceLock::new(),
            sealed: Some(*meta),
        }),
        rebuilt,
    ))
}

/// Reads and checks the header of the segment file `file` (whose name says
/// `base`), and its checkpoint (`None` if invalid).
pub(crate) fn read_header(
    io: &dyn Io,
    file: &File,
    path: &Path,
    base: u64,
) -> Result<(SegmentHeader, SegmentFlags, Option<u64>)> {
    let mut hbuf = [0u8; DATA_START];
    let got = scan::read_up_to(io, file, &mut hbuf, 0).ctx("read segment header", path)?;
    let bad_header = |why: String| Error::Corruption {
        path: path.to_owned(),
        offset: base,
        position: 0,
        kind: CorruptionKind::BadHeader(why),
    };
    if got < DATA_START {
        return Err(bad_header(format!("file of {got} bytes is shorter than the segment header")));
    }
    let (header, flags) = SegmentHeader::decode_with_flags(&hbuf).map_err(bad_header)?;
    if header.base_offset != base {
        return Err(bad_header(format!(
            "header names base offset {} but the file name says {base}",
            header.base_offset
        )));
    }
    Ok((header, flags, header::decode_checkpoint(&hbuf)))
}

/// What a read-only open found in the last, unsealed segment.
#[derive(Debug)]
pub(crate) struct ReadOnlyTail {
    /// Bytes a writer's recovery would cut (a torn tail).
    pub(crate) would_cut: u64,
    /// Records in the valid frames.
    pub(crate) records: u64,
    /// The offset after the last valid record.
    pub(crate) next_offset: u64,
    /// The offset after the last record of the frames that end at or before
    /// the checkpoint: what was durable when the writer last recorded it.
    pub(crate) durable_next: u64,
}

/// Opens the last, unsealed segment of a log read-only: scans it without
/// changing anything. Returns the segment (published up to its last valid
/// frame, with a tail error if what follows is corruption) and what the scan
/// found.
pub(crate) fn open_unsealed_read_only(
    dir: &Path,
    base: u64,
    len: u64,
    config: &LogConfig,
) -> Result<(Arc<Segment>, ReadOnlyTail)> {
    let path = log_path(dir, base);
    let file = config.io.open_read(&path).ctx("open segment", &path)?;
    let (header, _, checkpoint) = read_header(config.io.as_ref(), &file, &path, base)?;
    let checkpoint = checkpoint.unwrap_or(DATA_START as u64);
    // Positioned reads, not the map: a writer in another process may seal and
    // shorten this file at any moment, and touching a mapped page past the
    // new end of the file would kill this process with SIGBUS.
    let end = scan::scan_end(len, config.segment_bytes);
    let mut src = FileSource::new(config.io.as_ref(), &file, &path);
    let start = Scan::new(header.frame_format(), base, None, config.index_interval_bytes);
    let mut durable_next = base;
    let s = scan::scan(&mut src, start, end, |pos, f, _| {
        if (pos + f.len()) as u64 <= checkpoint {
            durable_next = f.next_offset();
        }
        Ok(())
    })?;
    let (tail, _) = scan::examine_tail(config.io.as_ref(), &mut src, &file, &path, &s, len, checkpoint)?;
    let bad = s.bad.clone().unwrap_or(CorruptionKind::BadLength(0));
    let mut would_cut = 0;
    let tail_error = match tail {
        Tail::Clean => None,
        Tail::Damaged => Some((s.end as u64, s.bad.clone().unwrap_or(CorruptionKind::DamagedDurableData))),
        Tail::Torn { from, to } => {
            would_cut = to - from;
            (config.recovery_mode == RecoveryMode::AbsoluteConsistency).then_some((s.end as u64, bad))
        }
    };
    // Readers touch only [DATA_START, s.end): validated frames, which no
    // writer ever removes from the file.
    let area = MapArea::read_only(&file, len as usize, DATA_START, s.end).ctx("map segment", &path)?;
    let found = ReadOnlyTail { would_cut, records: s.count, next_offset: s.next_offset, durable_next };
    let seg = Segment {
        base_offset: base,
        format: header.frame_format(),
        path,
        area,
        index: RwLock::new(s.index),
        tail_error,
        retired: OnceLock::new(),
        sealed: None,
    };
    Ok((Arc::new(seg), found))
}

/// Space a sealed segment must have left (a minimal frame plus the footer)
/// to be reopened for appending.
pub(crate) const RECORD_ROOM: u64 =
    (record::batch::BATCH_HEADER_LEN + record::batch::ENTRY_HEADER_LEN + FOOTER_LEN) as u64;
