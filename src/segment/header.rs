//! The segment header and the checkpoint that follows it.
//!
//! ```text
//! Header (64 bytes at file position 0)
//!  0  8  magic        "ANNALSEG"
//!  8  2  version      u16  1 (v1 record frames) or 2 (batch frames)
//! 10  2  flags        u16  bit 0: sparse (written by compaction: offsets
//!                          may have gaps); bits 1-15: 0
//! 12  4  reserved     u32 = 0
//! 16  8  base_offset  u64
//! 24  8  created_ms   i64  creation time, milliseconds since the Unix epoch
//! 32  4  crc          u32  CRC-32 of bytes [0,32)
//! 36 28  reserved     zero
//!
//! Checkpoint (16 bytes at file position 64)
//! 64  8  synced_end   u64  bytes [128, synced_end) were on disk when it was written
//! 72  4  crc          u32  CRC-32 of bytes [64,72)
//! 76  4  reserved     u32 = 0
//! ```

use crate::record::FrameFormat;

pub use crate::format::{CHECKPOINT_LEN, CHECKPOINT_POS, FORMAT_VERSION, HEADER_LEN, MIN_FORMAT_VERSION};
const MAGIC: &[u8; 8] = b"ANNALSEG";

/// The flags of a segment header (bytes 10..12).
///
/// A segment appended to by the log is dense: its records carry consecutive
/// offsets from its base offset. A segment written by compaction is
/// [`SegmentFlags::SPARSE`]: its offsets are strictly increasing but may have
/// gaps (the records compaction removed), and its footer's `record_count` may
/// be less than `next_offset - base_offset`. See docs/FORMAT.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentFlags(u16);

impl SegmentFlags {
    /// No flag: a dense segment, the layout every version of annal writes when appending.
    pub const DENSE: SegmentFlags = SegmentFlags(0);
    /// Bit 0: offsets may have gaps (a compacted segment).
    pub const SPARSE: SegmentFlags = SegmentFlags(1);
    /// Every flag bit this build knows.
    const KNOWN: u16 = 1;

    /// Whether offsets may have gaps.
    pub fn is_sparse(self) -> bool {
        self.0 & Self::SPARSE.0 != 0
    }

    /// The raw bits, as stored.
    pub fn bits(self) -> u16 {
        self.0
    }
}

/// The immutable header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Offset of the first record in the segment.
    pub base_offset: u64,
    /// When the segment was created (ms since the Unix epoch).
    pub created_ms: i64,
    /// The segment format version: how its records are framed (1: one v1
    /// frame per record; 2: batch frames).
    pub version: u16,
}

impl SegmentHeader {
    /// The header of a new segment in the format this build writes.
    pub fn new(base_offset: u64, created_ms: i64) -> SegmentHeader {
        SegmentHeader { base_offset, created_ms, version: FORMAT_VERSION }
    }

    /// How the segment's records are framed.
    pub fn frame_format(&self) -> FrameFormat {
        FrameFormat::of_segment_version(self.version).expect("a decoded header has a known version")
    }

    /// Encodes the header of a dense segment into `buf[0..64]`, zeroing the reserved bytes.
    pub fn encode(&self, buf: &mut [u8]) {
        self.encode_with_flags(buf, SegmentFlags::DENSE);
    }

    /// Encodes the header with `flags` into `buf[0..64]`, zeroing the reserved bytes.
    pub fn encode_with_flags(&self, buf: &mut [u8], flags: SegmentFlags) {
        let buf = &mut buf[..HEADER_LEN];
        buf.fill(0);
        buf[0..8].copy_from_slice(MAGIC);
        buf[8..10].copy_from_slice(&self.version.to_le_bytes());
        buf[10..12].copy_from_slice(&flags.0.to_le_bytes());
        buf[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        buf[24..32].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = crc32fast::hash(&buf[0..32]);
        buf[32..36].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and checks a header: magic first, then version, then checksum,
    /// then that only known flags are set and the reserved bytes are zero.
    /// Use [`SegmentHeader::decode_with_flags`] to learn whether the segment's
    /// offsets may have gaps.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, String> {
        Self::decode_with_flags(buf).map(|(h, _)| h)
    }

    /// [`SegmentHeader::decode`], also returning the header's flags.
    pub fn decode_with_flags(buf: &[u8]) -> Result<(SegmentHeader, SegmentFlags), String> {
        let buf = buf.get(..HEADER_LEN).ok_or("file shorter than a segment header")?;
        if &buf[0..8] != MAGIC {
            return Err("bad magic (not an annal segment)".into());
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if FrameFormat::of_segment_version(version).is_none() {
            return Err(format!("unsupported segment format version {version}"));
        }
        let stored = u32::from_le_bytes(buf[32..36].try_into().expect("4 bytes"));
        if stored != crc32fast::hash(&buf[0..32]) {
            return Err("header checksum mismatch".into());
        }
        let flags = u16::from_le_bytes([buf[10], buf[11]]);
        if flags & !SegmentFlags::KNOWN != 0 || buf[12..16] != [0; 4] {
            return Err("unknown header flags".into());
        }
        if buf[36..HEADER_LEN] != [0; HEADER_LEN - 36] {
            return Err("reserved header bytes are not zero".into());
        }
        let header = SegmentHeader {
            base_offset: u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")),
            created_ms: i64::from_le_bytes(buf[24..32].try_into().expect("8 bytes")),
            version,
        };
        Ok((header, SegmentFlags(flags)))
    }
}

/// Encodes a checkpoint into the header area `buf` (at least 80 bytes).
pub fn encode_checkpoint(buf: &mut [u8], synced_end: u64) {
    let cp = &mut buf[CHECKPOINT_POS..CHECKPOINT_POS + CHECKPOINT_LEN];
    cp[0..8].copy_from_slice(&synced_end.to_le_bytes());
    let crc = crc32fast::hash(&cp[0..8]);
    cp[8..12].copy_from_slice(&crc.to_le_bytes());
    cp[12..16].fill(0);
}

/// Decodes the checkpoint; `None` if it is invalid (never written, or
/// damaged: a bad checksum or non-zero reserved bytes).
pub fn decode_checkpoint(buf: &[u8]) -> Option<u64> {
    let cp = buf.get(CHECKPOINT_POS..CHECKPOINT_POS + CHECKPOINT_LEN)?;
    let stored = u32::from_le_bytes(cp[8..12].try_into().ok()?);
    (stored == crc32fast::hash(&cp[0..8]) && cp[12..16] == [0; 4])
        .then(|| u64::from_le_bytes(cp[0..8].try_into().expect("8 bytes")))
}
