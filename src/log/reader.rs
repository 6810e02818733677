//! Readers: iterate records from an offset, following the log across segments.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Shared;
use crate::error::{CorruptionKind, Error, Result};
use crate::record::{self, OwnedRecord, RecordRef};
use crate::segment::{DATA_START, Segment};
use crate::sync::RwLockExt;

/// Reads records in offset order from a starting offset.
///
/// [`LogReader::next_record`] lends each record straight out of the segment's
/// memory map (no copy); the [`Iterator`] implementation copies each record
/// into an [`OwnedRecord`]. A reader sees only complete, published batches;
/// at the end of the log it returns `None`, and returns records again once
/// more are appended (use [`crate::Log::wait_for`] to wait). After an error
/// the iterator ends; `next_record` returns the same error again.
///
/// Each frame (a batch) is checked whole (checksum, layout, offsets) before
/// its first record is returned; its records then come without further
/// checks. A reader whose position falls behind the log's start offset
/// (retention deleted what it would read) gets [`Error::OffsetOutOfRange`]
/// when it moves on to its next frame.
///
/// Offsets strictly increase. In a compacted log they may have gaps (the
/// records compaction removed, see [`crate::Log::compact`]): a reader returns
/// the records that are there, in order, and skips the gaps.
#[derive(Debug)]
pub struct LogReader {
    shared: Arc<Shared>,
    seg: Option<Arc<Segment>>,
    /// File position of the next frame to decode in `seg`.
    pos: usize,
    /// The next record's offset is at least this (exactly this, unless
    /// compaction removed it).
    next: u64,
    /// Inside a decoded frame: the file position of its next record, the end
    /// of the frame, and how many of its records are left.
    rec_pos: usize,
    frame_end: usize,
    left: u32,
    /// Return only records below the log's durable watermark.
    durable_only: bool,
    fused: bool,
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>, offset: u64) -> Result<LogReader> {
        let start = shared.start_offset.load(Ordering::Acquire);
        let end = shared.next_offset.load(Ordering::SeqCst);
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { requested: offset, start, end });
        }
        // At the end of the log there may be no segment yet (none is active
        // until the first append): the reader finds it when it appears.
        let seg = match shared.segment_for(offset)? {
            Some(seg) => Some(seg),
            None if offset == end => None,
            None => return Err(Error::OffsetOutOfRange { requested: offset, start, end }),
        };
        let mut reader = LogReader::unplaced(shared, offset);
        if let Some(seg) = seg {
            reader.position_in(seg, offset)?;
        }
        Ok(reader)
    }

    /// A reader at `offset` that has no segment yet.
    fn unplaced(shared: Arc<Shared>, offset: u64) -> LogReader {
        LogReader {
            shared,
            seg: None,
            pos: DATA_START,
            next: offset,
            rec_pos: 0,
            frame_end: 0,
            left: 0,
            durable_only: false,
            fused: false,
        }
    }

    /// Positions the reader in `seg` (which holds `offset` in its range) at
    /// the first record at or after `offset`: from the index entry at or
    /// before it, then record by record.
    fn position_in(&mut self, seg: Arc<Segment>, offset: u64) -> Result<()> {
        self.place(seg, offset);
        self.skip_to(offset)
    }

    /// Positions the reader in `seg` at the index entry at or before
    /// `offset`, reading nothing yet.
    fn place(&mut self, seg: Arc<Segment>, offset: u64) {
        debug_assert!(offset >= seg.base_offset);
        let (pos, rel) = seg.index.read_locked().lookup((offset - seg.base_offset) as u32);
        self.pos = pos;
        self.next = seg.base_offset + u64::from(rel);
        self.left = 0;
        self.seg = Some(seg);
    }

    /// Makes the reader return only durable records: those below the log's
    /// durable watermark ([`crate::Log::durable_offset`]), which a power loss
    /// cannot take away. At the watermark it returns `None`, as at the end of
    /// the log, and returns records again once more are durable (use
    /// [`crate::Log::wait_for_durable`] to wait). A consumer that commits the
    /// offsets it processed, or a projection that acts on what it reads,
    /// should read this way, so that a crash never takes back something it
    /// acted on.
    #[must_use]
    pub fn durable_only(mut self) -> LogReader {
        self.durable_only = true;
        self
    }

    /// The offset of the record the next call returns: in a compacted log,
    /// the next record's offset is at least this (compaction may have removed
    /// the record with exactly this offset).
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The next record, borrowed from the map, or `None` at the current end of
    /// the log. Damaged data gives [`Error::Corruption`] with its position.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>> {
        if self.left == 0 {
            // Retention moved the start past this reader: what it would read
            // next is deleted (the map it holds stays valid, but the records
            // are gone).
            if self.next < self.shared.start_offset.load(Ordering::Acquire) {
                return Err(self.shared.out_of_range(self.next));
            }
            // The watermark lies at a batch boundary: a frame that starts
            // below it ends at or below it.
            if self.durable_only && self.next >= self.shared.commit.durable.load(Ordering::Acquire) {
                return Ok(None);
            }
            if !self.enter_frame()? {
                return Ok(None);
            }
        }
        Ok(Some(self.take_record()))
    }

    /// Returns the next record of the current frame (there is one).
    #[inline]
    fn take_record(&mut self) -> RecordRef<'_> {
        let seg = self.seg.as_ref().expect("positioned on a segment");
        let data = &seg.area.published_data()[..self.frame_end - DATA_START];
        let r = record::parse_trusted(seg.format, &data[self.rec_pos - DATA_START..], self.next);
        self.rec_pos += r.frame_len() as usize;
        self.next += 1;
        self.left -= 1;
        r
    }

    /// Decodes the next frame and positions the reader on its first record.
    /// `false` at the current end of the log.
    fn enter_frame(&mut self) -> Result<bool> {
        if !self.ready()? {
            return Ok(false);
        }
        let seg = self.seg.as_ref().expect("positioned on a segment");
        let frame = seg.frame_at(self.pos, self.next)?;
        self.rec_pos = self.pos + frame.records_start();
        self.frame_end = self.pos + frame.len();
        self.left = frame.count();
        self.next = frame.base_offset();
        self.pos = self.frame_end;
        Ok(true)
    }

    /// Moves from the index entry the reader was positioned at to the first
    /// record at or after `offset`, whatever the start offset.
    fn skip_to(&mut self, offset: u64) -> Result<()> {
        while self.next < offset {
            if self.left > 0 {
                self.take_record();
                continue;
            }
            if !self.ready()? {
                break;
            }
            let seg = self.seg.as_ref().expect("positioned on a segment");
            // Frames wholly before `offset` are stepped over by their headers;
            // the frame the reader stops in is checked whole when entered.
            let (len, next) = seg.frame_span_at(self.pos, self.next)?;
            if next <= offset {
                self.pos += len;
                self.next = next;
                continue;
            }
            let frame = seg.frame_at(self.pos, self.next)?;
            if frame.base_offset() >= offset {
                // Compaction removed the records from `next` up to this
                // frame's first: the reader is at `offset` (or past it, if it
                // moved on to a later segment), and this frame comes next.
                self.next = self.next.max(offset);
                break;
            }
            self.enter_frame()?;
        }
        Ok(())
    }

    /// Positions the reader on a published frame if there is one, moving on
    /// to the next segment when the current one is finished and read. `false`
    /// at the current end of the log.
    fn ready(&mut self) -> Result<bool> {
        loop {
            let Some(seg) = &self.seg else {
                // Positioned where no segment was: the one that holds the
                // position now (it may hold earlier records too).
                match self.shared.segment_for(self.next)? {
                    Some(seg) => {
                        let target = self.next;
                        self.position_in(seg, target)?;
                    }
                    None => return Ok(false),
                }
                continue;
            };
            // `finished` first: if set, the published end read after it is final.
            let finished = seg.area.is_finished();
            if self.pos < seg.area.published() {
                return Ok(true);
            }
            if !finished {
                return Ok(false);
            }
            if let Some((position, kind)) = &seg.tail_error {
                return Err(Error::Corruption {
                    path: seg.path.clone(),
                    offset: self.next,
                    position: *position,
                    kind: kind.clone(),
                });
            }
            // No record is left in the rest of a compacted segment's range.
            if let Some(end) = seg.sparse_end() {
                self.next = self.next.max(end);
            }
            match self.shared.segment_for(self.next)? {
                // The same segment mapped anew (its writer parked it, or took
                // it up again): the same bytes, so the same position.
                Some(next) if !Arc::ptr_eq(&next, seg) && next.base_offset == seg.base_offset => {
                    self.seg = Some(next);
                }
                Some(next) if !Arc::ptr_eq(&next, seg) => self.enter(next)?,
                _ => return Ok(false),
            }
        }
    }

    fn enter(&mut self, seg: Arc<Segment>) -> Result<()> {
        if seg.base_offset != self.next {
            return Err(Error::Corruption {
                path: seg.path.clone(),
                offset: self.next,
                position: 0,
                kind: CorruptionKind::Gap { expected: self.next, found: seg.base_offset },
            });
        }
        self.seg = Some(seg);
        self.pos = DATA_START;
        Ok(())
    }
}

impl Iterator for LogReader {
    type Item = Result<OwnedRecord>;

    fn next(&mut self) -> Option<Result<OwnedRecord>> {
        if self.fused {
            return None;
        }
        match self.next_record() {
            Ok(r) => r.map(|r| Ok(r.to_owned())),
            Err(e) => {
                self.fused = true;
                Some(Err(e))
            }
        }
    }
}

impl crate::Log {
    /// Reads the records at `offsets` (in any order), calling `visit(i,
    /// record)` for the record at `offsets[i]`, in ascending offset order
    /// (once per index for an offset given twice). An offset whose record
    /// compaction or retention by [`crate::Log::retain_sealed`] removed is
    /// skipped without a call. Every offset must lie in `start_offset()
    /// .. next_offset()`, or nothing is read and the call returns
    /// [`Error::OffsetOutOfRange`]; an error of `visit` ends the call and is
    /// returned.
    ///
    /// For offsets scattered over the log, such as the events of one stream
    /// in an event store, this is faster than a [`LogReader`] per offset:
    /// every record is located first (its segment and index entry), then the
    /// memory of all of them is touched together, so that their cache and TLB
    /// misses overlap instead of coming one after another, and only then is
    /// each frame checked and its records decoded. Consecutive offsets share
    /// one pass over their frames.
    pub fn read_at<E: From<Error>>(
        &self,
        offsets: &[u64],
        mut visit: impl FnMut(usize, RecordRef<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut order: Vec<(u64, usize)> = offsets.iter().copied().zip(0..).collect();
        if !order.is_sorted() {
            order.sort_unstable();
        }
        let (Some(&(lowest, _)), Some(&(highest, _))) = (order.first(), order.last()) else { return Ok(()) };
        let (start, end) = (self.start_offset(), self.next_offset());
        if lowest < start || highest >= end {
            let requested = if lowest < start { lowest } else { highest };
            return Err(Error::OffsetOutOfRange { requested, start, end }.into());
        }
        // Runs of consecutive offsets, each read by one reader from its first.
        let mut runs: Vec<(usize, LogReader)> = Vec::new();
        let mut current: Option<(Arc<Segment>, u64)> = None;
        for (k, &(offset, _)) in order.iter().enumerate() {
            if k > 0 && offset <= order[k - 1].0 + 1 {
                continue;
            }
            // Neighbouring offsets mostly share a segment.
            let seg = match &current {
                Some((seg, seg_end)) if offset >= seg.base_offset && offset < *seg_end => Arc::clone(seg),
                _ => {
                    let found = self.shared.segment_and_end_for(offset)?;
                    let (seg, seg_end) = found.ok_or_else(|| self.shared.out_of_range(offset))?;
                    current = Some((Arc::clone(&seg), seg_end));
                    seg
                }
            };
            let mut reader = LogReader::unplaced(Arc::clone(&self.shared), offset);
            reader.place(seg, offset);
            runs.push((k, reader));
        }
        touch(&runs, &order);
        let mut k = 0;
        for (first, mut reader) in runs {
            k = k.max(first);
            reader.skip_to(order[first].0)?;
            while let Some(record) = reader.next_record()? {
                let offset = record.offset();
                while k < order.len() && order[k].0 < offset {
                    k += 1;
                }
                if k == order.len() || order[k].0 > offset {
                    // Past the run's last offset (or a gap left it behind).
                    break;
                }
                while k < order.len() && order[k].0 == offset {
                    visit(order[k].1, record)?;
                    k += 1;
                }
                if k == order.len() || order[k].0 > offset + 1 {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Brings the frames the `runs` readers will read first into the cache and
/// the TLB, all together: a few passes, each following every reader one frame
/// further from its index entry towards the frame of its first offset
/// (`order[k].0` for the reader of run `k`) by the frames' unchecked headers,
/// then touching each line of that frame. The loads of one pass do not depend
/// on each other, so the CPU overlaps their misses. Only a hint: the readers
/// then check every frame they return.
fn touch(runs: &[(usize, LogReader)], order: &[(u64, usize)]) {
    const MAX_HOPS: usize = 16;
    let mut cursors: Vec<Option<usize>> = runs.iter().map(|(_, r)| Some(r.pos - DATA_START)).collect();
    let mut touched = 0u8;
    for _ in 0..MAX_HOPS {
        let mut moved = false;
        for ((k, reader), cursor) in runs.iter().zip(cursors.iter_mut()) {
            let (Some(at), Some(seg)) = (*cursor, &reader.seg) else { continue };
            let data = seg.area.published_data();
            *cursor = match record::peek_span(&data[at.min(data.len())..], seg.format) {
                Ok((len, _, next)) if next <= order[*k].0 => {
                    moved = true;
                    Some(at + len)
                }
                Ok((len, _, _)) => {
                    for line in (at..at + len).step_by(64).skip(1) {
                        touched ^= data[line];
                    }
                    None
                }
                Err(_) => None,
            };
        }
        if !moved {
            break;
        }
    }
    std::hint::black_box(touched);
}
