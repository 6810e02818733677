//! # annal
//!
//! An embeddable, append-only, segmented log storage engine: a partition log
//! that writes length-prefixed, CRC-checked records into memory-mapped segment
//! files with sparse offset and time indexes.
//!
//! ```
//! use annal::{Durability, Log, LogConfig, Record};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Log::open(dir.path(), LogConfig::default().with_durability(Durability::Always))?;
//! let offset = log.append(&Record::new(b"order placed").with_key(b"order-17"))?;
//! assert_eq!(log.get(offset)?.value.as_deref(), Some(&b"order placed"[..]));
//! log.close()?;
//!
//! // Reopening a cleanly closed log reads segment footers only.
//! let log = Log::open(dir.path(), LogConfig::default())?;
//! assert_eq!(log.next_offset(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format is specified in `docs/FORMAT.md`; the concurrency,
//! durability and recovery design in `docs/DESIGN.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]
// The lints chosen beyond clippy's defaults: a library never prints, exits
// or leaves debugging or unfinished code behind, and outside tests says why
// a value cannot be missing (`expect` with the reason) instead of `unwrap`.
#![warn(
    clippy::dbg_macro,
    clippy::todo,
    clippy::unimplemented,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    clippy::semicolon_if_nothing_returned,
    clippy::redundant_closure_for_method_calls,
    clippy::explicit_iter_loop,
    clippy::manual_let_else,
    clippy::needless_pass_by_ref_mut
)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod archive;
pub mod io;

/// Declares a module that is part of the engine's insides: private to the
/// crate, unless the `internals` feature (which the command-line tool, the
/// fuzz targets and the tests turn on) makes it public, and even then hidden
/// from the documentation. Nothing in it is a stable API.
macro_rules! internals {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        pub(crate) mod $name;
    )*};
}

internals!(config, durable, envelope, error, format, fuzzing, index, inspect, log, record, segment, sync, topic);
// After the macro, which their modules use for their own insides.
pub mod consumer;
pub mod es;
pub mod events;
mod mmap;

pub use archive::{ArchiveStore, LocalDirArchive, ObjectDigest, ObjectMeta};
pub use config::{Durability, LogConfig, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, RecoveryMode};
pub use error::{ArchiveErrorKind, CorruptionKind, Error, Result};
pub use io::{Io, OsIo};
pub use log::{
    ArchiveOutcome, ArchivePolicy, ArchivedSegmentInfo, Compaction, CompactionOutcome, Log, LogReader, RecoveryReport,
    Retention, RetentionOutcome, SegmentInfo, SharedLimits,
};
pub use record::{Header, OwnedRecord, Record, RecordRef};
pub use topic::{
    ArchivalReport, CleanupPolicy, CompactionReport, DEFAULT_TOMBSTONE_RETENTION, DEFAULT_TOPIC_SEGMENT_BYTES,
    MAX_PARTITIONS, MAX_TOPIC_NAME_LEN, PartitionArchival, PartitionCompaction, PartitionInfo, PartitionOutcome,
    PartitionRetention, PassReport, RetentionFailure, RetentionReport, Topic, TopicConfig, TopicDeletion, TopicMeta,
    TopicStore, TopicStoreConfig, partition_for_key, validate_topic_name,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
