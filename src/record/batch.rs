//! The batch frame: every record of one append under one checksum, in
//! segments of format version 2.
//!
//! A batch is the unit of atomicity: after any crash a batch frame is either
//! whole (its checksum matches) or not there at all, so recovery keeps or
//! cuts whole batches (docs/DESIGN.md, "Atomic batches").
//!
//! Format (docs/FORMAT.md, "Batch frame"; all integers little-endian):
//!
//! ```text
//! Batch header (32 bytes)
//!  0  4  length         u32  whole frame in bytes, this field included
//!  4  4  crc            u32  CRC-32 (ISO-HDLC) of bytes [0,4) ++ [8,length)
//!  8  8  base_offset    u64  offset of the first record
//! 16  8  max_timestamp  i64  largest timestamp of the records
//! 24  1  magic          u8   0xA2
//! 25  1  flags          u8   0 (reserved)
//! 26  2  reserved       u16  0
//! 28  4  count          u32  records in the batch, >= 1
//! 32  .  count record entries, back to back; record i has offset base_offset + i
//!
//! Record entry (24 bytes + payload)
//!  0  4  length         u32  whole entry in bytes, this field included (>= 24)
//!  4  8  timestamp      i64  milliseconds since the Unix epoch
//! 12  1  flags          u8   bit 0: key present, bit 1: value is null; others 0
//! 13  1  reserved       u8   0
//! 14  2  header_count   u16
//! 16  4  key_len        u32  0 when there is no key
//! 20  4  headers_len    u32  bytes of the encoded headers
//! 24  .  key, headers (header_count x (name_len u16, name, value_len u32, value)), value
//! ```

use super::{
    Frame, FrameFormat, Record, RecordRef, checked_frame, frame_crc, peek_len, split_body, u16_at, u32_at, u64_at,
};
use crate::error::CorruptionKind;

/// Size of a batch frame's header.
pub const BATCH_HEADER_LEN: usize = 32;
/// Size of the fixed part of a record entry in a batch.
pub const ENTRY_HEADER_LEN: usize = 24;
/// The magic byte of a batch frame.
pub const BATCH_MAGIC: u8 = 0xA2;

/// Size of the batch frame holding `records`, or `None` if it is empty or too
/// large for the format (a frame over 4 GiB, or a record [`Record::encoded_len`]
/// refuses).
pub fn encoded_len(records: &[Record<'_>]) -> Option<usize> {
    if records.is_empty() || records.len() > u32::MAX as usize {
        return None;
    }
    let mut len = BATCH_HEADER_LEN as u64;
    for r in records {
        len += r.encoded_len()? as u64;
    }
    (len <= u64::from(u32::MAX)).then_some(len as usize)
}

/// Encodes `records` as one batch frame into `buf`, which must be exactly
/// [`encoded_len`] bytes long: offsets from `base_offset`, and `now` as the
/// timestamp of each record that has none of its own. Returns the largest
/// timestamp.
pub(crate) fn encode_into(buf: &mut [u8], base_offset: u64, now: i64, records: &[Record<'_>]) -> i64 {
    let len = buf.len();
    let mut max_timestamp = i64::MIN;
    let mut pos = BATCH_HEADER_LEN;
    for r in records {
        let timestamp = r.timestamp.unwrap_or(now);
        max_timestamp = max_timestamp.max(timestamp);
        let headers_len = r.headers_len().expect("sizes checked by encoded_len");
        let entry_len = r.encoded_len().expect("sizes checked by encoded_len");
        let e = &mut buf[pos..pos + entry_len];
        e[0..4].copy_from_slice(&(entry_len as u32).to_le_bytes());
        e[4..12].copy_from_slice(&timestamp.to_le_bytes());
        e[12] = r.flags();
        e[13] = 0;
        e[14..16].copy_from_slice(&(r.headers.len() as u16).to_le_bytes());
        e[16..20].copy_from_slice(&(r.key.map_or(0, <[u8]>::len) as u32).to_le_bytes());
        e[20..24].copy_from_slice(&(headers_len as u32).to_le_bytes());
        r.encode_payload(&mut e[ENTRY_HEADER_LEN..]);
        pos += entry_len;
    }
    debug_assert_eq!(pos, len);
    buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[8..16].copy_from_slice(&base_offset.to_le_bytes());
    buf[16..24].copy_from_slice(&max_timestamp.to_le_bytes());
    buf[24] = BATCH_MAGIC;
    buf[25..28].fill(0);
    buf[28..32].copy_from_slice(&(records.len() as u32).to_le_bytes());
    let crc = frame_crc(buf);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    max_timestamp
}

/// Encodes `records` as one batch frame into a new vector (for tests, tools
/// and fuzzing): offsets from `base_offset`, `now` for records without a
/// timestamp of their own. `None` if [`encoded_len`] refuses the batch.
///
/// ```
/// use annal::record::{batch, decode_frame};
/// let frame = batch::encode_to_vec(10, 5_000, &[annal::Record::new(b"x").with_timestamp(7)]).unwrap();
/// let f = decode_frame(&frame).unwrap();
/// assert_eq!((f.base_offset(), f.count(), f.max_timestamp()), (10, 1, 7));
/// ```
pub fn encode_to_vec(base_offset: u64, now: i64, records: &[Record<'_>]) -> Option<Vec<u8>> {
    // The last record's offset must leave a next offset (u64::MAX is never a record's).
    base_offset.checked_add(records.len() as u64)?;
    let mut buf = vec![0; encoded_len(records)?];
    encode_into(&mut buf, base_offset, now, records);
    Some(buf)
}

/// Decodes and fully validates the batch frame at the start of `buf` (which
/// may continue past the frame): length, checksum, magic, reserved bytes,
/// every record entry's layout, that the entries fill the frame exactly, the
/// largest timestamp, and that no record's offset would be `u64::MAX`.
/// Never allocates; never reads past `buf`.
pub(crate) fn decode(buf: &[u8]) -> Result<Frame<'_>, CorruptionKind> {
    let frame = checked_frame(buf, BATCH_HEADER_LEN + ENTRY_HEADER_LEN, BATCH_MAGIC)?;
    if frame[25..28] != [0; 3] {
        return Err(CorruptionKind::BadLayout("unknown batch flags or reserved bytes"));
    }
    let base_offset = u64_at(frame, 8);
    let max_timestamp = u64_at(frame, 16) as i64;
    let count = u32_at(frame, 28);
    if count == 0 {
        return Err(CorruptionKind::BadLayout("empty batch"));
    }
    // The last record's offset must leave a next offset (u64::MAX is never a record's).
    if base_offset.checked_add(u64::from(count)).is_none() {
        return Err(CorruptionKind::BadLayout(super::LAST_OFFSET));
    }
    let mut at = BATCH_HEADER_LEN;
    let mut max = i64::MIN;
    // Each entry takes at least ENTRY_HEADER_LEN bytes, so this loop ends
    // within the frame whatever `count` says.
    for _ in 0..count {
        let (entry_len, timestamp) = check_entry(&frame[at..])?;
        max = max.max(timestamp);
        at += entry_len;
    }
    if at != frame.len() {
        return Err(CorruptionKind::BadLayout("batch bytes left over after its records"));
    }
    if max != max_timestamp {
        return Err(CorruptionKind::BadLayout("batch max timestamp differs from its records'"));
    }
    Ok(Frame { bytes: frame, format: FrameFormat::Batch, base_offset, count, max_timestamp })
}

/// Checks the record entry at the start of `rest` (the rest of its frame);
/// returns its length and timestamp.
#[inline]
fn check_entry(rest: &[u8]) -> Result<(usize, i64), CorruptionKind> {
    let len = match peek_len(rest) {
        Some(l) if l as usize >= ENTRY_HEADER_LEN && l as usize <= rest.len() => l as usize,
        _ => return Err(CorruptionKind::BadLayout("record entry longer than its batch, or shorter than 24 bytes")),
    };
    let e = &rest[..len];
    if e[13] != 0 {
        return Err(CorruptionKind::BadLayout("reserved record byte is not zero"));
    }
    let key_len = u32_at(e, 16) as usize;
    let headers_len = u32_at(e, 20) as usize;
    split_body(&e[ENTRY_HEADER_LEN..], e[12], u16_at(e, 14), key_len, headers_len)?;
    Ok((len, u64_at(e, 4) as i64))
}

/// The record entry at the start of `buf`, in a frame that [`decode`]
/// accepted, with offset `offset` (nothing is checked).
#[inline]
pub(crate) fn parse_entry_trusted(buf: &[u8], offset: u64) -> RecordRef<'_> {
    let len = u32_at(buf, 0);
    let e = &buf[..len as usize];
    let key_len = u32_at(e, 16) as usize;
    let headers_len = u32_at(e, 20) as usize;
    let (key, headers, value) = super::split_body_trusted(&e[ENTRY_HEADER_LEN..], e[12], key_len, headers_len);
    RecordRef {
        offset,
        timestamp: u64_at(e, 4) as i64,
        key,
        value,
        header_count: u16_at(e, 14),
        headers,
        frame_len: len,
    }
}

/// Builds one batch frame from records copied out of other frames (for
/// compaction): their bytes are taken as they are stored, an entry of a batch
/// frame verbatim, a v1 frame converted to an entry, and the offsets of the
/// records pushed must be consecutive.
#[derive(Debug, Default)]
pub(crate) struct BatchBuilder {
    buf: Vec<u8>,
    next_offset: u64,
    count: u32,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// Whether no record was pushed since the last [`BatchBuilder::finish`].
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `r`, whose own bytes in a validated frame of `format` are `bytes`
    /// (a batch entry, or a whole v1 frame). Its offset must follow the last
    /// record pushed, unless it is the first.
    pub(crate) fn push(&mut self, format: FrameFormat, bytes: &[u8], r: &RecordRef<'_>) {
        if self.count == 0 {
            self.buf.clear();
            self.buf.resize(BATCH_HEADER_LEN, 0);
            self.max_timestamp = i64::MIN;
        } else {
            debug_assert_eq!(r.offset(), self.next_offset, "a batch holds consecutive offsets");
        }
        match format {
            FrameFormat::Batch => self.buf.extend_from_slice(bytes),
            FrameFormat::V1 => {
                // A v1 frame's fields after its offset and timestamp are an
                // entry's, in the same order: flags, header count, key and
                // header lengths, then key, headers and value.
                let payload = &bytes[super::v1::RECORD_HEADER_LEN..];
                let len = (ENTRY_HEADER_LEN + payload.len()) as u32;
                self.buf.extend_from_slice(&len.to_le_bytes());
                self.buf.extend_from_slice(&r.timestamp().to_le_bytes());
                self.buf.extend_from_slice(&[bytes[25], 0]);
                self.buf.extend_from_slice(&bytes[26..36]);
                self.buf.extend_from_slice(payload);
            }
        }
        if self.count == 0 {
            self.buf[8..16].copy_from_slice(&r.offset().to_le_bytes());
        }
        self.count += 1;
        self.next_offset = r.offset() + 1;
        self.max_timestamp = self.max_timestamp.max(r.timestamp());
    }

    /// Completes the frame of the records pushed and returns it with its
    /// first offset and largest timestamp; the next push starts a new one.
    pub(crate) fn finish(&mut self) -> (&[u8], u64, i64) {
        debug_assert!(self.count > 0);
        let len = self.buf.len() as u32;
        let b = &mut self.buf;
        b[0..4].copy_from_slice(&len.to_le_bytes());
        b[16..24].copy_from_slice(&self.max_timestamp.to_le_bytes());
        b[24] = BATCH_MAGIC;
        b[25..28].fill(0);
        b[28..32].copy_from_slice(&self.count.to_le_bytes());
        let crc = frame_crc(b);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        self.count = 0;
        (&self.buf, u64_at(&self.buf, 8), self.max_timestamp)
    }
}
