//! Log configuration: a builder with documented defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::archive::ArchiveStore;
use crate::error::{Error, Result};
use crate::io::{Io, OsIo};
use crate::format::{DATA_START, FOOTER_LEN};

/// When appended bytes are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Never fsync on append; the OS writes data back when it likes. Sealing a
    /// segment, [`crate::Log::sync`] and [`crate::Log::close`] still fsync. A
    /// crash of the process loses nothing; a power loss loses what the OS had
    /// not written back.
    Never,
    /// A background thread fsyncs at this interval. A power loss loses at most
    /// about one interval of acknowledged appends.
    Interval(Duration),
    /// Every append or batch returns only once its bytes are on disk. Concurrent
    /// appenders share fsyncs (group commit).
    Always,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Never => f.write_str("never"),
            Durability::Interval(d) => write!(f, "interval({}ms)", d.as_millis()),
            Durability::Always => f.write_str("always"),
        }
    }
}

/// How recovery treats a bad record in the last (unsealed) segment.
///
/// A bad record inside a sealed segment, or inside data that an earlier fsync
/// made durable, is always reported as [`Error::Corruption`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A bad record after the last durable point of the last segment is a torn
    /// write from a crash: it and everything after it are cut, and the number
    /// of bytes cut is reported in [`crate::RecoveryReport`].
    #[default]
    TolerateTornTail,
    /// Any bad or non-zero bytes after the last valid record are an error; the
    /// log is not opened and nothing is changed.
    AbsoluteConsistency,
}

/// Configuration of one log. Start from [`LogConfig::default`] and change what
/// you need:
///
/// ```
/// use annal::{Durability, LogConfig};
/// let config = LogConfig::default()
///     .with_segment_bytes(64 << 20)
///     .with_durability(Durability::Never);
/// assert_eq!(config.segment_bytes(), 64 << 20);
/// ```
#[derive(Clone)]
#[must_use]
pub struct LogConfig {
    pub(crate) segment_bytes: u64,
    pub(crate) segment_max_age: Option<Duration>,
    pub(crate) index_interval_bytes: u32,
    max_record_bytes: Option<u32>,
    pub(crate) durability: Durability,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) max_open_segments: usize,
    pub(crate) io: Arc<dyn Io>,
    /// The archive tier: the store and the key prefix of this log's objects.
    pub(crate) archive: Option<(Arc<dyn ArchiveStore>, String)>,
    pub(crate) archive_cache_bytes: u64,
    /// Whether the log takes the `flock` on its own `annal.lock` (keeping its
    /// file open). A store's partitions do not: the store's lock covers them,
    /// and one file descriptor per partition less is what lets a store hold
    /// tens of thousands of partitions.
    pub(crate) own_lock: bool,
    /// Limits shared with other logs, if any.
    pub(crate) shared_limits: Option<Arc<crate::log::SharedLimits>>,
}

impl fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogConfig")
            .field("segment_bytes", &self.segment_bytes)
            .field("segment_max_age", &self.segment_max_age)
            .field("index_interval_bytes", &self.index_interval_bytes)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("durability", &self.durability)
            .field("recovery_mode", &self.recovery_mode)
            .field("max_open_segments", &self.max_open_segments)
            .field("archive", &self.archive.as_ref().map(|(store, prefix)| (store.name(), prefix)))
            .field("archive_cache_bytes", &self.archive_cache_bytes)
            .field("shared_limits", &self.shared_limits)
            .finish_non_exhaustive()
    }
}

impl Default for LogConfig {
    /// Defaults: 1 GiB segments, roll after 7 days, an index entry every 4 KiB,
    /// records up to 1 MiB, [`Durability::Always`],
    /// [`RecoveryMode::TolerateTornTail`], at most 64 sealed segments mapped,
    /// no archive store, a 1 GiB cache of archived segments.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            max_record_bytes: None,
            durability: Durability::Always,
            recovery_mode: RecoveryMode::TolerateTornTail,
            max_open_segments: 64,
            io: Arc::new(OsIo),
            archive: None,
            archive_cache_bytes: 1 << 30,
            own_lock: true,
            shared_limits: None,
        }
    }
}

/// Default maximum record size.
const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;

/// Smallest allowed segment size.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest allowed segment size: positions in the index are 32-bit.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

impl LogConfig {
    /// Size a segment file is preallocated to; a segment rolls when the next
    /// record does not fit. Between 4 KiB and 4 GiB - 1. Default 1 GiB.
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Roll the active segment once it is older than this (`None`: only roll
    /// when full). Default 7 days.
    pub fn with_segment_max_age(mut self, age: Option<Duration>) -> Self {
        self.segment_max_age = age;
        self
    }

    /// Bytes of records between two sparse index entries. Default 4096.
    pub fn with_index_interval_bytes(mut self, bytes: u32) -> Self {
        self.index_interval_bytes = bytes;
        self
    }

    /// Largest encoded record (header, key, headers and value) accepted.
    /// Must fit in a segment. Default 1 MiB, or what fits in a segment if that
    /// is less.
    pub fn with_max_record_bytes(mut self, bytes: u32) -> Self {
        self.max_record_bytes = Some(bytes);
        self
    }

    /// When appends are made durable. Default [`Durability::Always`].
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How recovery treats a damaged tail. Default [`RecoveryMode::TolerateTornTail`].
    pub fn with_recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Upper bound on sealed segments kept open (mapped) at once; the least
    /// recently used is closed first. Default 64, minimum 1.
    pub fn with_max_open_segments(mut self, n: usize) -> Self {
        self.max_open_segments = n;
        self
    }

    /// The file-system layer; replace it to inject faults in tests.
    pub fn with_io(mut self, io: Arc<dyn Io>) -> Self {
        self.io = io;
        self
    }

    /// The archive tier of this log: sealed segments moved there by
    /// [`crate::Log::archive_at`] are stored in `store` under
    /// `{key_prefix}/{base_offset:020}.seg` (for a topic partition,
    /// `{topic}/{partition}`, as [`crate::archive::segment_key`] names them),
    /// and reads of their offsets fetch them from it. Without a store, a log
    /// whose manifest names archived segments still opens, but reading those
    /// offsets fails with an [`crate::ArchiveErrorKind::Unreachable`] error.
    pub fn with_archive(mut self, store: Arc<dyn ArchiveStore>, key_prefix: impl Into<String>) -> Self {
        self.archive = Some((store, key_prefix.into()));
        self
    }

    /// Bytes of archived segments kept in the local cache
    /// (`<log dir>/archive-cache/`); the least recently used are evicted
    /// first. A segment larger than the bound is still fetched, alone.
    /// Default 1 GiB.
    pub fn with_archive_cache_bytes(mut self, bytes: u64) -> Self {
        self.archive_cache_bytes = bytes;
        self
    }

    /// Limits this log shares with others given the same `limits`: how many
    /// of them hold their active segment open, and how many sealed segments
    /// their caches keep mapped (see [`crate::SharedLimits`]). A store gives
    /// one to all its partitions. None by default: a log on its own holds its
    /// active segment open, and caches up to [`LogConfig::with_max_open_segments`].
    pub fn with_shared_limits(mut self, limits: Arc<crate::log::SharedLimits>) -> Self {
        self.shared_limits = Some(limits);
        self
    }

    /// The archive store and key prefix, if any.
    pub fn archive(&self) -> Option<(&Arc<dyn ArchiveStore>, &str)> {
        self.archive.as_ref().map(|(s, p)| (s, p.as_str()))
    }

    /// The configured segment size.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The configured durability.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The maximum encoded record size in force.
    pub fn max_record_bytes(&self) -> u32 {
        self.max_record_bytes.unwrap_or_else(|| {
            let room = self.segment_room().saturating_sub(crate::record::batch::BATCH_HEADER_LEN as u64);
            room.min(DEFAULT_MAX_RECORD_BYTES) as u32
        })
    }

    /// The most bytes of frames one segment holds: its size less the header
    /// area and the footer. A batch larger than this cannot be stored.
    pub(crate) fn segment_room(&self) -> u64 {
        self.segment_bytes.saturating_sub((DATA_START + FOOTER_LEN) as u64)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        // A record must fit in a segment as a batch of its own.
        let room = self.segment_room() - crate::record::batch::BATCH_HEADER_LEN as u64;
        let max = self.max_record_bytes();
        if u64::from(max) > room {
            return Err(Error::InvalidConfig(format!(
                "max_record_bytes {max} does not fit in a segment of {} bytes (at most {room})",
                self.segment_bytes
            )));
        }
        if (max as usize) < crate::record::batch::ENTRY_HEADER_LEN {
            return Err(Error::InvalidConfig(format!("max_record_bytes {max} is smaller than a record header")));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidConfig("index_interval_bytes must be at least 1".into()));
        }
        if let Some((_, prefix)) = &self.archive
            && !crate::archive::is_valid_key(prefix)
        {
            return Err(Error::InvalidConfig(format!("the archive key prefix {prefix:?} is not a valid archive key")));
        }
        if self.max_open_segments == 0 {
            return Err(Error::InvalidConfig("max_open_segments must be at least 1".into()));
        }
        if let Durability::Interval(d) = self.durability
            && d.is_zero()
        {
            return Err(Error::InvalidConfig("the durability interval must be non-zero".into()));
        }
        Ok(())
    }
}
