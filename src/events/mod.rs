//! The event store: aggregate streams over one global log (docs/EVENTS.md).
//!
//! Being built (issue 13): what exists so far is what one event is
//! ([`NewEvent`], [`RecordedEvent`], their record in the global log) and the
//! index runs the stream and event-id indexes are made of.

mod event;
pub mod run;

pub use event::{
    ContentType, MAX_EVENT_TYPE_LEN, MAX_STREAM_ID_LEN, NewEvent, RecordedEvent, category, event_type_problem,
    stream_id_problem,
};
#[allow(unused_imports)]
pub(crate) use event::{EventRef, decode, encode_value, encoded_len};
