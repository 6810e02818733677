//! The application layer's errors: [`Error`] for what the layer itself does
//! (reading, decoding, upcasting, storing), and [`CommandError`] for a
//! command, which adds the aggregate's own refusal.

use crate::events;

/// An error of the application layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event of a stream could not be decoded into the aggregate's (or
    /// the handler's) event type, after upcasting.
    #[error("event {version} ({event_type}) of stream {stream:?} does not decode: {reason}")]
    Decode {
        /// The stream.
        stream: String,
        /// The event's version in it.
        version: u64,
        /// The event's type.
        event_type: String,
        /// What the codec said.
        reason: String,
    },
    /// A value could not be encoded (an event, a state, a command).
    #[error("{what} does not encode: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// What the codec said.
        reason: String,
    },
    /// An upcaster failed on an event.
    #[error("upcasting event {version} ({event_type}, schema version {schema_version}) of stream {stream:?}: {reason}")]
    Upcast {
        /// The stream.
        stream: String,
        /// The event's version in it.
        version: u64,
        /// The event's type.
        event_type: String,
        /// The schema version the event was at.
        schema_version: u32,
        /// What the upcaster said.
        reason: String,
    },
    /// A projection, a process manager or the outbox relay found its own
    /// state damaged or inconsistent (what and where in the reason).
    #[error("{what}: {reason}")]
    State {
        /// Whose state.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A handler (projection, process manager) failed on an event and its
    /// retries are spent; the event was not parked (parking was off).
    #[error("{handler} failed on event {position} ({event_type}) of stream {stream:?}: {reason}")]
    Handler {
        /// The projection or process manager.
        handler: String,
        /// The event's global position.
        position: u64,
        /// The event's stream.
        stream: String,
        /// The event's type.
        event_type: String,
        /// What the handler said.
        reason: String,
    },
    /// An argument is not valid (what and why).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The event store failed or refused (its error says what and where).
    #[error(transparent)]
    Store(#[from] events::Error),
    /// The topic store or the idempotent producer failed (the outbox relay).
    #[error(transparent)]
    Consumer(#[from] crate::consumer::Error),
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Error {
        Error::Store(events::Error::Engine(e))
    }
}

/// The application layer's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a command was not carried out ([`crate::es::Repository::execute`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command (its `handle` returned this error).
    /// Nothing was written.
    #[error("the command was refused: {0}")]
    Rejected(E),
    /// Other writers changed the aggregate's stream each time the command
    /// was handled, `attempts` times in a row. Nothing was written.
    #[error("stream {stream:?} changed under the command {attempts} times in a row (the limit)")]
    Conflict {
        /// The aggregate's stream.
        stream: String,
        /// How many times the command was handled.
        attempts: u32,
    },
    /// Loading the aggregate or appending its events failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl<E> From<events::Error> for CommandError<E> {
    fn from(e: events::Error) -> CommandError<E> {
        CommandError::Failed(Error::Store(e))
    }
}
