//! The errors of persistent subscriptions: one enum, each variant saying
//! what failed and where (the group, the member, the stream and position of
//! a damaged state event), and the event store's error as a source.

/// A persistent subscription error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No persistent subscription of this name exists (never created, or
    /// deleted). Returned by every operation that names a group.
    #[error("no persistent subscription named {group:?}")]
    UnknownGroup {
        /// The group's name.
        group: String,
    },
    /// A persistent subscription of this name exists already. Returned by
    /// `create`.
    #[error("a persistent subscription named {group:?} exists already")]
    GroupExists {
        /// The group's name.
        group: String,
    },
    /// A group or member name is refused (empty, too long, or with a
    /// control character).
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `group` or `member`.
        what: &'static str,
        /// The name (its first 100 bytes if longer).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Settings that cannot be used (a zero buffer, an invalid target), or
    /// an update that changes what cannot change (the target, the start).
    /// Nothing is written.
    #[error("invalid settings for persistent subscription {group:?}: {reason}")]
    InvalidSettings {
        /// The group's name.
        group: String,
        /// What is wrong.
        reason: String,
    },
    /// The group has connected members, and the operation needs none
    /// (`delete`).
    #[error("persistent subscription {group:?} has {members} connected member(s): disconnect them first")]
    GroupInUse {
        /// The group's name.
        group: String,
        /// How many members are connected.
        members: usize,
    },
    /// An acknowledgement of a delivery that is not this member's: another
    /// member's or another group's.
    #[error("member {member:?} of persistent subscription {group:?} was given no delivery of position {position}")]
    UnknownDelivery {
        /// The group's name.
        group: String,
        /// The member acknowledging.
        member: String,
        /// The event's global position.
        position: u64,
    },
    /// An acknowledgement of a delivery that is no longer in flight: it
    /// timed out (the event is retried, or was parked), the member
    /// disconnected, or it was acknowledged already. The event is delivered
    /// again (or was parked): delivery is at least once.
    #[error(
        "delivery of position {position} to member {member:?} of persistent subscription {group:?} is stale: {reason}"
    )]
    StaleDelivery {
        /// The group's name.
        group: String,
        /// The member acknowledging.
        member: String,
        /// The event's global position.
        position: u64,
        /// Why it is no longer in flight.
        reason: &'static str,
    },
    /// A state event of a group (its settings, checkpoint or a parked
    /// event) cannot be decoded: damaged, of another format version, or
    /// written to the group's streams by something else.
    #[error("damaged persistent subscription state in stream {stream:?} at position {position}: {reason}")]
    DamagedState {
        /// The state stream.
        stream: String,
        /// The event's global position.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The group's state streams were written by something else meanwhile
    /// (another `PersistentSubscriptions` over the same store, which a
    /// process must not have): the append expecting their version was
    /// refused, and nothing was written.
    #[error("the state of persistent subscription {group:?} was changed by another writer (stream {stream:?})")]
    Conflict {
        /// The group's name.
        group: String,
        /// The state stream whose version moved.
        stream: String,
        /// The event store's refusal (boxed: it is large, and rare).
        #[source]
        source: Box<crate::events::Error>,
    },
    /// The event store failed (its files, the engine under it).
    #[error(transparent)]
    Store(#[from] crate::events::Error),
}

/// The result type of persistent subscriptions.
pub type Result<T> = std::result::Result<T, Error>;
