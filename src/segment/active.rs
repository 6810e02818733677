//! The active segment: the one segment the writer appends to.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::header::{decode_checkpoint, encode_checkpoint};
use super::scan::{self, Scan, SliceSource, Tail};
use super::{DATA_START, FOOTER_LEN, SealedMeta, Segment, SegmentFooter, SegmentHeader};
use crate::config::{LogConfig, RecoveryMode};
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::index::{SegmentIndex, stored_crc};
use crate::io::{Io, SyncedFile};
use crate::mmap::{MapArea, MapWriter};
use crate::record::{FrameFormat, Record, batch};
use crate::sync::{MutexExt, RwLockExt};

/// The writer's side of the segment being appended to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) seg: Arc<Segment>,
    writer: MapWriter,
    pub(crate) file: Arc<SyncedFile>,
    /// Write position: records are written here, then published up to it.
    pos: usize,
    /// Records must end at or before this position, so the footer always fits.
    capacity: usize,
    /// Bytes of the file allocated on disk (the file's length): the map is
    /// the whole segment size, but only this much of it may be touched. It
    /// grows ahead of the writes, always leaving room for the footer.
    allocated: usize,
    next_offset: u64,
    record_count: u64,
    max_timestamp: i64,
    pub(crate) created_ms: i64,
    interval: usize,
    index_due: usize,
    /// The value of the checkpoint last written into the header.
    checkpoint: usize,
}

/// A new segment file, fully written and synced under a temporary name, not
/// yet part of the log. [`PreparedSegment::install`] makes it the active segment.
#[derive(Debug)]
pub(crate) struct PreparedSegment {
    tmp_path: PathBuf,
    path: PathBuf,
    file: File,
    header: SegmentHeader,
}

/// CRCs of the index files written for a segment holding `records` records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexCrcs {
    records: u64,
    index: u32,
    timeindex: u32,
}

/// What recovering an unsealed segment found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) truncated_bytes: u64,
    pub(crate) records: u64,
}

impl PreparedSegment {
    /// Creates `{base}.log.tmp`, preallocated to its first step
    /// ([`first_allocation`]), with its header and an empty checkpoint.
    pub(crate) fn create(dir: &Path, base: u64, created_ms: i64, config: &LogConfig) -> Result<PreparedSegment> {
        let path = super::log_path(dir, base);
        let tmp_path = crate::durable::tmp_path(&path);
        let io = config.io.as_ref();
        let file = io.create(&tmp_path).ctx("create segment", &tmp_path)?;
        let prepared = (|| {
            io.allocate(&file, first_allocation(config.segment_bytes)).ctx("preallocate segment", &tmp_path)?;
            let header = SegmentHeader::new(base, created_ms);
            let mut buf = [0u8; DATA_START];
            header.encode(&mut buf);
            encode_checkpoint(&mut buf, DATA_START as u64);
            io.write_all_at(&file, &buf, 0).ctx("write segment header", &tmp_path)?;
            io.sync_all(&file).ctx("fsync segment", &tmp_path)?;
            Ok(header)
        })();
        match prepared {
            Ok(header) => Ok(PreparedSegment { tmp_path, path, file, header }),
            Err(e) => {
                // Give the space back; the temporary name is never read as a segment.
                let _ = std::fs::remove_file(&tmp_path);
                Err(e)
            }
        }
    }

    /// Renames the file into place, fsyncs the directory and maps it.
    pub(crate) fn install(self, dir: &Path, config: &LogConfig) -> Result<ActiveSegment> {
        let io = config.io.as_ref();
        io.rename(&self.tmp_path, &self.path).ctx("rename segment", &self.path)?;
        io.sync_dir(dir).ctx("fsync directory", dir)?;
        let len = config.segment_bytes as usize;
        let writer = MapArea::writable(&self.file, len, DATA_START).ctx("map segment", &self.path)?;
        Ok(ActiveSegment::new(
            self.path,
            self.file,
            writer,
            self.header,
            SegmentIndex::new(config.index_interval_bytes),
            config.index_interval_bytes,
            first_allocation(config.segment_bytes),
        ))
    }
}

/// What a new segment file is allocated on disk when it is created: 256 KiB
/// (or the whole segment if it is smaller). It grows as appends need room
/// ([`ActiveSegment::try_append_batch`]), doubling each time, so that an idle
/// partition takes 256 KiB of disk, not a whole segment.
pub(crate) fn first_allocation(segment_bytes: u64) -> u64 {
    segment_bytes.min(FIRST_ALLOCATION)
}

/// See [`first_allocation`].
const FIRST_ALLOCATION: u64 = 256 << 10;
/// Allocations are made in multiples of this.
const ALLOCATION_GRAIN: usize = 64 << 10;

impl ActiveSegment {
    /// The active segment of `file`, of which `allocated` bytes are allocated (its length).
    fn new(
        path: PathBuf,
        file: File,
        writer: MapWriter,
        header: SegmentHeader,
        index: SegmentIndex,
        interval: u32,
        allocated: u64,
    ) -> ActiveSegment {
        let capacity = writer.area().len() - FOOTER_LEN;
        let allocated = (allocated as usize).min(writer.area().len());
        let seg = Arc::new(Segment {
            base_offset: header.base_offset,
            format: header.frame_format(),
            path,
            area: Arc::clone(writer.area()),
            index: RwLock::new(index),
            tail_error: None,
            retired: std::sync::OnceLock::new(),
            sealed: None,
        });
        let mut active = ActiveSegment {
            seg,
            writer,
            file: Arc::new(SyncedFile::new(file)),
            pos: DATA_START,
            capacity,
            allocated,
            next_offset: header.base_offset,
            record_count: 0,
            max_timestamp: i64::MIN,
            created_ms: header.created_ms,
            interval: interval as usize,
            index_due: DATA_START + interval as usize,
            checkpoint: DATA_START,
        };
        active.index_due = active.next_index_due();
        active
    }

    fn next_index_due(&self) -> usize {
        let last =
            self.seg.index.read_locked().offsets.last().map_or(DATA_START, |e| e.position as usize);
        last + self.interval
    }

    /// Recovers the last segment of a log after a crash, or reopens a sealed
    /// one for appending (`sealed`: its footer and its loaded index).
    ///
    /// Scans every record, rebuilds the index, and decides what a bad record
    /// means (docs/DESIGN.md, "Recovery"): after the durable checkpoint it is a
    /// torn tail and is cut (zeroed); before it, or in strict mode, corruption.
    pub(crate) fn recover(
        dir: &Path,
        base: u64,
        config: &LogConfig,
        sealed: Option<(&SealedMeta, SegmentIndex)>,
    ) -> Result<(ActiveSegment, Recovered)> {
        let path = super::log_path(dir, base);
        let file = config.io.open_writable(&path).ctx("open segment", &path)?;
        let file_len = config.io.file_len(&file).ctx("stat segment", &path)?;
        // The file keeps its length: appends grow it as they need room.
        Self::recover_file(dir, base, config, sealed, file, file_len)
    }

    /// [`ActiveSegment::recover`], with the file open.
    fn recover_file(
        dir: &Path,
        base: u64,
        config: &LogConfig,
        sealed: Option<(&SealedMeta, SegmentIndex)>,
        file: File,
        file_len: u64,
    ) -> Result<(ActiveSegment, Recovered)> {
        let path = super::log_path(dir, base);
        let io = config.io.as_ref();
        // The map spans a whole segment, the file only what it holds: only
        // its first `file_len` bytes may be touched until the file grows.
        let len = file_len.max(config.segment_bytes) as usize;
        let mut writer = MapArea::writable(&file, len, DATA_START).ctx("map segment", &path)?;
        let bad_header = |why| Error::Corruption {
            path: path.clone(),
            offset: base,
            position: 0,
            kind: CorruptionKind::BadHeader(why),
        };
        let (header, flags) = SegmentHeader::decode_with_flags(writer.header_mut()).map_err(bad_header)?;
        if flags.is_sparse() {
            // Never reached: a compacted segment is sealed (or refused as
            // corrupt without its footer) and never reopened for appending.
            return Err(bad_header("a compacted (sparse) segment cannot be appended to".into()));
        }

        if let Some((meta, index)) = sealed {
            // Reopen a cleanly sealed segment: no scan. Record that its data is
            // durable, then remove the footer so that appends continue after it.
            let data_end = meta.footer.data_end as usize;
            encode_checkpoint(writer.header_mut(), data_end as u64);
            writer.unpublished_mut(data_end, FOOTER_LEN).fill(0);
            io.sync_data(&file).ctx("fsync segment", &path)?;
            writer.publish(data_end);
            let mut active =
                ActiveSegment::new(path, file, writer, header, index, config.index_interval_bytes, file_len);
            active.pos = data_end;
            active.next_offset = meta.footer.next_offset;
            active.record_count = meta.footer.record_count;
            active.max_timestamp = meta.footer.max_timestamp;
            active.checkpoint = data_end;
            active.index_due = active.next_index_due();
            for p in [super::index_path(dir, base), super::timeindex_path(dir, base)] {
                match io.remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove stale index", p, e)),
                }
            }
            return Ok((active, Recovered { truncated_bytes: 0, records: 0 }));
        }

        let checkpoint = decode_checkpoint(writer.header_mut()).map_or(DATA_START as u64, |c| c);
        // Scan only the bytes the file held: a frame cut by the end of a short
        // file is torn even if the zeros that extended the file happen to
        // complete it (read-only opens, which cannot extend, must agree).
        let scan_end = scan::scan_end(file_len, config.segment_bytes);
        let start = Scan::new(header.frame_format(), base, None, config.index_interval_bytes);
        let mut src = SliceSource { bytes: writer.unpublished(DATA_START), start: DATA_START };
        let s = scan::scan(&mut src, start, scan_end, |_, _, _| Ok(()))?;
        let (tail, seal_end) = scan::examine_tail(config.io.as_ref(), &mut src, &file, &path, &s, file_len, checkpoint)?;
        let corruption =
            |kind| Error::Corruption { path: path.clone(), offset: s.next_offset, position: s.end as u64, kind };
        let mut truncated_bytes = 0;
        // What must be zeroed for appends to continue after the records: a
        // torn tail, and the footer of an interrupted seal.
        let dirty_end = match tail {
            Tail::Damaged => return Err(corruption(s.bad.clone().unwrap_or(CorruptionKind::DamagedDurableData))),
            Tail::Torn { .. } if config.recovery_mode == RecoveryMode::AbsoluteConsistency => {
                return Err(corruption(s.bad.clone().unwrap_or(CorruptionKind::BadLength(0))));
            }
            Tail::Torn { from, to } => {
                truncated_bytes = to - from;
                to as usize
            }
            Tail::Clean => seal_end.map_or(s.end, |e| e as usize),
        };
        if dirty_end > s.end {
            writer.unpublished_mut(s.end, dirty_end - s.end).fill(0);
            io.sync_data(&file).ctx("fsync segment", &path)?;
        }
        writer.publish(s.end);
        let records = s.count;
        let mut active = ActiveSegment::new(path, file, writer, header, s.index, config.index_interval_bytes, file_len);
        active.pos = s.end;
        active.next_offset = s.next_offset;
        active.record_count = s.count;
        active.max_timestamp = s.max_timestamp;
        active.checkpoint = checkpoint as usize;
        active.index_due = active.next_index_due();
        Ok((active, Recovered { truncated_bytes, records }))
    }

    pub(crate) fn base_offset(&self) -> u64 {
        self.seg.base_offset
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub(crate) fn record_count(&self) -> u64 {
        self.record_count
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub(crate) fn path(&self) -> &Path {
        &self.seg.path
    }

    /// Bytes left for frames before the footer's room.
    pub(crate) fn capacity_left(&self) -> usize {
        self.capacity - self.pos
    }

    /// Write position (end of the written records).
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// How this segment's records are framed. Only a segment of the current
    /// format ([`FrameFormat::Batch`]) takes appends; one of an older format
    /// (recovered after a crash of an older build) is sealed first.
    pub(crate) fn format(&self) -> FrameFormat {
        self.seg.format
    }

    /// Writes `records` as one batch frame of `len` bytes (their
    /// [`batch::encoded_len`]) at the write position, without publishing it:
    /// `now` is the timestamp of the records that carry none. Returns
    /// `Ok(false)`, writing nothing, if it does not fit in the segment. The
    /// file is first grown if the frame and the footer after it need room:
    /// an error there (a full disk) writes nothing either.
    #[inline]
    pub(crate) fn try_append_batch(
        &mut self,
        io: &dyn Io,
        records: &[Record<'_>],
        len: usize,
        now: i64,
    ) -> Result<bool> {
        debug_assert_eq!(self.seg.format, FrameFormat::Batch);
        if len > self.capacity - self.pos {
            return Ok(false);
        }
        let needed = self.pos + len + FOOTER_LEN;
        if needed > self.allocated {
            self.grow(io, needed)?;
        }
        let pos = self.pos;
        let frame = self.writer.unpublished_mut(pos, len);
        let max_timestamp = batch::encode_into(frame, self.next_offset, now, records);
        if pos >= self.index_due {
            let rel = self.record_count as u32;
            self.seg.index.write_locked().observe(rel, pos, self.max_timestamp);
            self.index_due = pos + self.interval;
        }
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
        self.pos += len;
        self.next_offset += records.len() as u64;
        self.record_count += records.len() as u64;
        Ok(true)
    }

    /// Allocates the file ahead of the writer, up to `upto` bytes (within the
    /// map, in whole grains), before its pages are prefaulted. Best effort: a
    /// failure (a full disk) leaves the allocation as it was, and the append
    /// that needs the room reports it. Returns the bytes allocated.
    pub(crate) fn allocate_ahead(&mut self, io: &dyn Io, upto: usize) -> usize {
        let want = upto.next_multiple_of(ALLOCATION_GRAIN).min(self.writer.area().len());
        if want > self.allocated && io.allocate(self.file.file(), want as u64).is_ok() {
            self.allocated = want;
        }
        self.allocated
    }

    /// Grows the file to at least `needed` bytes (within the map): to twice
    /// what it holds, or to `needed` if more, in whole grains.
    #[cold]
    fn grow(&mut self, io: &dyn Io, needed: usize) -> Result<()> {
        let map_len = self.writer.area().len();
        let want = needed.max(self.allocated.saturating_mul(2)).next_multiple_of(ALLOCATION_GRAIN).min(map_len);
        io.allocate(self.file.file(), want as u64).ctx("preallocate segment", &self.seg.path)?;
        self.allocated = want;
        Ok(())
    }

    /// Makes every record written so far visible to readers.
    #[inline]
    pub(crate) fn publish(&mut self) {
        self.writer.publish(self.pos);
    }

    /// Records in the header that bytes up to `synced_end` are durable. It
    /// reaches the disk with the next fsync, after the data it vouches for.
    pub(crate) fn write_checkpoint(&mut self, synced_end: usize) {
        if synced_end > self.checkpoint {
            encode_checkpoint(self.writer.header_mut(), synced_end as u64);
            self.checkpoint = synced_end;
        }
    }

    /// First step of sealing (the second is [`ActiveSegment::seal`]): writes
    /// the segment's index files (atomically) and returns their CRCs for the
    /// footer. Changes nothing the log depends
    /// on, so a failure here (a full disk) is not fatal: the segment stays
    /// active and the caller may try again later.
    pub(crate) fn write_index_files(&mut self, dir: &Path, io: &dyn Io) -> Result<IndexCrcs> {
        self.publish();
        // The footer goes right after the records: the file must hold it
        // before it is written into the map (a recovered file may end at its
        // last record).
        if self.pos + FOOTER_LEN > self.allocated {
            self.grow(io, self.pos + FOOTER_LEN)?;
        }
        let base = self.base_offset();
        let (ob, tb) = {
            let index = self.seg.index.read_locked();
            (index.encode_offsets(base), index.encode_times(base))
        };
        crate::durable::write_file_atomic(io, &super::index_path(dir, base), &ob)?;
        crate::durable::write_file_atomic(io, &super::timeindex_path(dir, base), &tb)?;
        Ok(IndexCrcs { records: self.record_count, index: stored_crc(&ob), timeindex: stored_crc(&tb) })
    }

    /// Seals the segment after [`ActiveSegment::write_index_files`]: footer,
    /// fsync, trim to size, fsync, directory fsync. A failure here is fatal
    /// for the log. Afterwards the file is immutable.
    pub(crate) fn seal(&mut self, dir: &Path, io: &dyn Io, crcs: IndexCrcs) -> Result<SealedMeta> {
        assert_eq!(crcs.records, self.record_count, "index files written for another state of the segment");
        assert!(self.pos + FOOTER_LEN <= self.allocated, "the file has no room for the footer");
        let base = self.base_offset();
        let path = self.seg.path.clone();
        let footer = SegmentFooter {
            base_offset: base,
            data_end: self.pos as u64,
            record_count: self.record_count,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            index_crc: crcs.index,
            timeindex_crc: crcs.timeindex,
        };
        self.writer.unpublished_mut(self.pos, FOOTER_LEN).copy_from_slice(&footer.encode());
        self.file.sync(io, false).ctx("fsync segment", &path)?;
        // Every record is durable now; the checkpoint says so (it reaches the
        // disk with the fsync below), so that if the segment ever loses its
        // footer, damage to its records is corruption, not a torn tail to cut.
        self.write_checkpoint(self.pos);
        io.set_len(self.file.file(), self.pos as u64 + FOOTER_LEN as u64).ctx("trim segment", &path)?;
        self.file.sync(io, true).ctx("fsync segment", &path)?;
        io.sync_dir(dir).ctx("fsync directory", dir)?;
        Ok(SealedMeta { footer, created_ms: self.created_ms, sparse: false })
    }

    /// Tells readers that nothing more will be published here. Call it after
    /// the segment that follows (if any) is visible in the log's segment set.
    pub(crate) fn finish(mut self) {
        self.publish();
        self.writer.finish();
    }

    /// Removes an active segment that holds no records (on close).
    pub(crate) fn discard_empty(self, dir: &Path, io: &dyn Io) -> Result<()> {
        debug_assert_eq!(self.record_count, 0);
        let path = self.seg.path.clone();
        self.finish();
        io.remove_file(&path).ctx("remove empty segment", &path)?;
        io.sync_dir(dir).ctx("fsync directory", dir)
    }
}

/// An active segment whose file is closed and unmapped for now (see
/// `Log::park`): what the writer needs to take it up again, and what readers
/// need to read it meanwhile. Nothing of it is on disk that is not in the file.
#[derive(Debug)]
pub(crate) struct ParkedSegment {
    header: SegmentHeader,
    pos: usize,
    allocated: usize,
    next_offset: u64,
    record_count: u64,
    max_timestamp: i64,
    checkpoint: usize,
    interval: u32,
    /// What readers use: the file, its index, and a read-only view of its
    /// records while someone reads them.
    pub(crate) view: Arc<ParkedView>,
}

/// A parked segment as readers see it.
#[derive(Debug)]
pub(crate) struct ParkedView {
    pub(crate) base_offset: u64,
    path: PathBuf,
    format: FrameFormat,
    /// End of its records.
    pos: usize,
    index: SegmentIndex,
    /// The read-only map readers share, while one of them holds it.
    open: std::sync::Mutex<std::sync::Weak<Segment>>,
    /// What opens the file again for a reader.
    io: Arc<dyn Io>,
}

impl ActiveSegment {
    /// Closes the segment's file and lets its map go (readers that hold it
    /// keep it): its state stays in memory, to be taken up again by
    /// [`ParkedSegment::unpark`]. Readers at its end move on to its view.
    pub(crate) fn park(mut self, io: Arc<dyn Io>) -> ParkedSegment {
        self.publish();
        let index = self.seg.index.read_locked().clone();
        let view = Arc::new(ParkedView {
            base_offset: self.seg.base_offset,
            path: self.seg.path.clone(),
            format: self.seg.format,
            pos: self.pos,
            index,
            open: std::sync::Mutex::new(std::sync::Weak::new()),
            io,
        });
        let parked = ParkedSegment {
            header: SegmentHeader {
                base_offset: self.seg.base_offset,
                created_ms: self.created_ms,
                version: match self.seg.format {
                    FrameFormat::V1 => 1,
                    FrameFormat::Batch => super::header::FORMAT_VERSION,
                },
            },
            pos: self.pos,
            allocated: self.allocated,
            next_offset: self.next_offset,
            record_count: self.record_count,
            max_timestamp: self.max_timestamp,
            checkpoint: self.checkpoint,
            interval: self.interval as u32,
            view,
        };
        self.finish();
        parked
    }
}

impl ParkedSegment {
    pub(crate) fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub(crate) fn record_count(&self) -> u64 {
        self.record_count
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Write position (end of the records).
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Opens the file again and maps it: the active segment it was, in the
    /// same state.
    pub(crate) fn unpark(self, config: &LogConfig) -> Result<ActiveSegment> {
        let path = self.view.path.clone();
        let file = config.io.open_writable(&path).ctx("open segment", &path)?;
        let len = (config.segment_bytes as usize).max(self.allocated);
        let mut writer = MapArea::writable(&file, len, DATA_START).ctx("map segment", &path)?;
        writer.publish(self.pos);
        let mut active = ActiveSegment::new(
            path,
            file,
            writer,
            self.header,
            self.view.index.clone(),
            self.interval,
            self.allocated as u64,
        );
        active.pos = self.pos;
        active.next_offset = self.next_offset;
        active.record_count = self.record_count;
        active.max_timestamp = self.max_timestamp;
        active.checkpoint = self.checkpoint;
        active.index_due = active.next_index_due();
        Ok(active)
    }

    /// Makes its records durable without opening its map: an fsync of the
    /// file, then the checkpoint that says so, written into the header (it
    /// reaches the disk with a later fsync, as always).
    pub(crate) fn sync(&mut self, io: &dyn Io) -> Result<()> {
        let path = &self.view.path;
        let file = io.open_writable(path).ctx("open segment", path)?;
        io.sync_data(&file).ctx("fsync segment", path)?;
        if self.pos > self.checkpoint {
            let mut head = [0u8; DATA_START];
            encode_checkpoint(&mut head, self.pos as u64);
            let cp = super::header::CHECKPOINT_POS;
            io.write_all_at(&file, &head[cp..cp + 16], cp as u64).ctx("write checkpoint", path)?;
            self.checkpoint = self.pos;
        }
        Ok(())
    }
}

impl ParkedView {
    /// The segment's records for a reader: a read-only map of them, shared by
    /// the readers that hold it, opened again once none does.
    pub(crate) fn segment(&self) -> Result<Arc<Segment>> {
        let mut open = self.open.locked();
        if let Some(seg) = open.upgrade() {
            return Ok(seg);
        }
        let file = self.io.open_read(&self.path).ctx("open segment", &self.path)?;
        let area = MapArea::read_only(&file, self.pos, DATA_START, self.pos).ctx("map segment", &self.path)?;
        let seg = Arc::new(Segment {
            base_offset: self.base_offset,
            format: self.format,
            path: self.path.clone(),
            area,
            index: RwLock::new(self.index.clone()),
            tail_error: None,
            retired: std::sync::OnceLock::new(),
            sealed: None,
        });
        *open = Arc::downgrade(&seg);
        Ok(seg)
    }
}
