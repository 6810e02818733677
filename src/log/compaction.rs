//! Compaction: keep only the latest record of each key in the sealed
//! segments, drop tombstones once they are old enough, preserve offsets.
//!
//! The algorithm and why its order is crash-safe are in docs/DESIGN.md
//! ("Compaction"); the sparse segments it writes in docs/FORMAT.md. In short:
//!
//! 1. a map key → offset of its latest record is built over every sealed
//!    segment (the active segment is left out: its records may not be durable);
//! 2. the sealed segments are rewritten one at a time, oldest first, each
//!    keeping the records without a key, the latest record of each key, and
//!    the latest tombstones that are younger than the tombstone retention. A
//!    rewrite writes new files under temporary names and makes them durable,
//!    then renames them over the old ones and fsyncs the directory before the
//!    next segment is touched.
//!
//! Because the segments go oldest first, and each is replaced atomically and
//! durably before the next, a crash leaves every segment either old or new,
//! and a tombstone is only ever dropped once every older record of its key
//! is gone for good: a deleted key never comes back, and a key's latest
//! record is never dropped.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use super::{Log, SegmentInfo, Shared, now_ms, sealed_info};
use crate::error::{Error, IoContext, Result};
use crate::record::RecordRef;
use crate::segment::{self, SealedMeta, Segment};
use crate::sync::{MutexExt, RwLockExt};

/// A compaction policy: how long a tombstone is kept once it is the latest
/// record of its key.
///
/// A tombstone ([`crate::Record::tombstone`]) removes every earlier record of
/// its key at the next compaction, but stays itself for
/// `tombstone_retention` (measured from its timestamp), so that readers that
/// are behind see that the key was deleted. Readers that take longer than
/// that to read through the log can miss a deletion. The default is one day.
///
/// ```
/// use std::time::Duration;
/// let policy = annal::Compaction::default().with_tombstone_retention(Duration::from_secs(3600));
/// assert_eq!(policy.tombstone_retention(), Duration::from_secs(3600));
/// ```
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    tombstone_retention: Duration,
}

impl Default for Compaction {
    fn default() -> Compaction {
        Compaction { tombstone_retention: Duration::from_secs(86_400) }
    }
}

impl Compaction {
    /// Keeps a latest tombstone until its timestamp is older than `retention`.
    pub fn with_tombstone_retention(mut self, retention: Duration) -> Compaction {
        self.tombstone_retention = retention;
        self
    }

    /// How long a latest tombstone is kept.
    pub fn tombstone_retention(&self) -> Duration {
        self.tombstone_retention
    }
}

/// What one compaction did.
#[must_use]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionOutcome {
    /// Sealed segments looked at.
    pub segments_examined: usize,
    /// Sealed segments rewritten (the others had nothing to drop).
    pub segments_rewritten: usize,
    /// Segments that retention deleted while compaction ran: left alone.
    pub segments_skipped: usize,
    /// Distinct keys in the sealed segments.
    pub keys: usize,
    /// Records dropped: superseded records and expired tombstones.
    pub records_removed: u64,
    /// Of those, tombstones (superseded or expired).
    pub tombstones_removed: u64,
    /// Record bytes dropped.
    pub bytes_removed: u64,
}

/// What the last compaction of a log saw, to tell whether another would do
/// anything ([`Log::compaction_due_at`]). Kept in memory only: after an open,
/// the first compaction always runs.
#[derive(Debug, Default)]
pub(crate) struct CompactionMark {
    /// The end of the sealed segments (archived ones included) the last
    /// compaction covered; `None` before the first.
    sealed_end: Option<u64>,
    /// When the oldest tombstone the last compaction kept (for its age) becomes
    /// old enough to drop, in ms since the Unix epoch.
    next_tombstone_expiry: Option<i64>,
}

impl Log {
    /// Compacts the sealed segments now: see [`Log::compact_at`].
    pub fn compact(&self, policy: &Compaction) -> Result<CompactionOutcome> {
        self.compact_at(policy, now_ms())
    }

    /// Whether a compaction at `now_ms` could drop anything the last one
    /// (by this handle) kept: a segment has been sealed since, or a tombstone
    /// it kept has become older than the tombstone retention since. True
    /// before the first compaction. The store's cleanup pass uses it to
    /// leave unchanged partitions alone; [`Log::compact_at`] does not check it.
    ///
    /// Tombstones kept because segments were archived (see
    /// [`Log::compact_at`]) make it true only once new data is sealed.
    pub fn compaction_due_at(&self, now_ms: i64) -> bool {
        let mark = self.shared.compaction.locked();
        let Some(covered) = mark.sealed_end else { return true };
        mark.next_tombstone_expiry.is_some_and(|at| now_ms >= at) || self.shared.sealed_end() > covered
    }

    /// [`Log::compaction_due_at`] with the current time.
    pub fn compaction_due(&self) -> bool {
        self.compaction_due_at(now_ms())
    }

    /// Compacts the sealed segments: keeps every record without a key, the
    /// latest record of each key, and each key's latest tombstone until its
    /// timestamp is older than `now_ms` minus the policy's tombstone
    /// retention (milliseconds since the Unix epoch, the clock of record
    /// timestamps). Every other record of a sealed segment is dropped. The
    /// active segment is neither read nor changed: records there supersede
    /// nothing until it is sealed (by a roll).
    ///
    /// Offsets do not change: a compacted log has gaps, which readers skip
    /// ([`Log::get`] of a removed offset gives [`Error::Compacted`]). The
    /// start offset and the next offset do not change either.
    ///
    /// Each segment is replaced atomically and durably, oldest first, so a
    /// crash at any point leaves a log in which every key's latest record is
    /// still there and no deleted key has come back. Appends and reads go on
    /// meanwhile; readers inside a segment being replaced keep reading the
    /// old file. One compaction runs at a time (a second call waits).
    ///
    /// A failure before a segment's new file is renamed into place leaves
    /// the log as it was and usable; a failure of the directory fsync after
    /// the rename puts the log into the failed state, like any failed fsync.
    pub fn compact_at(&self, policy: &Compaction, now_ms: i64) -> Result<CompactionOutcome> {
        self.shared.compact(policy, now_ms, &mut |_| {})
    }

    /// [`Log::compact_at`], calling `progress` with each sealed segment as
    /// each of the two passes is done with it (the key scan, then the
    /// rewrite): twice per segment, for a progress bar. `progress` must not
    /// compact or archive this log: it runs under the lock that serializes
    /// compactions (docs/DESIGN.md, "Lock order").
    pub fn compact_with_progress(
        &self,
        policy: &Compaction,
        now_ms: i64,
        progress: &mut dyn FnMut(&SegmentInfo),
    ) -> Result<CompactionOutcome> {
        self.shared.compact(policy, now_ms, progress)
    }

    /// Rewrites the sealed local segments keeping only the records `keep`
    /// accepts (it sees each record of each sealed segment once, oldest
    /// first), and calls `progress` with each segment when it is done. The
    /// layer above decides what to drop (the event store's scavenging drops
    /// the events that deletion and stream metadata hide); the active segment
    /// is neither read nor changed.
    ///
    /// As [`Log::compact_at`]: offsets do not change (a removed offset is a
    /// gap readers skip, [`Log::get`] gives [`Error::Compacted`]), each
    /// segment is replaced atomically and durably, oldest first, appends and
    /// reads go on meanwhile, and it runs one at a time with compactions.
    /// `keep` and `progress` must not compact, archive or rewrite this log.
    pub fn retain_sealed(
        &self,
        keep: &mut dyn FnMut(&RecordRef<'_>) -> bool,
        progress: &mut dyn FnMut(&SegmentInfo),
    ) -> Result<CompactionOutcome> {
        self.shared.retain_sealed(keep, progress)
    }

    /// The sealed local segments a compaction would read (each of them
    /// twice): for a progress bar.
    pub fn compaction_backlog(&self) -> Vec<SegmentInfo> {
        self.shared.compaction_candidates().iter().map(sealed_info).collect()
    }
}

impl Shared {
    /// The end (next offset) of the last sealed segment, local or archived; 0 if none.
    fn sealed_end(&self) -> u64 {
        let set = self.segments.read_locked();
        set.sealed.last().map_or(0, |m| m.footer.next_offset)
    }

    /// The sealed local segments, oldest first, and whether any segment is archived.
    fn compaction_candidates_and_archived(&self) -> (Vec<SealedMeta>, bool) {
        let set = self.segments.read_locked();
        let local = set.sealed.iter().filter(|m| !set.archived.contains_key(&m.footer.base_offset)).copied();
        (local.collect(), !set.archived.is_empty())
    }

    fn compaction_candidates(&self) -> Vec<SealedMeta> {
        self.compaction_candidates_and_archived().0
    }

    fn compact(
        &self,
        policy: &Compaction,
        now: i64,
        progress: &mut dyn FnMut(&SegmentInfo),
    ) -> Result<CompactionOutcome> {
        let mut mark = self.begin_rewrite()?;
        // Archived segments are immutable objects: they are neither read nor
        // rewritten. While any exist, an older value of a key may live in one,
        // so no tombstone is dropped (dropping it would bring that value back).
        let sealed_end = self.sealed_end();
        let (sealed, any_archived) = self.compaction_candidates_and_archived();
        let mut outcome = CompactionOutcome { segments_examined: sealed.len(), ..CompactionOutcome::default() };

        // 1. The latest offset of every key in the sealed segments.
        let mut latest: HashMap<Box<[u8]>, u64> = HashMap::new();
        let mut present = Vec::with_capacity(sealed.len());
        for meta in &sealed {
            let Some(seg) = self.open_for_compaction(meta)? else {
                present.push(false);
                continue;
            };
            present.push(true);
            seg.for_each_record(|r| {
                if let Some(key) = r.key() {
                    match latest.get_mut(key) {
                        Some(offset) => *offset = r.offset(),
                        None => {
                            latest.insert(key.into(), r.offset());
                        }
                    }
                }
            })?;
            progress(&sealed_info(meta));
        }
        outcome.keys = latest.len();

        // 2. Rewrite, oldest first, each segment durable before the next.
        let retention = i64::try_from(policy.tombstone_retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = if any_archived { i64::MIN } else { now.saturating_sub(retention) };
        // The oldest tombstone kept for its age: when the next compaction may drop it.
        let mut oldest_kept_tombstone = i64::MAX;
        let mut keep = |r: &RecordRef<'_>| match r.key() {
            None => true,
            Some(key) if latest.get(key) != Some(&r.offset()) => false,
            Some(_) if r.value().is_some() => true,
            Some(_) if r.timestamp() < cutoff => false,
            Some(_) => {
                oldest_kept_tombstone = oldest_kept_tombstone.min(r.timestamp());
                true
            }
        };
        self.rewrite_sealed(&sealed, &present, &mut keep, progress, &mut outcome)?;
        *mark = CompactionMark {
            sealed_end: Some(sealed_end),
            next_tombstone_expiry: match oldest_kept_tombstone {
                i64::MAX => None,
                _ if any_archived => None,
                // Dropped once `ts < now - retention`.
                ts => Some(ts.saturating_add(retention).saturating_add(1)),
            },
        };
        Ok(outcome)
    }

    /// Rewrites each of `sealed` (those `present`), oldest first, keeping the
    /// records `keep` accepts, each segment durable before the next; adds
    /// what it did to `outcome`.
    fn rewrite_sealed(
        &self,
        sealed: &[SealedMeta],
        present: &[bool],
        keep: &mut dyn FnMut(&RecordRef<'_>) -> bool,
        progress: &mut dyn FnMut(&SegmentInfo),
        outcome: &mut CompactionOutcome,
    ) -> Result<()> {
        let io = self.config.io.as_ref();
        for (meta, &present) in sealed.iter().zip(present) {
            let seg = match present {
                true => self.open_for_compaction(meta)?,
                false => None,
            };
            let Some(seg) = seg else {
                outcome.segments_skipped += 1;
                progress(&sealed_info(meta));
                continue;
            };
            let interval = self.config.index_interval_bytes;
            let new = segment::write_compacted(&self.dir, io, &seg, meta, interval, &mut *keep)?;
            drop(seg);
            progress(&sealed_info(meta));
            let Some(new) = new else { continue };
            if !self.install_compacted(meta, &new)? {
                outcome.segments_skipped += 1;
                continue;
            }
            outcome.segments_rewritten += 1;
            outcome.records_removed += new.records_removed;
            outcome.tombstones_removed += new.tombstones_removed;
            outcome.bytes_removed += new.bytes_removed;
        }
        Ok(())
    }

    fn retain_sealed(
        &self,
        keep: &mut dyn FnMut(&RecordRef<'_>) -> bool,
        progress: &mut dyn FnMut(&SegmentInfo),
    ) -> Result<CompactionOutcome> {
        let _one = self.begin_rewrite()?;
        let sealed = self.compaction_candidates();
        let mut outcome = CompactionOutcome { segments_examined: sealed.len(), ..CompactionOutcome::default() };
        let present = vec![true; sealed.len()];
        self.rewrite_sealed(&sealed, &present, keep, progress, &mut outcome)?;
        Ok(outcome)
    }

    /// Takes the lock that serializes rewrites of sealed segments
    /// (compactions and [`Log::retain_sealed`]), once the log is known to be
    /// writable.
    fn begin_rewrite(&self) -> Result<MutexGuard<'_, CompactionMark>> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.dir.clone() });
        }
        let mark = self.compaction.locked();
        {
            let w = self.writer.locked();
            self.check_writable(&w)?;
        }
        Ok(mark)
    }

    /// Opens a sealed segment to compact it; `None` if retention has deleted
    /// it since compaction took its list of segments.
    fn open_for_compaction(&self, meta: &SealedMeta) -> Result<Option<Arc<Segment>>> {
        let still_there = |m: &SealedMeta| {
            let set = self.segments.read_locked();
            set.sealed.iter().any(|s| s == m)
        };
        if !still_there(meta) {
            return Ok(None);
        }
        match self.open_sealed(meta) {
            Ok(seg) => Ok(Some(seg)),
            Err(_) if !still_there(meta) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Puts a compacted segment in place of the one `old` describes: renames
    /// its files over the old ones and swaps the metadata readers look up,
    /// then fsyncs the directory. Returns `false` (and removes the new files)
    /// if retention deleted the segment meanwhile.
    fn install_compacted(&self, old: &SealedMeta, new: &segment::Compacted) -> Result<bool> {
        let io = self.config.io.as_ref();
        {
            // Serialized with appends, rolls and retention, which change the
            // segment set under the writer lock.
            let w = self.writer.locked();
            if let Err(e) = self.check_writable(&w) {
                new.discard(io);
                return Err(e);
            }
            // Renames and swap under the segments lock: a reader that looked
            // up the old metadata and fails to open the new file finds the new
            // metadata when it looks again (see `Shared::open_current`).
            let mut set = self.segments.write_locked();
            // Archived meanwhile: the archive holds it now; leave it whole.
            if set.archived.contains_key(&old.footer.base_offset) {
                new.discard(io);
                return Ok(false);
            }
            let Some(slot) = set.sealed.iter_mut().find(|m| *m == old) else {
                new.discard(io);
                return Ok(false);
            };
            new.install(&self.dir, io)?;
            *slot = new.meta;
        }
        // New readers open the new file; those that hold the old one keep
        // their map of it (its name is gone, its pages are not).
        let held = self.cache.locked().remove(old.footer.base_offset);
        drop(held);
        // Durable before the next segment is touched: that one may drop a
        // tombstone whose key's older records this rewrite removed.
        if let Err(e) = io.sync_dir(&self.dir).ctx("fsync directory", &self.dir) {
            self.fail(&e);
            return Err(e);
        }
        Ok(true)
    }
}
