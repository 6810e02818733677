//! Consumer groups' errors: one enum, each variant with the group, topic and
//! partition it concerns, and the engine's error (with its source) for what
//! the store reports.

/// A consumer-group error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A group name is empty or longer than [`crate::consumer::MAX_GROUP_NAME_LEN`]
    /// bytes. Returned by every call that names a group.
    #[error("invalid group name {group:?}: {reason}")]
    InvalidGroupName {
        /// The name (its first 100 bytes if longer).
        group: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A commit's metadata string is longer than
    /// [`crate::consumer::MAX_COMMIT_METADATA_LEN`] bytes. Nothing is committed.
    #[error("group {group:?}, {topic}/{partition}: commit metadata of {len} bytes (at most {max})")]
    MetadataTooLarge {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Its length in bytes.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A commit names an offset past the partition's end (its next offset):
    /// a committed offset is the next record to read, at most the end.
    /// Nothing is committed.
    #[error("group {group:?}, {topic}/{partition}: offset {offset} is past the partition's end ({end})")]
    OffsetPastEnd {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The partition's next offset.
        end: u64,
    },
    /// A commit would move a committed offset backward, which only an
    /// explicit reset ([`crate::consumer::ConsumerGroups::reset_offsets`]) may
    /// do. Nothing is committed.
    #[error(
        "group {group:?}, {topic}/{partition}: committing {offset} would move the committed offset {committed} backward"
    )]
    OffsetBackward {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The offset committed now.
        committed: u64,
    },
    /// A commit or heartbeat from a member the group does not know (it left,
    /// or its session expired and the group went on without it: a zombie).
    #[error("group {group:?} has no member {member:?} (it left, or its session expired)")]
    UnknownMember {
        /// The group.
        group: String,
        /// The member id.
        member: String,
    },
    /// A commit from a member of an older generation of the group (fenced:
    /// the group rebalanced since), or of a partition the member does not
    /// own now. Nothing is committed.
    #[error(
        "group {group:?}: member {member:?} of generation {generation} cannot commit {topic}/{partition}: {reason}"
    )]
    StaleGeneration {
        /// The group.
        group: String,
        /// The member id.
        member: String,
        /// The generation the commit carried.
        generation: u32,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why: the group's generation, or who owns the partition.
        reason: String,
    },
    /// An operation that needs the group empty (a reset, a deletion, a commit
    /// from outside the group) while it has live members.
    #[error("group {group:?} has {members} live member(s): {operation} needs it empty")]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
        /// What was refused.
        operation: &'static str,
    },
    /// The group has no committed offset and no member.
    #[error("no consumer group {group:?}")]
    UnknownGroup {
        /// The group.
        group: String,
    },
    /// A member's configuration or a call's arguments are invalid (an empty
    /// topic list, a zero session timeout, a member joining with another
    /// assignor than the group's, a malformed reset specification).
    #[error("{0}")]
    Invalid(String),
    /// A record of the committed-offsets topic does not decode: the topic was
    /// written by something else than annal's consumer groups. Returned by
    /// [`crate::consumer::ConsumerGroups::open`].
    #[error("committed-offsets topic {topic}, offset {offset}: {reason}")]
    BadCommitRecord {
        /// The topic.
        topic: String,
        /// The record's offset.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An idempotent send from an epoch older than the partition has seen
    /// from this producer id: another instance of the producer took over.
    /// Nothing is written.
    #[error("{topic}/{partition}: producer {producer_id} at epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: u64,
        /// The epoch of the send.
        epoch: u16,
        /// The newest epoch the partition has seen.
        current: u16,
    },
    /// An idempotent batch whose first sequence number is past the next one
    /// expected: a batch before it is missing. Nothing is written.
    #[error("{topic}/{partition}: producer {producer_id} sent sequence {got}, {expected} expected")]
    SequenceGap {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: u64,
        /// The next sequence number expected.
        expected: u32,
        /// The batch's first sequence number.
        got: u32,
    },
    /// An idempotent batch that repeats an earlier sequence but is not one of
    /// the batches remembered (older, or of another length). Nothing is
    /// written.
    #[error("{topic}/{partition}: producer {producer_id}: {reason}")]
    SequenceMismatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: u64,
        /// What does not match.
        reason: String,
    },
    /// The store failed or refused an operation (an unknown topic, a
    /// partition out of range, an I/O error, a failed log).
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// A result with the consumer groups' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A name shown in an error: its first 100 bytes (at a character boundary).
pub(crate) fn shown(name: &str) -> String {
    let mut end = name.len().min(100);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}
