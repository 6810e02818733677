//! Writing a compacted segment: the records of a sealed segment that
//! compaction keeps, with their offsets and timestamps, in batch frames (each
//! holding a run of consecutive kept records of one original frame, their
//! bytes copied as they are), into a new file of the current format with the
//! `SPARSE` header flag, new index files, and a footer that keeps the
//! segment's offset range (docs/FORMAT.md, "Compacted segments";
//! docs/DESIGN.md, "Compaction").
//!
//! The new files are written under temporary names and made durable; nothing
//! the log depends on changes until [`Compacted::install`] renames them over
//! the old ones.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::header::{SegmentFlags, encode_checkpoint};
use super::{DATA_START, SealedMeta, Segment, SegmentFooter, SegmentHeader, index_path, log_path, timeindex_path};
use crate::error::{CorruptionKind, Error, IoContext, Result};
use crate::index::{SegmentIndex, stored_crc};
use crate::io::Io;
use crate::record::RecordRef;
use crate::record::batch::{self, BatchBuilder};

/// Record bytes gathered before one write to the new file.
const WRITE_CHUNK: usize = 1 << 20;

/// A compacted segment written and synced under temporary names, not yet in place.
#[derive(Debug)]
pub(crate) struct Compacted {
    /// The metadata of the new file (what the log's segment set holds once installed).
    pub(crate) meta: SealedMeta,
    /// Records dropped, of which tombstones.
    pub(crate) records_removed: u64,
    pub(crate) tombstones_removed: u64,
    /// Record bytes dropped.
    pub(crate) bytes_removed: u64,
    tmp_log: PathBuf,
    tmp_index: PathBuf,
    tmp_timeindex: PathBuf,
    base: u64,
}

/// Temporary name of a compaction output file: `<final name>.compact.tmp`
/// (removed at open, like every `{20 digits}….tmp`).
fn tmp_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".compact.tmp");
    PathBuf::from(s)
}

/// Writes the records of the sealed segment `seg` (opened with `meta`) for
/// which `keep` returns true into a new segment under temporary names:
/// the data file (sparse header, the kept frames, footer), then its index
/// files, each made durable. `keep` is called once per record, in order.
///
/// Returns `None`, writing nothing, if every record is kept. The old segment
/// is read through its map, every record checked as readers check it:
/// damage is `Error::Corruption` with its position, and nothing is written.
/// On any failure the temporary files are removed (as far as possible) and
/// the log is unchanged.
pub(crate) fn write_compacted(
    dir: &Path,
    io: &dyn Io,
    seg: &Segment,
    meta: &SealedMeta,
    interval: u32,
    mut keep: impl FnMut(&RecordRef<'_>) -> bool,
) -> Result<Option<Compacted>> {
    let base = meta.footer.base_offset;
    // Pass 1: decide, checking every record and that they agree with the footer.
    let mut decisions = Vec::with_capacity(meta.footer.record_count.min(1 << 24) as usize);
    let (mut removed, mut tombstones, mut bytes_removed) = (0u64, 0u64, 0u64);
    let (pos, next, count) = seg.for_each_record(|r| {
        let kept = keep(r);
        if !kept {
            removed += 1;
            tombstones += u64::from(r.value().is_none());
            bytes_removed += u64::from(r.frame_len());
        }
        decisions.push(kept);
    })?;
    let offsets_ok = if meta.sparse { next <= meta.footer.next_offset } else { next == meta.footer.next_offset };
    if !offsets_ok || count != meta.footer.record_count {
        let why = format!(
            "footer says {} records ending at offset {}, the data holds {count} ending at {next}",
            meta.footer.record_count, meta.footer.next_offset
        );
        return Err(seg.corruption(next, pos, CorruptionKind::BadFooter(why)));
    }
    if removed == 0 {
        return Ok(None);
    }

    let out = Compacted {
        meta: *meta,
        records_removed: removed,
        tombstones_removed: tombstones,
        bytes_removed,
        tmp_log: tmp_name(&log_path(dir, base)),
        tmp_index: tmp_name(&index_path(dir, base)),
        tmp_timeindex: tmp_name(&timeindex_path(dir, base)),
        base,
    };
    match out.write(io, seg, meta, interval, &decisions) {
        Ok(new_meta) => Ok(Some(Compacted { meta: new_meta, ..out })),
        Err(e) => {
            out.discard(io);
            Err(e)
        }
    }
}

impl Compacted {
    /// Pass 2: writes the kept records, the footer, the header and the index
    /// files. Returns the new segment's metadata.
    fn write(
        &self,
        io: &dyn Io,
        seg: &Segment,
        meta: &SealedMeta,
        interval: u32,
        decisions: &[bool],
    ) -> Result<SealedMeta> {
        let base = self.base;
        let path = &self.tmp_log;
        let file = io.create(path).ctx("create compacted segment", path)?;
        let mut w = ChunkWriter { io, file: &file, path, buf: Vec::with_capacity(WRITE_CHUNK), at: DATA_START as u64 };
        let mut index = SegmentIndex::new(interval);
        let (mut max_timestamp, mut kept) = (i64::MIN, 0u64);
        let mut out = BatchBuilder::default();
        let mut put = |out: &mut BatchBuilder, w: &mut ChunkWriter<'_>, max_timestamp: &mut i64| -> Result<()> {
            let new_pos = w.position();
            let (frame, first, frame_max) = out.finish();
            // A frame is written only if it reads back: one this build could
            // not decode would be records lost at the next read, silently now.
            if let Err(kind) = batch::decode(frame) {
                return Err(Error::Corruption { path: path.to_owned(), offset: first, position: new_pos as u64, kind });
            }
            index.observe((first - base) as u32, new_pos, *max_timestamp);
            *max_timestamp = (*max_timestamp).max(frame_max);
            w.put(frame)
        };
        // Pass 1 checked every frame of this immutable map; they are checked
        // again as they are read, which costs one checksum pass.
        let mut decisions = decisions.iter();
        let end = seg.area.published();
        let (mut pos, mut next) = (DATA_START, base);
        while pos < end {
            let frame = seg.frame_at(pos, next)?;
            let mut at = frame.records_start();
            for r in frame.records() {
                let len = r.frame_len() as usize;
                let keep = *decisions.next().expect("a decision per record");
                if !keep {
                    if !out.is_empty() {
                        put(&mut out, &mut w, &mut max_timestamp)?;
                    }
                } else {
                    out.push(frame.format(), &frame.bytes()[at..at + len], &r);
                    kept += 1;
                }
                at += len;
            }
            // A batch of the new file never spans two original frames.
            if !out.is_empty() {
                put(&mut out, &mut w, &mut max_timestamp)?;
            }
            pos += frame.len();
            next = frame.next_offset();
        }
        let data_end = w.position() as u64;
        w.flush()?;
        let (ob, tb) = (index.encode_offsets(base), index.encode_times(base));
        let footer = SegmentFooter {
            base_offset: base,
            data_end,
            record_count: kept,
            next_offset: meta.footer.next_offset,
            max_timestamp,
            index_crc: stored_crc(&ob),
            timeindex_crc: stored_crc(&tb),
        };
        io.write_all_at(&file, &footer.encode(), data_end).ctx("write compacted segment", path)?;
        // The header last, with a checkpoint that vouches for every record:
        // like a sealed segment's, for the day the footer is damaged.
        let mut head = [0u8; DATA_START];
        let header = SegmentHeader::new(base, meta.created_ms);
        header.encode_with_flags(&mut head, SegmentFlags::SPARSE);
        encode_checkpoint(&mut head, data_end);
        io.write_all_at(&file, &head, 0).ctx("write compacted segment", path)?;
        io.sync_all(&file).ctx("fsync compacted segment", path)?;
        for (p, bytes) in [(&self.tmp_index, &ob), (&self.tmp_timeindex, &tb)] {
            let f = io.create(p).ctx("create", p)?;
            io.write_all_at(&f, bytes, 0).ctx("write", p)?;
            io.sync_data(&f).ctx("fsync", p)?;
        }
        Ok(SealedMeta { footer, created_ms: meta.created_ms, sparse: true })
    }

    /// Renames the new files over the old ones: the index files first, the
    /// data file last. The caller fsyncs the directory.
    ///
    /// Until the data file's rename the old segment is intact (index files
    /// that do not match a footer are checked against the data, and rebuilt,
    /// never trusted); the rename replaces the whole data file atomically.
    /// An error means the data file was not replaced (as far as rename is
    /// atomic), and the temporary files that are left are removed.
    pub(crate) fn install(&self, dir: &Path, io: &dyn Io) -> Result<()> {
        let base = self.base;
        let steps = [
            (&self.tmp_index, index_path(dir, base)),
            (&self.tmp_timeindex, timeindex_path(dir, base)),
            (&self.tmp_log, log_path(dir, base)),
        ];
        for (from, to) in steps {
            if let Err(e) = io.rename(from, &to) {
                self.discard(io);
                return Err(Error::io("rename compacted segment file", to, e));
            }
        }
        Ok(())
    }

    /// Removes the temporary files that exist (errors are ignored: what is
    /// left is removed at the next open).
    pub(crate) fn discard(&self, io: &dyn Io) {
        for p in [&self.tmp_log, &self.tmp_index, &self.tmp_timeindex] {
            if p.exists() {
                let _ = io.remove_file(p);
            }
        }
    }
}

/// Sequential writes of record frames from `DATA_START` on, in chunks.
struct ChunkWriter<'a> {
    io: &'a dyn Io,
    file: &'a File,
    path: &'a Path,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    at: u64,
}

impl ChunkWriter<'_> {
    /// File position of the next byte put.
    fn position(&self) -> usize {
        self.at as usize + self.buf.len()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.buf.len() + bytes.len() > WRITE_CHUNK {
            self.flush()?;
        }
        if bytes.len() >= WRITE_CHUNK {
            self.io.write_all_at(self.file, bytes, self.at).ctx("write compacted segment", self.path)?;
            self.at += bytes.len() as u64;
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.io.write_all_at(self.file, &self.buf, self.at).ctx("write compacted segment", self.path)?;
            self.at += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}
