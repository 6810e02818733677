//! Stream metadata and deletion (docs/EVENTS.md, "Stream metadata and
//! deletion"): a stream's maximum age, maximum count and truncate-before
//! version; soft deletion (the stream reads as not found, and appending again
//! continues its versions) and hard deletion (a tombstone: the stream can
//! never be written again). Every read honours them.
//!
//! A stream's metadata is the last event of its metadata stream,
//! `$$<stream>`, of type `$metadata`, whose data is (docs/FORMAT.md, "Stream
//! metadata event"):
//!
//! ```text
//!  0   1  version          u8   1
//!  1   1  flags            u8   bit 0: max_age set, bit 1: max_count, bit 2: truncate_before
//!  2   6  reserved         0
//!  8   8  max_age_ms       u64  (0 if not set)
//!  16  8  max_count        u64  (0 if not set)
//!  24  8  truncate_before  u64  (0 if not set)
//! ```
//!
//! A hard delete appends a tombstone to the stream itself: an event of type
//! `$streamDeleted` at version `u64::MAX`.

use std::collections::HashMap;
use std::time::Duration;

use super::error::{CurrentVersion, Error, ExpectedVersion, Result, check_stream_id, shown};
use super::event::{self, NewEvent, RecordedEvent};
use super::run::RunKind;
use super::store::{AppendResult, EventStore, StreamAppend};

/// The prefix of a metadata stream's id: `$$order-17` holds the metadata of
/// `order-17`. Appends to such ids are the store's own.
pub const METADATA_STREAM_PREFIX: &str = "$$";
/// The type of a metadata event.
pub const METADATA_EVENT_TYPE: &str = "$metadata";
/// The type of a hard-deleted stream's tombstone.
pub const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";
/// The version of a tombstone.
pub const TOMBSTONE_VERSION: u64 = u64::MAX;

const METADATA_LEN: usize = 32;
const HAS_MAX_AGE: u8 = 1;
const HAS_MAX_COUNT: u8 = 2;
const HAS_TRUNCATE_BEFORE: u8 = 4;

/// A stream's metadata: what reads of it keep. Every field is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct StreamMetadata {
    max_age: Option<Duration>,
    max_count: Option<u64>,
    truncate_before: Option<u64>,
}

impl StreamMetadata {
    /// Events older than `age` (by their timestamp) are not read.
    pub fn with_max_age(mut self, age: Duration) -> StreamMetadata {
        self.max_age = Some(age);
        self
    }

    /// Only the last `count` events are read.
    pub fn with_max_count(mut self, count: u64) -> StreamMetadata {
        self.max_count = Some(count);
        self
    }

    /// Events below version `version` are not read.
    pub fn with_truncate_before(mut self, version: u64) -> StreamMetadata {
        self.truncate_before = Some(version);
        self
    }

    /// The maximum age, if set.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// The maximum count, if set.
    pub fn max_count(&self) -> Option<u64> {
        self.max_count
    }

    /// The truncate-before version, if set.
    pub fn truncate_before(&self) -> Option<u64> {
        self.truncate_before
    }

    /// The data of a metadata event.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; METADATA_LEN];
        out[0] = 1;
        let mut flags = 0;
        if let Some(age) = self.max_age {
            flags |= HAS_MAX_AGE;
            out[8..16].copy_from_slice(&u64::try_from(age.as_millis()).unwrap_or(u64::MAX).to_le_bytes());
        }
        if let Some(count) = self.max_count {
            flags |= HAS_MAX_COUNT;
            out[16..24].copy_from_slice(&count.to_le_bytes());
        }
        if let Some(tb) = self.truncate_before {
            flags |= HAS_TRUNCATE_BEFORE;
            out[24..32].copy_from_slice(&tb.to_le_bytes());
        }
        out[1] = flags;
        out
    }

    /// Decodes the data of a metadata event.
    pub(crate) fn decode(data: &[u8]) -> std::result::Result<StreamMetadata, String> {
        if data.len() != METADATA_LEN {
            return Err(format!("stream metadata of {} bytes (it has {METADATA_LEN})", data.len()));
        }
        if data[0] != 1 {
            return Err(format!("stream metadata version {} (this build reads 1)", data[0]));
        }
        let flags = data[1];
        if flags & !(HAS_MAX_AGE | HAS_MAX_COUNT | HAS_TRUNCATE_BEFORE) != 0 || data[2..8] != [0; 6] {
            return Err("unknown stream metadata flags or reserved bytes".into());
        }
        let field = |at: usize, flag: u8| -> std::result::Result<Option<u64>, String> {
            let v = u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
            match flags & flag != 0 {
                true => Ok(Some(v)),
                false if v == 0 => Ok(None),
                false => Err("a stream metadata field is not zero though its flag is clear".into()),
            }
        };
        Ok(StreamMetadata {
            max_age: field(8, HAS_MAX_AGE)?.map(Duration::from_millis),
            max_count: field(16, HAS_MAX_COUNT)?,
            truncate_before: field(24, HAS_TRUNCATE_BEFORE)?,
        })
    }
}

/// How [`EventStore::delete_stream`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteMode {
    /// The stream reads as not found; appending to it again continues its
    /// versions (its truncate-before moves past its last event).
    Soft,
    /// A tombstone: the stream reads as deleted and can never be written
    /// again.
    Hard,
}

/// A stream's state, as appends and reads see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamState {
    /// The version of its last event (a tombstone aside).
    pub(crate) last: Option<u64>,
    /// Hard-deleted.
    pub(crate) deleted: bool,
    pub(crate) metadata: StreamMetadata,
}

impl StreamState {
    /// Whether the stream exists for expected-version checks: it has an
    /// event at or past its truncate-before version, and no tombstone.
    fn exists(&self) -> bool {
        !self.deleted && self.last.is_some_and(|l| l >= self.metadata.truncate_before.unwrap_or(0))
    }

    pub(crate) fn current(&self) -> CurrentVersion {
        match (self.exists(), self.last) {
            (true, Some(v)) => CurrentVersion::Version(v),
            _ => CurrentVersion::NoStream,
        }
    }

    /// The version its next event gets.
    pub(crate) fn next_version(&self) -> u64 {
        self.last.map_or(0, |v| v + 1)
    }

    /// Checks `expected` against the stream (which must not be deleted).
    pub(crate) fn check(&self, stream: &str, expected: ExpectedVersion) -> Result<()> {
        if self.deleted {
            return Err(Error::StreamDeleted { stream: shown(stream) });
        }
        let current = self.current();
        let holds = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == CurrentVersion::NoStream,
            ExpectedVersion::StreamExists => current != CurrentVersion::NoStream,
            ExpectedVersion::Exact(v) => current == CurrentVersion::Version(v),
        };
        match holds {
            true => Ok(()),
            false => Err(Error::WrongExpectedVersion { stream: stream.to_owned(), expected, actual: current }),
        }
    }

    /// The first version reads show: past the truncate-before version and
    /// within the maximum count.
    pub(crate) fn visible_from(&self) -> u64 {
        let tb = self.metadata.truncate_before.unwrap_or(0);
        let by_count = match (self.metadata.max_count, self.last) {
            (Some(n), Some(last)) => (last + 1).saturating_sub(n),
            _ => 0,
        };
        tb.max(by_count)
    }

    /// The oldest timestamp reads show (the maximum age).
    pub(crate) fn min_timestamp(&self) -> i64 {
        match self.metadata.max_age {
            Some(age) => now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            None => i64::MIN,
        }
    }

    /// Whether a read shows this stream's event at `version` with
    /// `timestamp` (its tombstone included, which `$all` and the type index
    /// show).
    fn shows(&self, version: u64, timestamp: i64, min_timestamp: i64) -> bool {
        if version == TOMBSTONE_VERSION {
            return true;
        }
        !self.deleted && version >= self.visible_from() && timestamp >= min_timestamp
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What reads across streams (`$all`, a category, a type, a subscription)
/// know of the streams they met: each stream's state, looked up once.
#[derive(Debug, Default)]
pub(crate) struct Visibility {
    states: HashMap<String, (StreamState, i64)>,
}

/// Streams a [`Visibility`] remembers before it starts over (a subscription
/// lives long; its memory must not grow with the number of streams).
const VISIBILITY_STREAMS: usize = 4096;

impl Visibility {
    /// Whether a read shows `e`.
    pub(crate) fn shows(&mut self, store: &EventStore, e: &RecordedEvent) -> Result<bool> {
        let (state, min_timestamp) = self.state(store, &e.stream)?;
        Ok(state.shows(e.version, e.timestamp_ms, min_timestamp))
    }

    /// Whether a scavenge keeps the event of `stream` at `version` with
    /// `timestamp`: reads show it, or it is the stream's last event (hidden
    /// or not, it holds the stream's version: an index rebuilt from the log
    /// must know it, or the next append would reuse it). A hard-deleted
    /// stream keeps its tombstone only.
    pub(crate) fn keeps(&mut self, store: &EventStore, stream: &str, version: u64, timestamp: i64) -> Result<bool> {
        let (state, min_timestamp) = self.state(store, stream)?;
        let last = !state.deleted && state.last == Some(version);
        Ok(last || state.shows(version, timestamp, min_timestamp))
    }

    fn state(&mut self, store: &EventStore, stream: &str) -> Result<(StreamState, i64)> {
        if let Some(&found) = self.states.get(stream) {
            return Ok(found);
        }
        if self.states.len() >= VISIBILITY_STREAMS {
            self.states.clear();
        }
        let state = store.stream_state(stream, store.hash(stream))?;
        let found = (state, state.min_timestamp());
        self.states.insert(stream.to_owned(), found);
        Ok(found)
    }
}

impl EventStore {
    /// `stream`'s state: its last version, whether it is hard-deleted, and
    /// its metadata.
    pub(crate) fn stream_state(&self, stream: &str, hash: u128) -> Result<StreamState> {
        let index = self.index();
        // One lookup finds the last event, or the tombstone if there is one.
        let (last, deleted) = match index.last_of(hash, TOMBSTONE_VERSION)? {
            Some((TOMBSTONE_VERSION, position)) => {
                // The tombstone of this stream (not of another of the same hash).
                let deleted = self.event_at(position)?.is_some_and(|e| e.stream == stream);
                (index.last_of(hash, TOMBSTONE_VERSION - 1)?.map(|(v, _)| v), deleted)
            }
            found => (found.map(|(v, _)| v), false),
        };
        let metadata = match stream.starts_with(METADATA_STREAM_PREFIX) {
            // A metadata stream shows its last event only: the metadata in force.
            true => StreamMetadata::default().with_max_count(1),
            false => self.read_metadata(stream)?,
        };
        Ok(StreamState { last, deleted, metadata })
    }

    fn read_metadata(&self, stream: &str) -> Result<StreamMetadata> {
        let meta_stream = format!("{METADATA_STREAM_PREFIX}{stream}");
        let hash = self.hash(&meta_stream);
        for (_, position) in self.index().entries(RunKind::Stream, hash, TOMBSTONE_VERSION - 1, true, 4)? {
            let Some(e) = self.event_at(position)? else { continue };
            if e.stream == meta_stream && e.event_type == METADATA_EVENT_TYPE {
                return StreamMetadata::decode(&e.data).map_err(|why| self.bad_event(position, why));
            }
        }
        Ok(StreamMetadata::default())
    }

    /// `stream`'s metadata (the default if none was set).
    pub fn stream_metadata(&self, stream: &str) -> Result<StreamMetadata> {
        check_stream_id(stream)?;
        self.read_metadata(stream)
    }

    /// Sets `stream`'s metadata: from now on, reads of the stream (and of
    /// `$all`, its category and its events' types) keep only the events it
    /// allows. Returns where the metadata event was written.
    pub fn set_stream_metadata(&self, stream: &str, metadata: StreamMetadata) -> Result<AppendResult> {
        self.write_metadata(stream, ExpectedVersion::Any, |_| Ok(metadata))
    }

    /// Deletes `stream` if it is at `expected`: soft (it reads as not found,
    /// and appending again continues its versions) or hard (a tombstone; it
    /// reads as deleted, and appends give [`Error::StreamDeleted`] forever).
    /// Returns where the deletion was written.
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion, mode: DeleteMode) -> Result<AppendResult> {
        match mode {
            DeleteMode::Soft => self.write_metadata(stream, expected, |state| {
                Ok(state.metadata.with_truncate_before(state.next_version()))
            }),
            DeleteMode::Hard => {
                let tombstone = StreamAppend::new(stream, expected, vec![tombstone()]);
                let hashes = self.validate(std::slice::from_ref(&tombstone))?;
                self.check_room()?;
                let result = {
                    let _stripes = self.lock_stripes(&hashes);
                    let state = self.stream_state(stream, hashes[0])?;
                    state.check(stream, expected)?;
                    let mut results = self.append_locked(&[self.plan(&tombstone, hashes[0], TOMBSTONE_VERSION)])?;
                    results.pop().expect("one result")
                };
                self.after_append()?;
                Ok(result)
            }
        }
    }

    /// Appends a metadata event for `stream`, computed from its state, with
    /// the stream checked against `expected` under its stripe.
    fn write_metadata(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        metadata: impl FnOnce(&StreamState) -> Result<StreamMetadata>,
    ) -> Result<AppendResult> {
        check_stream_id(stream)?;
        let meta_stream = format!("{METADATA_STREAM_PREFIX}{stream}");
        let (hash, meta_hash) = (self.hash(stream), self.hash(&meta_stream));
        self.check_room()?;
        let result = {
            let _stripes = self.lock_stripes(&[hash, meta_hash]);
            let state = self.stream_state(stream, hash)?;
            state.check(stream, expected)?;
            let append = StreamAppend::new(meta_stream, ExpectedVersion::Any, vec![metadata_event(metadata(&state)?)]);
            self.validate(std::slice::from_ref(&append))?;
            let meta_state = self.stream_state(&append.stream, meta_hash)?;
            let mut results = self.append_locked(&[self.plan(&append, meta_hash, meta_state.next_version())])?;
            results.pop().expect("one result")
        };
        self.after_append()?;
        Ok(result)
    }
}

fn metadata_event(metadata: StreamMetadata) -> NewEvent {
    NewEvent::binary(METADATA_EVENT_TYPE, metadata.encode())
}

fn tombstone() -> NewEvent {
    NewEvent::binary(TOMBSTONE_EVENT_TYPE, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_stream_metadata() {
        let meta = StreamMetadata::default().with_max_age(Duration::from_secs(60)).with_truncate_before(7);
        let mut expected = vec![1, 0b101, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&60_000u64.to_le_bytes());
        expected.extend_from_slice(&0u64.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(meta.encode(), expected);
        assert_eq!(StreamMetadata::decode(&expected), Ok(meta));
        assert_eq!(StreamMetadata::decode(&StreamMetadata::default().encode()), Ok(StreamMetadata::default()));
    }

    #[test]
    fn damaged_stream_metadata_is_refused() {
        let good = StreamMetadata::default().with_max_count(3).encode();
        for (at, value) in [(0, 2u8), (1, 8), (2, 1), (8, 1), (24, 1)] {
            let mut bad = good.clone();
            bad[at] = value;
            assert!(StreamMetadata::decode(&bad).is_err(), "byte {at} = {value}");
        }
        assert!(StreamMetadata::decode(&good[..31]).is_err());
    }
}

/// What a scavenge did ([`EventStore::scavenge`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct ScavengeOutcome {
    /// Sealed segments of the global log looked at.
    pub segments_examined: usize,
    /// Of those, segments rewritten (the others had nothing to remove).
    pub segments_rewritten: usize,
    /// Events removed: those deletion and stream metadata hid, and metadata
    /// events superseded by a later one.
    pub events_removed: u64,
    /// Bytes of the global log they took.
    pub bytes_removed: u64,
}

impl EventStore {
    /// Reclaims the space of the events no read returns any more: the events
    /// of hard-deleted streams (not their tombstones), of soft-deleted or
    /// truncated streams below their truncate-before version, past a
    /// stream's maximum count or age, and metadata events a later one
    /// superseded. A stream's last event stays, even hidden: it holds the
    /// stream's version (as KurrentDB's scavenge keeps it). It rewrites the sealed segments of the global log
    /// ([`crate::Log::retain_sealed`]: each replaced atomically, oldest
    /// first; appends and reads go on meanwhile); the active segment is left
    /// alone. Positions do not change: a removed event leaves a gap, which
    /// reads skip.
    ///
    /// Scavenging makes hiding permanent: metadata changed afterwards to
    /// show older events again cannot bring back removed ones, and the
    /// idempotency of a removed event's append ends with it.
    pub fn scavenge(&self) -> Result<ScavengeOutcome> {
        self.scavenge_with_progress(&mut |_| {})
    }

    /// [`EventStore::scavenge`], calling `progress` with each sealed segment
    /// once it is done (for a progress bar; [`EventStore::scavenge_backlog`]
    /// lists them beforehand).
    pub fn scavenge_with_progress(&self, progress: &mut dyn FnMut(&crate::SegmentInfo)) -> Result<ScavengeOutcome> {
        let mut visibility = Visibility::default();
        let mut failure = None;
        let mut keep = |r: &crate::RecordRef<'_>| -> bool {
            if failure.is_some() {
                return true;
            }
            let decided = event::decode(r.key(), r.value())
                .map_err(|why| self.bad_event(r.offset(), why))
                .and_then(|e| visibility.keeps(self, e.stream, e.version, r.timestamp()));
            decided.unwrap_or_else(|e| {
                failure = Some(e);
                true
            })
        };
        let outcome = self.log().retain_sealed(&mut keep, progress)?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(ScavengeOutcome {
            segments_examined: outcome.segments_examined,
            segments_rewritten: outcome.segments_rewritten,
            events_removed: outcome.records_removed,
            bytes_removed: outcome.bytes_removed,
        })
    }

    /// The sealed segments a scavenge would read, for a progress bar.
    pub fn scavenge_backlog(&self) -> Vec<crate::SegmentInfo> {
        self.log().compaction_backlog()
    }
}
