//! Harness of the `index_load` fuzz target (shared with tests/fuzz_regressions.rs).
//!
//! Decodes index files (`SegmentIndex::decode`, through `annal::fuzzing`) and
//! the segment header, checkpoint and footer from arbitrary bytes. None may
//! panic, and whatever a decoder accepts must be exactly what the matching
//! encoder writes for the decoded value: every field of these structures is
//! checked, reserved bytes included (docs/FORMAT.md).
//!
//! Input layout:
//!
//! ```text
//! byte 0       flags: bit 0 recompute the index files' CRCs; bit 1 take the
//!              base offset from the offset index file's header
//! bytes 1..9   base offset (u64 LE)
//! bytes 9..13  data_end (u32 LE)
//! bytes 13..15 length of the offset index file (u16 LE)
//! bytes 15..   the offset index file, then the time index file (the rest)
//! ```
//!
//! The header, checkpoint and footer decoders get the first 128 bytes of the
//! payload (bytes 15..) as a segment's first bytes, and its last 64 as a
//! footer of a file of `data_end + 64` bytes.

use annal::segment::header::{CHECKPOINT_POS, decode_checkpoint, encode_checkpoint};
use annal::segment::{DATA_START, FOOTER_LEN, HEADER_LEN, SegmentFooter, SegmentHeader};

use super::segment_recovery::fix_index_crc;

/// Flag: recompute the CRCs of both index files.
pub const FIX_CRCS: u8 = 1;
/// Flag: use the base offset in the offset index file's header.
pub const BASE_FROM_FILE: u8 = 2;
/// Bytes before the payload.
pub const PREFIX_LEN: usize = 15;

/// Builds an input (for seeds and tests).
pub fn encode_input(flags: u8, base_offset: u64, data_end: u32, offsets: &[u8], times: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&data_end.to_le_bytes());
    out.extend_from_slice(&u16::try_from(offsets.len()).expect("a small index file").to_le_bytes());
    out.extend_from_slice(offsets);
    out.extend_from_slice(times);
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    if data.len() < PREFIX_LEN {
        return;
    }
    let flags = data[0];
    let mut base = u64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
    let data_end = u32::from_le_bytes(data[9..13].try_into().expect("4 bytes")) as usize;
    let split = usize::from(u16::from_le_bytes(data[13..15].try_into().expect("2 bytes")));
    let payload = &data[PREFIX_LEN..];
    let split = split.min(payload.len());
    let mut offsets = payload[..split].to_vec();
    let mut times = payload[split..].to_vec();
    if flags & FIX_CRCS != 0 {
        fix_index_crc(&mut offsets);
        fix_index_crc(&mut times);
    }
    if flags & BASE_FROM_FILE != 0
        && let Some(b) = offsets.get(16..24)
    {
        base = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    }

    let accepted = annal::fuzzing::decode_index_files(&offsets, &times, base, data_end);
    match annal::fuzzing::reencode_index_files(&offsets, &times, base, data_end) {
        Some((o, t)) => {
            assert!(accepted, "decode_index_files and reencode_index_files disagree");
            assert_eq!(o, offsets, "an accepted offset index file has another encoding");
            assert_eq!(t, times, "an accepted time index file has another encoding");
        }
        None => assert!(!accepted, "decode_index_files and reencode_index_files disagree"),
    }

    // Segment header and checkpoint, from the payload's first bytes.
    if let Ok(h) = SegmentHeader::decode(payload) {
        let mut again = [0u8; HEADER_LEN];
        h.encode(&mut again);
        assert_eq!(&again[..], &payload[..HEADER_LEN], "an accepted segment header has another encoding");
    }
    if let Some(synced_end) = decode_checkpoint(payload) {
        let mut again = [0u8; DATA_START];
        encode_checkpoint(&mut again, synced_end);
        assert_eq!(
            &again[CHECKPOINT_POS..CHECKPOINT_POS + 16],
            &payload[CHECKPOINT_POS..CHECKPOINT_POS + 16],
            "an accepted checkpoint has another encoding"
        );
    }

    // Footer, from the payload's last 64 bytes.
    if payload.len() >= FOOTER_LEN {
        let buf = &payload[payload.len() - FOOTER_LEN..];
        let file_len = data_end as u64 + FOOTER_LEN as u64;
        if let Ok(f) = SegmentFooter::decode(buf, file_len) {
            assert_eq!(&f.encode()[..], buf, "an accepted footer has another encoding");
            assert_eq!(f.data_end + FOOTER_LEN as u64, file_len);
            assert!(f.data_end >= DATA_START as u64);
            assert_eq!(f.next_offset.checked_sub(f.base_offset), Some(f.record_count));
        }
    }
}
