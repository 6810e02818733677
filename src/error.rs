//! The one error type of annal, with the context that says what went wrong and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout annal.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a corrupt piece of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A record's length field is zero, too small, or runs past the end of the data.
    BadLength(u32),
    /// A record's stored CRC does not match the CRC of its bytes.
    BadChecksum {
        /// The CRC stored in the record.
        stored: u32,
        /// The CRC computed over the record's bytes.
        computed: u32,
    },
    /// A record's fields are inconsistent (magic byte, flags, inner lengths, header names).
    BadLayout(&'static str),
    /// A record carries another offset than its position in the log implies.
    UnexpectedOffset {
        /// The offset the position implies.
        expected: u64,
        /// The offset stored in the record.
        found: u64,
    },
    /// A file header (magic, version, checksum or base offset) is invalid.
    BadHeader(String),
    /// A sealed segment's footer is missing or invalid.
    BadFooter(String),
    /// A record of an event store's global log is not a valid event record.
    BadEvent(String),
    /// An event-store index run is invalid: its header, its block table, or
    /// one of its blocks (checksum or order).
    BadIndexRun(String),
    /// Damaged bytes in a part of the segment that was already durable.
    DamagedDurableData,
    /// Offsets are missing between two segments.
    Gap {
        /// The offset the previous segment ends at.
        expected: u64,
        /// The base offset of the next segment.
        found: u64,
    },
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::BadLength(len) => write!(f, "invalid record length {len}"),
            CorruptionKind::BadChecksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            CorruptionKind::BadLayout(what) => write!(f, "malformed record: {what}"),
            CorruptionKind::UnexpectedOffset { expected, found } => {
                write!(f, "record carries offset {found}, expected {expected}")
            }
            CorruptionKind::BadHeader(why) => write!(f, "bad file header: {why}"),
            CorruptionKind::BadFooter(why) => write!(f, "bad segment footer: {why}"),
            CorruptionKind::BadIndexRun(why) => write!(f, "bad index run: {why}"),
            CorruptionKind::BadEvent(why) => write!(f, "bad event record: {why}"),
            CorruptionKind::DamagedDurableData => {
                write!(f, "invalid record inside data that was already synced to disk")
            }
            CorruptionKind::Gap { expected, found } => {
                write!(f, "offsets {expected}..{found} are missing between segments")
            }
        }
    }
}

/// What kind of failure an archive store reported: what a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiveErrorKind {
    /// No object exists under the key.
    NotFound,
    /// The store could not be reached or did not answer in time (connection
    /// refused or reset, DNS failure, timeout). Retrying later may succeed.
    Unreachable,
    /// An object's size or checksum is not what was uploaded.
    Integrity,
    /// The key (or list prefix) is not a valid archive key; nothing was sent.
    InvalidKey,
    /// The byte range is reversed or reaches past the end of the object.
    InvalidRange,
    /// Anything else the store reported (refused credentials, a server error, ...).
    Other,
}

impl fmt::Display for ArchiveErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveErrorKind::NotFound => "object not found",
            ArchiveErrorKind::Unreachable => "store unreachable",
            ArchiveErrorKind::Integrity => "integrity check failed",
            ArchiveErrorKind::InvalidKey => "invalid key",
            ArchiveErrorKind::InvalidRange => "invalid range",
            ArchiveErrorKind::Other => "store error",
        })
    }
}

/// Every error annal returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed. Any call that touches files can
    /// return it: opening, appends (a full disk while growing or rolling a
    /// segment), syncs, reads of a log opened read-only, and the cleanup
    /// passes. After a failed fsync the log is failed ([`Error::Failed`]).
    #[error("{op} {path}: {source}")]
    Io {
        /// What annal was doing (`"open"`, `"fsync"`, `"preallocate"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Stored data failed a check: it is reported, never returned as data.
    /// Returned by [`crate::Log::open`] and [`crate::Log::open_read_only`]
    /// (recovery), by reads ([`crate::LogReader::next_record`],
    /// [`crate::Log::get`], [`crate::Log::offset_for_timestamp`]), by
    /// compaction and archival (which read what they rewrite or upload), and
    /// by `annal verify`.
    #[error("corruption in {path} at byte {position} (offset {offset}): {kind}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// The log offset at or after which the damage lies.
        offset: u64,
        /// Byte position of the damage within the file.
        position: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// A record is larger than the configured maximum; nothing was written.
    /// Returned by [`crate::Log::append`], [`crate::Log::append_batch`] and
    /// [`crate::Topic::send`] / [`crate::Topic::send_to`].
    #[error("record of {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge {
        /// Encoded size of the refused record.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A batch does not fit in one segment, so it could not be stored
    /// atomically; nothing was written. Split it, or use larger segments.
    /// Returned by [`crate::Log::append_batch`].
    #[error("batch of {size} bytes exceeds the {max} bytes a segment holds (a batch is stored whole in one segment)")]
    BatchTooLarge {
        /// Encoded size of the refused batch frame.
        size: u64,
        /// The most a segment of the configured size holds.
        max: u64,
    },
    /// An earlier failure (for example a failed fsync) put the log into a failed
    /// state; it accepts no more writes. Reopen it to recover. Returned by
    /// every write of a failed log: [`crate::Log::append`],
    /// [`crate::Log::append_batch`], [`crate::Log::sync`], [`crate::Log::roll`],
    /// [`crate::Log::close`], [`crate::Log::delete_before`], compaction and
    /// archival, and the [`crate::Topic`] calls that write to its partition.
    #[error("the log at {path} failed earlier and refuses writes: {first}")]
    Failed {
        /// The log directory.
        path: PathBuf,
        /// The first failure, as it was returned then (also
        /// [`std::error::Error::source`] of this error).
        #[source]
        first: std::sync::Arc<Error>,
    },
    /// A thread panicked while it held the log's writer, segment-set or
    /// group-commit state (for example in an [`crate::Io`] implementation,
    /// or during an fsync): the log is put into the failed state, and this
    /// is the first failure of every [`Error::Failed`] that follows. Reads
    /// keep working; reopen the log to write again.
    #[error("a thread panicked during {during} of the log at {path}")]
    Panicked {
        /// The log directory.
        path: PathBuf,
        /// What was interrupted (`"a write"`, `"a group-commit fsync"`).
        during: &'static str,
    },
    /// The requested offset is not in the log. Returned by
    /// [`crate::Log::read_from`], [`crate::Log::get`] and their
    /// [`crate::Topic`] counterparts.
    #[error("offset {requested} is out of range: the log holds offsets {start}..{end}")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The first offset in the log.
        start: u64,
        /// The next offset to be written.
        end: u64,
    },
    /// The offset lies within the log, but no record has it any more:
    /// compaction removed it (a later record has the same key, or it was a
    /// tombstone past its retention). See [`crate::Log::compact`]. Returned
    /// by [`crate::Log::get`].
    #[error("offset {offset} has no record: compaction removed it")]
    Compacted {
        /// The offset asked for.
        offset: u64,
    },
    /// The directory does not hold an annal log. Returned by
    /// [`crate::Log::open_read_only`] (no such directory, or no segment and
    /// no lock file), [`crate::Log::open`] given a file, the
    /// `annal verify`, `dump` and `stats`, and [`crate::TopicStore::topic`] when a
    /// topic's directory lacks its `topic.meta` or a partition.
    #[error("{path} is not an annal log: {reason}")]
    NotALog {
        /// The directory.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// Another handle or process holds the log open for writing. Returned
    /// by [`crate::Log::open`].
    #[error("the log at {path} is locked by another writer{}", holder(*pid))]
    Locked {
        /// The log directory.
        path: PathBuf,
        /// The process that holds the lock, as it wrote in the lock file.
        pid: Option<u32>,
    },
    /// The directory does not hold a topic store ([`crate::TopicStore::open_read_only`],
    /// or [`crate::TopicStore::open`] given a file).
    #[error("{path} is not an annal store: {reason}")]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// Another handle or process holds the topic store open for writing
    /// ([`crate::TopicStore::open`]).
    #[error("the store at {path} is locked by another writer{}", holder(*pid))]
    StoreLocked {
        /// The store's root directory.
        path: PathBuf,
        /// The process that holds the lock, as it wrote in the lock file.
        pid: Option<u32>,
    },
    /// The configuration is inconsistent. Returned by [`crate::Log::open`],
    /// [`crate::TopicStore::open`] and [`crate::TopicStore::create_topic`] before they
    /// create anything.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// No topic of that name exists in the store (or it was deleted while a
    /// handle to it was held). Returned by [`crate::TopicStore::topic`],
    /// [`crate::TopicStore::delete_topic`] and every call on a [`crate::Topic`]
    /// handle of a deleted topic.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The topic name asked for.
        topic: String,
    },
    /// A topic of that name already exists in the store. Returned by
    /// [`crate::TopicStore::create_topic`].
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The topic name.
        topic: String,
    },
    /// The topic has no partition with that number. Returned by every
    /// [`crate::Topic`] call that takes a partition.
    #[error("partition {partition} is out of range: topic {topic:?} has {partitions} partition(s)")]
    PartitionOutOfRange {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has (numbered from 0).
        partitions: u32,
    },
    /// A topic name breaks the naming rule (see
    /// [`crate::topic::validate_topic_name`]). Returned by
    /// [`crate::TopicStore::create_topic`] and [`crate::TopicStore::topic`].
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The refused name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A write was attempted on a log or store opened read-only
    /// ([`crate::Log::open_read_only`], [`crate::TopicStore::open_read_only`]):
    /// every append, sync, roll and cleanup pass.
    #[error("the log at {path} is open read-only")]
    ReadOnly {
        /// The log directory.
        path: PathBuf,
    },
    /// The log or its store was closed: every call on a [`crate::Topic`] (or a
    /// partition [`crate::Log`] obtained from one) after [`crate::TopicStore::close`].
    #[error("the log at {path} is closed")]
    Closed {
        /// The log directory.
        path: PathBuf,
    },
    /// An archive store (see [`crate::archive`]) failed or refused an operation.
    /// Local file-system failures of a directory store are [`Error::Io`] instead.
    /// Returned by the [`crate::ArchiveStore`] calls, archival
    /// ([`crate::Log::archive_at`], [`crate::TopicStore::run_archival`]) and reads of
    /// archived offsets.
    #[error("archive store {store}, key {key:?}: {kind}: {message}")]
    Archive {
        /// The store, as its `name()` describes it (`dir /var/archive`, `s3 bucket logs at ...`).
        store: String,
        /// The object key (or list prefix) involved; empty if none.
        key: String,
        /// What kind of failure it is.
        kind: ArchiveErrorKind,
        /// What went wrong, in words (with the underlying error's text, if any).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl Error {
    /// A copy of this error, to keep as the cause of a later one (the first
    /// failure of a log, see [`Error::Failed`]). Exact for every variant but
    /// two: an I/O error keeps its OS error code (or its kind and message),
    /// and an archive error's underlying error keeps its message only.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => {
                let source = match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                };
                Error::Io { op, path: path.clone(), source }
            }
            Error::Corruption { path, offset, position, kind } => {
                Error::Corruption { path: path.clone(), offset: *offset, position: *position, kind: kind.clone() }
            }
            Error::RecordTooLarge { size, max } => Error::RecordTooLarge { size: *size, max: *max },
            Error::BatchTooLarge { size, max } => Error::BatchTooLarge { size: *size, max: *max },
            Error::Failed { path, first } => Error::Failed { path: path.clone(), first: first.clone() },
            Error::OffsetOutOfRange { requested, start, end } => {
                Error::OffsetOutOfRange { requested: *requested, start: *start, end: *end }
            }
            Error::Compacted { offset } => Error::Compacted { offset: *offset },
            Error::Panicked { path, during } => Error::Panicked { path: path.clone(), during },
            Error::NotALog { path, reason } => Error::NotALog { path: path.clone(), reason: reason.clone() },
            Error::Locked { path, pid } => Error::Locked { path: path.clone(), pid: *pid },
            Error::NotAStore { path, reason } => Error::NotAStore { path: path.clone(), reason: reason.clone() },
            Error::StoreLocked { path, pid } => Error::StoreLocked { path: path.clone(), pid: *pid },
            Error::InvalidConfig(why) => Error::InvalidConfig(why.clone()),
            Error::UnknownTopic { topic } => Error::UnknownTopic { topic: topic.clone() },
            Error::TopicExists { topic } => Error::TopicExists { topic: topic.clone() },
            Error::PartitionOutOfRange { topic, partition, partitions } => {
                Error::PartitionOutOfRange { topic: topic.clone(), partition: *partition, partitions: *partitions }
            }
            Error::InvalidTopicName { name, reason } => Error::InvalidTopicName { name: name.clone(), reason },
            Error::ReadOnly { path } => Error::ReadOnly { path: path.clone() },
            Error::Closed { path } => Error::Closed { path: path.clone() },
            Error::Archive { store, key, kind, message, source } => Error::Archive {
                store: store.clone(),
                key: key.clone(),
                kind: *kind,
                message: message.clone(),
                source: source.as_ref().map(|e| e.to_string().into()),
            },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// The kind of an [`Error::Archive`]; `None` for every other error.
    pub fn archive_kind(&self) -> Option<ArchiveErrorKind> {
        match self {
            Error::Archive { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Adds a path and an operation name to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

/// " (process N)", naming the holder of a lock in [`Error::Locked`] and
/// [`Error::StoreLocked`], or nothing if it is not known.
fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) if pid == std::process::id() => format!(" (process {pid}: this one)"),
        Some(pid) => format!(" (process {pid})"),
        None => String::new(),
    }
}
