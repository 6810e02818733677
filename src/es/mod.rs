//! The application layer of event sourcing (docs/EVENT-SOURCING.md), on the
//! event store ([`crate::events`]) and the consumer layer
//! ([`crate::consumer`]) through their public APIs: aggregates and their
//! [`Repository`] with optimistic concurrency, snapshots that invalidate
//! themselves when the aggregate's code changes, upcasting of old events,
//! projections kept exactly once, process managers with durable timeouts,
//! and the outbox relay to topics.
//!
//! Events and snapshots go through serde and a [`Codec`]: `Json` (feature
//! `json`, on by default) or `Postcard` (feature `postcard`).

mod aggregate;
mod checkpoint;
mod codec;
mod error;
mod meta;
mod outbox;
mod process;
mod projection;
mod repository;
internals!(records, snapshot);
mod upcast;

pub use aggregate::{Aggregate, DomainEvent};
pub use checkpoint::CHECKPOINT_EVENT_TYPE;
pub use codec::Codec;
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use error::{CommandError, Error, Result};
pub use meta::{CommandMeta, EventMeta};
pub use outbox::{ID_HEADER, OutboxRelay, POSITION_HEADER, RelayOutcome, TYPE_HEADER};
pub use process::{
    Dispatcher, Effects, ProcessManager, ProcessOutcome, ProcessRunner, STATE_EVENT_TYPE, TIMEOUT_EVENT_TYPE, Timeout,
};
pub use projection::{
    BatchOutcome, CommitError, KvModel, KvReader, LAG_COUNT_LIMIT, PARKED_EVENT_TYPE, ParkedEvent, Projection,
    ProjectionLag, ProjectionRunner, ProjectionSource, ReadModel, Rows,
};
pub use records::ROWS_EVENT_TYPE;
pub use repository::{
    DEFAULT_KEPT_SNAPSHOTS, DEFAULT_MAX_ATTEMPTS, Executed, Loaded, Repository, SkippedSnapshot, SnapshotWrite,
};
pub use snapshot::{SNAPSHOT_EVENT_TYPE, SNAPSHOT_STREAM_PREFIX, SnapshotPolicy};
pub use upcast::{RawEvent, UpcastFn, Upcasters};

/// Why a projection's or process manager's name is refused, if it is: 1 to
/// 200 bytes, none of them a control character.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 200 {
        return Some("a name has 1 to 200 bytes");
    }
    if name.chars().any(char::is_control) {
        return Some("a name has no control characters");
    }
    None
}

/// Positions a projection, process manager or relay moves past without
/// anything to apply before it stores its position on its own.
const SKIPPED_BEFORE_COMMIT: u64 = 4096;

/// Up to `max` durable events of `sub` that `keep` keeps (waiting up to
/// `timeout` for the first), each through `take`, and the position after
/// everything looked at: how projections, process managers and the relay
/// read their sources.
fn read_durable_batch(
    sub: &mut crate::events::Subscription<'_>,
    from: u64,
    max: usize,
    timeout: std::time::Duration,
    keep: impl Fn(&crate::events::RecordedEvent) -> bool,
    mut take: impl FnMut(crate::events::RecordedEvent) -> Result<()>,
) -> Result<u64> {
    let mut wait = timeout;
    let mut taken = 0;
    while taken < max {
        let Some(e) = sub.next_timeout(wait)? else { break };
        wait = std::time::Duration::ZERO;
        if keep(&e) {
            take(e)?;
            taken += 1;
        }
    }
    Ok(sub.next_position().max(from))
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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
