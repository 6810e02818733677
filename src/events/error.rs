//! The event store's errors: one enum, each variant with the context to act
//! on it, and the engine's error (with its source) for what the log reports.

use std::fmt;

use uuid::Uuid;

/// What an append expects of a stream (KurrentDB's expected states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Whatever the stream's state.
    Any,
    /// The stream has no event.
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has this version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The version of a stream's last event, or none: what a
/// [`Error::WrongExpectedVersion`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CurrentVersion {
    /// The stream has no event.
    NoStream,
    /// The stream's last event has this version.
    Version(u64),
}

impl fmt::Display for CurrentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentVersion::NoStream => f.write_str("no stream"),
            CurrentVersion::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// An event store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream id is empty, longer than 1024 bytes, or named twice in one
    /// multi-stream append. Returned by appends and reads.
    #[error("invalid stream id {stream:?}: {reason}")]
    InvalidStreamId {
        /// The stream id (its first 100 bytes if longer).
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An event cannot be appended as it is (an empty or overlong type).
    /// Returned by appends; nothing is written.
    #[error("event {index} for stream {stream:?}: {reason}")]
    InvalidEvent {
        /// The stream it was for.
        stream: String,
        /// Its index in the call's events.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An event, or one call's events, are larger than the global log takes
    /// (`LogConfig::with_max_record_bytes`). Returned by appends; nothing is
    /// written.
    #[error("event {index} for stream {stream:?} takes {size} bytes, more than the largest allowed ({max})")]
    EventTooLarge {
        /// The stream it was for.
        stream: String,
        /// Its index in the call's events.
        index: usize,
        /// Its size in the log, in bytes.
        size: u64,
        /// The largest allowed.
        max: u64,
    },
    /// One append's events together take more than a segment of the global
    /// log holds (`LogConfig::with_segment_bytes`). Returned by appends;
    /// nothing is written.
    #[error("the events of one append take {size} bytes, more than a segment of the global log holds ({max})")]
    AppendTooLarge {
        /// Their size in the log, in bytes.
        size: u64,
        /// The most a segment holds.
        max: u64,
    },
    /// The stream is not in the state the append expected. Returned by
    /// appends; nothing is written.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, the stream is at {actual}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// What the stream is at.
        actual: CurrentVersion,
    },
    /// The stream was hard-deleted ([`crate::events::DeleteMode::Hard`]): it
    /// can be neither read nor written. Returned by appends, stream reads,
    /// `stream_version` and deletes.
    #[error("stream {stream:?} is deleted (hard): it can never be written or read again")]
    StreamDeleted {
        /// The stream.
        stream: String,
    },
    /// Some of an append's event ids were appended to the stream before, but
    /// not all of them as one earlier append: neither a retry nor new
    /// events. Returned by appends; nothing is written.
    #[error("event id {id} was already appended to stream {stream:?}, but not with this call's other events: {reason}")]
    IdempotencyConflict {
        /// The stream.
        stream: String,
        /// The first id already there.
        id: Uuid,
        /// How the call differs from the earlier append.
        reason: String,
    },
    /// The store's files or the engine under it failed (an I/O error, damage
    /// found, a failed log). The engine's error says what and where.
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// The event store's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// [`Error::InvalidStreamId`] if `stream` is not a valid stream id.
pub(crate) fn check_stream_id(stream: &str) -> Result<()> {
    match super::event::stream_id_problem(stream) {
        Some(reason) => Err(Error::InvalidStreamId { stream: shown(stream), reason }),
        None => Ok(()),
    }
}

/// A stream id shortened for error messages.
pub(crate) fn shown(stream: &str) -> String {
    if stream.len() <= 100 {
        return stream.to_owned();
    }
    let mut end = 100;
    while !stream.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &stream[..end])
}
