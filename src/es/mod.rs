//! The application layer of event sourcing (docs/EVENT-SOURCING.md), on the
//! event store ([`crate::events`]) and the consumer layer
//! ([`crate::consumer`]) through their public APIs: aggregates and their
//! [`Repository`] with optimistic concurrency, snapshots that invalidate
//! themselves when the aggregate's code changes, upcasting of old events,
//! projections kept exactly once, process managers with durable timeouts,
//! and the outbox relay to topics.
//!
//! Events and snapshots go through serde and a [`Codec`]: [`Json`] (feature
//! `json`, on by default) or [`Postcard`] (feature `postcard`).

mod aggregate;
mod codec;
mod error;
mod meta;
mod repository;
internals!(snapshot);
mod upcast;

pub use aggregate::{Aggregate, DomainEvent};
pub use codec::Codec;
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use error::{CommandError, Error, Result};
pub use meta::{CommandMeta, EventMeta};
pub use repository::{
    DEFAULT_KEPT_SNAPSHOTS, DEFAULT_MAX_ATTEMPTS, Executed, Loaded, Repository, SkippedSnapshot, SnapshotWrite,
};
pub use snapshot::{SNAPSHOT_EVENT_TYPE, SNAPSHOT_STREAM_PREFIX, SnapshotPolicy};
pub use upcast::{RawEvent, UpcastFn, Upcasters};

/// The metadata the layer writes for `meta` and `schema_version`, for the
/// fuzz target.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub fn meta_for_fuzzing(meta: &CommandMeta, schema_version: u32) -> Vec<u8> {
    meta::encode(meta, schema_version)
}
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
pub(crate) fn meta_for_fuzzing(meta: &CommandMeta, schema_version: u32) -> Vec<u8> {
    meta::encode(meta, schema_version)
}
