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
//! let log = Log::open(dir.path(), LogConfig::default().durability(Durability::Always))?;
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

pub mod archive;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod inspect;
pub mod io;
pub mod log;
mod mmap;
pub mod record;
pub mod segment;
pub mod topic;

pub use archive::{ArchiveStore, LocalDirArchive, ObjectDigest, ObjectMeta};
pub use config::{Durability, LogConfig, RecoveryMode};
pub use error::{ArchiveErrorKind, CorruptionKind, Error, Result};
pub use log::{
    Compaction, CompactionOutcome, Log, LogReader, RecoveryReport, Retention, RetentionOutcome, START_OFFSET_FILE_NAME,
    SegmentInfo, SharedLimits,
};
pub use record::{Header, OwnedRecord, Record, RecordRef};
pub use topic::{CleanupPolicy, Topic, TopicConfig, TopicStore, TopicStoreConfig};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
