//! Records and the frames that hold them: the owner of the record format.
//!
//! A segment's records are stored in **frames**, back to back
//! (docs/FORMAT.md, "Frames"). Every frame starts with the same 8 bytes, a
//! length and a CRC-32 over the rest of the frame, and carries its format in
//! the magic byte at position 24:
//!
//! - a **batch frame** ([`batch`], magic `0xA2`, segment format version 2):
//!   every record of one [`crate::Log::append_batch`] call, under one
//!   checksum, so that a batch is stored whole or not at all;
//! - a **v1 frame** ([`v1`], magic `0xA1`, segment format version 1): one
//!   record. annal no longer writes it, and reads it in segments written
//!   before batch frames existed.
//!
//! [`decode_frame`] validates a frame of either format completely (checksum,
//! layout of every record in it, offsets); [`Frame::records`] then walks its
//! records without checking anything again.

pub mod batch;
pub mod v1;

use std::fmt;

use crate::error::CorruptionKind;

/// Flag bit of a record: it has a key.
const FLAG_KEY: u8 = 0b01;
/// Flag bit of a record: its value is null (a tombstone).
const FLAG_NULL_VALUE: u8 = 0b10;
/// Why a record at offset `u64::MAX` is refused.
pub(crate) const LAST_OFFSET: &str = "record at offset u64::MAX, which leaves no next offset";
/// Position of the magic byte in a frame of either format.
const MAGIC_POS: usize = 24;

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
#[must_use]
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
    pub fn with_key(mut self, key: &'a [u8]) -> Record<'a> {
        self.key = Some(key);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch) instead of the append time.
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Record<'a> {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Sets the headers.
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

    /// Size of the record's entry in a batch frame, in bytes: what
    /// [`crate::LogConfig::with_max_record_bytes`] bounds. `None` if a field is
    /// too large for the format (a header name over 65,535 bytes, more than
    /// 65,535 headers, or an entry over 4 GiB).
    pub fn encoded_len(&self) -> Option<usize> {
        self.payload_len().map(|p| p + batch::ENTRY_HEADER_LEN).filter(|&l| l <= u32::MAX as usize)
    }

    /// Bytes of key, encoded headers and value.
    fn payload_len(&self) -> Option<usize> {
        if self.headers.len() > usize::from(u16::MAX) {
            return None;
        }
        let mut len = self.key.map_or(0, |k| k.len() as u64);
        len += self.headers_len()? as u64;
        len += self.value.map_or(0, |v| v.len() as u64);
        (len <= u64::from(u32::MAX)).then_some(len as usize)
    }

    /// Bytes of the encoded headers, or `None` if a name is too long.
    fn headers_len(&self) -> Option<usize> {
        let mut len = 0usize;
        for h in self.headers {
            if h.name.len() > usize::from(u16::MAX) {
                return None;
            }
            len = len.checked_add(6 + h.name.len() + h.value.len())?;
        }
        Some(len)
    }

    /// The flag byte of the record: key present, null value.
    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.key.is_some() {
            flags |= FLAG_KEY;
        }
        if self.value.is_none() {
            flags |= FLAG_NULL_VALUE;
        }
        flags
    }

    /// Writes key, headers and value into `buf` (exactly their length).
    fn encode_payload(&self, buf: &mut [u8]) {
        let key = self.key.unwrap_or(&[]);
        let mut pos = 0;
        buf[pos..pos + key.len()].copy_from_slice(key);
        pos += key.len();
        for h in self.headers {
            buf[pos..pos + 2].copy_from_slice(&(h.name.len() as u16).to_le_bytes());
            pos += 2;
            buf[pos..pos + h.name.len()].copy_from_slice(h.name.as_bytes());
            pos += h.name.len();
            buf[pos..pos + 4].copy_from_slice(&(h.value.len() as u32).to_le_bytes());
            pos += 4;
            buf[pos..pos + h.value.len()].copy_from_slice(h.value);
            pos += h.value.len();
        }
        let value = self.value.unwrap_or(&[]);
        buf[pos..pos + value.len()].copy_from_slice(value);
        debug_assert_eq!(pos + value.len(), buf.len());
    }
}

/// CRC-32 of a frame of either format: every byte but the CRC field itself
/// (`[0, 4) ++ [8, len)`).
pub(crate) fn frame_crc(frame: &[u8]) -> u32 {
    // `Hasher::new` detects the CPU's features on every call (about a tenth
    // of the instructions of checking a 100-byte record); a clone of one
    // hasher made once does not.
    static EMPTY: std::sync::LazyLock<crc32fast::Hasher> = std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut h = EMPTY.clone();
    h.update(&frame[0..4]);
    h.update(&frame[8..]);
    h.finalize()
}

/// The frame at the start of `buf`, checked as both formats check it first:
/// its length (at least `min_len`, within `buf`), its CRC, then its magic
/// byte (offset 24). What follows the magic is the format's to check.
#[inline]
pub(crate) fn checked_frame(buf: &[u8], min_len: usize, magic: u8) -> Result<&[u8], CorruptionKind> {
    let len = peek_len(buf).ok_or(CorruptionKind::BadLength(0))?;
    let n = len as usize;
    if n < min_len || n > buf.len() {
        return Err(CorruptionKind::BadLength(len));
    }
    let frame = &buf[..n];
    let stored = u32_at(frame, 4);
    let computed = frame_crc(frame);
    if stored != computed {
        return Err(CorruptionKind::BadChecksum { stored, computed });
    }
    if frame[24] != magic {
        return Err(CorruptionKind::BadLayout("unknown magic byte"));
    }
    Ok(frame)
}

/// Reads the length field of the frame at the start of `buf`, if there are 4 bytes.
pub(crate) fn peek_len(buf: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?))
}

/// The span of the frame of format `format` at the start of `buf`, read
/// from its header alone: its length, its first record's offset and the
/// offset after its last. The header's own fields are checked (a length that
/// fits in `buf`, the format's magic byte, at least one record, no offset
/// overflow), but not the checksum nor the records: this is for stepping over
/// a frame whose records are not returned. The first frame whose records are
/// returned is then checked whole, so a damaged header sends a reader to
/// bytes that fail that check, never to wrong records.
pub(crate) fn peek_span(buf: &[u8], format: FrameFormat) -> Result<(usize, u64, u64), CorruptionKind> {
    let len = peek_len(buf).ok_or(CorruptionKind::BadLength(0))?;
    let n = len as usize;
    if n < format.min_len() || n > buf.len() {
        return Err(CorruptionKind::BadLength(len));
    }
    let base = u64_at(buf, 8);
    let (magic, count) = match format {
        FrameFormat::V1 => (v1::RECORD_MAGIC, 1),
        FrameFormat::Batch => (batch::BATCH_MAGIC, u64::from(u32_at(buf, 28))),
    };
    if buf[MAGIC_POS] != magic {
        return Err(CorruptionKind::BadLayout("unknown magic byte"));
    }
    if count == 0 {
        return Err(CorruptionKind::BadLayout("empty batch"));
    }
    let next = base.checked_add(count).ok_or(CorruptionKind::BadLayout(LAST_OFFSET))?;
    Ok((n, base, next))
}

/// Little-endian integer fields at fixed positions of bytes already known to
/// be long enough (checked by the caller; a short slice is a bug).
#[inline]
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The two frame formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameFormat {
    /// One record per frame (magic `0xA1`): segments of format version 1.
    V1,
    /// A batch of records under one checksum (magic `0xA2`): segments of
    /// format version 2.
    Batch,
}

impl FrameFormat {
    /// The frame format of a segment of format `version` (1 or 2).
    pub fn of_segment_version(version: u16) -> Option<FrameFormat> {
        match version {
            1 => Some(FrameFormat::V1),
            2 => Some(FrameFormat::Batch),
            _ => None,
        }
    }

    /// Bytes before the first record's own fields: the whole fixed header of
    /// a v1 frame (its record starts at the frame), or a batch's header.
    fn records_start(self) -> usize {
        match self {
            FrameFormat::V1 => 0,
            FrameFormat::Batch => batch::BATCH_HEADER_LEN,
        }
    }

    /// The smallest valid frame.
    pub fn min_len(self) -> usize {
        match self {
            FrameFormat::V1 => v1::RECORD_HEADER_LEN,
            FrameFormat::Batch => batch::BATCH_HEADER_LEN + batch::ENTRY_HEADER_LEN,
        }
    }
}

/// A frame that [`decode_frame`] validated: every record in it is well formed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    format: FrameFormat,
    base_offset: u64,
    count: u32,
    max_timestamp: i64,
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .field("base_offset", &self.base_offset)
            .field("count", &self.count)
            .field("max_timestamp", &self.max_timestamp)
            .finish()
    }
}

impl<'a> Frame<'a> {
    /// The frame's format.
    pub fn format(&self) -> FrameFormat {
        self.format
    }

    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid frame holds at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The whole frame, as stored.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Offset of the frame's first record.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Number of records (at least 1). Their offsets are
    /// `base_offset .. base_offset + count`.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The offset after the frame's last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }

    /// Largest timestamp of the frame's records.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Position of the first record's own bytes in the frame: 0 in a v1
    /// frame (the record is the frame), the batch header's length in a batch.
    pub(crate) fn records_start(&self) -> usize {
        self.format.records_start()
    }

    /// The records, in offset order.
    pub fn records(&self) -> FrameRecords<'a> {
        FrameRecords {
            rest: &self.bytes[self.format.records_start()..],
            format: self.format,
            next_offset: self.base_offset,
            left: self.count,
        }
    }
}

/// Iterator over the records of a validated [`Frame`].
#[derive(Debug, Clone)]
pub struct FrameRecords<'a> {
    rest: &'a [u8],
    format: FrameFormat,
    next_offset: u64,
    left: u32,
}

impl<'a> Iterator for FrameRecords<'a> {
    type Item = RecordRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.left == 0 {
            return None;
        }
        let r = parse_trusted(self.format, self.rest, self.next_offset);
        self.rest = &self.rest[r.frame_len as usize..];
        self.next_offset += 1;
        self.left -= 1;
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for FrameRecords<'_> {}

/// The record whose own bytes start at `buf[0]` (a v1 frame, or an entry of
/// a batch), with offset `offset`, in a frame that was validated: nothing is
/// checked again. The record's `frame_len` is what it takes in `buf`.
#[inline]
pub(crate) fn parse_trusted(format: FrameFormat, buf: &[u8], offset: u64) -> RecordRef<'_> {
    match format {
        FrameFormat::V1 => v1::parse_trusted(buf),
        FrameFormat::Batch => batch::parse_entry_trusted(buf, offset),
    }
}

/// Decodes and fully validates the frame of format `format` at the start of
/// `buf` (which may continue past the frame): its length, its checksum, the
/// magic byte of its format, and the layout of every record in it. Offsets
/// are not checked against anything here: the frame's position in a segment
/// decides them. Never allocates; never reads past `buf`.
pub fn decode_frame_as(buf: &[u8], format: FrameFormat) -> Result<Frame<'_>, CorruptionKind> {
    match format {
        FrameFormat::V1 => {
            let r = v1::decode(buf)?;
            // The last offset, u64::MAX, is never a record's: it would leave
            // no next offset (only a crafted file can hold one).
            if r.offset == u64::MAX {
                return Err(CorruptionKind::BadLayout(LAST_OFFSET));
            }
            Ok(Frame {
                bytes: &buf[..r.frame_len as usize],
                format,
                base_offset: r.offset,
                count: 1,
                max_timestamp: r.timestamp,
            })
        }
        FrameFormat::Batch => batch::decode(buf),
    }
}

/// [`decode_frame_as`] for a frame of either format, told apart by its magic
/// byte (a segment's format version says which one it must hold; tools that
/// read frames on their own may not know it).
///
/// ```
/// use annal::record::{self, batch};
/// let frame = batch::encode_to_vec(7, 1_000, &[annal::Record::new(b"a"), annal::Record::new(b"b")]).unwrap();
/// let decoded = record::decode_frame(&frame).unwrap();
/// let values: Vec<_> = decoded.records().map(|r| (r.offset(), r.value())).collect();
/// assert_eq!(values, [(7, Some(&b"a"[..])), (8, Some(&b"b"[..]))]);
/// ```
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, CorruptionKind> {
    let format = match buf.get(MAGIC_POS) {
        Some(&v1::RECORD_MAGIC) => FrameFormat::V1,
        _ => FrameFormat::Batch,
    };
    decode_frame_as(buf, format)
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

    /// Bytes the record takes in its frame: its entry in a batch frame, or
    /// the whole frame of a v1 record.
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
/// when the record's frame was decoded.
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

/// A record's key (if any), encoded headers and value (if not null).
type Body<'a> = (Option<&'a [u8]>, &'a [u8], Option<&'a [u8]>);

/// The key, headers and value of a record whose flag byte is `flags`, from
/// `body` (its bytes after the fixed fields), checking that they fit and that
/// the headers parse to exactly `headers_len` bytes. The layout rules shared
/// by both frame formats.
#[inline]
fn split_body(
    body: &[u8],
    flags: u8,
    header_count: u16,
    key_len: usize,
    headers_len: usize,
) -> Result<Body<'_>, CorruptionKind> {
    if flags & !(FLAG_KEY | FLAG_NULL_VALUE) != 0 {
        return Err(CorruptionKind::BadLayout("unknown flag bits"));
    }
    if key_len.checked_add(headers_len).is_none_or(|l| l > body.len()) {
        return Err(CorruptionKind::BadLayout("key and headers longer than the record"));
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
    if header_count != 0 || !headers.is_empty() {
        check_headers(headers, header_count)?;
    }
    Ok((key, headers, value))
}

/// Checks that `headers` are exactly `count` well-formed headers.
#[cold]
fn check_headers(headers: &[u8], count: u16) -> Result<(), CorruptionKind> {
    let mut rest = headers;
    for _ in 0..count {
        rest = split_header(rest).ok_or(CorruptionKind::BadLayout("malformed header"))?.1;
    }
    if !rest.is_empty() {
        return Err(CorruptionKind::BadLayout("header bytes left over"));
    }
    Ok(())
}

/// [`split_body`] for a record that was validated: nothing is checked.
#[inline]
fn split_body_trusted(body: &[u8], flags: u8, key_len: usize, headers_len: usize) -> Body<'_> {
    let key = (flags & FLAG_KEY != 0).then(|| &body[..key_len]);
    let headers = &body[key_len..key_len + headers_len];
    let value = (flags & FLAG_NULL_VALUE == 0).then(|| &body[key_len + headers_len..]);
    (key, headers, value)
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
