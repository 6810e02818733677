//! The event store: aggregate streams over one global log (docs/EVENTS.md).
//!
//! ```
//! use annal::events::{Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent};
//!
//! let dir = tempfile::tempdir()?;
//! let store = EventStore::open(dir.path(), EventStoreConfig::default())?;
//! let placed = NewEvent::json("OrderPlaced", r#"{"total":30}"#);
//! let written = store.append("order-17", ExpectedVersion::NoStream, vec![placed])?;
//! assert_eq!((written.first_version, written.next_expected_version), (0, 0));
//!
//! let paid = NewEvent::json("OrderPaid", r#"{"amount":30}"#);
//! store.append("order-17", ExpectedVersion::Exact(0), vec![paid])?;
//! let events = store.read_stream("order-17", 0, Direction::Forward, 100)?;
//! assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["OrderPlaced", "OrderPaid"]);
//! store.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod check;
mod error;
mod event;
mod index;
mod store;
mod streams;
mod subscription;
internals!(meta, run);

pub use check::{Repair, StoreCheck, check_store, is_event_store};
pub use error::{CurrentVersion, Error, ExpectedVersion, Result};
pub use event::{
    ContentType, EventView, MAX_EVENT_TYPE_LEN, MAX_STREAM_ID_LEN, NewEvent, RecordedEvent, category,
    event_type_problem, stream_id_problem,
};
#[allow(unused_imports)]
pub(crate) use event::{EventRef, decode, encode_value, encoded_len};
pub use index::IndexRecovery;
pub use store::{
    AppendResult, Direction, EventStore, EventStoreConfig, INDEX_DIR_NAME, IndexStats, LOG_DIR_NAME, StreamAppend,
};
pub use streams::{
    DeleteMode, METADATA_EVENT_TYPE, METADATA_STREAM_PREFIX, ScavengeOutcome, StreamMetadata, TOMBSTONE_EVENT_TYPE,
    TOMBSTONE_VERSION,
};
pub use subscription::{StartFrom, Subscription, SubscriptionFilter, SubscriptionTarget};
/// Event ids: the `uuid` crate's type, re-exported so that an application
/// names it without a dependency of its own.
pub use uuid::Uuid;
