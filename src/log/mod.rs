//! The partition log: ordered segments, one active segment, durability and
//! group commit, recovery on open, concurrent readers and tailing.

mod archived;
mod cache;
mod commit;
mod compaction;
mod flusher;
mod limits;
pub(crate) mod manifest;
mod open;
mod prefault;
mod reader;
mod retention;
pub(crate) mod start;
mod tailing;
mod writer;

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use archived::{ARCHIVE_CACHE_DIR_NAME, ArchiveOutcome, ArchivePolicy, ArchivedSegmentInfo, FETCH_CHUNK};
pub use compaction::{Compaction, CompactionOutcome};
pub use limits::SharedLimits;
pub use manifest::ARCHIVE_MANIFEST_FILE_NAME;
pub(crate) use manifest::read as read_manifest;
pub use reader::LogReader;
pub use retention::{Retention, RetentionOutcome};
pub use start::START_OFFSET_FILE_NAME;
pub(crate) use start::read as read_start_offset;

use crate::config::{Durability, LogConfig};
use crate::error::{Error, Result};
use crate::record::{OwnedRecord, Record, batch};
use crate::segment::{self, SealedMeta, Segment};
use crate::sync::{MutexExt, RwLockExt};
use writer::WriterState;

/// Name of the lock file that marks a directory as an annal log and keeps a
/// second writer out.
pub const LOCK_FILE_NAME: &str = "annal.lock";

/// Why `dir` cannot be a log directory to read, if it is not a directory:
/// "no such directory", or that it is a file.
pub(crate) fn not_a_directory(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => Some("it is a file, not a directory".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such directory".into()),
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// Why a directory without segment files or a lock file is not a log,
/// naming a topic store when it holds one (its `topics` directory).
pub(crate) fn no_log_files(dir: &Path) -> String {
    match dir.join(crate::topic::TOPICS_DIR_NAME).is_dir() {
        true => "no segment files and no lock file (it is a topic store)".into(),
        false => "no segment files and no lock file".into(),
    }
}

/// What opening the log found and did.
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment data files found.
    pub segments: usize,
    /// Base offset of the segment that had to be scanned because it was not
    /// sealed (the log was not closed cleanly). `None` after a clean close.
    pub scanned_segment: Option<u64>,
    /// Records found in the scanned segment.
    pub records_scanned: u64,
    /// Bytes of torn tail cut from the end of the scanned segment (read-only:
    /// bytes a writer would cut; nothing is changed).
    pub truncated_bytes: u64,
    /// Leftover temporary files removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Segment files below the recorded start offset, removed (retention had
    /// moved the start past them, and a crash or a reader kept them).
    pub removed_below_start: Vec<PathBuf>,
    /// Local copies of archived segments, removed (a crash came between
    /// recording the segment as archived and deleting its local files).
    pub removed_archived_copies: Vec<PathBuf>,
}

/// Summary of one segment, as [`Log::segments`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Start of its offset range: the offset of its first record, unless
    /// compaction removed that record.
    pub base_offset: u64,
    /// End of its offset range: the offset after its last record, or after
    /// the records compaction removed from its end.
    pub next_offset: u64,
    /// Records it holds: `next_offset - base_offset`, or fewer in a segment
    /// compacted by [`Log::compact`].
    pub records: u64,
    /// Bytes of record data (header and footer excluded).
    pub data_bytes: u64,
    /// Largest record timestamp, `i64::MIN` if empty.
    pub max_timestamp: i64,
    /// Whether the segment is sealed (immutable, with a footer).
    pub sealed: bool,
}

/// An append-only log in one directory.
///
/// One `Log` handle writes; it is `Send + Sync`, so many threads may append
/// through a shared reference (appends are serialized, fsyncs are shared).
/// Readers ([`Log::read_from`]) may live on other threads and outlive neither
/// correctness nor the handle: they keep what they read mapped.
///
/// ```
/// use annal::{Durability, Log, LogConfig, Record};
/// let dir = tempfile::tempdir()?;
/// let log = Log::open(dir.path(), LogConfig::default().with_durability(Durability::Never))?;
/// let first = log.append(&Record::new(b"hello").with_key(b"k"))?;
/// let rest = log.append_batch(&[Record::new(b"a"), Record::new(b"b")])?;
/// assert_eq!((first, rest), (0, 1..3));
///
/// let mut reader = log.read_from(1)?;
/// while let Some(record) = reader.next_record()? {
///     println!("{}: {:?}", record.offset(), record.value());
/// }
/// log.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    flusher: Option<flusher::Registration>,
    closed: bool,
}

/// State shared by the log handle, its readers and its flusher thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) read_only: bool,
    writer: Mutex<WriterState>,
    pub(crate) segments: RwLock<SegmentSet>,
    /// The sealed segments kept open (cache.rs).
    cache: Mutex<cache::SegmentCache>,
    next_offset: AtomicU64,
    start_offset: AtomicU64,
    /// Group commit and the durable watermark (commit.rs).
    commit: commit::GroupCommit,
    /// Limits shared with other logs (a store's partitions), if any.
    pub(crate) limits: Option<Arc<SharedLimits>>,
    /// Whether the writer holds an active segment open (counted in `limits`).
    active_open: AtomicBool,
    /// When the log was last appended to (ms since the Unix epoch), for
    /// `limits` to choose which log parks.
    last_use: AtomicU64,
    /// Held for the whole of a compaction (one at a time); what the last one saw.
    compaction: Mutex<compaction::CompactionMark>,
    failed: AtomicBool,
    failure: Mutex<Option<Arc<Error>>>,
    closed: AtomicBool,
    /// Readers waiting for appends or durability (tailing.rs).
    tail: tailing::Tailing,
    indexes_rebuilt: AtomicU64,
    report: RecoveryReport,
    /// The archive tier: the cache of fetched segments, one archival run and
    /// one fetch at a time (archived.rs).
    archive: archived::ArchiveTier,
    _lock: Option<File>,
}

/// The segments of the log: sealed ones by metadata, plus the active one.
#[derive(Debug, Default)]
pub(crate) struct SegmentSet {
    pub(crate) sealed: Vec<SealedMeta>,
    /// The writer's active segment, or the unsealed last segment of a
    /// read-only log.
    pub(crate) active: Option<Arc<Segment>>,
    /// The sealed segments (also in `sealed`) that live in the archive tier,
    /// by base offset: always a prefix of `sealed`.
    pub(crate) archived: std::collections::BTreeMap<u64, manifest::ManifestEntry>,
    /// The active segment while it is parked (`active` is then `None`).
    pub(crate) parked: Option<Arc<segment::ParkedView>>,
}

impl SegmentSet {
    /// The last, unsealed segment readers see: the active one, or a view of
    /// it while it is parked.
    fn last_unsealed(&self) -> Result<Option<Arc<Segment>>> {
        if let Some(a) = &self.active {
            return Ok(Some(Arc::clone(a)));
        }
        self.parked.as_ref().map(|p| p.segment()).transpose()
    }

    /// The base offset of the last, unsealed segment, if there is one.
    pub(crate) fn unsealed_base(&self) -> Option<u64> {
        self.active.as_ref().map(|a| a.base_offset).or(self.parked.as_ref().map(|p| p.base_offset))
    }
}

/// What [`Log::segments`] reports of a sealed segment.
fn sealed_info(m: &SealedMeta) -> SegmentInfo {
    SegmentInfo {
        base_offset: m.footer.base_offset,
        next_offset: m.footer.next_offset,
        records: m.footer.record_count,
        data_bytes: m.data_bytes(),
        max_timestamp: m.footer.max_timestamp,
        sealed: true,
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Log {
    /// Opens the log in `dir` for reading and writing, creating the directory
    /// and an empty log if needed, and recovering after a crash (see
    /// [`crate::RecoveryMode`]). Fails with [`Error::Locked`] if another handle
    /// has it open for writing.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        let shared = Arc::new(open::open(dir.as_ref(), config, false)?);
        if let Some(limits) = &shared.limits {
            limits.register(&shared);
            shared.note_active(shared.writer.locked().active.is_some());
            limits.enforce_active(&shared);
        }
        if shared.report.scanned_segment.is_some() {
            // What recovery found may be only in the page cache (a process
            // crash): make it durable, so that the durable watermark starts
            // at the end of the log.
            shared.sync_to(shared.next_offset.load(Ordering::SeqCst))?;
        }
        let flusher = match shared.config.durability {
            Durability::Interval(every) => Some(flusher::register(&shared, every)?),
            _ => None,
        };
        Ok(Log { shared, flusher, closed: false })
    }

    /// Opens an existing log without changing any file, not even a torn tail.
    /// Appends return [`Error::ReadOnly`]. A directory that holds no annal log
    /// gives [`Error::NotALog`].
    pub fn open_read_only(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        let shared = Arc::new(open::open(dir.as_ref(), config, true)?);
        if let Some(limits) = &shared.limits {
            // For its cache of sealed segments.
            limits.register(&shared);
        }
        Ok(Log { shared, flusher: None, closed: false })
    }

    /// Appends one record and returns its offset. Under [`Durability::Always`]
    /// it returns once the record is on disk.
    pub fn append(&self, record: &Record<'_>) -> Result<u64> {
        self.append_batch(std::slice::from_ref(record)).map(|r| r.start)
    }

    /// Appends records in order, as one atomic batch, and returns their
    /// offsets.
    ///
    /// The batch is stored whole or not at all: readers see all of it at once,
    /// and after a crash or a power loss at any moment recovery finds either
    /// every record of the batch or none (the batch is one frame under one
    /// checksum, in one segment; docs/DESIGN.md, "Atomic batches"). Every
    /// record is checked against the maximum record size, and the batch
    /// against what one segment holds, before anything is written:
    /// [`Error::RecordTooLarge`], [`Error::BatchTooLarge`].
    ///
    /// What an error means for the batch:
    /// - an error before its bytes are written (a full disk or any failure
    ///   while rolling to a new segment, a refused size, a failed or closed
    ///   log): nothing of the batch is stored, now or after a reopen;
    /// - under [`Durability::Always`], an error from the fsync that would make
    ///   it durable: the outcome is unknown, as in every database. The log
    ///   enters the failed state ([`Error::Failed`] from then on); after a
    ///   reopen the batch is there whole, or not at all.
    ///
    /// Offsets end below `u64::MAX`: a batch that would pass it fails with
    /// [`Error::OffsetOutOfRange`] (`requested: u64::MAX`) before anything is
    /// written. An empty batch writes nothing and returns an empty range.
    pub fn append_batch(&self, records: &[Record<'_>]) -> Result<Range<u64>> {
        let max = u64::from(self.shared.config.max_record_bytes());
        for r in records {
            let size = r.encoded_len().map_or(u64::MAX, |l| l as u64);
            if size > max {
                return Err(Error::RecordTooLarge { size, max });
            }
        }
        if self.shared.read_only {
            return Err(Error::ReadOnly { path: self.shared.dir.clone() });
        }
        let room = self.shared.config.segment_room();
        let len = match batch::encoded_len(records) {
            Some(len) if len as u64 <= room => len,
            None if records.is_empty() => {
                let w = self.shared.writer.locked();
                self.shared.check_writable(&w)?;
                let next = self.next_offset();
                return Ok(next..next);
            }
            too_large => {
                let size = too_large.map_or_else(
                    || records.iter().map(|r| r.encoded_len().unwrap_or(0) as u64).sum::<u64>() + 32,
                    |l| l as u64,
                );
                return Err(Error::BatchTooLarge { size, max: room });
            }
        };
        let now = now_ms();
        let range = {
            let mut w = self.shared.writer.locked();
            self.shared.check_writable(&w)?;
            w.append(&self.shared, records, len, now)?
        };
        self.shared.notify_appended();
        if let Some(limits) = &self.shared.limits {
            self.shared.last_use.store(now.max(0) as u64, Ordering::Relaxed);
            if limits.open_active() > limits.max_open_active() {
                limits.enforce_active(&self.shared);
            }
        }
        if self.shared.config.durability == Durability::Always {
            self.shared.sync_to(range.end)?;
        }
        Ok(range)
    }

    /// Seals the active segment now and starts a new one (if the active
    /// segment holds any record). Sealed segments are immutable: this is the
    /// way to make everything appended so far eligible for archival or
    /// retention. Like every roll, it makes the sealed records durable.
    pub fn roll(&self) -> Result<()> {
        if self.shared.read_only {
            return Err(Error::ReadOnly { path: self.shared.dir.clone() });
        }
        let mut w = self.shared.writer.locked();
        self.shared.check_writable(&w)?;
        w.roll_now(&self.shared, now_ms())
    }

    /// Closes the active segment's file and unmaps it until the log is next
    /// written to (an append, a roll, a close), keeping what it needs in
    /// memory: the log then holds no file descriptor and, once its readers
    /// let go, no map. Readers keep working (they map the segment's records
    /// read-only while they read them). Returns whether there was an active
    /// segment to park. Nothing changes on disk. A store parks its least
    /// recently used partitions to stay within its limits
    /// ([`crate::TopicStoreConfig::with_max_open_partitions`]); a single log has no
    /// need to.
    pub fn park(&self) -> Result<bool> {
        if self.shared.read_only {
            return Ok(false);
        }
        let mut w = self.shared.writer.locked();
        self.shared.check_writable(&w)?;
        Ok(w.park(&self.shared))
    }

    /// Makes every record appended so far durable, whatever the durability policy.
    pub fn sync(&self) -> Result<()> {
        if self.shared.read_only {
            return Ok(());
        }
        self.shared.sync_to(self.next_offset())
    }

    /// A reader positioned at `offset` (`start_offset() ..= next_offset()`).
    /// A reader at `next_offset()` sees records appended later.
    pub fn read_from(&self, offset: u64) -> Result<LogReader> {
        LogReader::new(Arc::clone(&self.shared), offset)
    }

    /// Reads the one record at `offset`. An offset whose record compaction
    /// removed gives [`Error::Compacted`]; one outside the log,
    /// [`Error::OffsetOutOfRange`].
    pub fn get(&self, offset: u64) -> Result<OwnedRecord> {
        let end = self.next_offset();
        if offset >= end {
            return Err(Error::OffsetOutOfRange { requested: offset, start: self.start_offset(), end });
        }
        let mut reader = self.read_from(offset)?;
        let found = match reader.next_record()? {
            Some(r) if r.offset() == offset => Some(r.to_owned()),
            // The reader skipped a gap: the first record after `offset` is later.
            Some(_) => return Err(Error::Compacted { offset }),
            None => None,
        };
        match found {
            Some(r) => Ok(r),
            // A gap at the end of a compacted segment, with no record after it yet.
            None if reader.next_offset() > offset => Err(Error::Compacted { offset }),
            None => Err(Error::OffsetOutOfRange { requested: offset, start: self.start_offset(), end }),
        }
    }

    /// The first offset whose record has a timestamp `>= timestamp_ms`, or
    /// `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        self.shared.offset_for_timestamp(timestamp_ms)
    }

    /// The first offset held by the log.
    pub fn start_offset(&self) -> u64 {
        self.shared.start_offset.load(Ordering::Acquire)
    }

    /// The offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.shared.next_offset.load(Ordering::SeqCst)
    }

    /// Waits until a record with offset `>= offset` exists, for at most
    /// `timeout`. Returns whether it does.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        self.shared.wait_for(&self.shared.next_offset, offset, timeout)
    }

    /// The durable watermark: every record below this offset is on disk,
    /// covered by a completed fsync, and survives a power loss. Records at
    /// or above it may be lost by one (never by a crash of the process).
    ///
    /// When it moves depends on the durability:
    /// - [`Durability::Always`]: with every append, before it returns;
    /// - [`Durability::Interval`]: at each tick of the flusher thread;
    /// - [`Durability::Never`]: only with [`Log::sync`], [`Log::roll`],
    ///   rolls to a new segment, and [`Log::close`].
    ///
    /// It starts, at open, at the end of what the log holds (recovery makes
    /// what it found durable). A read-only log holds it where the writer's
    /// last checkpoint on disk put it. It never moves back, and always lies
    /// at a batch boundary. The layers that act on records (consumer offsets,
    /// projections) read below it: see [`LogReader::durable_only`].
    ///
    /// ```
    /// use annal::{Durability, Log, LogConfig, Record};
    /// let dir = tempfile::tempdir()?;
    /// let log = Log::open(dir.path(), LogConfig::default().with_durability(Durability::Never))?;
    /// log.append_batch(&[Record::new(b"a"), Record::new(b"b")])?;
    /// assert_eq!((log.next_offset(), log.durable_offset()), (2, 0));
    /// assert_eq!(log.read_from(0)?.durable_only().count(), 0, "nothing is durable yet");
    /// log.sync()?;
    /// assert_eq!(log.durable_offset(), 2);
    /// assert_eq!(log.read_from(0)?.durable_only().count(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn durable_offset(&self) -> u64 {
        self.shared.commit.durable.load(Ordering::Acquire)
    }

    /// Waits until the record at `offset` is durable (the durable watermark
    /// is past it), for at most `timeout`. Returns whether it is. Under
    /// [`Durability::Never`] only a sync, a roll or a close by another thread
    /// moves the watermark.
    pub fn wait_for_durable(&self, offset: u64, timeout: Duration) -> bool {
        self.shared.wait_for(&self.shared.commit.durable, offset, timeout)
    }

    /// [`Log::wait_for`] (or, with `durable`, [`Log::wait_for_durable`])
    /// that also returns false as soon as `interrupted()` holds. The
    /// condition is checked with the log's waiting lock held, when the wait
    /// starts and each time it wakes: a thread that makes it hold and then
    /// calls [`Log::wake_waiters`] is never missed.
    pub(crate) fn wait_for_unless(
        &self,
        offset: u64,
        durable: bool,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> bool {
        let watermark = match durable {
            true => &self.shared.commit.durable,
            false => &self.shared.next_offset,
        };
        self.shared.wait_for_unless(watermark, offset, timeout, interrupted)
    }

    /// Wakes every thread waiting for a record ([`Log::wait_for`] and the
    /// like): each looks again at what it waits for, and goes on waiting
    /// unless that has come or its interruption holds.
    pub(crate) fn wake_waiters(&self) {
        self.shared.tail.wake_all();
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.shared.config
    }

    /// What opening the log found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// How many segment indexes were found missing or invalid and rebuilt from
    /// the data since the log was opened.
    pub fn indexes_rebuilt(&self) -> u64 {
        self.shared.indexes_rebuilt.load(Ordering::Relaxed)
    }

    /// Number of sealed segments the cache holds open (mapped) right now; at
    /// most [`LogConfig::with_max_open_segments`]. Readers may keep a few more alive
    /// while they read them.
    pub fn open_sealed_segments(&self) -> usize {
        self.shared.cache.locked().entries.len()
    }

    /// Whether the log refuses writes after a failure, and why: the first
    /// failure, as it was returned then.
    pub fn failure(&self) -> Option<Arc<Error>> {
        self.shared.failure.locked().clone()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let set = self.shared.segments.read_locked();
        let mut out: Vec<SegmentInfo> = set.sealed.iter().map(sealed_info).collect();
        drop(set);
        if let Some(info) = self.shared.active_info() {
            out.push(info);
        }
        out
    }

    /// The number of records readable from the start offset: every record
    /// of the segments at or after it and, in the segment holding it, those
    /// from the start on. Compaction's gaps are not counted. Reads only a
    /// compacted segment that holds the start offset (to count its records
    /// from there); every other figure comes from segment metadata.
    pub fn record_count(&self) -> Result<u64> {
        self.count_records(&self.segments(), self.start_offset())
    }

    /// [`Log::record_count`] over `segments` (from [`Log::segments`]) from `start`.
    pub(crate) fn count_records(&self, segments: &[SegmentInfo], start: u64) -> Result<u64> {
        let mut n = 0;
        for s in segments.iter().filter(|s| s.next_offset > start) {
            if s.base_offset >= start {
                n += s.records;
            } else if s.records == s.next_offset - s.base_offset {
                n += s.next_offset - start;
            } else {
                let mut reader = self.read_from(start)?;
                while let Some(r) = reader.next_record()? {
                    if r.offset() >= s.next_offset {
                        break;
                    }
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Seals the active segment (so the next open reads footers only) and
    /// releases the log. Readers keep working on what they can see. Dropping a
    /// `Log` closes it too, ignoring errors.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    /// Releases the log without sealing, syncing or cleaning up anything, as
    /// if the process had been killed: what was written stays in the page
    /// cache, nothing more reaches the disk through this handle, and the next
    /// open recovers. Meant for crash tests.
    pub fn abandon(mut self) {
        self.closed = true;
        // Unregistering waits for a sync of this log in progress.
        drop(self.flusher.take());
        let mut w = self.shared.writer.locked();
        w.closed = true;
        if let Some(active) = w.active.take() {
            active.finish();
        }
        w.parked = None;
        drop(w);
        self.shared.note_active(false);
        self.shared.closed.store(true, Ordering::SeqCst);
        {
            self.shared.tail.wake_all();
        }
        // The lock file handle lives in `Shared`, which readers may keep alive;
        // release the lock now so that the log can be reopened.
        if let Some(lock) = &self.shared._lock {
            let _ = lock.unlock();
        }
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        // Unregistering waits for a sync of this log in progress.
        drop(self.flusher.take());
        let result = {
            let mut w = self.shared.writer.locked();
            w.close(&self.shared)
        };
        self.shared.note_active(false);
        self.shared.closed.store(true, Ordering::SeqCst);
        {
            self.shared.tail.wake_all();
        }
        if let Some(lock) = &self.shared._lock {
            let _ = lock.unlock();
        }
        result
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

impl Shared {
    fn check_writable(&self, w: &WriterState) -> Result<()> {
        // A thread that panicked while changing the log's state may have left
        // it half changed: the log fails, as after a failed fsync.
        if self.writer.is_poisoned() || self.segments.is_poisoned() || self.commit.state.is_poisoned() {
            self.fail(&Error::Panicked { path: self.dir.clone(), during: "a write" });
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(self.failed_error());
        }
        if w.closed {
            return Err(Error::Closed { path: self.dir.clone() });
        }
        Ok(())
    }

    fn failed_error(&self) -> Error {
        let first = self.failure.locked().clone();
        // `failed` is set after `failure`, so the first failure is there.
        let first = first.unwrap_or_else(|| Arc::new(Error::Closed { path: self.dir.clone() }));
        Error::Failed { path: self.dir.clone(), first }
    }

    /// Puts the log into the failed state: no later write is accepted, and
    /// each refusal carries `error` (the first failure) as its cause.
    pub(crate) fn fail(&self, error: &Error) {
        let mut f = self.failure.locked();
        if f.is_none() {
            *f = Some(Arc::new(error.duplicate()));
        }
        self.failed.store(true, Ordering::Release);
    }

    fn set_next_offset(&self, next: u64) {
        self.next_offset.store(next, Ordering::SeqCst);
    }

    /// Records whether the writer holds an active segment open, counting it
    /// in the shared limits.
    pub(crate) fn note_active(&self, open: bool) {
        if self.active_open.swap(open, Ordering::AcqRel) != open
            && let Some(l) = &self.limits
        {
            l.count_active(open);
        }
    }

    pub(crate) fn active_open(&self) -> bool {
        self.active_open.load(Ordering::Acquire)
    }

    pub(crate) fn last_use(&self) -> u64 {
        self.last_use.load(Ordering::Relaxed)
    }

    /// Parks the active segment for the shared limits (see [`Log::park`]),
    /// unless the log is closed or failed. Whether it parked.
    pub(crate) fn park_idle(&self) -> bool {
        let mut w = self.writer.locked();
        if w.closed || self.failed.load(Ordering::Acquire) {
            return false;
        }
        w.park(self)
    }

    fn active_info(&self) -> Option<SegmentInfo> {
        if !self.read_only {
            // One lock: every figure comes from the same active segment.
            let w = self.writer.locked();
            if let Some(p) = &w.parked {
                return Some(SegmentInfo {
                    base_offset: p.base_offset(),
                    next_offset: p.next_offset(),
                    records: p.record_count(),
                    data_bytes: (p.position() - segment::DATA_START) as u64,
                    max_timestamp: p.max_timestamp(),
                    sealed: false,
                });
            }
            let a = w.active.as_ref()?;
            return Some(SegmentInfo {
                base_offset: a.base_offset(),
                next_offset: a.next_offset(),
                records: a.record_count(),
                data_bytes: (a.position() - segment::DATA_START) as u64,
                max_timestamp: a.max_timestamp(),
                sealed: false,
            });
        }
        // A read-only log's last segment ends the log and never changes.
        let seg = self.segments.read_locked().active.clone()?;
        let data_bytes = seg.area.published_data().len() as u64;
        let next_offset = self.next_offset.load(Ordering::SeqCst);
        // The frames were checked by the open that published them.
        let mut max_timestamp = i64::MIN;
        let _ = seg.for_each_frame(|_, f| max_timestamp = max_timestamp.max(f.max_timestamp()));
        Some(SegmentInfo {
            base_offset: seg.base_offset,
            next_offset,
            records: next_offset - seg.base_offset,
            data_bytes,
            max_timestamp,
            sealed: false,
        })
    }

    /// The error for a request of `offset`, which is outside the log.
    pub(crate) fn out_of_range(&self, offset: u64) -> Error {
        Error::OffsetOutOfRange {
            requested: offset,
            start: self.start_offset.load(Ordering::Acquire),
            end: self.next_offset.load(Ordering::SeqCst),
        }
    }

    fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let (sealed, active) = {
            let set = self.segments.read_locked();
            (set.sealed.clone(), set.last_unsealed()?)
        };
        let start = self.start_offset.load(Ordering::Acquire);
        for meta in sealed.iter().filter(|m| m.footer.max_timestamp >= ts && m.footer.next_offset > start) {
            let Some(seg) = self.segment_for(meta.footer.base_offset.max(start))? else { continue };
            if let Some(found) = search_time(&seg, ts, start)? {
                return Ok(Some(found));
            }
        }
        match active {
            Some(seg) => search_time(&seg, ts, start),
            None => Ok(None),
        }
    }
}

/// The first record in `seg` at or after offset `from` with a timestamp `>= ts`.
fn search_time(seg: &Segment, ts: i64, from: u64) -> Result<Option<u64>> {
    let (mut pos, rel) = {
        let index = seg.index.read_locked();
        index.lookup(index.lookup_time(ts))
    };
    let end = seg.area.published();
    // The offset due next (a compacted segment's frames may skip some).
    let mut offset = seg.base_offset + u64::from(rel);
    while pos < end {
        let frame = seg.frame_at(pos, offset)?;
        // A frame's largest timestamp lets the search skip it whole.
        if frame.max_timestamp() >= ts && frame.next_offset() > from {
            let found = frame.records().find(|r| r.timestamp() >= ts && r.offset() >= from);
            if let Some(r) = found {
                return Ok(Some(r.offset()));
            }
        }
        pos += frame.len();
        offset = frame.next_offset();
    }
    // The records after a read-only segment's published end are damaged, not absent.
    if let Some((position, kind)) = &seg.tail_error {
        return Err(seg.corruption(offset, *position as usize, kind.clone()));
    }
    Ok(None)
}
