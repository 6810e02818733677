//! Topics and partitions: a [`TopicStore`] holds many named [`Topic`]s in one
//! directory; a topic is a fixed (growable) number of partitions, each an
//! annal [`Log`](crate::Log).
//!
//! ```
//! use annal::{Record, TopicStore, TopicStoreConfig, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let store = TopicStore::open(dir.path(), TopicStoreConfig::default())?;
//! let orders = store.create_topic("orders", TopicConfig::default().with_partitions(4))?;
//!
//! // A keyed record goes to fnv1a_64(key) % 4; the same key, the same partition.
//! let (p, offset) = orders.send(&Record::new(b"placed").with_key(b"order-17"))?;
//! let (q, next) = orders.send(&Record::new(b"paid").with_key(b"order-17"))?;
//! assert_eq!((p, next), (q, offset + 1));
//! assert_eq!(p, annal::partition_for_key(b"order-17", 4));
//!
//! let mut reader = orders.read_from(p, offset)?;
//! assert_eq!(reader.next_record()?.unwrap().value(), Some(&b"placed"[..]));
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! ```text
//! <root>/store.lock                          locked by the one writer
//! <root>/topics/<name>/topic.meta            partition count, policies, retention (72 or 88 bytes, CRC-32)
//! <root>/topics/<name>/00000/ 00001/ ...     one annal log per partition
//! <root>/topics/.<name>~creating             a topic being created (removed on open)
//! <root>/topics/.<name>~deleted.<n>          a topic being deleted (removed on open)
//! ```
//!
//! `topic.meta` is specified in docs/FORMAT.md ("Topic metadata") and in
//! [`TopicMeta`].
//!
//! # Partitioning
//!
//! A record with a key goes to partition `fnv1a_64(key) % partitions`
//! ([`partition_for_key`]): records with the same key keep their order. A
//! record without a key goes to the partitions in turn. Growing a topic
//! ([`TopicStore::add_partitions`]) moves keys to other partitions.
//!
//! # Topic names
//!
//! 1 to [`MAX_TOPIC_NAME_LEN`] ASCII letters, digits, `.`, `_` and `-`, not
//! starting with `.` (so neither `.` nor `..`): names starting with `.` are
//! reserved for the store's own directories, and archive keys refuse them.

mod handle;
pub mod meta;
mod store;
pub mod store_meta;

pub use handle::{PartitionInfo, Topic, fnv1a_64, partition_dir_name, partition_for_key};
pub use meta::{
    CleanupPolicy, DEFAULT_TOMBSTONE_RETENTION, DEFAULT_TOPIC_SEGMENT_BYTES, MAX_PARTITIONS, TOPIC_META_FILE_NAME, TopicConfig,
    TopicMeta,
};
pub use store::{
    ArchivalReport, CompactionReport, PartitionArchival, PartitionCompaction, PartitionOutcome, PartitionRetention,
    PassReport, RetentionFailure, RetentionReport, STORE_LOCK_FILE_NAME, TOPICS_DIR_NAME, TopicDeletion, TopicStore,
    not_a_store,
    TopicStoreConfig,
};

use crate::error::{Error, Result};

/// Longest topic name, in bytes (every allowed character is one byte).
pub const MAX_TOPIC_NAME_LEN: usize = 200;

/// Checks a topic name: 1 to [`MAX_TOPIC_NAME_LEN`] characters among ASCII
/// letters, digits, `.`, `_` and `-`, not starting with `.`. Anything else
/// gives [`Error::InvalidTopicName`].
///
/// ```
/// assert!(annal::validate_topic_name("orders.eu-1_v2").is_ok());
/// assert!(annal::validate_topic_name("..").is_err());
/// assert!(annal::validate_topic_name("a/b").is_err());
/// ```
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a topic name cannot be empty"
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        "a topic name has at most 200 characters"
    } else if name.starts_with('.') {
        "a topic name cannot start with '.'"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        "a topic name has only ASCII letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidTopicName { name: name.to_owned(), reason })
}
