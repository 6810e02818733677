//! Consumers that record their progress in annal itself (docs/EVENTS.md,
//! "Persistent subscriptions").
//!
//! - [`persistent`]: persistent subscriptions on the event store: named
//!   groups of competing consumers over `$all`, a category or a stream, their
//!   checkpoint and parked events kept in streams of the store.

pub mod persistent;
