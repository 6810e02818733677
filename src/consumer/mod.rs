//! Consumer groups over a [`crate::TopicStore`] (docs/CONSUMERS.md): durable
//! committed offsets, group membership in one process with partition
//! assignors and generations, a [`Consumer`] that polls its partitions,
//! lag, offset resets as `kafka-consumer-groups.sh` does them, and an
//! idempotent producer ([`Producers`]); and [`persistent`] subscriptions on
//! the event store: named groups of competing consumers over `$all`, a
//! category or a stream, their checkpoint and parked events kept in streams
//! of the store (docs/EVENTS.md, "Persistent subscriptions").
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use annal::consumer::{Consumer, ConsumerConfig, ConsumerGroups, GroupsConfig, OffsetReset};
//! use annal::{Record, TopicConfig, TopicStore, TopicStoreConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(TopicStore::open(dir.path(), TopicStoreConfig::default())?);
//! let orders = store.create_topic("orders", TopicConfig::default().with_partitions(2))?;
//! for i in 0..10u32 {
//!     orders.send(&Record::new(&i.to_le_bytes()).with_key(&i.to_le_bytes()))?;
//! }
//! let groups = Arc::new(ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default())?);
//! let config = ConsumerConfig::new("billing", ["orders"]).with_offset_reset(OffsetReset::Earliest);
//! let mut consumer = Consumer::new(Arc::clone(&groups), config)?;
//! let mut seen = 0;
//! while seen < 10 {
//!     let polled = consumer.poll(100, Duration::from_secs(5))?;
//!     assert!(!polled.is_empty(), "10 records were sent");
//!     seen += polled.len();
//! }
//! consumer.commit()?;
//! let lag = groups.lag("billing")?;
//! assert_eq!(lag.total_records, 0);
//! consumer.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod assignor;
#[allow(clippy::module_inception)]
mod consumer;
mod error;
mod groups;
mod lag;
pub mod persistent;
internals!(producer, record);
mod reset;

pub use assignor::{Assignor, TopicPartition};
pub use consumer::{CommitHandle, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, RebalanceListener};
pub use error::{Error, Result};
pub use groups::{
    CommittedOffset, ConsumerGroups, DEFAULT_OFFSETS_RETENTION, GroupsConfig, Heartbeat, MemberConfig, MemberInfo,
    OffsetCommit,
};
pub use lag::{GroupLag, PartitionLag};
pub use producer::{IdempotentProducer, PRODUCER_HEADER, Producers, REMEMBERED_BATCHES};
pub use reset::{ResetPlan, ResetRow, ResetScope, ResetTarget};

/// The topic that holds the committed offsets: one partition, compacted.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 255;

/// Longest metadata string of a committed offset, in bytes (4 KiB, as
/// Kafka's `offset.metadata.max.bytes`).
pub const MAX_COMMIT_METADATA_LEN: usize = 4096;
