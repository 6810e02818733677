//! The writer side of the log: appending into the active segment and rolling.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::prefault::{self, Prefault};
use crate::error::{Error, Result};
use crate::record::{FrameFormat, Record};
use crate::segment::{self, ActiveSegment, ParkedSegment, PreparedSegment, SealedMeta};
use crate::sync::RwLockExt;

/// Bytes a writer appends to a newly active segment before it asks the
/// prefaulter for pages ahead of it.
const PREFAULT_AFTER: usize = 128 << 10;

/// The most a log that asks for prefaulting allocates of its active segment's
/// file ahead of its writer: as much as the segment already holds, up to
/// this. Only such a busy log does, and in proportion, so a quiet partition's
/// file stays at its first step and a store's partitions together hold at
/// most about twice their data.
const ALLOCATE_AHEAD: usize = 32 << 20;

/// Everything the single writer owns; guarded by `Shared::writer`.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    /// `None` for a read-only log, after close, or after a failed roll left no
    /// active segment (the next append creates one).
    pub(crate) active: Option<ActiveSegment>,
    /// The active segment while it is parked (`active` is then `None`).
    pub(crate) parked: Option<ParkedSegment>,
    pub(crate) closed: bool,
    /// How far the prefaulter was asked to go in the active segment; set,
    /// when a segment becomes active, to [`PREFAULT_AFTER`] bytes past where
    /// the writer starts in it.
    prefault_requested: usize,
}

impl WriterState {
    /// Writes `records` as one batch frame and publishes it. `len` is the
    /// frame's size ([`crate::record::batch::encoded_len`]), checked by the caller against
    /// the segment's room. Either the whole batch is written, or, if an error
    /// comes first (a roll that fails), nothing of it.
    pub(crate) fn append(
        &mut self,
        shared: &Shared,
        records: &[Record<'_>],
        len: usize,
        now: i64,
    ) -> Result<Range<u64>> {
        let start = shared.next_offset.load(std::sync::atomic::Ordering::Relaxed);
        if u64::MAX - start < records.len() as u64 {
            // Offsets would pass u64::MAX (never a record's offset): only a
            // log made of crafted files starts that close to the end.
            let first = shared.start_offset.load(std::sync::atomic::Ordering::Acquire);
            return Err(Error::OffsetOutOfRange { requested: u64::MAX, start: first, end: start });
        }
        self.unpark(shared)?;
        if self.active.is_none() {
            self.activate(shared, start, now)?;
        }
        self.make_room(shared, len, now)?;
        let active = self.active.as_mut().expect("an active segment");
        let fits = active.try_append_batch(shared.config.io.as_ref(), records, len, now)?;
        assert!(fits, "make_room left room for the batch");
        active.publish();
        shared.set_next_offset(active.next_offset());
        let pos = active.position();
        let Prefault { window, writable } = Prefault::for_durability(shared.config.durability);
        if self.prefault_requested == 0 {
            // Newly active: a log written to now and then (a partition among
            // thousands) never asks; a busy one does once it has written this much.
            self.prefault_requested = pos + PREFAULT_AFTER + window / 2;
        }
        if pos + window / 2 >= self.prefault_requested {
            // Never past what the file holds on disk: touching it would be
            // SIGBUS. The file is allocated well ahead first: pages faulted
            // in close to the end of the file cost more to write and, later,
            // to map for reading (docs/BENCHMARKS.md, "Allocation in steps").
            let allocated = active.allocate_ahead(shared.config.io.as_ref(), pos + pos.min(ALLOCATE_AHEAD));
            let upto = (pos + window).min(allocated);
            self.prefault_requested = pos + window;
            prefault::request(&active.seg.area, pos, upto, writable);
        }
        Ok(start..shared.next_offset.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Rolls the active segment if the next batch, of `len` bytes, must go
    /// to a new one: the segment is too old, has no room for it, or is of an
    /// older format (it was recovered after a crash of an older build).
    fn make_room(&mut self, shared: &Shared, len: usize, now: i64) -> Result<()> {
        let max_age = shared.config.segment_max_age;
        let active = self.active.as_mut().expect("an active segment");
        if active.format() != FrameFormat::Batch && active.record_count() == 0 {
            // An empty segment of an older format: replace it by one of this
            // format at the same base offset (two files cannot share it).
            let old = self.active.take().expect("an active segment");
            let base = old.base_offset();
            old.discard_empty(&shared.dir, shared.config.io.as_ref()).inspect_err(|e| shared.fail(e))?;
            shared.segments.write_locked().active = None;
            return self.install_new(shared, base, now);
        }
        let expired = active.record_count() > 0 && expired(active.created_ms, now, max_age);
        if expired || active.format() != FrameFormat::Batch || len > active.capacity_left() {
            self.roll(shared, now)?;
        }
        Ok(())
    }

    /// Gives the log an active segment for its first append since it was
    /// opened (or since a failed roll left none): the last sealed segment,
    /// reopened for appending if it can take more (a local, dense segment of
    /// this format, young enough, with room), else a new one at `next`.
    fn activate(&mut self, shared: &Shared, next: u64, now: i64) -> Result<()> {
        let last = {
            let set = shared.segments.read_locked();
            set.sealed
                .last()
                .copied()
                .filter(|m| m.footer.next_offset == next && !set.archived.contains_key(&m.footer.base_offset))
        };
        if let Some(meta) = last
            && self.reopen_sealed(shared, &meta, now)?
        {
            return Ok(());
        }
        self.install_new(shared, next, now)
    }

    /// Reopens the sealed last segment `meta` describes for appending, if it
    /// can take more records; whether it did. Readers that hold it keep
    /// reading it, and go on in the reopened segment at the same position.
    fn reopen_sealed(&mut self, shared: &Shared, meta: &SealedMeta, now: i64) -> Result<bool> {
        let base = meta.footer.base_offset;
        let path = segment::log_path(&shared.dir, base);
        let version = match segment::inspect_file(shared.config.io.as_ref(), &path, base)? {
            segment::OnDisk::Sealed(on_disk, version) if on_disk == *meta => version,
            _ => return Ok(false),
        };
        if !super::open::reusable(meta, version, &shared.config, now) {
            return Ok(false);
        }
        let (seg, _) = segment::open_sealed(shared.config.io.as_ref(), &shared.dir, meta, shared.config.index_interval_bytes)?;
        let index = seg.index.read_locked().clone();
        drop(seg);
        let (active, _) = ActiveSegment::recover(&shared.dir, base, &shared.config, Some((meta, index)))?;
        {
            let mut set = shared.segments.write_locked();
            set.sealed.pop();
            set.active = Some(Arc::clone(&active.seg));
        }
        drop(shared.cache_remove(base));
        self.active = Some(active);
        self.prefault_requested = 0;
        shared.note_active(true);
        Ok(true)
    }

    fn install_new(&mut self, shared: &Shared, base: u64, now: i64) -> Result<()> {
        let active =
            PreparedSegment::create(&shared.dir, base, now, &shared.config)?.install(&shared.dir, &shared.config);
        let active = active.inspect_err(|e| shared.fail(e))?;
        shared.segments.write_locked().active = Some(Arc::clone(&active.seg));
        self.active = Some(active);
        self.prefault_requested = 0;
        shared.note_active(true);
        Ok(())
    }

    /// Parks the active segment (see `Log::park`); whether there was one.
    pub(crate) fn park(&mut self, shared: &Shared) -> bool {
        let Some(active) = self.active.take() else { return false };
        let parked = active.park(Arc::clone(&shared.config.io));
        {
            let mut set = shared.segments.write_locked();
            set.parked = Some(Arc::clone(&parked.view));
            set.active = None;
        }
        self.parked = Some(parked);
        self.prefault_requested = 0;
        shared.note_active(false);
        true
    }

    /// Takes a parked segment up again: opens and maps its file.
    pub(crate) fn unpark(&mut self, shared: &Shared) -> Result<()> {
        let Some(parked) = self.parked.take() else { return Ok(()) };
        match parked.unpark(&shared.config) {
            Ok(active) => {
                let mut set = shared.segments.write_locked();
                set.active = Some(Arc::clone(&active.seg));
                set.parked = None;
                drop(set);
                self.active = Some(active);
                shared.note_active(true);
                Ok(())
            }
            Err(e) => {
                // Could not open or map it (out of descriptors or maps, say):
                // nothing changed, it stays parked.
                Err(e)
            }
        }
    }

    /// [`WriterState::roll`] on request: only if the active segment holds records.
    pub(crate) fn roll_now(&mut self, shared: &Shared, now: i64) -> Result<()> {
        self.unpark(shared)?;
        match &self.active {
            Some(a) if a.record_count() > 0 => self.roll(shared, now),
            _ => Ok(()),
        }
    }

    /// Seals the active segment and starts the next one. The next file is
    /// prepared first, so that a full disk fails the append without changing
    /// the log; a failure after that (fsync, rename) fails the log.
    fn roll(&mut self, shared: &Shared, now: i64) -> Result<()> {
        if shared.failed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(shared.failed_error());
        }
        let active = self.active.as_mut().expect("an active segment");
        active.publish();
        shared.set_next_offset(active.next_offset());
        let next = active.next_offset();
        let io = shared.config.io.as_ref();
        // Index files first, then the next segment's space: either can fail on
        // a full disk, and neither changes the log. Only sealing is fatal.
        let crcs = active.write_index_files(&shared.dir, io)?;
        let prepared = PreparedSegment::create(&shared.dir, next, now, &shared.config)?;
        let meta = active.seal(&shared.dir, io, crcs).inspect_err(|e| shared.fail(e))?;
        // Sealing fsynced every record of the segment.
        shared.mark_durable(meta.footer.next_offset);
        let old = self.active.take().expect("an active segment");
        let installed = prepared.install(&shared.dir, &shared.config).inspect_err(|e| shared.fail(e));
        {
            let mut set = shared.segments.write_locked();
            set.sealed.push(meta);
            set.active = installed.as_ref().ok().map(|a| Arc::clone(&a.seg));
        }
        old.finish();
        shared.note_active(installed.is_ok());
        self.active = Some(installed?);
        self.prefault_requested = 0;
        Ok(())
    }

    /// Seals the active segment (or removes it if empty) on close.
    pub(crate) fn close(&mut self, shared: &Shared) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if let Err(e) = self.unpark(shared) {
            // The segment stays as it is on disk, unsealed: the next open recovers it.
            self.parked = None;
            return Err(e);
        }
        if shared.failed.load(std::sync::atomic::Ordering::Acquire) {
            // Leave the files as they are: the next open recovers them. A roll
            // that failed may have left no active segment; report it all the same.
            if let Some(active) = self.active.take() {
                active.finish();
            }
            return Err(shared.failed_error());
        }
        let Some(mut active) = self.active.take() else { return Ok(()) };
        let io = shared.config.io.as_ref();
        if active.record_count() == 0 {
            shared.segments.write_locked().active = None;
            return active.discard_empty(&shared.dir, io);
        }
        let crcs = active.write_index_files(&shared.dir, io)?;
        let meta = active.seal(&shared.dir, io, crcs).inspect_err(|e| shared.fail(e))?;
        shared.mark_durable(meta.footer.next_offset);
        {
            let mut set = shared.segments.write_locked();
            set.sealed.push(meta);
            set.active = None;
        }
        active.finish();
        Ok(())
    }
}

fn expired(created_ms: i64, now: i64, max_age: Option<Duration>) -> bool {
    max_age.is_some_and(|age| now.saturating_sub(created_ms) >= age.as_millis() as i64)
}
