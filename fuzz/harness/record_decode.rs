//! Harness of the `record_decode` fuzz target (shared with tests/fuzz_regressions.rs).
//!
//! `record::decode` must never panic, and a frame it accepts must be exactly
//! the frame `encode_to_vec` writes for the decoded record: the format has one
//! encoding per record, so nothing the decoder accepts can be misread.

use annal::record::{self, RECORD_HEADER_LEN};
use annal::{Header, Record};

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(r) = record::decode(data) else { return };
    let n = r.frame_len() as usize;
    assert!((RECORD_HEADER_LEN..=data.len()).contains(&n), "frame length {n} outside 36..={}", data.len());
    let frame = &data[..n];
    // Decoding the frame alone gives the same record.
    assert_eq!(record::decode(frame).ok(), Some(r), "decoding the frame on its own differs");
    let _ = format!("{r:?}");
    let owned = r.to_owned();
    let headers: Vec<Header<'_>> = r.headers().collect();
    assert_eq!(owned.headers.len(), headers.len());

    let mut rec = match (r.key(), r.value()) {
        (Some(k), None) => Record::tombstone(k),
        (key, Some(v)) => {
            let rec = Record::new(v);
            match key {
                Some(k) => rec.with_key(k),
                None => rec,
            }
        }
        // A null value without a key: the format allows the frame (flags 0x02),
        // but `Record` cannot express it (a tombstone always has a key), so
        // annal never writes one. Nothing to re-encode.
        (None, None) => return,
    };
    rec = rec.with_headers(&headers).with_timestamp(r.timestamp());
    assert_eq!(rec.encoded_len(), Some(n), "encoded length of the decoded record");
    let again = record::encode_to_vec(r.offset(), r.timestamp(), &rec).expect("a decoded record fits the format");
    assert_eq!(again, frame, "re-encoding the decoded record changes the frame");
}
