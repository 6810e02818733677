//! A position kept in a stream of the event store (docs/FORMAT.md,
//! "Process manager state, checkpoints and timeouts"): `$checkpoint` events
//! of 8 bytes, the stream's metadata keeping the last one only. Process
//! managers, dispatchers and the outbox relay keep theirs this way; each
//! write expects the version it read, so that a second runner of the same
//! name is refused, not interleaved.

use super::error::{Error, Result};
use crate::events::{Direction, EventStore, ExpectedVersion, NewEvent, StreamAppend, StreamMetadata};

/// The event type of a checkpoint.
pub const CHECKPOINT_EVENT_TYPE: &str = "$checkpoint";

/// A checkpoint stream as last read or written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checkpoint {
    stream: String,
    /// The stream's version, which the next write expects.
    version: Option<u64>,
    position: Option<u64>,
}

impl Checkpoint {
    /// Reads the checkpoint of `stream` (and has the stream keep its last
    /// event only).
    pub(crate) fn open(store: &EventStore, stream: String) -> Result<Checkpoint> {
        let (mut position, mut version) = (None, None);
        store.read_stream_with(&stream, u64::MAX, Direction::Backward, 1, |view| {
            let b: [u8; 8] = view.data.try_into().map_err(|_| Error::State {
                what: format!("checkpoint {} of {stream:?}", view.version),
                reason: format!("{} bytes (8)", view.data.len()),
            })?;
            position = Some(u64::from_le_bytes(b));
            version = Some(view.version);
            Ok::<(), Error>(())
        })?;
        if store.stream_metadata(&stream)?.max_count() != Some(1) {
            store.set_stream_metadata(&stream, StreamMetadata::default().with_max_count(1))?;
        }
        Ok(Checkpoint { stream, version, position })
    }

    /// The position stored, if any.
    pub(crate) fn position(&self) -> Option<u64> {
        self.position
    }

    /// The append that stores `position` (for a multi-stream append); then
    /// [`Checkpoint::written`] with its result's version.
    pub(crate) fn append(&self, position: u64) -> StreamAppend {
        let expected = self.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let event = NewEvent::binary(CHECKPOINT_EVENT_TYPE, position.to_le_bytes().to_vec());
        StreamAppend::new(self.stream.clone(), expected, vec![event])
    }

    /// Notes that `position` was stored, at stream version `version`.
    pub(crate) fn written(&mut self, position: u64, version: u64) {
        (self.position, self.version) = (Some(position), Some(version));
    }

    /// Stores `position` on its own.
    pub(crate) fn store(&mut self, store: &EventStore, position: u64) -> Result<()> {
        let mut results = store.append_to_streams(vec![self.append(position)])?;
        let written = results.pop().expect("one result per stream");
        self.written(position, written.next_expected_version);
        Ok(())
    }
}
