//! Encoding and decoding of one record frame: the owner of the record format.
//!
//! Format (docs/FORMAT.md, "Record frame"; all integers little-endian):
//!
//! ```text
//!  0      4  length        u32  whole frame in bytes, this field included (>= 36)
//!  4      4  crc           u32  CRC-32 (ISO-HDLC) of bytes [0,4) ++ [8,length)
//!  8      8  offset        u64  absolute log offset of the record
//! 16      8  timestamp     i64  milliseconds since the Unix epoch
//! 24      1  magic         u8   0xA1 (record format v1)
//! 25      1  flags         u8   bit 0: key present, bit 1: value is null; others 0
//! 26      2  header_count  u16  number of headers
//! 28      4  key_len       u32  0 when there is no key
//! 32      4  headers_len   u32  bytes of the encoded headers
//! 36      .  key           key_len bytes
//!  .      .  headers       header_count x (name_len u16, name, value_len u32, value)
//!  .      .  value         the rest of the frame (empty when null)
//! ```

use std::fmt;

use crate::error::CorruptionKind;

/// Size of the fixed part of a record frame.
pub const RECORD_HEADER_LEN: usize = 36;
/// The magic byte of record format v1.
pub const RECORD_MAGIC: u8 = 0xA1;
const FLAG_KEY: u8 = 0b01;
const FLAG_NULL_VALUE: u8 = 0b10;

/// One name/value header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header name (UTF-8, at most 65,535 bytes).
    pub name: &'a str,
    /// Header value.
    pub value: &'a [u8],
}

/// A record to append. It borrows its parts, so building one allocates nothing.
///
/// ```
/// use annal::{Header, Record};
/// let headers = [Header { name: "content-type", value: b"text/plain" }];
/// let record = Record::new(b"hello")
///     .with_key(b"greeting")
///     .with_timestamp(1_700_000_000_000)
///     .with_headers(&headers);
/// assert_eq!(record.key(), Some(&b"greeting"[..]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    timestamp: Option<i64>,
    headers: &'a [Header<'a>],
}

impl<'a> Record<'a> {
    /// A record with this value, no key, no headers, timestamped at append.
    pub fn new(value: &'a [u8]) -> Record<'a> {
        Record { key: None, value: Some(value), timestamp: None, headers: &[] }
    }

    /// A record with a key and a null value (a tombstone for compaction).
    pub fn tombstone(key: &'a [u8]) -> Record<'a> {
        Record { key: Some(key), value: None, timestamp: None, headers: &[] }
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: &'a [u8]) -> Record<'a> {
        self.key = Some(key);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch) instead of the append time.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Record<'a> {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Sets the headers.
    #[must_use]
    pub fn with_headers(mut self, headers: &'a [Header<'a>]) -> Record<'a> {
        self.headers = headers;
        self
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The caller-given timestamp, if any.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The headers.
    pub fn headers(&self) -> &'a [Header<'a>] {
        self.headers
    }

    /// Size of the encoded frame in bytes, or `None` if a field is too large
    /// for the format (a header name over 65,535 bytes, more than 65,535
    /// headers, or a frame over 4 GiB).
    pub fn encoded_len(&self) -> Option<usize> {
        if self.headers.len() > usize::from(u16::MAX) {
            return None;
        }
        let mut len = RECORD_HEADER_LEN as u64;
        len += self.key.map_or(0, |k| k.len() as u64);
        for h in self.headers {
            if h.name.len() > usize::from(u16::MAX) {
                return None;
            }
            len += 6 + h.name.len() as u64 + h.value.len() as u64;
        }
        len += self.value.map_or(0, |v| v.len() as u64);
        (len <= u64::from(u32::MAX)).then_some(len as usize)
    }
}

/// Encodes `record` with the given offset and timestamp into `buf`, which must
/// be exactly [`Record::encoded_len`] bytes long.
pub(crate) fn encode_into(buf: &mut [u8], offset: u64, timestamp: i64, record: &Record<'_>) {
    let len = buf.len();
    let key = record.key.unwrap_or(&[]);
    let mut flags = 0;
    if record.key.is_some() {
        flags |= FLAG_KEY;
    }
    if record.value.is_none() {
        flags |= FLAG_NULL_VALUE;
    }
    let headers_len: usize = record.headers.iter().map(|h| 6 + h.name.len() + h.value.len()).sum();
    buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&offset.to_le_bytes());
    buf[16..24].copy_from_slice(&timestamp.to_le_bytes());
    buf[24] = RECORD_MAGIC;
    buf[25] = flags;
    buf[26..28].copy_from_slice(&(record.headers.len() as u16).to_le_bytes());
    buf[28..32].copy_from_slice(&(key.len() as u32).to_le_bytes());
    buf[32..36].copy_from_slice(&(headers_len as u32).to_le_bytes());
    let mut pos = RECORD_HEADER_LEN;
    buf[pos..pos + key.len()].copy_from_slice(key);
    pos += key.len();
    for h in record.headers {
        buf[pos..pos + 2].copy_from_slice(&(h.name.len() as u16).to_le_bytes());
        pos += 2;
        buf[pos..pos + h.name.len()].copy_from_slice(h.name.as_bytes());
        pos += h.name.len();
        buf[pos..pos + 4].copy_from_slice(&(h.value.len() as u32).to_le_bytes());
        pos += 4;
        buf[pos..pos + h.value.len()].copy_from_slice(h.value);
        pos += h.value.len();
    }
    let value = record.value.unwrap_or(&[]);
    buf[pos..pos + value.len()].copy_from_slice(value);
    debug_assert_eq!(pos + value.len(), len);
    let crc = frame_crc(buf);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes a record into a new vector (for tests, tools and fuzzing).
///
/// ```
/// let frame = annal::record::encode_to_vec(7, 1_000, &annal::Record::new(b"v")).unwrap();
/// let decoded = annal::record::decode(&frame).unwrap();
/// assert_eq!((decoded.offset(), decoded.value()), (7, Some(&b"v"[..])));
/// ```
pub fn encode_to_vec(offset: u64, timestamp: i64, record: &Record<'_>) -> Option<Vec<u8>> {
    let mut buf = vec![0; record.encoded_len()?];
    encode_into(&mut buf, offset, timestamp, record);
    Some(buf)
}

/// CRC of a whole frame: everything but the CRC field itself.
fn frame_crc(frame: &[u8]) -> u32 {
    // `Hasher::new` detects the CPU's features on every call (about a tenth
    // of the instructions of checking a 100-byte record); a clone of one
    // hasher made once does not.
    static EMPTY: std::sync::LazyLock<crc32fast::Hasher> = std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut h = EMPTY.clone();
    h.update(&frame[0..4]);
    h.update(&frame[8..]);
    h.finalize()
}

/// A record read from the log, borrowing its bytes from the segment map.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    offset: u64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    header_count: u16,
    headers: &'a [u8],
    frame_len: u32,
}

impl fmt::Debug for RecordRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRef")
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key)
            .field("value_len", &self.value.map(<[u8]>::len))
            .field("headers", &self.headers().collect::<Vec<_>>())
            .finish()
    }
}

impl<'a> RecordRef<'a> {
    /// The record's offset in the log.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The record's timestamp in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The headers, in append order.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.headers, left: self.header_count }
    }

    /// Size of the encoded frame in bytes.
    pub fn frame_len(&self) -> u32 {
        self.frame_len
    }

    /// Copies the record out of the map.
    pub fn to_owned(&self) -> OwnedRecord {
        OwnedRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.headers().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
        }
    }
}

/// Iterator over the headers of a [`RecordRef`]. The headers were validated
/// when the record was decoded.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    left: u16,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.left == 0 {
            return None;
        }
        let (h, rest) = split_header(self.rest)?;
        self.rest = rest;
        self.left -= 1;
        Some(h)
    }
}

fn split_header(buf: &[u8]) -> Option<(Header<'_>, &[u8])> {
    let name_len = usize::from(u16::from_le_bytes(buf.get(0..2)?.try_into().ok()?));
    let name = std::str::from_utf8(buf.get(2..2 + name_len)?).ok()?;
    let p = 2 + name_len;
    let value_len = u32::from_le_bytes(buf.get(p..p + 4)?.try_into().ok()?) as usize;
    let value = buf.get(p + 4..(p + 4).checked_add(value_len)?)?;
    Some((Header { name, value }, &buf[p + 4 + value_len..]))
}

/// A record copied out of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Offset in the log.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers as (name, value) pairs.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads the length field of the frame at the start of `buf`, if there are 4 bytes.
pub(crate) fn peek_len(buf: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?))
}

/// The length, offset and timestamp of the frame at the start of `buf`, read
/// straight from its header without checking anything: only for a frame that
/// [`decode`] has already accepted, in bytes that cannot have changed since
/// (a sealed segment's map).
pub(crate) fn checked_frame_fields(buf: &[u8]) -> (u32, u64, i64) {
    let field = |at: usize| -> [u8; 8] { buf[at..at + 8].try_into().expect("8 bytes") };
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    (len, u64::from_le_bytes(field(8)), i64::from_le_bytes(field(16)))
}

/// Decodes and fully validates the frame at the start of `buf` (which may
/// continue past the frame). Never allocates; never reads past `buf`.
pub fn decode(buf: &[u8]) -> Result<RecordRef<'_>, CorruptionKind> {
    let len = peek_len(buf).ok_or(CorruptionKind::BadLength(0))?;
    let n = len as usize;
    if n < RECORD_HEADER_LEN || n > buf.len() {
        return Err(CorruptionKind::BadLength(len));
    }
    let frame = &buf[..n];
    let stored = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
    let computed = frame_crc(frame);
    if stored != computed {
        return Err(CorruptionKind::BadChecksum { stored, computed });
    }
    if frame[24] != RECORD_MAGIC {
        return Err(CorruptionKind::BadLayout("unknown magic byte"));
    }
    let flags = frame[25];
    if flags & !(FLAG_KEY | FLAG_NULL_VALUE) != 0 {
        return Err(CorruptionKind::BadLayout("unknown flag bits"));
    }
    let header_count = u16::from_le_bytes(frame[26..28].try_into().expect("2 bytes"));
    let key_len = u32::from_le_bytes(frame[28..32].try_into().expect("4 bytes")) as usize;
    let headers_len = u32::from_le_bytes(frame[32..36].try_into().expect("4 bytes")) as usize;
    let body = &frame[RECORD_HEADER_LEN..];
    if key_len.checked_add(headers_len).is_none_or(|l| l > body.len()) {
        return Err(CorruptionKind::BadLayout("key and headers longer than the frame"));
    }
    if flags & FLAG_KEY == 0 && key_len != 0 {
        return Err(CorruptionKind::BadLayout("key bytes without the key flag"));
    }
    let key = (flags & FLAG_KEY != 0).then(|| &body[..key_len]);
    let headers = &body[key_len..key_len + headers_len];
    let value_bytes = &body[key_len + headers_len..];
    let value = if flags & FLAG_NULL_VALUE != 0 {
        if !value_bytes.is_empty() {
            return Err(CorruptionKind::BadLayout("null value with value bytes"));
        }
        None
    } else {
        Some(value_bytes)
    };
    let mut rest = headers;
    for _ in 0..header_count {
        rest = split_header(rest).ok_or(CorruptionKind::BadLayout("malformed header"))?.1;
    }
    if !rest.is_empty() {
        return Err(CorruptionKind::BadLayout("header bytes left over"));
    }
    Ok(RecordRef {
        offset: u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes")),
        timestamp: i64::from_le_bytes(frame[16..24].try_into().expect("8 bytes")),
        key,
        value,
        header_count,
        headers,
        frame_len: len,
    })
}
