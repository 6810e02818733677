//! Retention: moving the log start offset and deleting the sealed segments
//! wholly below it, by explicit offset, by age and by total size.
//!
//! The order is what makes it crash-safe (see docs/DESIGN.md, "Retention"):
//! 1. the records below the new start are made durable (so a crash can never
//!    leave a start offset beyond the end of the log);
//! 2. the new start offset is written to the start-offset file (atomically,
//!    with a directory fsync) and published to readers;
//! 3. the segments wholly below it leave the segment set, and their files are
//!    deleted once no reader holds them.
//!
//! A crash after 2 leaves files below the start offset; opening the log
//! deletes them. A crash before 2 changes nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Log, Shared, now_ms, start};
use crate::error::{Error, Result};
use crate::segment::{self, SealedMeta};
use crate::sync::{MutexExt, RwLockExt};

/// A retention policy: which sealed segments may be deleted.
///
/// Only whole sealed segments are deleted, oldest first; the active segment
/// never is. A segment is old when its newest record is (its largest
/// timestamp). The size limit counts the record data of every segment,
/// the active one included.
///
/// ```
/// use std::time::Duration;
/// let policy = annal::Retention::default().with_max_age(Duration::from_secs(7 * 86_400)).with_max_bytes(10 << 30);
/// assert_eq!(policy.max_bytes(), Some(10 << 30));
/// ```
#[must_use]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
}

impl Retention {
    /// Deletes sealed segments whose newest record is older than `age`.
    pub fn with_max_age(mut self, age: Duration) -> Retention {
        self.max_age = Some(age);
        self
    }

    /// Deletes the oldest sealed segments while the log holds more than
    /// `bytes` of record data.
    pub fn with_max_bytes(mut self, bytes: u64) -> Retention {
        self.max_bytes = Some(bytes);
        self
    }

    /// The age limit, if any.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The size limit, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_bytes
    }

    /// Whether the policy keeps everything.
    pub fn is_unlimited(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// What one retention step did.
#[must_use]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionOutcome {
    /// The log start offset afterwards.
    pub start_offset: u64,
    /// Sealed segments removed from the log.
    pub segments_deleted: usize,
    /// Record data bytes in those segments.
    pub bytes_deleted: u64,
    /// Of those segments, how many a reader still held: their files go when
    /// the last reader lets go.
    pub deferred: usize,
    /// Of those segments, how many were archived: they left the archive
    /// manifest, and their objects were deleted from the archive store (an
    /// object that could not be deleted is left for the next archival run).
    pub archived_deleted: usize,
}

impl Log {
    /// Moves the log start offset to `offset` (like Kafka's DeleteRecords):
    /// records below it are no longer readable, and sealed segments wholly
    /// below it are deleted. The new start is recorded durably before anything
    /// is deleted. Readers positioned below it get
    /// [`Error::OffsetOutOfRange`] (with the new start) at their next read.
    ///
    /// Moving the start backwards does nothing; `offset` may be at most
    /// [`Log::next_offset`].
    pub fn delete_before(&self, offset: u64) -> Result<RetentionOutcome> {
        self.shared.advance_start(offset)
    }

    /// Applies `policy` once: moves the start offset past the sealed segments
    /// the policy lets go, as [`Log::delete_before`] does. The age is measured
    /// against `now_ms`, in milliseconds since the Unix epoch (record
    /// timestamps use the same clock).
    pub fn apply_retention_at(&self, policy: &Retention, now_ms: i64) -> Result<RetentionOutcome> {
        let target = self.shared.retention_target(policy, now_ms);
        self.shared.advance_start(target)
    }

    /// [`Log::apply_retention_at`] with the current time.
    pub fn apply_retention(&self, policy: &Retention) -> Result<RetentionOutcome> {
        self.apply_retention_at(policy, now_ms())
    }
}

impl Shared {
    /// The start offset `policy` allows: the end of the longest prefix of
    /// sealed segments that are too old or over the size limit.
    fn retention_target(&self, policy: &Retention, now: i64) -> u64 {
        let start = self.start_offset.load(Ordering::Acquire);
        if policy.is_unlimited() {
            return start;
        }
        let sealed: Vec<SealedMeta> = self.segments.read_locked().sealed.clone();
        let active_bytes = self.active_info().map_or(0, |a| a.data_bytes);
        let k = oldest_over_limits(&sealed, active_bytes, policy.max_age, policy.max_bytes, now);
        sealed[..k].last().map_or(start, |m| start.max(m.footer.next_offset))
    }

    /// Takes the files of a segment that has left the segment set off disk:
    /// now, or, if a reader still maps it, when the last holder lets go.
    /// Returns whether the deletion was deferred.
    pub(crate) fn retire_segment(&self, base: u64) -> std::io::Result<bool> {
        let held = self.cache.locked().remove(base);
        match held {
            Some(seg) => {
                let _ = seg.retired.set((self.dir.clone(), Arc::clone(&self.config.io)));
                // The last holder's drop deletes the files (maybe this one).
                Ok(Arc::strong_count(&seg) > 1)
            }
            None => segment::remove_segment_files(self.config.io.as_ref(), &self.dir, base).map(|()| false),
        }
    }

    /// Moves the start offset to `offset` and retires the segments below it.
    pub(crate) fn advance_start(&self, offset: u64) -> Result<RetentionOutcome> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.dir.clone() });
        }
        let end = self.next_offset.load(Ordering::SeqCst);
        if offset > end {
            return Err(self.out_of_range(offset));
        }
        let unchanged = |start| RetentionOutcome { start_offset: start, ..RetentionOutcome::default() };
        let start = self.start_offset.load(Ordering::Acquire);
        if offset <= start {
            return Ok(unchanged(start));
        }
        // 1. Durable first: the recorded start must never pass what a crash keeps.
        self.sync_to(offset)?;
        // 2. Record and publish the start, serialized with appends and rolls.
        let (removed, gone, manifest_written) = {
            let w = self.writer.locked();
            self.check_writable(&w)?;
            let start = self.start_offset.load(Ordering::Acquire);
            if offset <= start {
                return Ok(unchanged(start));
            }
            start::write(self.config.io.as_ref(), &self.dir, offset)?;
            self.start_offset.store(offset, Ordering::Release);
            let removed: Vec<SealedMeta> = {
                let mut set = self.segments.write_locked();
                let k = set.sealed.partition_point(|m| m.footer.next_offset <= offset);
                set.sealed.drain(..k).collect()
            };
            // Archived segments among them leave the manifest (still under the
            // writer lock, serialized with archival runs).
            let (gone, written) = self.drop_archived(&removed);
            (removed, gone, written)
        };
        // Then their cached copies and objects go.
        self.delete_archived(&gone);
        // 3. Delete, or leave the deletion to the last holder.
        let mut outcome = RetentionOutcome { start_offset: offset, ..RetentionOutcome::default() };
        let mut first_error = manifest_written.err();
        outcome.archived_deleted = gone.len();
        for meta in &removed {
            let base = meta.footer.base_offset;
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += meta.data_bytes();
            match self.retire_segment(base) {
                Ok(deferred) => outcome.deferred += usize::from(deferred),
                Err(e) => {
                    first_error.get_or_insert(Error::io("delete segment", segment::log_path(&self.dir, base), e));
                }
            }
        }
        // Files that could not be deleted are below the start offset: the
        // next open deletes them. The start has moved either way.
        match first_error {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }
}

/// How many of the oldest sealed segments a limit selects: the longest prefix
/// of `sealed` whose segments are older than `max_age` at `now` (by their
/// newest record), or must go for the rest, with `other_bytes` more, to fit in
/// `max_bytes` of record data. Retention and archival both choose with it.
pub(super) fn oldest_over_limits(
    sealed: &[SealedMeta],
    other_bytes: u64,
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    now: i64,
) -> usize {
    let mut total: u64 = sealed.iter().map(SealedMeta::data_bytes).sum::<u64>() + other_bytes;
    let cutoff = max_age.map(|age| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    let mut k = 0;
    for m in sealed {
        let too_old = cutoff.is_some_and(|c| m.footer.max_timestamp < c);
        let too_big = max_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            break;
        }
        total -= m.data_bytes();
        k += 1;
    }
    k
}
