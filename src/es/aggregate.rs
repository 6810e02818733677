//! The aggregate and its events: what an application writes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event of an aggregate: serializable, and named.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event's type in the event store (conventionally the name of the
    /// enum's variant): what `annal events read` shows, what
    /// subscriptions by event type select, and what upcasters are keyed by.
    fn event_type(&self) -> &'static str;
}

/// An aggregate: a consistency boundary that decides on commands and
/// evolves by its events (as cqrs-es's `Aggregate`).
///
/// The events of the aggregate with id `id` are the stream `{TYPE}-{id}` of
/// the event store, so `TYPE` is the event store's category of them.
///
/// ```
/// use annal::es::{Aggregate, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// struct Counter { value: u64 }
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// enum CounterEvent { Incremented { by: u64 } }
///
/// impl DomainEvent for CounterEvent {
///     fn event_type(&self) -> &'static str { "Incremented" }
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("a counter cannot pass 100")]
/// struct TooHigh;
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Command = u64;
///     type Event = CounterEvent;
///     type Error = TooHigh;
///
///     fn handle(&self, by: &u64) -> Result<Vec<CounterEvent>, TooHigh> {
///         if self.value + by > 100 { return Err(TooHigh) }
///         Ok(vec![CounterEvent::Incremented { by: *by }])
///     }
///
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Incremented { by } => self.value += by }
///     }
/// }
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate's type: the category of its streams, `{TYPE}-{id}`.
    /// It may not contain `-`.
    const TYPE: &'static str;

    /// The version of the aggregate's serialized shape in its snapshots.
    /// Raise it when that shape changes: snapshots of another version are
    /// then not used (the aggregate is replayed from its events and a new
    /// snapshot written).
    const SNAPSHOT_VERSION: u32 = 1;

    /// What the aggregate is asked to do.
    type Command;
    /// What happened to it.
    type Event: DomainEvent;
    /// Why it refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides on `command` given the current state: the events to append
    /// (none to do nothing), or a refusal. It must not change anything
    /// itself: the repository may call it again on a newer state.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves the state by one event. It cannot fail: an event is a fact.
    fn apply(&mut self, event: &Self::Event);
}
