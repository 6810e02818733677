//! [`TopicStore`]: many topics in one directory, and the background retention thread.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::handle::{Gone, Topic};
use super::meta::{self, CleanupPolicy, TopicConfig, TopicMeta};
use super::{partition_dir_name, validate_topic_name};
use super::store_meta;
use crate::archive::{ArchiveStore, LocalDirArchive};
use crate::io::Io;
use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::log::SharedLimits;
use crate::log::{ArchiveOutcome, ArchivePolicy, CompactionOutcome, SegmentInfo};
use crate::log::{Log, RetentionOutcome, now_ms};
use crate::sync::{MutexExt, RwLockExt};

/// Name of the lock file in the store's root directory: locked by the one
/// process that has the store open for writing.
pub const STORE_LOCK_FILE_NAME: &str = "store.lock";
/// Name of the directory, inside the store's root, that holds one directory per topic.
pub const TOPICS_DIR_NAME: &str = "topics";

/// Configuration of a [`TopicStore`]: the log configuration every partition uses
/// (its segment size excepted: that is the topic's) and the retention interval.
///
/// ```
/// use std::time::Duration;
/// use annal::{Durability, LogConfig, TopicStoreConfig};
/// let config = TopicStoreConfig::default()
///     .with_log_config(LogConfig::default().with_durability(Durability::Never))
///     .with_retention_interval(Duration::from_secs(300));
/// assert_eq!(config.retention_interval(), Some(Duration::from_secs(300)));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TopicStoreConfig {
    log: LogConfig,
    retention_interval: Option<Duration>,
    archive_policy: Option<ArchivePolicy>,
    max_open_partitions: Option<usize>,
    max_cached_segments: Option<usize>,
}

/// The default [`TopicStoreConfig::with_max_open_partitions`]: half the process's
/// limit of open files (`ulimit -n`), between 64 and 4,096.
fn default_max_open_partitions() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    soft.map_or(4096, |n| (n / 2).clamp(64, 4096) as usize)
}

/// The default [`TopicStoreConfig::with_max_cached_segments`].
const DEFAULT_MAX_CACHED_SEGMENTS: usize = 1024;

impl TopicStoreConfig {
    /// At most this many partitions, over every topic, hold their active
    /// segment open at once (a file descriptor and a memory map each); the
    /// least recently written of the others are parked ([`crate::Log::park`])
    /// and taken up again by their next write. Default: half the process's
    /// limit of open files (`ulimit -n`), between 64 and 4,096. Writing to
    /// more partitions than this in turn costs an open and a map for each
    /// write (see docs/BENCHMARKS.md).
    pub fn with_max_open_partitions(mut self, n: usize) -> Self {
        self.max_open_partitions = Some(n);
        self
    }

    /// At most this many sealed segments, over every partition, are kept
    /// mapped by the partitions' caches (readers may hold a few more while
    /// they read them). Default 1,024.
    pub fn with_max_cached_segments(mut self, n: usize) -> Self {
        self.max_cached_segments = Some(n);
        self
    }

    /// The limit of partitions with an open active segment in force.
    pub fn max_open_partitions(&self) -> usize {
        self.max_open_partitions.unwrap_or_else(default_max_open_partitions)
    }

    /// The limit of cached sealed segments in force.
    pub fn max_cached_segments(&self) -> usize {
        self.max_cached_segments.unwrap_or(DEFAULT_MAX_CACHED_SEGMENTS)
    }

    /// The configuration of every partition log (durability, index interval,
    /// record size limit, open segments, I/O layer). Its segment size is
    /// ignored: each topic records its own. Default [`LogConfig::default`].
    pub fn with_log_config(mut self, config: LogConfig) -> Self {
        let archive = self.log.archive.take();
        self.log = config;
        if self.log.archive.is_none() {
            self.log.archive = archive;
        }
        self
    }

    /// The archive tier of every topic: [`TopicStore::run_archival`] (and the
    /// background thread, if [`TopicStoreConfig::with_retention_interval`] starts one)
    /// moves the sealed segments each topic's archive policy selects to
    /// `store`, under the keys [`crate::archive::segment_key`] names
    /// (`{topic}/{partition}/...`), and reads of archived offsets fetch them
    /// back. A topic's policy is its own ([`TopicConfig::with_archive`], recorded
    /// in its `topic.meta`) if it has one, else `policy`, the store's default
    /// (which may be [`ArchivePolicy::default`]: only topics with their own
    /// policy are archived).
    pub fn with_archive(mut self, store: Arc<dyn ArchiveStore>, policy: ArchivePolicy) -> Self {
        // The key prefix is set per partition when the partition log is opened.
        self.log = self.log.with_archive(store, "store");
        self.archive_policy = Some(policy);
        self
    }

    /// The default archival policy, if the store has an archive tier.
    pub fn archive_policy(&self) -> Option<ArchivePolicy> {
        self.archive_policy
    }

    /// Start a background thread in [`TopicStore::open`] that, at this interval
    /// (non-zero), runs archival (if the store has an archive tier), then
    /// every topic's retention policy, then compaction of the compacted
    /// topics' partitions that have something new. Default: no thread; call
    /// [`TopicStore::run_archival`], [`TopicStore::run_retention`] and
    /// [`TopicStore::run_compaction`] instead.
    pub fn with_retention_interval(mut self, every: Duration) -> Self {
        self.retention_interval = Some(every);
        self
    }

    /// The partition log configuration.
    pub fn log_config(&self) -> &LogConfig {
        &self.log
    }

    /// The retention interval, if a background thread is wanted.
    pub fn retention_interval(&self) -> Option<Duration> {
        self.retention_interval
    }

    fn validate(&self) -> Result<()> {
        if self.retention_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig("the retention interval must be non-zero".into()));
        }
        if self.max_open_partitions == Some(0) || self.max_cached_segments == Some(0) {
            return Err(Error::InvalidConfig("max_open_partitions and max_cached_segments must be at least 1".into()));
        }
        Ok(())
    }
}

/// What one store-wide pass (retention, archival or compaction) did to one
/// partition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionOutcome<O> {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// What the pass did.
    pub outcome: O,
}

/// What one retention pass did to one partition.
pub type PartitionRetention = PartitionOutcome<RetentionOutcome>;
/// What one archival run did to one partition.
pub type PartitionArchival = PartitionOutcome<ArchiveOutcome>;
/// What one compaction did to one partition.
pub type PartitionCompaction = PartitionOutcome<CompactionOutcome>;

/// A topic or partition that a store-wide pass (retention, archival or
/// compaction) could not process.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetentionFailure {
    /// The topic.
    pub topic: String,
    /// The partition, or `None` if the whole topic failed (for example it
    /// could not be opened).
    pub partition: Option<u32>,
    /// What went wrong.
    pub error: Error,
}

/// What a store-wide pass over the topics did: one entry per partition it
/// processed, and one per failure. A failure does not stop the pass; the
/// failing partition is left as it was (or, for compaction, with some of its
/// segments compacted) and is tried again by the next pass.
#[must_use]
#[derive(Debug)]
#[non_exhaustive]
pub struct PassReport<O> {
    /// The time ages were measured against (ms since the Unix epoch).
    pub now_ms: i64,
    /// Every partition processed, by topic name then partition number.
    pub partitions: Vec<PartitionOutcome<O>>,
    /// Every topic or partition that failed.
    pub failures: Vec<RetentionFailure>,
}

impl<O> PassReport<O> {
    /// Whether nothing failed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The sum of `figure` over every partition processed.
    fn sum(&self, figure: impl Fn(&O) -> u64) -> u64 {
        self.partitions.iter().map(|p| figure(&p.outcome)).sum()
    }
}

/// What a retention pass over every topic did ([`TopicStore::run_retention`]).
pub type RetentionReport = PassReport<RetentionOutcome>;
/// What an archival run over the store's topics did ([`TopicStore::run_archival`]).
pub type ArchivalReport = PassReport<ArchiveOutcome>;
/// What a compaction pass over the store's compacted topics
/// ([`CleanupPolicy::Compact`]) did ([`TopicStore::run_compaction`]).
pub type CompactionReport = PassReport<CompactionOutcome>;

impl RetentionReport {
    /// Segments deleted across every partition.
    pub fn segments_deleted(&self) -> usize {
        self.partitions.iter().map(|p| p.outcome.segments_deleted).sum()
    }

    /// Bytes of record data deleted across every partition.
    pub fn bytes_deleted(&self) -> u64 {
        self.sum(|o| o.bytes_deleted)
    }
}

impl ArchivalReport {
    /// Segments archived across every partition.
    pub fn segments_archived(&self) -> usize {
        self.partitions.iter().map(|p| p.outcome.segments_archived).sum()
    }

    /// Bytes of record data archived across every partition.
    pub fn bytes_archived(&self) -> u64 {
        self.sum(|o| o.bytes_archived)
    }
}

impl CompactionReport {
    /// Records removed across every partition.
    pub fn records_removed(&self) -> u64 {
        self.sum(|o| o.records_removed)
    }

    /// Record bytes removed across every partition.
    pub fn bytes_removed(&self) -> u64 {
        self.sum(|o| o.bytes_removed)
    }
}

/// A topic of the store: opened, or present on disk but not openable (its
/// `topic.meta` is damaged, a partition is locked, ...). The latter is tried
/// again by every [`TopicStore::topic`], which returns the error.
#[derive(Debug)]
enum Slot {
    Open(Arc<Topic>),
    Unloaded,
}

#[derive(Debug)]
struct StoreInner {
    root: PathBuf,
    topics_dir: PathBuf,
    config: TopicStoreConfig,
    read_only: bool,
    topics: RwLock<BTreeMap<String, Slot>>,
    /// Serializes creation, deletion, growth and loading of topics.
    admin: Mutex<()>,
    last_retention: Mutex<Option<Arc<RetentionReport>>>,
    last_archival: Mutex<Option<Arc<ArchivalReport>>>,
    last_compaction: Mutex<Option<Arc<CompactionReport>>>,
    retention_runs: AtomicU64,
    lock: Option<File>,
}

#[derive(Debug)]
struct RetentionThread {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

/// Many topics in one directory.
///
/// ```text
/// <root>/store.lock                      locked by the one writer
/// <root>/topics/<name>/topic.meta        partition count and configuration
/// <root>/topics/<name>/<00000..>/        one annal log per partition
/// ```
///
/// One `TopicStore` handle per directory writes (a second gets [`Error::StoreLocked`]);
/// it is `Send + Sync`, and its [`Topic`] handles may be used from many
/// threads.
#[derive(Debug)]
pub struct TopicStore {
    inner: Arc<StoreInner>,
    retention: Option<RetentionThread>,
    closed: bool,
}

impl TopicStore {
    /// Opens the store in `dir` for reading and writing, creating the
    /// directory and an empty store if needed, and opens every topic (each
    /// partition log recovers as [`Log::open`] does). Fails with
    /// [`Error::StoreLocked`] if another handle has the store open.
    ///
    /// Deletions and creations a crash interrupted are finished or undone. A
    /// topic that cannot be opened (a damaged `topic.meta`, a locked or
    /// damaged partition) does not fail the open: it is listed by
    /// [`TopicStore::topics`], and [`TopicStore::topic`] returns its error (and tries
    /// again each time, so a repaired topic becomes usable).
    pub fn open(dir: impl AsRef<Path>, mut config: TopicStoreConfig) -> Result<TopicStore> {
        config.validate()?;
        if config.log.shared_limits.is_none() {
            let limits = SharedLimits::new(config.max_open_partitions(), config.max_cached_segments());
            config.log = config.log.with_shared_limits(limits);
        }
        let root = dir.as_ref().to_owned();
        let io = Arc::clone(&config.log.io);
        if fs::metadata(&root).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::NotAStore { path: root, reason: "it is a file, not a directory".into() });
        }
        let created = !root.exists();
        io.create_dir_all(&root).ctx("create store directory", &root)?;
        let lock_path = root.join(STORE_LOCK_FILE_NAME);
        let lock = crate::io::open_rw(&lock_path, true).ctx("open lock file", &lock_path)?;
        if let Err(pid) = crate::io::lock_exclusive(&lock).ctx("lock", &lock_path)? {
            return Err(Error::StoreLocked { path: root, pid });
        }
        if created && let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            io.sync_dir(parent).ctx("fsync directory", parent)?;
        }
        let topics_dir = root.join(TOPICS_DIR_NAME);
        if !topics_dir.is_dir() {
            io.create_dir_all(&topics_dir).ctx("create topics directory", &topics_dir)?;
            io.sync_dir(&root).ctx("fsync directory", &root)?;
        }
        take_up_archive(&root, &mut config, Some(io.as_ref()))?;
        let topics = scan(&topics_dir, &config.log, false)?;
        let inner = Arc::new(StoreInner::new(root, topics_dir, config, false, topics, Some(lock)));
        let retention = match inner.config.retention_interval {
            Some(every) => Some(RetentionThread::start(Arc::clone(&inner), every)?),
            None => None,
        };
        Ok(TopicStore { inner, retention, closed: false })
    }

    /// Opens an existing store without changing any file: no lock is taken
    /// (a writer may be running), nothing a crash left is cleaned, partitions
    /// are opened with [`Log::open_read_only`], and every change (sends,
    /// topic creation, retention, ...) gives [`Error::ReadOnly`]. No retention
    /// thread is started. A directory without a `topics` directory gives
    /// [`Error::NotAStore`].
    pub fn open_read_only(dir: impl AsRef<Path>, mut config: TopicStoreConfig) -> Result<TopicStore> {
        config.validate()?;
        if config.log.shared_limits.is_none() {
            let limits = SharedLimits::new(config.max_open_partitions(), config.max_cached_segments());
            config.log = config.log.with_shared_limits(limits);
        }
        let root = dir.as_ref().to_owned();
        let topics_dir = root.join(TOPICS_DIR_NAME);
        if let Some(reason) = not_a_store(&root) {
            return Err(Error::NotAStore { path: root, reason });
        }
        take_up_archive(&root, &mut config, None)?;
        let topics = scan(&topics_dir, &config.log, true)?;
        let inner = Arc::new(StoreInner::new(root, topics_dir, config, true, topics, None));
        Ok(TopicStore { inner, retention: None, closed: false })
    }

    /// Where the store's archive is, as `store.meta` records it: the
    /// location ([`ArchiveStore::location`]) of the archive it was last
    /// opened with, if any.
    pub fn archive_location(&self) -> Result<Option<String>> {
        Ok(store_meta::read(&self.inner.root)?.archive_location)
    }

    /// The store's root directory.
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &TopicStoreConfig {
        &self.inner.config
    }

    /// Creates topic `name` with `config` and returns it. The topic appears
    /// whole or not at all, even across a crash: it is built in a hidden
    /// directory (partition logs, then `topic.meta`), which is then renamed
    /// into place. Fails with [`Error::InvalidTopicName`],
    /// [`Error::TopicExists`] or [`Error::InvalidConfig`].
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        self.inner.check_writable()?;
        validate_topic_name(name)?;
        config.validate()?;
        let log_config = self.inner.config.log.clone().with_segment_bytes(config.segment_bytes);
        log_config.validate()?;
        let _admin = self.inner.admin();
        if self.inner.topics.read_locked().contains_key(name) {
            return Err(Error::TopicExists { topic: name.to_owned() });
        }
        let dir = self.inner.topics_dir.join(name);
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(Error::InvalidConfig(format!("{} exists and is not a topic", dir.display())));
        }
        let io = self.inner.config.log.io.as_ref();
        let staging = self.inner.topics_dir.join(format!(".{name}~creating"));
        if fs::symlink_metadata(&staging).is_ok() {
            io.remove_dir_all(&staging).ctx("remove abandoned topic directory", &staging)?;
        }
        let built = (|| {
            io.create_dir_all(&staging).ctx("create topic directory", &staging)?;
            for p in 0..config.partitions {
                Log::open(staging.join(partition_dir_name(p)), log_config.clone())?.close()?;
            }
            meta::write(io, &staging, &TopicMeta::new(&config, now_ms()))?;
            io.rename(&staging, &dir).ctx("rename topic directory", &dir)?;
            io.sync_dir(&self.inner.topics_dir).ctx("fsync directory", &self.inner.topics_dir)
        })();
        if let Err(e) = built {
            if fs::symlink_metadata(&dir).is_err() {
                let _ = io.remove_dir_all(&staging);
            } else {
                // Renamed into place but maybe not durably: the topic exists.
                self.inner.topics.write_locked().insert(name.to_owned(), Slot::Unloaded);
            }
            return Err(e);
        }
        let loaded = Topic::load(name, &dir, &self.inner.config.log, false).map(Arc::new);
        let mut topics = self.inner.topics.write_locked();
        match loaded {
            Ok(topic) => {
                topics.insert(name.to_owned(), Slot::Open(Arc::clone(&topic)));
                Ok(topic)
            }
            Err(e) => {
                topics.insert(name.to_owned(), Slot::Unloaded);
                Err(e)
            }
        }
    }

    /// Topic `name`, or [`Error::UnknownTopic`]. A topic present on disk that
    /// could not be opened is tried again, and its error returned (for
    /// example [`Error::Corruption`] naming a damaged `topic.meta`).
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(Slot::Open(t)) = self.inner.topics.read_locked().get(name) {
            return Ok(Arc::clone(t));
        }
        let _admin = self.inner.admin();
        self.inner.topic_locked(name)
    }

    /// The names of every topic, sorted (including topics that could not be opened).
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics.read_locked().keys().cloned().collect()
    }

    /// Deletes topic `name` and every record in it. Handles to it still held
    /// elsewhere get [`Error::UnknownTopic`] from then on (sends in progress
    /// finish first). The topic directory is renamed to a hidden name (and
    /// the rename made durable) before its files are removed, so a crash
    /// leaves the topic either whole or gone; the next open removes what is
    /// left. A topic that could not be opened can be deleted too.
    ///
    /// Its archived segments are deleted from the archive too: the renamed
    /// directory keeps each partition's archive manifest (the record of which
    /// objects are the topic's) until their objects are deleted, and only
    /// then is it removed. If the archive cannot be reached (no archive
    /// configured or recorded, or a failed delete), the renamed directory
    /// stays, and the next open of the store that reaches the archive
    /// finishes the job; [`TopicDeletion::archived_left`] says how many are
    /// left meanwhile.
    pub fn delete_topic(&self, name: &str) -> Result<TopicDeletion> {
        self.inner.check_writable()?;
        let _admin = self.inner.admin();
        let slot = self
            .inner
            .topics
            .write_locked()
            .remove(name)
            .ok_or_else(|| Error::UnknownTopic { topic: name.to_owned() })?;
        if let Slot::Open(topic) = slot {
            for log in topic.retire(Gone::Deleted) {
                // Its files are about to go: no need to seal or sync them.
                if let Ok(log) = Arc::try_unwrap(log) {
                    log.abandon();
                }
            }
        }
        let io = self.inner.config.log.io.as_ref();
        let topics_dir = &self.inner.topics_dir;
        let dir = topics_dir.join(name);
        let tomb = (0u64..)
            .map(|n| topics_dir.join(format!(".{name}~deleted.{n}")))
            .find(|p| fs::symlink_metadata(p).is_err())
            .expect("an unused name");
        if let Err(e) = io.rename(&dir, &tomb) {
            self.inner.topics.write_locked().insert(name.to_owned(), Slot::Unloaded);
            return Err(Error::io("rename deleted topic directory", dir, e));
        }
        io.sync_dir(topics_dir).ctx("fsync directory", topics_dir)?;
        let deletion = purge_deleted_topic(&tomb, &self.inner.config.log)?;
        io.sync_dir(topics_dir).ctx("fsync directory", topics_dir)?;
        Ok(deletion)
    }

    /// Grows topic `name` to `new_count` partitions (more than it has; at
    /// most [`meta::MAX_PARTITIONS`]). The new partitions are created empty,
    /// then the count is recorded in `topic.meta`; sends wait meanwhile.
    ///
    /// **Keys move**: a key's partition is `fnv1a_64(key) % partitions`, so
    /// after growing, most keys go to another partition than before, and the
    /// records of one key are no longer all in one partition (order between
    /// the old and the new ones is lost). Grow before keyed data matters, or
    /// create a new topic and copy.
    pub fn add_partitions(&self, name: &str, new_count: u32) -> Result<()> {
        self.inner.check_writable()?;
        let _admin = self.inner.admin();
        self.inner.topic_locked(name)?.grow(new_count)
    }

    /// Applies every topic's retention policy now (see [`Topic::apply_retention_at`])
    /// and reports what each partition deleted.
    pub fn run_retention(&self) -> Result<RetentionReport> {
        self.run_retention_at(now_ms())
    }

    /// [`TopicStore::run_retention`], measuring ages against `now_ms` (milliseconds
    /// since the Unix epoch).
    pub fn run_retention_at(&self, now_ms: i64) -> Result<RetentionReport> {
        self.inner.check_writable()?;
        Ok(self.inner.run_retention(now_ms))
    }

    /// Runs archival over every topic now, each with its archive policy
    /// (its own, else the store's: see [`TopicStoreConfig::with_archive`]). Fails with
    /// [`Error::InvalidConfig`] if the store has no archive tier.
    pub fn run_archival(&self) -> Result<ArchivalReport> {
        self.run_archival_at(now_ms(), None, None, &mut |_, _, _| {})
    }

    /// [`TopicStore::run_archival`] measuring ages against `now_ms`, over one topic
    /// only if `topic` names one, with `policy` instead of every topic's own
    /// if given, calling `progress` after each segment archived (topic,
    /// partition, segment). `progress` runs under locks of the store and the
    /// partition: it must not call the store (docs/DESIGN.md, "Lock order").
    pub fn run_archival_at(
        &self,
        now_ms: i64,
        topic: Option<&str>,
        policy: Option<&ArchivePolicy>,
        progress: &mut dyn FnMut(&str, u32, &SegmentInfo),
    ) -> Result<ArchivalReport> {
        self.inner.check_writable()?;
        if let Some(name) = topic {
            self.topic(name)?;
        }
        self.inner.run_archival(now_ms, topic, policy, progress)
    }

    /// The segments an archival run at `now_ms` would archive (over one topic if
    /// `topic` names one, with `policy` instead of every topic's own if
    /// given): for a progress bar.
    pub fn archival_backlog_at(
        &self,
        now_ms: i64,
        topic: Option<&str>,
        policy: Option<&ArchivePolicy>,
    ) -> Result<Vec<SegmentInfo>> {
        self.inner.check_archive_tier()?;
        let mut out = Vec::new();
        for name in self.topics().into_iter().filter(|n| topic.is_none_or(|t| t == n)) {
            let t = self.topic(&name)?;
            if let Some(policy) = self.inner.archive_policy_of(&t, policy)? {
                out.extend(t.archival_backlog_at(&policy, now_ms));
            }
        }
        Ok(out)
    }

    /// Compacts every topic whose cleanup policy is [`CleanupPolicy::Compact`]
    /// now (see [`Topic::compact_at`]), each partition only if something was
    /// sealed since its last compaction or a tombstone it kept has expired
    /// ([`Log::compaction_due_at`]). Topics with the delete policy are left alone.
    pub fn run_compaction(&self) -> Result<CompactionReport> {
        self.run_compaction_at(now_ms(), None, &mut |_, _, _| {})
    }

    /// [`TopicStore::run_compaction`] measuring tombstone ages against `now_ms`,
    /// over one topic only if `topic` names one (which must then be a
    /// compacted topic, else [`Error::InvalidConfig`]; its partitions are
    /// compacted whether due or not), calling `progress` as each sealed
    /// segment is done with by each of compaction's two passes (topic,
    /// partition, segment). `progress` runs under locks of the store and the
    /// partition: it must not call the store (docs/DESIGN.md, "Lock order").
    pub fn run_compaction_at(
        &self,
        now_ms: i64,
        topic: Option<&str>,
        progress: &mut dyn FnMut(&str, u32, &SegmentInfo),
    ) -> Result<CompactionReport> {
        self.inner.check_writable()?;
        if let Some(name) = topic {
            let t = self.topic(name)?;
            if t.meta()?.cleanup_policy != CleanupPolicy::Compact {
                return Err(t.not_compacted());
            }
        }
        Ok(self.inner.run_compaction(now_ms, topic, topic.is_none(), progress))
    }

    /// The sealed segments a compaction pass would read, each twice (over
    /// one topic if `topic` names one): for a progress bar.
    pub fn compaction_backlog(&self, topic: Option<&str>) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for name in self.topics().into_iter().filter(|n| topic.is_none_or(|t| t == n)) {
            out.extend(self.topic(&name)?.compaction_backlog());
        }
        Ok(out)
    }

    /// The report of the background thread's latest compaction pass, if any.
    pub fn last_compaction(&self) -> Option<Arc<CompactionReport>> {
        self.inner.last_compaction.locked().clone()
    }

    /// The report of the background thread's latest archival pass, if any.
    pub fn last_archival(&self) -> Option<Arc<ArchivalReport>> {
        self.inner.last_archival.locked().clone()
    }

    /// The report of the background retention thread's latest pass, if it has made one.
    pub fn last_retention(&self) -> Option<Arc<RetentionReport>> {
        self.inner.last_retention.locked().clone()
    }

    /// How many passes the background retention thread has completed.
    pub fn retention_runs(&self) -> u64 {
        self.inner.retention_runs.load(Ordering::Acquire)
    }

    /// Stops the retention thread, closes every partition log (sealing its
    /// active segment) and releases the store. Handles to topics still held
    /// elsewhere get [`Error::Closed`]; a partition [`Log`] still held through
    /// [`Topic::partition`] stays open until it is dropped. Returns the first
    /// error met. Dropping a `TopicStore` closes it too, ignoring errors.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if let Some(thread) = self.retention.take() {
            thread.stop();
        }
        let _admin = self.inner.admin();
        let slots = std::mem::take(&mut *self.inner.topics.write_locked());
        let mut first_error = None;
        for slot in slots.into_values() {
            let Slot::Open(topic) = slot else { continue };
            for log in topic.retire(Gone::Closed) {
                if let Ok(log) = Arc::try_unwrap(log)
                    && let Err(e) = log.close()
                {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(lock) = &self.inner.lock {
            let _ = lock.unlock();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for TopicStore {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

impl StoreInner {
    fn new(
        root: PathBuf,
        topics_dir: PathBuf,
        config: TopicStoreConfig,
        read_only: bool,
        topics: BTreeMap<String, Slot>,
        lock: Option<File>,
    ) -> StoreInner {
        StoreInner {
            root,
            topics_dir,
            config,
            read_only,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            last_retention: Mutex::new(None),
            last_archival: Mutex::new(None),
            last_compaction: Mutex::new(None),
            retention_runs: AtomicU64::new(0),
            lock,
        }
    }

    fn admin(&self) -> MutexGuard<'_, ()> {
        self.admin.locked()
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.root.clone() });
        }
        Ok(())
    }

    /// Topic `name`, opening it if it is on disk but not open yet. The caller
    /// holds the admin lock.
    fn topic_locked(&self, name: &str) -> Result<Arc<Topic>> {
        match self.topics.read_locked().get(name) {
            None => return Err(Error::UnknownTopic { topic: name.to_owned() }),
            Some(Slot::Open(t)) => return Ok(Arc::clone(t)),
            Some(Slot::Unloaded) => {}
        }
        let topic = Arc::new(Topic::load(name, &self.topics_dir.join(name), &self.config.log, self.read_only)?);
        self.topics.write_locked().insert(name.to_owned(), Slot::Open(Arc::clone(&topic)));
        Ok(topic)
    }

    fn check_archive_tier(&self) -> Result<()> {
        match self.config.log.archive {
            Some(_) => Ok(()),
            None => Err(Error::InvalidConfig(format!(
                "the store {} has no archive tier (TopicStoreConfig::with_archive)",
                self.root.display()
            ))),
        }
    }

    /// The archive policy of `topic`: `over` if given, else the topic's own,
    /// else the store's default; `None` if it archives nothing.
    fn archive_policy_of(&self, topic: &Topic, over: Option<&ArchivePolicy>) -> Result<Option<ArchivePolicy>> {
        let policy = match over {
            Some(p) => Some(*p),
            None => topic.archive_policy()?.or(self.config.archive_policy),
        };
        Ok(policy.filter(|p| !p.is_none()))
    }

    fn run_archival(
        &self,
        now_ms: i64,
        only: Option<&str>,
        over: Option<&ArchivePolicy>,
        progress: &mut dyn FnMut(&str, u32, &SegmentInfo),
    ) -> Result<ArchivalReport> {
        self.check_archive_tier()?;
        Ok(self.each_partition(now_ms, only, |t| match self.archive_policy_of(t, over)? {
            Some(policy) => t.archival_results(&policy, now_ms, progress),
            None => Ok(Vec::new()),
        }))
    }

    /// Compacts the compacted topics (or only `only`); with `only_due`, only
    /// the partitions where it would change something.
    fn run_compaction(
        &self,
        now_ms: i64,
        only: Option<&str>,
        only_due: bool,
        progress: &mut dyn FnMut(&str, u32, &SegmentInfo),
    ) -> CompactionReport {
        self.each_partition(now_ms, only, |t| {
            if t.meta()?.cleanup_policy != CleanupPolicy::Compact {
                return Ok(Vec::new());
            }
            t.compaction_results(now_ms, only_due, progress)
        })
    }

    fn run_retention(&self, now_ms: i64) -> RetentionReport {
        self.each_partition(now_ms, None, |t| t.retention_results(now_ms))
    }

    /// Runs `pass` over every topic (or only topic `only`), by name, and sorts
    /// what it gave for each partition into outcomes and failures. A topic
    /// that could not be processed at all is one failure.
    fn each_partition<O>(
        &self,
        now_ms: i64,
        only: Option<&str>,
        mut pass: impl FnMut(&Topic) -> Result<Vec<(u32, Result<O>)>>,
    ) -> PassReport<O> {
        let mut report = PassReport { now_ms, partitions: Vec::new(), failures: Vec::new() };
        let names: Vec<String> = self.topics.read_locked().keys().cloned().collect();
        for name in names.into_iter().filter(|n| only.is_none_or(|o| o == n)) {
            let topic = {
                let _admin = self.admin();
                self.topic_locked(&name)
            };
            match topic.and_then(|t| pass(&t)) {
                Ok(results) => {
                    for (partition, result) in results {
                        let topic = name.clone();
                        match result {
                            Ok(outcome) => report.partitions.push(PartitionOutcome { topic, partition, outcome }),
                            Err(error) => {
                                report.failures.push(RetentionFailure { topic, partition: Some(partition), error });
                            }
                        }
                    }
                }
                // Deleted since the names were taken, or the store is closing.
                Err(Error::UnknownTopic { .. } | Error::Closed { .. }) => {}
                Err(error) => report.failures.push(RetentionFailure { topic: name, partition: None, error }),
            }
        }
        report
    }
}

/// The topics in `topics_dir`. A writer removes what an interrupted creation
/// or deletion left (hidden directories with a `~` in their name, which no
/// topic name has); anything else that is not a topic is left alone.
fn scan(topics_dir: &Path, log: &LogConfig, read_only: bool) -> Result<BTreeMap<String, Slot>> {
    let mut topics = BTreeMap::new();
    let mut removed = false;
    for entry in log.io.read_dir(topics_dir).ctx("list topics directory", topics_dir)? {
        let is_dir = entry.is_dir;
        let Some(name) = entry.name.to_str() else { continue };
        let path = topics_dir.join(name);
        if name.starts_with('.') && name.contains('~') {
            if !read_only && is_dir {
                // A deleted topic whose archived objects could not all be
                // deleted yet stays until an open that reaches the archive.
                let deletion = match name.contains("~deleted.") {
                    true => purge_deleted_topic(&path, log).ok(),
                    false => log.io.remove_dir_all(&path).ok().map(|()| TopicDeletion::default()),
                };
                removed |= deletion.is_some_and(|d| d.archived_left == 0);
            }
            continue;
        }
        if !is_dir || validate_topic_name(name).is_err() {
            continue;
        }
        let slot = match Topic::load(name, &path, log, read_only) {
            Ok(topic) => Slot::Open(Arc::new(topic)),
            Err(_) => Slot::Unloaded,
        };
        topics.insert(name.to_owned(), slot);
    }
    if removed {
        log.io.sync_dir(topics_dir).ctx("fsync directory", topics_dir)?;
    }
    Ok(topics)
}

impl RetentionThread {
    fn start(inner: Arc<StoreInner>, every: Duration) -> Result<RetentionThread> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = Arc::clone(&stop);
        let root = inner.root.clone();
        let handle = std::thread::Builder::new()
            .name("annal-retention".into())
            .spawn(move || {
                let (lock, cv) = &*stop2;
                loop {
                    // One interval, cut short by `stop` (set before or during the wait).
                    let guard = lock.locked();
                    let (stopped, _) =
                        cv.wait_timeout_while(guard, every, |stopped| !*stopped).unwrap_or_else(std::sync::PoisonError::into_inner);
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    // Archival first (what it moves, retention may then delete
                    // from the archive), compaction last (it skips what the
                    // other two removed).
                    if let Ok(report) = inner.run_archival(now_ms(), None, None, &mut |_, _, _| {}) {
                        *inner.last_archival.locked() = Some(Arc::new(report));
                    }
                    let report = inner.run_retention(now_ms());
                    *inner.last_retention.locked() = Some(Arc::new(report));
                    let report = inner.run_compaction(now_ms(), None, true, &mut |_, _, _| {});
                    *inner.last_compaction.locked() = Some(Arc::new(report));
                    inner.retention_runs.fetch_add(1, Ordering::AcqRel);
                }
            })
            .map_err(|e| Error::io("start retention thread", root, e))?;
        Ok(RetentionThread { stop, handle: Some(handle) })
    }

    fn stop(mut self) {
        let (lock, cv) = &*self.stop;
        *lock.locked() = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Makes the store remember its archive: a configured archive's location is
/// recorded in `store.meta` (by a writer, `io` given); with none configured,
/// the recorded one is taken up if it is a local directory that exists, with
/// [`ArchivePolicy::default`] (only topics with a policy of their own are
/// archived). A recorded archive that cannot be reached from here (an S3
/// bucket, whose credentials are not recorded) is left alone: reads of
/// archived offsets then fail with [`Error::Archive`], and
/// [`TopicStore::archive_location`] says where the archive is.
fn take_up_archive(root: &Path, config: &mut TopicStoreConfig, io: Option<&dyn Io>) -> Result<()> {
    let mut meta = store_meta::read_with(config.log.io.as_ref(), root)?;
    match config.log.archive() {
        Some((store, _)) => {
            let location = store.location();
            if let (Some(io), Some(location)) = (io, location)
                && meta.archive_location.as_deref() != Some(location.as_str())
            {
                meta.archive_location = Some(location);
                store_meta::write(io, root, &meta)?;
            }
        }
        None => {
            let dir = meta.archive_location.as_deref().and_then(|l| l.strip_prefix("file://")).map(PathBuf::from);
            if let Some(dir) = dir.filter(|d| d.is_dir()) {
                let archive = Arc::new(LocalDirArchive::with_io(dir, Arc::clone(&config.log.io))?);
                *config = std::mem::take(config).with_archive(archive, ArchivePolicy::default());
            }
        }
    }
    Ok(())
}

/// What deleting a topic did in the archive ([`TopicStore::delete_topic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicDeletion {
    /// Archived segments of the topic deleted from the archive.
    pub archived_deleted: usize,
    /// Archived segments left in the archive (it could not be reached): the
    /// next open of the store that reaches it deletes them.
    pub archived_left: usize,
}

/// Deletes the archived objects that the partitions of the deleted topic in
/// `tomb` list in their archive manifests, then removes `tomb`; if any could
/// not be deleted, `tomb` stays (with the manifests) for a later attempt.
fn purge_deleted_topic(tomb: &Path, log: &LogConfig) -> Result<TopicDeletion> {
    let mut keys = Vec::new();
    for entry in log.io.read_dir(tomb).ctx("list deleted topic directory", tomb)? {
        if entry.is_dir {
            let path = tomb.join(&entry.name);
            keys.extend(crate::log::manifest::read(log.io.as_ref(), &path)?.into_iter().map(|e| e.key));
        }
    }
    let mut deletion = TopicDeletion::default();
    if !keys.is_empty() {
        let Some((archive, _)) = log.archive() else {
            deletion.archived_left = keys.len();
            return Ok(deletion);
        };
        for key in &keys {
            match archive.delete(key) {
                Ok(()) => deletion.archived_deleted += 1,
                Err(_) => deletion.archived_left += 1,
            }
        }
        if deletion.archived_left > 0 {
            return Ok(deletion);
        }
    }
    log.io.remove_dir_all(tomb).ctx("remove deleted topic directory", tomb)?;
    Ok(deletion)
}

/// Why `root` holds no topic store, if it does not: no such directory, a
/// file, or no `topics` directory in it. What [`TopicStore::open_read_only`]
/// refuses, for callers that must not create a store either.
pub fn not_a_store(root: &Path) -> Option<String> {
    crate::log::not_a_directory(root)
        .or_else(|| (!root.join(TOPICS_DIR_NAME).is_dir()).then(|| "no topics directory".into()))
}
