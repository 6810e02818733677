//! The v1 record frame: one record per frame, in segments of format version 1.
//!
//! annal wrote these frames before batch frames existed; it still reads them
//! (a log may hold segments of both versions) and never writes them into a
//! log. [`encode_to_vec`] exists for tests and tools that build v1 segments.
//!
//! Format (docs/FORMAT.md, "v1 record frame"; all integers little-endian):
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

use super::{Record, RecordRef, checked_frame, frame_crc, split_body, split_body_trusted, u16_at, u32_at, u64_at};
use crate::error::CorruptionKind;

/// Size of the fixed part of a v1 frame.
pub const RECORD_HEADER_LEN: usize = 36;
/// The magic byte of a v1 frame.
pub const RECORD_MAGIC: u8 = 0xA1;

/// Size of `record` as a v1 frame, or `None` if a field is too large for the format.
pub fn encoded_len(record: &Record<'_>) -> Option<usize> {
    let len = record.payload_len()? as u64 + RECORD_HEADER_LEN as u64;
    (len <= u64::from(u32::MAX)).then_some(len as usize)
}

/// Encodes `record` as a v1 frame with the given offset and timestamp (the
/// record's own timestamp is ignored). For tests and tools that build v1
/// segments: a log never writes this format.
///
/// ```
/// let frame = annal::record::v1::encode_to_vec(7, 1_000, &annal::Record::new(b"v")).unwrap();
/// let decoded = annal::record::v1::decode(&frame).unwrap();
/// assert_eq!((decoded.offset(), decoded.value()), (7, Some(&b"v"[..])));
/// ```
pub fn encode_to_vec(offset: u64, timestamp: i64, record: &Record<'_>) -> Option<Vec<u8>> {
    let len = encoded_len(record)?;
    let headers_len = record.headers_len()?;
    let mut buf = vec![0; len];
    buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&offset.to_le_bytes());
    buf[16..24].copy_from_slice(&timestamp.to_le_bytes());
    buf[24] = RECORD_MAGIC;
    buf[25] = record.flags();
    buf[26..28].copy_from_slice(&(record.headers.len() as u16).to_le_bytes());
    buf[28..32].copy_from_slice(&(record.key.map_or(0, <[u8]>::len) as u32).to_le_bytes());
    buf[32..36].copy_from_slice(&(headers_len as u32).to_le_bytes());
    record.encode_payload(&mut buf[RECORD_HEADER_LEN..]);
    let crc = frame_crc(&buf);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(buf)
}

/// Decodes and fully validates the v1 frame at the start of `buf` (which may
/// continue past the frame). Never allocates; never reads past `buf`.
pub fn decode(buf: &[u8]) -> Result<RecordRef<'_>, CorruptionKind> {
    let frame = checked_frame(buf, RECORD_HEADER_LEN, RECORD_MAGIC)?;
    let header_count = u16_at(frame, 26);
    let key_len = u32_at(frame, 28) as usize;
    let headers_len = u32_at(frame, 32) as usize;
    let (key, headers, value) = split_body(&frame[RECORD_HEADER_LEN..], frame[25], header_count, key_len, headers_len)?;
    Ok(RecordRef {
        offset: u64_at(frame, 8),
        timestamp: u64_at(frame, 16) as i64,
        key,
        value,
        header_count,
        headers,
        frame_len: frame.len() as u32,
    })
}

/// The record of a v1 frame that [`decode`] accepted (nothing is checked).
#[inline]
pub(crate) fn parse_trusted(frame: &[u8]) -> RecordRef<'_> {
    let len = u32_at(frame, 0);
    let key_len = u32_at(frame, 28) as usize;
    let headers_len = u32_at(frame, 32) as usize;
    let body = &frame[RECORD_HEADER_LEN..len as usize];
    let (key, headers, value) = split_body_trusted(body, frame[25], key_len, headers_len);
    RecordRef {
        offset: u64_at(frame, 8),
        timestamp: u64_at(frame, 16) as i64,
        key,
        value,
        header_count: u16_at(frame, 26),
        headers,
        frame_len: len,
    }
}
