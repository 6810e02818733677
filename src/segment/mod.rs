//! One segment: a `.log` data file (header, records, footer once sealed) and,
//! once sealed, its `.index` and `.timeindex` files.

pub mod footer;
pub mod header;

mod active;
mod compacted;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

pub(crate) use active::{ActiveSegment, PreparedSegment};
pub(crate) use compacted::{Compacted, write_compacted};
pub use footer::{FOOTER_LEN, SegmentFooter};
pub use header::{HEADER_LEN, SegmentFlags, SegmentHeader};

use crate::config::{LogConfig, RecoveryMode};
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::index::{SegmentIndex, stored_crc};
use crate::io::Io;
use crate::mmap::MapArea;
use crate::record;

/// File position of the first record of every segment.
pub const DATA_START: usize = 128;

/// Why a record at offset `u64::MAX` is refused.
const LAST_OFFSET: &str = "record at offset u64::MAX, which leaves no next offset";

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

    /// Decodes the record at file position `pos`, which must be below the
    /// published end, and checks its offset: `expected` (the offset after the
    /// previous record, or the base offset) in a dense segment; at least
    /// `expected` and below the end of the segment's range in a sparse one.
    pub(crate) fn record_at(&self, pos: usize, expected: u64) -> Result<record::RecordRef<'_>> {
        if expected == u64::MAX {
            return Err(self.corruption(expected, pos, CorruptionKind::BadLayout(LAST_OFFSET)));
        }
        let data = self.area.published_data();
        let r = record::decode(&data[pos - DATA_START..]).map_err(|kind| self.corruption(expected, pos, kind))?;
        if !offset_fits(r.offset(), expected, self.sparse_end()) {
            let kind = CorruptionKind::UnexpectedOffset { expected, found: r.offset() };
            return Err(self.corruption(expected, pos, kind));
        }
        Ok(r)
    }

    /// Calls `f` with every published record, in order, each checked as [`Segment::record_at`] checks it.
    /// Returns the position after the last record, the offset after it, and
    /// how many there were.
    pub(crate) fn for_each_record(&self, mut f: impl FnMut(&record::RecordRef<'_>)) -> Result<(usize, u64, u64)> {
        let end = self.area.published();
        let (mut pos, mut next, mut count) = (DATA_START, self.base_offset, 0u64);
        while pos < end {
            let r = self.record_at(pos, next)?;
            f(&r);
            pos += r.frame_len() as usize;
            next = r.offset() + 1;
            count += 1;
        }
        Ok((pos, next, count))
    }

    pub(crate) fn corruption(&self, offset: u64, position: usize, kind: CorruptionKind) -> Error {
        Error::Corruption { path: self.path.clone(), offset, position: position as u64, kind }
    }
}

/// Whether a record may carry `offset` where `expected` is due: exactly
/// `expected` in a dense segment; in a sparse one whose range ends at
/// `sparse_end`, any offset from `expected` up to that end (offsets strictly
/// increase, with gaps where compaction removed records).
pub(crate) fn offset_fits(offset: u64, expected: u64, sparse_end: Option<u64>) -> bool {
    match sparse_end {
        None => offset == expected,
        Some(end) => offset >= expected && offset < end,
    }
}

/// Result of scanning records from `DATA_START`.
#[derive(Debug)]
pub(crate) struct Scan {
    base_offset: u64,
    /// For a sparse segment, the end of its offset range (see [`offset_fits`]).
    sparse_end: Option<u64>,
    /// File position after the last valid record.
    pub(crate) end: usize,
    /// The offset after the last valid record (the base offset if none).
    pub(crate) next_offset: u64,
    pub(crate) count: u64,
    pub(crate) max_timestamp: i64,
    pub(crate) index: SegmentIndex,
    /// Why the scan stopped before the end of `data`, if it did.
    pub(crate) bad: Option<CorruptionKind>,
}

/// Scans the records in `data` (file bytes from `DATA_START` on), validating
/// each one and its offset, and rebuilds the index on the way. `sparse_end`:
/// see [`offset_fits`].
pub(crate) fn scan(data: &[u8], base_offset: u64, sparse_end: Option<u64>, interval: u32) -> Scan {
    let mut s = Scan::new(base_offset, sparse_end, interval);
    let mut at = 0;
    while at < data.len() {
        match s.accept(DATA_START + at, record::decode(&data[at..])) {
            Some(len) => at += len,
            None => break,
        }
    }
    s
}

impl Scan {
    pub(crate) fn new(base_offset: u64, sparse_end: Option<u64>, interval: u32) -> Scan {
        Scan {
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

    /// Takes the decoding of the frame at file position `pos`. A valid record
    /// with an offset that fits (the next one; in a sparse segment, a larger
    /// one within its range) is counted and indexed, and its length returned;
    /// anything else records why the scan stops, and returns `None`.
    pub(crate) fn accept(
        &mut self,
        pos: usize,
        decoded: Result<record::RecordRef<'_>, CorruptionKind>,
    ) -> Option<usize> {
        match decoded {
            // The last offset, u64::MAX, is never a record's: it would leave
            // no next offset (only a crafted file can hold one).
            Ok(r) if r.offset() == u64::MAX => {
                self.bad = Some(CorruptionKind::BadLayout(LAST_OFFSET));
                None
            }
            Ok(r) if offset_fits(r.offset(), self.next_offset, self.sparse_end) => {
                // The relative offset is the record's own (in a dense segment
                // also its count): what the index files store.
                self.index.observe((r.offset() - self.base_offset) as u32, pos, self.max_timestamp);
                self.max_timestamp = self.max_timestamp.max(r.timestamp());
                self.count += 1;
                self.next_offset = r.offset() + 1;
                self.end = pos + r.frame_len() as usize;
                Some(r.frame_len() as usize)
            }
            Ok(r) => {
                self.bad = Some(CorruptionKind::UnexpectedOffset { expected: self.next_offset, found: r.offset() });
                None
            }
            Err(kind) => {
                self.bad = Some(kind);
                None
            }
        }
    }

    /// How a complete scan of a sealed segment's data disagrees with its
    /// footer, if it does: the record count, and the offsets (dense: the same
    /// next offset; sparse: every offset below the footer's next offset, which
    /// the scan's bound already ensures).
    pub(crate) fn footer_mismatch(&self, footer: &SegmentFooter) -> Option<String> {
        let offsets_ok = match self.sparse_end {
            None => self.next_offset == footer.next_offset,
            Some(_) => self.next_offset <= footer.next_offset,
        };
        if !offsets_ok {
            return Some(format!(
                "footer says the segment ends at offset {}, its records end at {}",
                footer.next_offset, self.next_offset
            ));
        }
        if self.count != footer.record_count {
            return Some(format!("footer counts {} records, the segment holds {}", footer.record_count, self.count));
        }
        None
    }
}

/// End (exclusive) of the bytes recovery scans for records in an unsealed
/// segment file of `file_len` bytes: what the file holds, but never the last
/// footer-sized room of a full-size segment, where records are never written.
/// Writable and read-only opens use the same bound so that they agree.
pub(crate) fn scan_end(file_len: u64, segment_bytes: u64) -> usize {
    let capacity = file_len.max(segment_bytes).saturating_sub(FOOTER_LEN as u64);
    (capacity.min(file_len) as usize).max(DATA_START)
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

/// What a segment file on disk is, judged from its header and its last 64 bytes.
#[derive(Debug)]
pub(crate) enum OnDisk {
    Sealed(SealedMeta),
    Unsealed { len: u64 },
}

/// Reads a segment file's header and footer without mapping it.
pub(crate) fn inspect_file(path: &Path, base: u64) -> Result<OnDisk> {
    let file = File::open(path).ctx("open segment", path)?;
    let len = file.metadata().ctx("stat segment", path)?.len();
    let bad_header = |why: String| Error::Corruption {
        path: path.to_owned(),
        offset: base,
        position: 0,
        kind: CorruptionKind::BadHeader(why),
    };
    let mut hbuf = [0u8; HEADER_LEN];
    if len < (DATA_START) as u64 {
        return Err(bad_header(format!("file of {len} bytes is shorter than the segment header")));
    }
    file.read_exact_at(&mut hbuf, 0).ctx("read segment header", path)?;
    let (header, flags) = SegmentHeader::decode_with_flags(&hbuf).map_err(bad_header)?;
    if header.base_offset != base {
        return Err(bad_header(format!(
            "header names base offset {} but the file name says {base}",
            header.base_offset
        )));
    }
    let mut why = format!("file of {len} bytes is too short for a footer");
    if len >= (DATA_START + FOOTER_LEN) as u64 {
        let mut fbuf = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut fbuf, len - FOOTER_LEN as u64).ctx("read segment footer", path)?;
        match SegmentFooter::decode_with_flags(&fbuf, len, flags) {
            Ok(footer) if footer.base_offset == base => {
                let meta = SealedMeta { footer, created_ms: header.created_ms, sparse: flags.is_sparse() };
                return Ok(OnDisk::Sealed(meta));
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

/// The temporary name a file is written under before it is renamed into
/// place: `<path>.tmp` (removed at open when the name is annal's own).
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename.
/// The caller fsyncs the directory.
pub(crate) fn write_file_atomic(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let file = io.create(&tmp).ctx("create", &tmp)?;
    io.write_all_at(&file, bytes, 0).ctx("write", &tmp)?;
    io.sync_data(&file).ctx("fsync", &tmp)?;
    io.rename(&tmp, path).ctx("rename", path)?;
    Ok(())
}

/// Durably replaces the small file `path` (a start offset, a manifest, a
/// topic's metadata) with `bytes`: [`write_file_atomic`], then an fsync of
/// its directory, so that the new content survives a crash once this returns.
pub(crate) fn replace_file_durably(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomic(io, path, bytes)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir).ctx("fsync directory", dir)
}

/// The content of the small file `path`, or `None` if there is no such file.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Loads a sealed segment's index files if they are valid for its data:
/// their checksums match the footer, or (if they were rebuilt after sealing,
/// for example with another index interval) every entry is what a scan of the
/// data finds: a record with the entry's offset at its position, and the
/// largest timestamp of the records before it. `None` otherwise.
fn load_index(dir: &Path, meta: &SealedMeta, data: &[u8], interval: u32) -> Option<SegmentIndex> {
    let base = meta.footer.base_offset;
    let bound = |p: &Path| std::fs::metadata(p).ok().filter(|m| m.len() <= meta.footer.data_end * 2 + 64);
    let ip = index_path(dir, base);
    let tp = timeindex_path(dir, base);
    bound(&ip)?;
    bound(&tp)?;
    let ob = std::fs::read(&ip).ok()?;
    let tb = std::fs::read(&tp).ok()?;
    let index = SegmentIndex::decode(&ob, &tb, base, meta.footer.data_end as usize, interval).ok()?;
    if stored_crc(&ob) == meta.footer.index_crc && stored_crc(&tb) == meta.footer.timeindex_crc {
        return Some(index);
    }
    // Checking only that each entry points at its record is not enough: a
    // wrong time entry makes offset_for_timestamp skip matching records.
    let mut entries = index.offsets.iter().zip(&index.times).peekable();
    let mut s = Scan::new(base, meta.sparse_end(), u32::MAX);
    let mut at = 0;
    while at < data.len() && entries.peek().is_some() {
        let max_before = s.max_timestamp;
        let pos = DATA_START + at;
        let len = s.accept(pos, record::decode(&data[at..]))?;
        // The offset of the record just accepted, relative to the base.
        let rel = s.next_offset - 1 - base;
        if let Some((o, t)) = entries.next_if(|(o, _)| o.position as usize == pos)
            && (u64::from(o.rel_offset) != rel || t.max_timestamp_before != max_before)
        {
            return None;
        }
        at += len;
    }
    entries.peek().is_none().then_some(index)
}

/// Opens a sealed segment for reading: maps it and loads (or rebuilds) its index.
/// Returns the segment and whether the index had to be rebuilt.
pub(crate) fn open_sealed(
    dir: &Path,
    meta: &SealedMeta,
    interval: u32,
    io: Option<&dyn Io>,
) -> Result<(Arc<Segment>, bool)> {
    let base = meta.footer.base_offset;
    let path = log_path(dir, base);
    let file = File::open(&path).ctx("open segment", &path)?;
    let len = file.metadata().ctx("stat segment", &path)?.len();
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
    let area = MapArea::read_only(&file, data_end + FOOTER_LEN, DATA_START, data_end).ctx("map segment", &path)?;
    let data = area.published_data();
    let (index, rebuilt) = match load_index(dir, meta, data, interval) {
        Some(index) => (index, false),
        None => {
            let s = scan(data, base, meta.sparse_end(), interval);
            if let Some(kind) = s.bad {
                return Err(Error::Corruption { path, offset: s.next_offset, position: s.end as u64, kind });
            }
            if let Some(why) = s.footer_mismatch(&meta.footer) {
                return Err(Error::Corruption {
                    path,
                    offset: s.next_offset,
                    position: s.end as u64,
                    kind: CorruptionKind::BadFooter(why),
                });
            }
            if let Some(io) = io {
                write_file_atomic(io, &index_path(dir, base), &s.index.encode_offsets(base))?;
                write_file_atomic(io, &timeindex_path(dir, base), &s.index.encode_times(base))?;
                io.sync_dir(dir).ctx("fsync directory", dir)?;
            }
            (s.index, true)
        }
    };
    Ok((
        Arc::new(Segment {
            base_offset: base,
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

/// Opens the last, unsealed segment of a log read-only: scans it without
/// changing anything. Returns the segment (published up to its last valid
/// record, with a tail error if what follows is corruption) and the number of
/// bytes a writer's recovery would cut.
pub(crate) fn open_unsealed_read_only(
    dir: &Path,
    base: u64,
    len: u64,
    config: &LogConfig,
) -> Result<(Arc<Segment>, u64)> {
    let path = log_path(dir, base);
    let file = File::open(&path).ctx("open segment", &path)?;
    let mut hbuf = [0u8; DATA_START];
    file.read_exact_at(&mut hbuf, 0).ctx("read segment header", &path)?;
    let checkpoint = header::decode_checkpoint(&hbuf).map_or(DATA_START, |c| c as usize);
    // Positioned reads, not the map: a writer in another process may seal and
    // shorten this file at any moment, and touching a mapped page past the
    // new end of the file would kill this process with SIGBUS.
    let end = scan_end(len, config.segment_bytes);
    let s = scan_file(&file, end, base, config.index_interval_bytes).ctx("read segment", &path)?;
    let footer_end = interrupted_seal(&file, &s, base).ctx("read segment", &path)?;
    let rest_nonzero = last_nonzero_in_file(&file, footer_end as u64, len).ctx("read segment", &path)?;
    let bad = s.bad.clone().unwrap_or(CorruptionKind::BadLength(0));
    let mut would_cut = 0;
    let tail_error = if s.end < checkpoint {
        Some((s.end as u64, s.bad.clone().unwrap_or(CorruptionKind::DamagedDurableData)))
    } else if let Some(last) = rest_nonzero {
        would_cut = last + 1 - footer_end as u64;
        (config.recovery_mode == RecoveryMode::AbsoluteConsistency).then_some((s.end as u64, bad))
    } else {
        None
    };
    // Readers touch only [DATA_START, s.end): validated records, which no
    // writer ever removes from the file.
    let area = MapArea::read_only(&file, len as usize, DATA_START, s.end).ctx("map segment", &path)?;
    let seg = Segment {
        base_offset: base,
        path,
        area,
        index: RwLock::new(s.index),
        tail_error,
        retired: OnceLock::new(),
        sealed: None,
    };
    Ok((Arc::new(seg), would_cut))
}

/// [`scan`] over a file with positioned reads in bounded chunks, up to file
/// position `end`. A frame longer than the read window is read whole only
/// after its CRC, computed in chunks, has vouched for its length.
pub(crate) fn scan_file(file: &File, end: usize, base_offset: u64, interval: u32) -> std::io::Result<Scan> {
    const WINDOW: usize = 4 << 20;
    let mut s = Scan::new(base_offset, None, interval);
    let mut window = vec![0u8; WINDOW.min(end.saturating_sub(DATA_START)).max(record::RECORD_HEADER_LEN)];
    let mut window_start = DATA_START;
    let mut window_len = 0;
    let mut big = Vec::new();
    let mut pos = DATA_START;
    while pos < end {
        // Make sure the window holds at least the frame header at `pos`.
        if pos + record::RECORD_HEADER_LEN > window_start + window_len {
            window_start = pos;
            let want = window.len().min(end - pos);
            window_len = read_up_to(file, &mut window[..want], pos as u64)?;
        }
        let frame_len = record::peek_len(&window[pos - window_start..window_len]).map_or(0, |l| l as usize);
        if frame_len > window_start + window_len - pos && frame_len <= window.len() && window_start != pos {
            // The frame straddles the window's end: slide the window to it.
            window_start = pos;
            let want = window.len().min(end - pos);
            window_len = read_up_to(file, &mut window[..want], pos as u64)?;
            continue;
        }
        let in_window = &window[pos - window_start..window_len];
        let decoded = if frame_len >= record::RECORD_HEADER_LEN && frame_len <= in_window.len() {
            record::decode(in_window)
        } else if frame_len >= record::RECORD_HEADER_LEN && pos + frame_len <= end {
            match frame_crc_ok(file, pos as u64, frame_len)? {
                true => {
                    big.resize(frame_len, 0);
                    let got = read_up_to(file, &mut big, pos as u64)?;
                    record::decode(&big[..got])
                }
                false => record::decode(in_window),
            }
        } else {
            record::decode(in_window)
        };
        match s.accept(pos, decoded) {
            Some(len) => pos += len,
            None => break,
        }
    }
    Ok(s)
}

/// Whether the frame of `len` bytes at `pos` has a matching CRC, reading it in chunks.
fn frame_crc_ok(file: &File, pos: u64, len: usize) -> std::io::Result<bool> {
    let mut head = [0u8; 8];
    if read_up_to(file, &mut head, pos)? < 8 {
        return Ok(false);
    }
    let stored = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    let mut h = crc32fast::Hasher::new();
    h.update(&head[0..4]);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 8;
    while at < len {
        let n = (len - at).min(buf.len());
        let got = read_up_to(file, &mut buf[..n], pos + at as u64)?;
        if got < n {
            return Ok(false);
        }
        h.update(&buf[..n]);
        at += n;
    }
    Ok(h.finalize() == stored)
}

/// Reads as much of `buf` as the file holds at `pos` (short at end of file).
fn read_up_to(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// If a valid footer for exactly the scanned records sits right after them,
/// a seal (or the reopening of a sealed segment) was interrupted by a crash:
/// the footer is not a torn record. Returns the position after it, or
/// `s.end` if there is none.
pub(crate) fn interrupted_seal(file: &File, s: &Scan, base: u64) -> std::io::Result<usize> {
    let mut buf = [0u8; FOOTER_LEN];
    if read_up_to(file, &mut buf, s.end as u64)? == FOOTER_LEN
        && let Ok(f) = SegmentFooter::decode(&buf, s.end as u64 + FOOTER_LEN as u64)
        && f.base_offset == base
        && f.next_offset == s.next_offset
        && f.data_end == s.end as u64
    {
        return Ok(s.end + FOOTER_LEN);
    }
    Ok(s.end)
}

/// Position of the last non-zero byte of the file in `[from, to)`. Reads only
/// what the file system reports as data (`SEEK_DATA`), so the untouched
/// preallocated tail of a segment costs nothing.
pub(crate) fn last_nonzero_in_file(file: &File, from: u64, to: u64) -> std::io::Result<Option<u64>> {
    use rustix::fs::{SeekFrom, seek};
    let mut buf = vec![0u8; 1 << 20];
    let mut last = None;
    let mut pos = from;
    while pos < to {
        let data = match seek(file, SeekFrom::Data(pos)) {
            Ok(p) => p,
            Err(e) if e == rustix::io::Errno::NXIO => break,
            Err(e) => return Err(e.into()),
        };
        if data >= to {
            break;
        }
        let hole = seek(file, SeekFrom::Hole(data)).map_err(std::io::Error::from)?.min(to);
        let mut p = data;
        while p < hole {
            let n = ((hole - p) as usize).min(buf.len());
            let got = read_up_to(file, &mut buf[..n], p)?;
            if let Some(i) = last_nonzero(&buf[..got]) {
                last = Some(p + i as u64);
            }
            if got < n {
                return Ok(last);
            }
            p += got as u64;
        }
        pos = hole;
    }
    Ok(last)
}

/// Space a sealed segment must have left (a minimal record plus the footer)
/// to be reopened for appending.
pub(crate) const RECORD_ROOM: u64 = (crate::record::RECORD_HEADER_LEN + FOOTER_LEN) as u64;
