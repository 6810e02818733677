//! What a persistent subscription is: its target, start, strategy, retries,
//! timeout, checkpoint interval and buffer ([`GroupSettings`]).

use std::fmt;
use std::time::Duration;

use crate::events::{StartFrom, category, stream_id_problem};

/// The most events a group holds in memory at once (buffered and in flight).
pub const MAX_BUFFER_SIZE: u32 = 1 << 20;

/// The longest message timeout, in milliseconds (about 49 days).
pub const MAX_MESSAGE_TIMEOUT_MS: u64 = u32::MAX as u64;

/// The longest target name (a stream id or a category), in bytes.
pub const MAX_TARGET_LEN: usize = crate::events::MAX_STREAM_ID_LEN;

/// What a persistent subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupTarget {
    /// Every event of the store (`$all`), except those of the store's own
    /// streams (ids beginning with `$`: stream metadata, the state of
    /// persistent subscriptions).
    All,
    /// The events of one stream.
    Stream(String),
    /// The events of the streams of a category (the part of a stream id
    /// before its first `-`).
    Category(String),
}

impl fmt::Display for GroupTarget {
    /// `$all`, the stream id, or `$ce-<category>` (KurrentDB's names; a
    /// target never begins with `$`, so the three cannot be confused).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupTarget::All => f.write_str("$all"),
            GroupTarget::Stream(s) => f.write_str(s),
            GroupTarget::Category(c) => write!(f, "$ce-{c}"),
        }
    }
}

impl GroupTarget {
    /// Why the target cannot be used, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        match self {
            GroupTarget::All => None,
            GroupTarget::Stream(s) => match stream_id_problem(s) {
                Some(reason) => Some(reason),
                None if s.starts_with('$') => {
                    Some(format!("stream {s:?} is one of the store's own (its id begins with $)"))
                }
                None => None,
            },
            GroupTarget::Category(c) => match c {
                c if c.is_empty() => Some("a category cannot be empty".into()),
                c if c.len() > MAX_TARGET_LEN => {
                    Some(format!("a category of {} bytes (at most {MAX_TARGET_LEN})", c.len()))
                }
                c if c.starts_with('$') => Some(format!("category {c:?} is the store's own (it begins with $)")),
                c if category(c) != c => Some(format!("category {c:?} has a '-': no stream is in it")),
                _ => None,
            },
        }
    }

    /// Whether the group delivers an event of `stream` (which its
    /// subscription found for this target).
    pub(crate) fn delivers(&self, stream: &str) -> bool {
        match self {
            GroupTarget::All => !stream.starts_with('$'),
            _ => true,
        }
    }
}

/// How the members of a group share its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Each event goes to the member that asks for one next, whatever its
    /// stream: the most even sharing, and no order between the members.
    #[default]
    RoundRobin,
    /// Each stream is pinned to one member (by a hash of the stream id and
    /// the members' names), and one stream has at most one event out at a
    /// time (in flight or waiting for a retry): a stream's events are
    /// processed in order, even across retries and parking.
    Pinned,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Pinned => "pinned",
        })
    }
}

/// The settings of a persistent subscription: what it delivers, from where,
/// and how (docs/EVENTS.md, "Persistent subscriptions").
///
/// ```
/// use std::time::Duration;
/// use annal::consumer::persistent::{GroupSettings, GroupTarget, Strategy};
///
/// let settings = GroupSettings::new(GroupTarget::Category("order".into()))
///     .with_strategy(Strategy::Pinned)
///     .with_max_retries(3)
///     .with_message_timeout(Duration::from_secs(10));
/// assert_eq!(settings.max_retries(), 3);
/// assert_eq!(settings.checkpoint_interval(), 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use]
pub struct GroupSettings {
    target: GroupTarget,
    start: StartFrom,
    strategy: Strategy,
    max_retries: u32,
    message_timeout: Duration,
    checkpoint_interval: u32,
    buffer_size: u32,
}

impl GroupSettings {
    /// The settings of a group over `target`, with the defaults: from the
    /// beginning, round robin, 10 retries, a message timeout of 30 s, a
    /// checkpoint every 100 events, and 500 events held at most (KurrentDB's
    /// defaults where it has them).
    pub fn new(target: GroupTarget) -> GroupSettings {
        GroupSettings {
            target,
            start: StartFrom::Beginning,
            strategy: Strategy::RoundRobin,
            max_retries: 10,
            message_timeout: Duration::from_secs(30),
            checkpoint_interval: 100,
            buffer_size: 500,
        }
    }

    /// Where the group starts when it is created: the first event, the end
    /// of the store then (only later events), or a global position. Fixed
    /// at creation; from then on the group goes on from its checkpoint.
    pub fn with_start(mut self, start: StartFrom) -> GroupSettings {
        self.start = start;
        self
    }

    /// How members share the events (default [`Strategy::RoundRobin`]).
    pub fn with_strategy(mut self, strategy: Strategy) -> GroupSettings {
        self.strategy = strategy;
        self
    }

    /// How many times a failed event is delivered again before it is parked
    /// (default 10): an event is delivered at most `1 + max_retries` times.
    /// A failure is a nack with [`crate::consumer::persistent::NackAction::Retry`]
    /// or a delivery not acknowledged within the message timeout.
    pub fn with_max_retries(mut self, n: u32) -> GroupSettings {
        self.max_retries = n;
        self
    }

    /// How long a member has to acknowledge a delivery before it is taken
    /// back and retried (default 30 s; 1 ms to about 49 days).
    pub fn with_message_timeout(mut self, timeout: Duration) -> GroupSettings {
        self.message_timeout = timeout;
        self
    }

    /// The checkpoint is written after this many events are done with
    /// (acknowledged, skipped or parked), and when a member closes
    /// (default 100; at least 1). After a crash, at most about this many
    /// events are delivered again.
    pub fn with_checkpoint_interval(mut self, n: u32) -> GroupSettings {
        self.checkpoint_interval = n;
        self
    }

    /// The most events the group holds in memory, buffered or in flight
    /// (default 500; 1 to 1,048,576): reading stops while it is full.
    pub fn with_buffer_size(mut self, n: u32) -> GroupSettings {
        self.buffer_size = n;
        self
    }

    /// What the group delivers.
    pub fn target(&self) -> &GroupTarget {
        &self.target
    }

    /// Where the group started.
    pub fn start(&self) -> StartFrom {
        self.start
    }

    /// How members share the events.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// How many times a failed event is retried before it is parked.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// How long a delivery may go unacknowledged.
    pub fn message_timeout(&self) -> Duration {
        self.message_timeout
    }

    /// After how many events done with the checkpoint is written.
    pub fn checkpoint_interval(&self) -> u32 {
        self.checkpoint_interval
    }

    /// The most events the group holds in memory.
    pub fn buffer_size(&self) -> u32 {
        self.buffer_size
    }

    /// The message timeout in whole milliseconds, as stored.
    pub(crate) fn message_timeout_ms(&self) -> u64 {
        u64::try_from(self.message_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Why the settings cannot be used, if they cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        if let Some(reason) = self.target.problem() {
            return Some(format!("target: {reason}"));
        }
        let timeout = self.message_timeout_ms();
        if timeout == 0
            || timeout > MAX_MESSAGE_TIMEOUT_MS
            || !self.message_timeout.subsec_nanos().is_multiple_of(1_000_000)
        {
            return Some(format!(
                "a message timeout of {:?} (whole milliseconds, from 1 ms to {MAX_MESSAGE_TIMEOUT_MS} ms)",
                self.message_timeout
            ));
        }
        if self.checkpoint_interval == 0 {
            return Some("a checkpoint interval of 0 events (at least 1)".into());
        }
        if self.buffer_size == 0 || self.buffer_size > MAX_BUFFER_SIZE {
            return Some(format!("a buffer of {} events (1 to {MAX_BUFFER_SIZE})", self.buffer_size));
        }
        None
    }
}
