//! Harness of the `record_decode` fuzz target (shared with tests/fuzz_regressions.rs).
//!
//! The first input byte chooses the mode; the rest is the frame bytes:
//!
//! - bit 0: **fix the checksum** first (the CRC field of the frame at the
//!   start, over the bytes its length field names, clamped to the input), so
//!   that inputs get past the checksum to the layout checks behind it, which
//!   random bytes almost never reach;
//! - bits 1-2: decode as a batch frame (0), a v1 frame (1), or whichever the
//!   magic byte says (2, 3).
//!
//! Decoding must never panic; a frame it accepts must iterate its records
//! without panicking, decode the same on its own, and be exactly the frame
//! the encoder writes for the decoded records: the format has one encoding
//! per batch, so nothing the decoder accepts can be misread.

use annal::record::{self, FrameFormat, batch, v1};
use annal::{Header, Record, RecordRef};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut buf = rest.to_vec();
    if mode & 1 != 0 {
        fix_crc(&mut buf);
    }
    let decoded = match (mode >> 1) & 3 {
        0 => record::decode_frame_as(&buf, FrameFormat::Batch),
        1 => record::decode_frame_as(&buf, FrameFormat::V1),
        _ => record::decode_frame(&buf),
    };
    let Ok(f) = decoded else { return };
    let n = f.len();
    assert!((f.format().min_len()..=buf.len()).contains(&n), "frame length {n} outside the input");
    let frame = &buf[..n];
    // Decoding the frame alone gives the same frame.
    assert_eq!(record::decode_frame_as(frame, f.format()).ok(), Some(f), "decoding the frame on its own differs");
    let _ = format!("{f:?}");
    let records: Vec<RecordRef<'_>> = f.records().collect();
    assert_eq!(records.len(), f.count() as usize);
    assert!(f.count() >= 1 && f.base_offset().checked_add(u64::from(f.count())).is_some());
    let mut max = i64::MIN;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset(), f.base_offset() + i as u64, "offsets within a frame are consecutive");
        max = max.max(r.timestamp());
        let _ = format!("{r:?}");
        assert_eq!(r.to_owned().headers.len(), r.headers().count());
    }
    assert_eq!(max, f.max_timestamp());
    assert_eq!(records.iter().map(|r| r.frame_len() as usize).sum::<usize>() + header_len(f.format()), n);

    // Re-encode.
    let headers: Vec<Vec<Header<'_>>> = records.iter().map(|r| r.headers().collect()).collect();
    let mut again = Vec::with_capacity(records.len());
    for (r, h) in records.iter().zip(&headers) {
        let rec = match (r.key(), r.value()) {
            (Some(k), None) => Record::tombstone(k),
            (key, Some(v)) => {
                let rec = Record::new(v);
                match key {
                    Some(k) => rec.with_key(k),
                    None => rec,
                }
            }
            // A null value without a key: the format allows the record
            // (flags 0x02), but `Record` cannot express it (a tombstone
            // always has a key), so annal never writes one. Nothing to re-encode.
            (None, None) => return,
        };
        again.push(rec.with_headers(h).with_timestamp(r.timestamp()));
    }
    let encoded = match f.format() {
        FrameFormat::Batch => batch::encode_to_vec(f.base_offset(), 0, &again),
        _ => v1::encode_to_vec(f.base_offset(), again[0].timestamp().unwrap_or(0), &again[0]),
    };
    assert_eq!(encoded.as_deref(), Some(frame), "re-encoding the decoded records changes the frame");
}

/// Bytes before the first record's own bytes in a frame of `format`.
fn header_len(format: FrameFormat) -> usize {
    match format {
        FrameFormat::Batch => batch::BATCH_HEADER_LEN,
        _ => 0,
    }
}

/// Sets the CRC field of the frame at the start of `buf` to the CRC of the
/// bytes its length field names (clamped to `buf`).
pub fn fix_crc(buf: &mut [u8]) {
    if buf.len() < 8 {
        return;
    }
    let len = (u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize).clamp(8, buf.len());
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[0..4]);
    h.update(&buf[8..len]);
    let crc = h.finalize();
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}
