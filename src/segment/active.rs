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
use crate::io::{Io, SyncedFile, open_rw};
use crate::mmap::{MapArea, MapWriter};
use crate::record::{FrameFormat, Record, batch};

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
    /// Creates `{base}.log.tmp`, preallocated to the segment size, with its header and an empty checkpoint.
    pub(crate) fn create(dir: &Path, base: u64, created_ms: i64, config: &LogConfig) -> Result<PreparedSegment> {
        let path = super::log_path(dir, base);
        let tmp_path = super::tmp_path(&path);
        let io = config.io.as_ref();
        let file = io.create(&tmp_path).ctx("create segment", &tmp_path)?;
        let prepared = (|| {
            io.allocate(&file, config.segment_bytes).ctx("preallocate segment", &tmp_path)?;
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
        ))
    }
}

impl ActiveSegment {
    fn new(
        path: PathBuf,
        file: File,
        writer: MapWriter,
        header: SegmentHeader,
        index: SegmentIndex,
        interval: u32,
    ) -> ActiveSegment {
        let capacity = writer.area().len() - FOOTER_LEN;
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
            self.seg.index.read().expect("index lock").offsets.last().map_or(DATA_START, |e| e.position as usize);
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
        let io = config.io.as_ref();
        let file = open_rw(&path, false).ctx("open segment", &path)?;
        let file_len = file.metadata().ctx("stat segment", &path)?.len();
        if file_len >= config.segment_bytes {
            return Self::recover_file(dir, base, config, sealed, file, file_len);
        }
        // A short file (cut, or a sealed segment) is extended to a full segment
        // to append to it; if recovery then fails it gets its length back, so
        // that a refused open leaves the files as it found them.
        let restore = file.try_clone().ctx("open segment", &path)?;
        let result = io
            .allocate(&file, config.segment_bytes)
            .ctx("preallocate segment", &path)
            .and_then(|()| Self::recover_file(dir, base, config, sealed, file, file_len));
        if result.is_err() {
            let _ = io.set_len(&restore, file_len);
        }
        result
    }

    /// [`ActiveSegment::recover`] once the file is at least a segment long.
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
            let mut active = ActiveSegment::new(path, file, writer, header, index, config.index_interval_bytes);
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
        let (tail, seal_end) = scan::examine_tail(&mut src, &file, &path, &s, file_len, checkpoint)?;
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
        let mut active = ActiveSegment::new(path, file, writer, header, s.index, config.index_interval_bytes);
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
    /// `false`, writing nothing, if it does not fit.
    #[inline]
    pub(crate) fn try_append_batch(&mut self, records: &[Record<'_>], len: usize, now: i64) -> bool {
        debug_assert_eq!(self.seg.format, FrameFormat::Batch);
        if len > self.capacity - self.pos {
            return false;
        }
        let pos = self.pos;
        let frame = self.writer.unpublished_mut(pos, len);
        let max_timestamp = batch::encode_into(frame, self.next_offset, now, records);
        if pos >= self.index_due {
            let rel = self.record_count as u32;
            self.seg.index.write().expect("index lock").observe(rel, pos, self.max_timestamp);
            self.index_due = pos + self.interval;
        }
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
        self.pos += len;
        self.next_offset += records.len() as u64;
        self.record_count += records.len() as u64;
        true
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

    /// Seals the segment: index files, footer, fsync, trim to size, fsync,
    /// directory fsync. Afterwards the file is immutable.
    /// First step of sealing: writes the segment's index files (atomically)
    /// and returns their CRCs for the footer. Changes nothing the log depends
    /// on, so a failure here (a full disk) is not fatal: the segment stays
    /// active and the caller may try again later.
    pub(crate) fn write_index_files(&mut self, dir: &Path, io: &dyn Io) -> Result<IndexCrcs> {
        self.publish();
        let base = self.base_offset();
        let (ob, tb) = {
            let index = self.seg.index.read().expect("index lock");
            (index.encode_offsets(base), index.encode_times(base))
        };
        super::write_file_atomic(io, &super::index_path(dir, base), &ob)?;
        super::write_file_atomic(io, &super::timeindex_path(dir, base), &tb)?;
        Ok(IndexCrcs { records: self.record_count, index: stored_crc(&ob), timeindex: stored_crc(&tb) })
    }

    /// Seals the segment after [`ActiveSegment::write_index_files`]: footer,
    /// fsync, trim to size, fsync, directory fsync. A failure here is fatal
    /// for the log. Afterwards the file is immutable.
    pub(crate) fn seal(&mut self, dir: &Path, io: &dyn Io, crcs: IndexCrcs) -> Result<SealedMeta> {
        assert_eq!(crcs.records, self.record_count, "index files written for another state of the segment");
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
