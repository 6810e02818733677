//! The footer of a sealed segment.
//!
//! ```text
//! Footer (64 bytes at file position data_end; the file ends right after it)
//!  0  8  magic          "ANNALEND"
//!  8  8  base_offset    u64
//! 16  8  data_end       u64  file position of this footer
//! 24  8  record_count   u64  (= next_offset - base_offset unless the segment is sparse)
//! 32  8  next_offset    u64  offset after the segment's offset range
//! 40  8  max_timestamp  i64  largest record timestamp (i64::MIN if none)
//! 48  4  index_crc      u32  the crc field of the .index file
//! 52  4  timeindex_crc  u32  the crc field of the .timeindex file
//! 56  4  reserved       u32 = 0
//! 60  4  crc            u32  CRC-32 of bytes [0,60)
//! ```

use super::header::SegmentFlags;
use crate::record::batch::ENTRY_HEADER_LEN;

pub use crate::format::FOOTER_LEN;
const MAGIC: &[u8; 8] = b"ANNALEND";

/// What a sealed segment's footer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFooter {
    /// Base offset (must match the header and the file name).
    pub base_offset: u64,
    /// File position where record data ends and the footer starts.
    pub data_end: u64,
    /// Number of records in the segment.
    pub record_count: u64,
    /// Offset after the segment's last record.
    pub next_offset: u64,
    /// Largest record timestamp, `i64::MIN` if the segment is empty.
    pub max_timestamp: i64,
    /// CRC field of the offset index file that belongs to this data.
    pub index_crc: u32,
    /// CRC field of the time index file that belongs to this data.
    pub timeindex_crc: u32,
}

impl SegmentFooter {
    /// Encodes the footer into 64 bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut buf = [0u8; FOOTER_LEN];
        buf[0..8].copy_from_slice(MAGIC);
        buf[8..16].copy_from_slice(&self.base_offset.to_le_bytes());
        buf[16..24].copy_from_slice(&self.data_end.to_le_bytes());
        buf[24..32].copy_from_slice(&self.record_count.to_le_bytes());
        buf[32..40].copy_from_slice(&self.next_offset.to_le_bytes());
        buf[40..48].copy_from_slice(&self.max_timestamp.to_le_bytes());
        buf[48..52].copy_from_slice(&self.index_crc.to_le_bytes());
        buf[52..56].copy_from_slice(&self.timeindex_crc.to_le_bytes());
        let crc = crc32fast::hash(&buf[0..60]);
        buf[60..64].copy_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Decodes the last 64 bytes of a file of `file_len` bytes and checks that
    /// the footer is valid for a dense segment and sits exactly at the end of the file.
    pub fn decode(buf: &[u8], file_len: u64) -> Result<SegmentFooter, String> {
        Self::decode_with_flags(buf, file_len, SegmentFlags::DENSE)
    }

    /// [`SegmentFooter::decode`] for a segment whose header has `flags`. A
    /// dense segment holds exactly `next_offset - base_offset` records; a
    /// sparse (compacted) one at most that many, each taking at least 24
    /// bytes (a record entry's fixed part, the smallest a record takes in
    /// either frame format), and no record bytes if it holds no record.
    pub fn decode_with_flags(buf: &[u8], file_len: u64, flags: SegmentFlags) -> Result<SegmentFooter, String> {
        let buf: &[u8; FOOTER_LEN] = buf.try_into().map_err(|_| "footer must be 64 bytes")?;
        if &buf[0..8] != MAGIC {
            return Err("no footer magic".into());
        }
        let stored = u32::from_le_bytes(buf[60..64].try_into().expect("4 bytes"));
        if stored != crc32fast::hash(&buf[0..60]) {
            return Err("footer checksum mismatch".into());
        }
        if buf[56..60] != [0; 4] {
            return Err("reserved footer bytes are not zero".into());
        }
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(buf[r].try_into().expect("8 bytes"));
        let footer = SegmentFooter {
            base_offset: u(8..16),
            data_end: u(16..24),
            record_count: u(24..32),
            next_offset: u(32..40),
            max_timestamp: i64::from_le_bytes(buf[40..48].try_into().expect("8 bytes")),
            index_crc: u32::from_le_bytes(buf[48..52].try_into().expect("4 bytes")),
            timeindex_crc: u32::from_le_bytes(buf[52..56].try_into().expect("4 bytes")),
        };
        if footer.data_end.checked_add(FOOTER_LEN as u64) != Some(file_len) {
            return Err(format!("footer says data ends at {} but the file is {file_len} bytes", footer.data_end));
        }
        if footer.data_end < super::DATA_START as u64 {
            return Err("footer data_end inside the header".into());
        }
        let span = footer.next_offset.checked_sub(footer.base_offset);
        if !flags.is_sparse() {
            if span != Some(footer.record_count) {
                return Err("footer record count does not match its offsets".into());
            }
            return Ok(footer);
        }
        let data_len = footer.data_end - super::DATA_START as u64;
        if span.is_none_or(|span| footer.record_count > span) {
            return Err("footer of a sparse segment counts more records than its offsets allow".into());
        }
        if footer.record_count.checked_mul(ENTRY_HEADER_LEN as u64).is_none_or(|min| min > data_len)
            || (footer.record_count == 0 && data_len != 0)
        {
            return Err("footer record count does not match the length of its data".into());
        }
        Ok(footer)
    }
}
