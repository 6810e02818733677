//! What one event is: the types an application appends and reads, and the
//! bytes of an event in the global log (docs/FORMAT.md, "Event record").
//!
//! An event is one record of the global log. Its key is the stream id, its
//! timestamp the event's, and its value:
//!
//! ```text
//!  0       1     kind       u8   1 = event
//!  1       1     flags      u8   bit 0: data is JSON; bit 1: metadata is JSON
//!  2       2     type_len   u16  T, 1..=256
//!  4       8     version    u64  the event's version in its stream
//!  12      16    id         the event id (RFC 9562 byte order)
//!  28      T     type       UTF-8
//!  28+T    4     meta_len   u32  M
//!  32+T    M     metadata
//!  32+T+M  rest  data
//! ```
//!
//! Little-endian. The log's frame checksum covers it; the decoder checks
//! every field's range and that the record is exactly as long as its fields.

use uuid::Uuid;

/// The longest stream id, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 1024;

/// The longest event type, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 256;

/// The `kind` byte of an event record.
const KIND_EVENT: u8 = 1;
const FLAG_DATA_JSON: u8 = 1;
const FLAG_METADATA_JSON: u8 = 2;
/// Bytes of an event record's value before its type.
const FIXED_LEN: usize = 28;

/// What the bytes of an event's data or metadata are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentType {
    /// A JSON document (annal does not parse it; tools print it as JSON).
    Json,
    /// Opaque bytes.
    #[default]
    Binary,
}

impl ContentType {
    fn is_json(self) -> bool {
        self == ContentType::Json
    }

    fn of_flag(json: bool) -> ContentType {
        if json { ContentType::Json } else { ContentType::Binary }
    }
}

/// An event to append: its type, data and metadata, and optionally its id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct NewEvent {
    pub(crate) id: Option<Uuid>,
    pub(crate) event_type: String,
    pub(crate) data: Vec<u8>,
    pub(crate) data_type: ContentType,
    pub(crate) metadata: Vec<u8>,
    pub(crate) metadata_type: ContentType,
}

impl NewEvent {
    /// An event of type `event_type` whose data is the JSON document `data`.
    pub fn json(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> NewEvent {
        NewEvent::new(event_type, data, ContentType::Json)
    }

    /// An event of type `event_type` whose data is the bytes `data`.
    pub fn binary(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> NewEvent {
        NewEvent::new(event_type, data, ContentType::Binary)
    }

    fn new(event_type: impl Into<String>, data: impl Into<Vec<u8>>, data_type: ContentType) -> NewEvent {
        NewEvent {
            id: None,
            event_type: event_type.into(),
            data: data.into(),
            data_type,
            metadata: Vec::new(),
            metadata_type: ContentType::Binary,
        }
    }

    /// Gives the event the id `id` (a retried append with the same ids writes
    /// nothing). Without one, annal draws a version-7 UUID.
    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = Some(id);
        self
    }

    /// Sets the event's metadata: a JSON object (see docs/EVENTS.md for the
    /// conventional members: `$correlationId`, `$causationId`).
    pub fn with_json_metadata(mut self, metadata: impl Into<Vec<u8>>) -> NewEvent {
        self.metadata = metadata.into();
        self.metadata_type = ContentType::Json;
        self
    }

    /// Sets the event's metadata to opaque bytes.
    pub fn with_binary_metadata(mut self, metadata: impl Into<Vec<u8>>) -> NewEvent {
        self.metadata = metadata.into();
        self.metadata_type = ContentType::Binary;
        self
    }

    /// The id given with [`NewEvent::with_id`], if any.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    /// The event's type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The event's data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether the data is JSON or binary.
    pub fn data_type(&self) -> ContentType {
        self.data_type
    }

    /// The event's metadata (empty if none was set).
    pub fn metadata(&self) -> &[u8] {
        &self.metadata
    }

    /// Whether the metadata is JSON or binary.
    pub fn metadata_type(&self) -> ContentType {
        self.metadata_type
    }
}

/// An event as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: String,
    /// Its version in the stream (0-based, dense).
    pub version: u64,
    /// Its global position: its offset in the global log.
    pub position: u64,
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its data.
    pub data: Vec<u8>,
    /// Whether the data is JSON or binary.
    pub data_type: ContentType,
    /// Its metadata (empty if none).
    pub metadata: Vec<u8>,
    /// Whether the metadata is JSON or binary.
    pub metadata_type: ContentType,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// An event as it is stored, borrowed from the log (see
/// [`crate::events::EventStore::read_stream_with`]): the fields of a
/// [`RecordedEvent`] without a copy of its strings and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    /// The stream it belongs to.
    pub stream: &'a str,
    /// Its version in the stream (0-based, dense).
    pub version: u64,
    /// Its global position: its offset in the global log.
    pub position: u64,
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub event_type: &'a str,
    /// Its data.
    pub data: &'a [u8],
    /// Whether the data is JSON or binary.
    pub data_type: ContentType,
    /// Its metadata (empty if none).
    pub metadata: &'a [u8],
    /// Whether the metadata is JSON or binary.
    pub metadata_type: ContentType,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl EventView<'_> {
    /// The event, copied.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            stream: self.stream.to_owned(),
            version: self.version,
            position: self.position,
            id: self.id,
            event_type: self.event_type.to_owned(),
            data: self.data.to_vec(),
            data_type: self.data_type,
            metadata: self.metadata.to_vec(),
            metadata_type: self.metadata_type,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

impl RecordedEvent {
    /// A view of the event, borrowed from it.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            stream: &self.stream,
            version: self.version,
            position: self.position,
            id: self.id,
            event_type: &self.event_type,
            data: &self.data,
            data_type: self.data_type,
            metadata: &self.metadata,
            metadata_type: self.metadata_type,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Why a stream id is refused, if it is: it must be UTF-8 (a `&str` is) of
/// 1 to [`MAX_STREAM_ID_LEN`] bytes.
pub fn stream_id_problem(stream: &str) -> Option<String> {
    match stream.len() {
        0 => Some("a stream id cannot be empty".into()),
        n if n > MAX_STREAM_ID_LEN => Some(format!("a stream id of {n} bytes (at most {MAX_STREAM_ID_LEN})")),
        _ => None,
    }
}

/// Why an event type is refused, if it is: 1 to [`MAX_EVENT_TYPE_LEN`] bytes.
pub fn event_type_problem(event_type: &str) -> Option<String> {
    match event_type.len() {
        0 => Some("an event type cannot be empty".into()),
        n if n > MAX_EVENT_TYPE_LEN => Some(format!("an event type of {n} bytes (at most {MAX_EVENT_TYPE_LEN})")),
        _ => None,
    }
}

/// The category of a stream: the part of its id before the first `-` (the
/// whole id if it has none), as KurrentDB's `$by_category` projection.
///
/// ```
/// assert_eq!(annal::events::category("order-42"), "order");
/// assert_eq!(annal::events::category("order-42-lines"), "order");
/// assert_eq!(annal::events::category("inventory"), "inventory");
/// ```
pub fn category(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}

/// The value of the log record of `event` at `version`, with `id` (the
/// event's own, or the one drawn for it). The event's type must be valid
/// ([`event_type_problem`]).
pub(crate) fn encode_value(event: &NewEvent, id: Uuid, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(event));
    encode_value_into(&mut out, event, id, version);
    out
}

/// The length of [`encode_value`]'s result.
pub(crate) fn encoded_len(event: &NewEvent) -> usize {
    FIXED_LEN + event.event_type.len() + 4 + event.metadata.len() + event.data.len()
}

fn encode_value_into(out: &mut Vec<u8>, event: &NewEvent, id: Uuid, version: u64) {
    debug_assert!(event_type_problem(&event.event_type).is_none());
    let mut flags = 0;
    if event.data_type.is_json() {
        flags |= FLAG_DATA_JSON;
    }
    if event.metadata_type.is_json() {
        flags |= FLAG_METADATA_JSON;
    }
    out.push(KIND_EVENT);
    out.push(flags);
    out.extend_from_slice(&(event.event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(event.event_type.as_bytes());
    out.extend_from_slice(&(event.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&event.metadata);
    out.extend_from_slice(&event.data);
}

/// An event record decoded in place: the parts of a log record's key and
/// value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventRef<'a> {
    pub(crate) stream: &'a str,
    pub(crate) version: u64,
    pub(crate) id: Uuid,
    pub(crate) event_type: &'a str,
    pub(crate) data: &'a [u8],
    pub(crate) data_type: ContentType,
    pub(crate) metadata: &'a [u8],
    pub(crate) metadata_type: ContentType,
}

impl<'a> EventRef<'a> {
    /// The event, owned, at `position` with `timestamp_ms`.
    pub(crate) fn to_recorded(self, position: u64, timestamp_ms: i64) -> RecordedEvent {
        self.view(position, timestamp_ms).to_recorded()
    }

    /// The event at `position` with `timestamp_ms`, still borrowed.
    pub(crate) fn view(self, position: u64, timestamp_ms: i64) -> EventView<'a> {
        EventView {
            stream: self.stream,
            version: self.version,
            position,
            id: self.id,
            event_type: self.event_type,
            data: self.data,
            data_type: self.data_type,
            metadata: self.metadata,
            metadata_type: self.metadata_type,
            timestamp_ms,
        }
    }

    /// The value's bytes again: an event record has one encoding.
    pub(crate) fn encode_value(&self) -> Vec<u8> {
        let event = NewEvent {
            id: Some(self.id),
            event_type: self.event_type.to_owned(),
            data: self.data.to_vec(),
            data_type: self.data_type,
            metadata: self.metadata.to_vec(),
            metadata_type: self.metadata_type,
        };
        encode_value(&event, self.id, self.version)
    }
}

/// Decodes the event record whose log record has `key` and `value`. The
/// error says what is wrong; the caller names the record.
pub(crate) fn decode<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Result<EventRef<'a>, String> {
    let key = key.ok_or("an event record without a key (its stream id)")?;
    let stream = std::str::from_utf8(key).map_err(|_| "a stream id that is not UTF-8".to_owned())?;
    if let Some(why) = stream_id_problem(stream) {
        return Err(why);
    }
    let value = value.ok_or("an event record without a value")?;
    if value.len() < FIXED_LEN {
        return Err(format!("an event record of {} bytes (at least {FIXED_LEN})", value.len()));
    }
    if value[0] != KIND_EVENT {
        return Err(format!("record kind {} (an event is {KIND_EVENT})", value[0]));
    }
    let flags = value[1];
    if flags & !(FLAG_DATA_JSON | FLAG_METADATA_JSON) != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let type_len = usize::from(u16::from_le_bytes([value[2], value[3]]));
    let version = u64::from_le_bytes(value[4..12].try_into().expect("8 bytes"));
    let id = Uuid::from_bytes(value[12..28].try_into().expect("16 bytes"));
    let rest = &value[FIXED_LEN..];
    let type_bytes = rest.get(..type_len).ok_or("an event type past the end of the record")?;
    let event_type = std::str::from_utf8(type_bytes).map_err(|_| "an event type that is not UTF-8".to_owned())?;
    if let Some(why) = event_type_problem(event_type) {
        return Err(why);
    }
    let rest = &rest[type_len..];
    let meta_len = rest.get(..4).ok_or("no metadata length")?;
    let meta_len = u32::from_le_bytes(meta_len.try_into().expect("4 bytes")) as usize;
    let rest = &rest[4..];
    let metadata = rest.get(..meta_len).ok_or("metadata past the end of the record")?;
    Ok(EventRef {
        stream,
        version,
        id,
        event_type,
        data: &rest[meta_len..],
        data_type: ContentType::of_flag(flags & FLAG_DATA_JSON != 0),
        metadata,
        metadata_type: ContentType::of_flag(flags & FLAG_METADATA_JSON != 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (NewEvent, Uuid) {
        let id = Uuid::from_bytes([0x01, 0x8f, 0x3a, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x2a]);
        let event = NewEvent::json("OrderPlaced", &b"{\"total\":3}"[..]).with_json_metadata(&b"{}"[..]).with_id(id);
        (event, id)
    }

    /// The bytes of an event record, pinned (docs/FORMAT.md, "Event record").
    #[test]
    fn golden_event_record() {
        let (event, id) = sample();
        let value = encode_value(&event, id, 7);
        let mut expected = vec![1, 0b11];
        expected.extend_from_slice(&11u16.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&[0x01, 0x8f, 0x3a, 0, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x2a]);
        expected.extend_from_slice(b"OrderPlaced");
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(b"{}");
        expected.extend_from_slice(b"{\"total\":3}");
        assert_eq!(value, expected);
        assert_eq!(value.len(), encoded_len(&event));
    }

    #[test]
    fn an_event_record_decodes_to_what_was_encoded() {
        let (event, id) = sample();
        let value = encode_value(&event, id, 7);
        let got = decode(Some(b"order-1"), Some(&value)).unwrap();
        assert_eq!((got.stream, got.version, got.id, got.event_type), ("order-1", 7, id, "OrderPlaced"));
        assert_eq!((got.data, got.data_type), (&b"{\"total\":3}"[..], ContentType::Json));
        assert_eq!((got.metadata, got.metadata_type), (&b"{}"[..], ContentType::Json));
        assert_eq!(got.encode_value(), value);
        let binary = NewEvent::binary("Blob", vec![0u8, 255]);
        let got_value = encode_value(&binary, id, 0);
        let got = decode(Some(b"s"), Some(&got_value)).unwrap();
        assert_eq!(
            (got.data, got.data_type, got.metadata, got.metadata_type),
            (&[0u8, 255][..], ContentType::Binary, &[][..], ContentType::Binary)
        );
    }

    #[test]
    fn every_damaged_event_record_is_refused_with_a_reason() {
        let (event, id) = sample();
        let value = encode_value(&event, id, 7);
        /// A key, a value, and what the refusal must say.
        type Case<'a> = (Option<&'a [u8]>, Vec<u8>, &'static str);
        let cases: Vec<Case<'_>> = vec![
            (None, value.clone(), "without a key"),
            (Some(b""), value.clone(), "cannot be empty"),
            (Some(&[0xff]), value.clone(), "not UTF-8"),
            (Some(b"s"), value[..27].to_vec(), "of 27 bytes"),
            (Some(b"s"), [&[2u8][..], &value[1..]].concat(), "record kind 2"),
            (Some(b"s"), [&[1u8, 4][..], &value[2..]].concat(), "unknown flags"),
            (Some(b"s"), [&value[..2], &[0, 0], &value[4..]].concat(), "type cannot be empty"),
            (Some(b"s"), [&value[..2], &[0xff, 0], &value[4..]].concat(), "past the end"),
            (Some(b"s"), [&value[..28], &[0xff], &value[29..]].concat(), "not UTF-8"),
            (Some(b"s"), value[..28 + 11 + 3].to_vec(), "no metadata length"),
            (Some(b"s"), value[..28 + 11 + 4 + 1].to_vec(), "metadata past the end"),
        ];
        for (key, value, why) in cases {
            let err = decode(key, Some(&value)).unwrap_err();
            assert!(err.contains(why), "{err:?} should say {why:?}");
        }
        assert!(decode(Some(b"s"), None).unwrap_err().contains("without a value"));
        let long = "s".repeat(MAX_STREAM_ID_LEN + 1);
        assert!(decode(Some(long.as_bytes()), Some(&value)).unwrap_err().contains("at most 1024"));
    }

    #[test]
    fn categories_and_limits() {
        assert_eq!(category("-x"), "");
        assert!(stream_id_problem(&"a".repeat(MAX_STREAM_ID_LEN)).is_none());
        assert!(stream_id_problem(&"a".repeat(MAX_STREAM_ID_LEN + 1)).is_some());
        assert!(event_type_problem(&"t".repeat(MAX_EVENT_TYPE_LEN)).is_none());
        assert!(event_type_problem(&"t".repeat(MAX_EVENT_TYPE_LEN + 1)).is_some());
    }
}
