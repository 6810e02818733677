//! The on-disk format, pinned byte for byte.
//!
//! The golden arrays below were derived by hand from the layouts documented in
//! docs/FORMAT.md, `record/batch.rs`, `record/v1.rs`, `segment/header.rs` and
//! `segment/footer.rs` (little-endian integers). The CRC-32 (ISO-HDLC, the
//! zlib/PNG polynomial) of each was computed once, independently of annal
//! (Python's `zlib.crc32`), and pinned here. If one of these tests fails, the
//! format changed: that needs a new format version, not a new golden array.
//!
//! Format version 2 (batch frames) is what annal writes; version 1 (one frame
//! per record) is what it wrote before, and what it still reads: its goldens
//! and the committed v1 fixture stay.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use annal::record::v1::{RECORD_HEADER_LEN, RECORD_MAGIC, decode, encode_to_vec};
use annal::record::{self, FrameFormat, batch, decode_frame, decode_frame_as};
use annal::segment::header::{CHECKPOINT_POS, decode_checkpoint, encode_checkpoint};
use annal::segment::{DATA_START, FOOTER_LEN, HEADER_LEN, SegmentFooter, SegmentHeader};
use annal::{Durability, Header, Log, LogConfig, OwnedRecord, Record};

const TS: i64 = 1_700_000_000_000; // 0x0000_018B_CFE5_6800

/// A batch frame of two records from offset 5: (timestamp TS, key "k", one
/// header ("h", "v"), value "hello") and (TS + 1, key "k", null value: a
/// tombstone).
#[rustfmt::skip]
const GOLDEN_BATCH: [u8; 95] = [
    // batch header
    0x5f, 0x00, 0x00, 0x00,                         //  0 length = 95 = 32 + 38 + 25
    0x27, 0x85, 0x5b, 0x19,                         //  4 crc = 0x195b8527 over [0,4) ++ [8,95)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //  8 base_offset = 5
    0x01, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 16 max_timestamp = TS + 1
    0xa2,                                           // 24 magic
    0x00,                                           // 25 flags
    0x00, 0x00,                                     // 26 reserved
    0x02, 0x00, 0x00, 0x00,                         // 28 count = 2
    // record 0 (offset 5), at 32
    0x26, 0x00, 0x00, 0x00,                         // 32 length = 38 = 24 + 1 + 8 + 5
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 36 timestamp = TS
    0x01,                                           // 44 flags: key present
    0x00,                                           // 45 reserved
    0x01, 0x00,                                     // 46 header_count = 1
    0x01, 0x00, 0x00, 0x00,                         // 48 key_len = 1
    0x08, 0x00, 0x00, 0x00,                         // 52 headers_len = 2 + 1 + 4 + 1
    b'k',                                           // 56 key
    0x01, 0x00, b'h',                               // 57 header name_len = 1, name "h"
    0x01, 0x00, 0x00, 0x00, b'v',                   // 60 header value_len = 1, value "v"
    b'h', b'e', b'l', b'l', b'o',                   // 65 value
    // record 1 (offset 6), at 70
    0x19, 0x00, 0x00, 0x00,                         // 70 length = 25 = 24 + 1
    0x01, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 74 timestamp = TS + 1
    0x03,                                           // 82 flags: key present | value is null
    0x00,                                           // 83 reserved
    0x00, 0x00,                                     // 84 header_count = 0
    0x01, 0x00, 0x00, 0x00,                         // 86 key_len = 1
    0x00, 0x00, 0x00, 0x00,                         // 90 headers_len = 0
    b'k',                                           // 94 key; no value bytes
];

/// A batch frame of one record at offset 6: timestamp TS, no key, no
/// headers, value "hello".
#[rustfmt::skip]
const GOLDEN_BATCH_OF_ONE: [u8; 61] = [
    0x3d, 0x00, 0x00, 0x00,                         //  0 length = 61 = 32 + 29
    0xcd, 0x7f, 0x92, 0xea,                         //  4 crc = 0xea927fcd
    0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //  8 base_offset = 6
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 16 max_timestamp = TS
    0xa2, 0x00, 0x00, 0x00,                         // 24 magic, flags, reserved
    0x01, 0x00, 0x00, 0x00,                         // 28 count = 1
    0x1d, 0x00, 0x00, 0x00,                         // 32 length = 29 = 24 + 5
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 36 timestamp = TS
    0x00, 0x00,                                     // 44 flags: no key, value present; reserved
    0x00, 0x00,                                     // 46 header_count = 0
    0x00, 0x00, 0x00, 0x00,                         // 48 key_len = 0
    0x00, 0x00, 0x00, 0x00,                         // 52 headers_len = 0
    b'h', b'e', b'l', b'l', b'o',                   // 56 value
];

/// Segment header of format version 2: base offset 5, created at TS.
#[rustfmt::skip]
const GOLDEN_SEGMENT_HEADER_V2: [u8; 64] = [
    b'A', b'N', b'N', b'A', b'L', b'S', b'E', b'G', //  0 magic
    0x02, 0x00,                                     //  8 version = 2
    0x00, 0x00,                                     // 10 flags
    0x00, 0x00, 0x00, 0x00,                         // 12 reserved
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 16 base_offset = 5
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 24 created_ms = TS
    0x4d, 0x59, 0x86, 0x27,                         // 32 crc = 0x2786594d of [0,32)
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // 36 reserved (28 bytes)
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// v1 frame: offset 5, timestamp TS, key "k", one header ("h", "v"), value "hello".
#[rustfmt::skip]
const GOLDEN_FULL: [u8; 50] = [
    0x32, 0x00, 0x00, 0x00,                         //  0 length = 50 = 36 + 1 (key) + 8 (headers) + 5 (value)
    0x9a, 0x7c, 0x71, 0x64,                         //  4 crc = 0x64717c9a over [0,4) ++ [8,50)
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //  8 offset = 5
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 16 timestamp = 1_700_000_000_000
    0xa1,                                           // 24 magic
    0x01,                                           // 25 flags: key present
    0x01, 0x00,                                     // 26 header_count = 1
    0x01, 0x00, 0x00, 0x00,                         // 28 key_len = 1
    0x08, 0x00, 0x00, 0x00,                         // 32 headers_len = 2 + 1 + 4 + 1
    b'k',                                           // 36 key
    0x01, 0x00, b'h',                               // 37 header name_len = 1, name "h"
    0x01, 0x00, 0x00, 0x00, b'v',                   // 40 header value_len = 1, value "v"
    b'h', b'e', b'l', b'l', b'o',                   // 45 value
];

/// offset 6, timestamp TS, no key, no headers, value "hello".
#[rustfmt::skip]
const GOLDEN_NO_KEY: [u8; 41] = [
    0x29, 0x00, 0x00, 0x00,                         //  0 length = 41 = 36 + 5
    0x59, 0x7e, 0xf9, 0x24,                         //  4 crc = 0x24f97e59
    0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //  8 offset = 6
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 16 timestamp
    0xa1,                                           // 24 magic
    0x00,                                           // 25 flags: no key, value present
    0x00, 0x00,                                     // 26 header_count = 0
    0x00, 0x00, 0x00, 0x00,                         // 28 key_len = 0
    0x00, 0x00, 0x00, 0x00,                         // 32 headers_len = 0
    b'h', b'e', b'l', b'l', b'o',                   // 36 value
];

/// offset 7, timestamp TS, key "k", null value (a tombstone).
#[rustfmt::skip]
const GOLDEN_TOMBSTONE: [u8; 37] = [
    0x25, 0x00, 0x00, 0x00,                         //  0 length = 37 = 36 + 1
    0xbd, 0xbd, 0xfd, 0x47,                         //  4 crc = 0x47fdbdbd
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //  8 offset = 7
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 16 timestamp
    0xa1,                                           // 24 magic
    0x03,                                           // 25 flags: key present | value is null
    0x00, 0x00,                                     // 26 header_count = 0
    0x01, 0x00, 0x00, 0x00,                         // 28 key_len = 1
    0x00, 0x00, 0x00, 0x00,                         // 32 headers_len = 0
    b'k',                                           // 36 key; no value bytes
];

/// Segment header of format version 1: base offset 5, created at TS.
#[rustfmt::skip]
const GOLDEN_SEGMENT_HEADER: [u8; 64] = [
    b'A', b'N', b'N', b'A', b'L', b'S', b'E', b'G', //  0 magic
    0x01, 0x00,                                     //  8 version = 1
    0x00, 0x00,                                     // 10 flags
    0x00, 0x00, 0x00, 0x00,                         // 12 reserved
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 16 base_offset = 5
    0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 24 created_ms = TS
    0x65, 0xf0, 0x98, 0x7f,                         // 32 crc = 0x7f98f065 of [0,32)
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // 36 reserved (28 bytes)
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Footer: base 5, data_end 1000, 3 records, next offset 8, max timestamp
/// TS + 2, index crc 0x11223344, time index crc 0x55667788.
#[rustfmt::skip]
const GOLDEN_FOOTER: [u8; 64] = [
    b'A', b'N', b'N', b'A', b'L', b'E', b'N', b'D', //  0 magic
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //  8 base_offset = 5
    0xe8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 16 data_end = 1000
    0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 24 record_count = 3
    0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 32 next_offset = 8
    0x02, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // 40 max_timestamp = TS + 2
    0x44, 0x33, 0x22, 0x11,                         // 48 index_crc
    0x88, 0x77, 0x66, 0x55,                         // 52 timeindex_crc
    0x00, 0x00, 0x00, 0x00,                         // 56 reserved
    0x03, 0xd0, 0x16, 0x0f,                         // 60 crc = 0x0f16d003 of [0,60)
];

/// Checkpoint at file position 64: synced_end = 4096.
#[rustfmt::skip]
const GOLDEN_CHECKPOINT: [u8; 16] = [
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 64 synced_end = 4096
    0xa7, 0x43, 0xfc, 0x02,                         // 72 crc = 0x02fc43a7 of [64,72)
    0x00, 0x00, 0x00, 0x00,                         // 76 reserved
];

const HV: [Header<'static>; 1] = [Header { name: "h", value: b"v" }];

fn full_record() -> Record<'static> {
    Record::new(b"hello").with_key(b"k").with_headers(&HV)
}

fn two_records() -> [Record<'static>; 2] {
    [full_record().with_timestamp(TS), Record::tombstone(b"k").with_timestamp(TS + 1)]
}

#[test]
fn layout_constants() {
    assert_eq!(RECORD_HEADER_LEN, 36);
    assert_eq!(RECORD_MAGIC, 0xA1);
    assert_eq!(batch::BATCH_HEADER_LEN, 32);
    assert_eq!(batch::ENTRY_HEADER_LEN, 24);
    assert_eq!(batch::BATCH_MAGIC, 0xA2);
    assert_eq!(annal::segment::header::FORMAT_VERSION, 2);
    assert_eq!(HEADER_LEN, 64);
    assert_eq!(CHECKPOINT_POS, 64);
    assert_eq!(DATA_START, 128);
    assert_eq!(FOOTER_LEN, 64);
    assert_eq!(annal::segment::log_file_name(5), "00000000000000000005.log");
    assert_eq!(annal::segment::parse_log_file_name("00000000000000000005.log"), Some(5));
    for not_a_segment in ["5.log", "00000000000000000005.log.tmp", "0000000000000000000x.log", "notes.txt"] {
        assert_eq!(annal::segment::parse_log_file_name(not_a_segment), None, "{not_a_segment}");
    }
}

#[test]
fn golden_batch_of_two_records() {
    let frame = batch::encode_to_vec(5, 0, &two_records()).unwrap();
    assert_eq!(frame, GOLDEN_BATCH);
    assert_eq!(batch::encoded_len(&two_records()), Some(GOLDEN_BATCH.len()));
    assert_eq!(full_record().encoded_len(), Some(38), "a record's size is its entry's");
    let f = decode_frame_as(&GOLDEN_BATCH, FrameFormat::Batch).unwrap();
    assert_eq!(decode_frame(&GOLDEN_BATCH).unwrap(), f, "the magic byte tells the format");
    assert_eq!((f.base_offset(), f.count(), f.next_offset(), f.max_timestamp(), f.len()), (5, 2, 7, TS + 1, 95));
    let records: Vec<_> = f.records().collect();
    assert_eq!(records.len(), 2);
    let (a, b) = (&records[0], &records[1]);
    assert_eq!((a.offset(), a.timestamp(), a.key(), a.value()), (5, TS, Some(&b"k"[..]), Some(&b"hello"[..])));
    assert_eq!(a.headers().collect::<Vec<_>>(), HV);
    assert_eq!(a.frame_len(), 38);
    assert_eq!((b.offset(), b.timestamp(), b.key(), b.value()), (6, TS + 1, Some(&b"k"[..]), None));
    assert_eq!((b.headers().count(), b.frame_len()), (0, 25));
    // A batch frame is not a v1 frame, nor the other way round.
    assert!(decode_frame_as(&GOLDEN_BATCH, FrameFormat::V1).is_err());
    assert!(decode_frame_as(&GOLDEN_FULL, FrameFormat::Batch).is_err());
}

#[test]
fn golden_batch_of_one_record_takes_the_append_time() {
    // A record without a timestamp of its own gets the batch's `now`.
    let frame = batch::encode_to_vec(6, TS, &[Record::new(b"hello")]).unwrap();
    assert_eq!(frame, GOLDEN_BATCH_OF_ONE);
    let f = decode_frame(&GOLDEN_BATCH_OF_ONE).unwrap();
    let r = f.records().next().unwrap();
    assert_eq!((r.offset(), r.timestamp(), r.key(), r.value()), (6, TS, None, Some(&b"hello"[..])));
    // An empty batch has no frame; offsets must leave a next offset.
    assert_eq!(batch::encode_to_vec(0, TS, &[]), None);
    assert_eq!(batch::encode_to_vec(u64::MAX, TS, &[Record::new(b"x")]), None);
    assert!(batch::encode_to_vec(u64::MAX - 1, TS, &[Record::new(b"x")]).is_some());
}

#[test]
fn batch_frames_fail_whole() {
    let frames: [&[u8]; 2] = [&GOLDEN_BATCH, &GOLDEN_BATCH_OF_ONE];
    for frame in frames {
        for cut in 0..frame.len() {
            assert!(decode_frame(&frame[..cut]).is_err(), "batch cut to {cut} of {} bytes decoded", frame.len());
            let mut padded = frame[..cut].to_vec();
            padded.resize(frame.len() + 64, 0);
            assert!(decode_frame(&padded).is_err(), "zero-padded batch cut to {cut} bytes decoded");
        }
        for bit in 0..frame.len() * 8 {
            let mut b = frame.to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&b).is_err(), "batch of {} bytes with bit {bit} flipped decoded", frame.len());
            b.resize(frame.len() + 256, 0);
            assert!(decode_frame(&b).is_err(), "padded batch with bit {bit} flipped decoded");
        }
    }
    for len in [0, 1, 4, 31, 32, 56, 64, 4096] {
        assert!(decode_frame_as(&vec![0u8; len], FrameFormat::Batch).is_err(), "{len} zero bytes decoded as a batch");
    }
}

#[test]
fn well_checksummed_but_malformed_batches_are_rejected() {
    let reseal = |mut f: Vec<u8>| {
        let mut h = crc32fast::Hasher::new();
        h.update(&f[0..4]);
        h.update(&f[8..]);
        let crc = h.finalize();
        f[4..8].copy_from_slice(&crc.to_le_bytes());
        f
    };
    assert!(decode_frame(&reseal(GOLDEN_BATCH.to_vec())).is_ok(), "reseal must reproduce a valid frame");
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 13] = [
        ("batch flags", |f| f[25] = 1),
        ("batch reserved", |f| f[27] = 1),
        ("count of zero", |f| f[28] = 0),
        ("count too high", |f| f[28] = 3),
        ("count too low (bytes left over)", |f| f[28] = 1),
        ("max timestamp too high", |f| f[16] = 2),
        ("max timestamp too low", |f| f[16] = 0),
        ("record length past the frame", |f| f[32] = 0x60),
        ("record length below 24", |f| f[32] = 23),
        ("record reserved byte", |f| f[45] = 1),
        ("unknown record flag", |f| f[44] |= 0x04),
        ("header count too high", |f| f[46] = 2),
        ("null value with value bytes", |f| f[44] |= 0x02),
    ];
    for (what, damage) in cases {
        let mut f = GOLDEN_BATCH.to_vec();
        damage(&mut f);
        assert!(decode_frame(&reseal(f)).is_err(), "{what}: decoded");
    }
    // The last record at offset u64::MAX would leave no next offset.
    let mut f = GOLDEN_BATCH.to_vec();
    f[8..16].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    assert!(decode_frame(&reseal(f)).is_err(), "a batch reaching offset u64::MAX decoded");
    let mut f = GOLDEN_BATCH.to_vec();
    f[8..16].copy_from_slice(&(u64::MAX - 2).to_le_bytes());
    assert!(decode_frame(&reseal(f)).is_ok());
}

#[test]
fn golden_record_with_key_header_and_value() {
    let frame = encode_to_vec(5, TS, &full_record()).unwrap();
    assert_eq!(frame, GOLDEN_FULL);
    assert_eq!(annal::record::v1::encoded_len(&full_record()), Some(GOLDEN_FULL.len()));
    let r = decode(&GOLDEN_FULL).unwrap();
    assert_eq!(r.offset(), 5);
    assert_eq!(r.timestamp(), TS);
    assert_eq!(r.key(), Some(&b"k"[..]));
    assert_eq!(r.value(), Some(&b"hello"[..]));
    assert_eq!(r.headers().collect::<Vec<_>>(), HV);
    assert_eq!(r.frame_len(), 50);
}

#[test]
fn golden_record_without_key() {
    let frame = encode_to_vec(6, TS, &Record::new(b"hello")).unwrap();
    assert_eq!(frame, GOLDEN_NO_KEY);
    let r = decode(&GOLDEN_NO_KEY).unwrap();
    assert_eq!((r.offset(), r.timestamp(), r.key(), r.value()), (6, TS, None, Some(&b"hello"[..])));
    assert_eq!(r.headers().count(), 0);
}

#[test]
fn golden_tombstone() {
    let frame = encode_to_vec(7, TS, &Record::tombstone(b"k")).unwrap();
    assert_eq!(frame, GOLDEN_TOMBSTONE);
    let r = decode(&GOLDEN_TOMBSTONE).unwrap();
    assert_eq!((r.offset(), r.timestamp(), r.key(), r.value()), (7, TS, Some(&b"k"[..]), None));
}

#[test]
fn empty_key_and_empty_value_are_not_absent() {
    // An empty key is a key (flag set, length 0); an empty value is a value.
    let frame = encode_to_vec(0, 0, &Record::new(b"").with_key(b"")).unwrap();
    assert_eq!(frame.len(), RECORD_HEADER_LEN);
    assert_eq!(frame[25], 0x01);
    let r = decode(&frame).unwrap();
    assert_eq!((r.key(), r.value()), (Some(&b""[..]), Some(&b""[..])));
    // Negative and extreme timestamps round-trip.
    for ts in [i64::MIN, -1, 0, i64::MAX] {
        let frame = encode_to_vec(u64::MAX, ts, &Record::new(b"x")).unwrap();
        let r = decode(&frame).unwrap();
        assert_eq!((r.offset(), r.timestamp()), (u64::MAX, ts));
    }
}

#[test]
fn golden_segment_header() {
    for (golden, version) in [(GOLDEN_SEGMENT_HEADER, 1), (GOLDEN_SEGMENT_HEADER_V2, 2)] {
        let header = SegmentHeader { base_offset: 5, created_ms: TS, version };
        let mut buf = [0xFFu8; 64];
        header.encode(&mut buf);
        assert_eq!(buf, golden);
        assert_eq!(SegmentHeader::decode(&golden), Ok(header));
        // Any single-bit flip of the checked bytes is rejected.
        for bit in 0..36 * 8 {
            let mut b = golden;
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&b).is_err(), "header v{version} with bit {bit} flipped decoded");
        }
        assert!(SegmentHeader::decode(&golden[..63]).is_err());
    }
    assert_eq!(SegmentHeader::new(5, TS).version, 2, "new segments are of format version 2");
    assert_eq!(SegmentHeader::new(5, TS).frame_format(), FrameFormat::Batch);
    assert!(SegmentHeader::decode(&[0u8; 64]).is_err());
    // An unknown version is refused (with a valid checksum).
    let mut b = GOLDEN_SEGMENT_HEADER_V2;
    b[8] = 3;
    let crc = crc32fast::hash(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(SegmentHeader::decode(&b), Err("unsupported segment format version 3".to_owned()));
}

#[test]
fn golden_segment_footer() {
    let footer = SegmentFooter {
        base_offset: 5,
        data_end: 1000,
        record_count: 3,
        next_offset: 8,
        max_timestamp: TS + 2,
        index_crc: 0x1122_3344,
        timeindex_crc: 0x5566_7788,
    };
    assert_eq!(footer.encode(), GOLDEN_FOOTER);
    assert_eq!(SegmentFooter::decode(&GOLDEN_FOOTER, 1064), Ok(footer));
    // The footer must sit exactly at the end of the file.
    assert!(SegmentFooter::decode(&GOLDEN_FOOTER, 1065).is_err());
    assert!(SegmentFooter::decode(&GOLDEN_FOOTER, 1063).is_err());
    for bit in 0..64 * 8 {
        let mut b = GOLDEN_FOOTER;
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(SegmentFooter::decode(&b, 1064).is_err(), "footer with bit {bit} flipped decoded");
    }
    assert!(SegmentFooter::decode(&[0u8; 64], 1064).is_err());
}

#[test]
fn golden_checkpoint() {
    let mut area = [0xEEu8; DATA_START];
    encode_checkpoint(&mut area, 4096);
    assert_eq!(area[64..80], GOLDEN_CHECKPOINT);
    // Nothing outside the checkpoint is touched.
    assert!(area[..64].iter().chain(&area[80..]).all(|&b| b == 0xEE));
    assert_eq!(decode_checkpoint(&area), Some(4096));
    for bit in 0..12 * 8 {
        let mut a = area;
        a[64 + bit / 8] ^= 1 << (bit % 8);
        assert_eq!(decode_checkpoint(&a), None, "checkpoint with bit {bit} flipped decoded");
    }
    // A never-written (zero) checkpoint is invalid, not "synced_end = 0".
    assert_eq!(decode_checkpoint(&[0u8; DATA_START]), None);
}

#[test]
fn zeros_never_decode() {
    for len in [0, 1, 4, 35, 36, 37, 64, 4096] {
        assert!(decode(&vec![0u8; len]).is_err(), "{len} zero bytes decoded as a record");
    }
}

fn golden_frames() -> [&'static [u8]; 3] {
    [&GOLDEN_FULL, &GOLDEN_NO_KEY, &GOLDEN_TOMBSTONE]
}

#[test]
fn every_truncation_fails() {
    for frame in golden_frames() {
        assert!(decode(frame).is_ok());
        for cut in 0..frame.len() {
            assert!(decode(&frame[..cut]).is_err(), "frame cut to {cut} of {} bytes decoded", frame.len());
            // The cut frame followed by zeros (a torn write in a preallocated file).
            let mut padded = frame[..cut].to_vec();
            padded.resize(frame.len() + 64, 0);
            assert!(decode(&padded).is_err(), "zero-padded frame cut to {cut} bytes decoded");
        }
    }
}

#[test]
fn every_single_bit_flip_fails() {
    for frame in golden_frames() {
        for bit in 0..frame.len() * 8 {
            let mut b = frame.to_vec();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&b).is_err(), "frame of {} bytes with bit {bit} flipped decoded", frame.len());
            // Also inside a longer buffer, so a grown length field has bytes to read.
            b.resize(frame.len() + 256, 0);
            assert!(decode(&b).is_err(), "padded frame with bit {bit} flipped decoded");
        }
    }
    // A larger random record, every bit.
    let mut rng = common::Rng::new(7);
    let value: Vec<u8> = (0..300).map(|_| rng.next_u64() as u8).collect();
    let headers =
        [Header { name: "content-type", value: b"application/octet-stream" }, Header { name: "", value: b"" }];
    let frame = encode_to_vec(123_456, -5, &Record::new(&value).with_key(b"some key").with_headers(&headers)).unwrap();
    for bit in 0..frame.len() * 8 {
        let mut b = frame.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&b).is_err(), "bit {bit} flipped decoded");
    }
}

#[test]
fn well_checksummed_but_malformed_frames_are_rejected() {
    // Re-seal a frame's CRC after changing a field, to reach the layout checks.
    fn reseal(mut f: Vec<u8>) -> Vec<u8> {
        let mut h = crc32fast::Hasher::new();
        h.update(&f[0..4]);
        h.update(&f[8..]);
        let crc = h.finalize();
        f[4..8].copy_from_slice(&crc.to_le_bytes());
        f
    }
    assert!(decode(&reseal(GOLDEN_FULL.to_vec())).is_ok(), "reseal must reproduce a valid frame");
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 6] = [
        ("magic", |f| f[24] = 0xA2),
        ("unknown flag", |f| f[25] |= 0x04),
        ("key bytes without key flag", |f| f[25] = 0),
        ("header count too high", |f| f[26] = 2),
        ("headers_len past the frame", |f| f[32] = 0xFF),
        ("null value with value bytes", |f| f[25] |= 0x02),
    ];
    for (what, damage) in cases {
        let mut f = GOLDEN_FULL.to_vec();
        damage(&mut f);
        assert!(decode(&reseal(f)).is_err(), "{what}: decoded");
    }
    // A length field smaller than the fixed header, with a matching CRC.
    let mut f = GOLDEN_FULL.to_vec();
    f[0] = 35;
    assert!(decode(&reseal(f)).is_err());
}

// ---------------------------------------------------------------------------
// The v1 fixture: a log written by format version 1, committed to the
// repository. Every later version must read it.
// ---------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-log")
}

/// One record of the fixture: (timestamp, key, headers, value). The value is
/// `pattern` repeated to `len` bytes; `None` is a tombstone.
type Fixture = (i64, Option<&'static str>, &'static [(&'static str, &'static str)], Option<(&'static str, usize)>);

/// The records of the v1 fixture, at offsets 0, 1, 2, ...
const V1_RECORDS: [Fixture; 24] = [
    (1_600_000_000_000, Some("user-1"), &[("type", "created")], Some(("alpha ", 300))),
    (1_600_000_000_001, Some("user-2"), &[], Some(("bravo ", 500))),
    (1_600_000_000_002, None, &[("trace", "abc"), ("n", "")], Some(("charlie ", 700))),
    (1_600_000_000_003, Some("user-1"), &[("type", "renamed")], Some(("delta ", 250))),
    (1_599_999_999_000, Some("user-3"), &[], Some(("echo ", 900))),
    (1_600_000_000_005, Some("user-2"), &[], None),
    (1_600_000_000_006, Some(""), &[("empty-key", "yes")], Some(("", 0))),
    (1_600_000_000_007, Some("user-4"), &[("a", "1"), ("b", "2"), ("c", "3")], Some(("foxtrot ", 1200))),
    (1_600_000_000_008, None, &[], Some(("golf ", 64))),
    (1_600_000_000_009, Some("user-5"), &[("type", "created")], Some(("hotel ", 333))),
    (0, Some("user-6"), &[], Some(("india ", 777))),
    (-1, Some("user-7"), &[("neg", "ts")], Some(("juliet ", 100))),
    (1_600_000_000_012, Some("user-1"), &[], Some(("kilo ", 1500))),
    (1_600_000_000_013, Some("user-8"), &[("x", "y")], Some(("lima ", 420))),
    (1_600_000_000_014, Some("user-3"), &[], None),
    (1_600_000_000_015, None, &[], Some(("mike ", 10))),
    (1_600_000_000_016, Some("user-9"), &[("type", "created")], Some(("november ", 640))),
    (1_600_000_000_017, Some("user-9"), &[("type", "updated")], Some(("oscar ", 880))),
    (1_600_000_000_018, Some("user-10"), &[], Some(("papa ", 1024))),
    (1_600_000_000_019, Some("user-11"), &[("q", "r")], Some(("quebec ", 55))),
    (1_600_000_000_020, Some("user-12"), &[], Some(("romeo ", 1999))),
    (1_600_000_000_021, Some("user-1"), &[("type", "deleted")], None),
    (1_600_000_000_022, Some("user-13"), &[], Some(("sierra ", 321))),
    (1_600_000_000_023, Some("user-14"), &[("last", "yes")], Some(("tango ", 77))),
];

fn fixture_value((pattern, len): (&str, usize)) -> Vec<u8> {
    pattern.bytes().cycle().take(len).collect()
}

fn expected_v1() -> Vec<OwnedRecord> {
    V1_RECORDS
        .iter()
        .enumerate()
        .map(|(i, &(timestamp, key, headers, value))| OwnedRecord {
            offset: i as u64,
            timestamp,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(fixture_value),
            headers: headers.iter().map(|&(n, v)| (n.to_owned(), v.as_bytes().to_vec())).collect(),
        })
        .collect()
}

fn v1_config() -> LogConfig {
    LogConfig::default().with_segment_bytes(4096).with_index_interval_bytes(512).with_durability(Durability::Always)
}

// The fixture was written by annal before batch frames existed (format
// version 1), with `v1_config()`, one `append` per record of `V1_RECORDS`,
// then `close`. This build cannot write version 1 segments, so the fixture is
// frozen: `v1_fixture_segments_are_byte_stable` checks its bytes against the
// v1 encoder kept for tests.

fn check_v1(log: &Log) {
    let expected = expected_v1();
    assert_eq!(log.start_offset(), 0);
    assert_eq!(log.next_offset(), 24);
    let got = common::read_all(log).unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "record {}", e.offset);
    }
    for e in &expected {
        assert_eq!(&log.get(e.offset).unwrap(), e);
        let suffix: Vec<_> = log.read_from(e.offset).unwrap().map(Result::unwrap).collect();
        assert_eq!(suffix, expected[e.offset as usize..]);
    }
    // Timestamps are not monotonic in the fixture: the first record at or after t.
    for t in [i64::MIN, -1, 0, 1, 1_599_999_999_000, 1_600_000_000_000, 1_600_000_000_010, 1_600_000_000_023] {
        let want = expected.iter().find(|r| r.timestamp >= t).map(|r| r.offset);
        assert_eq!(log.offset_for_timestamp(t).unwrap(), want, "t = {t}");
    }
    assert_eq!(log.offset_for_timestamp(1_600_000_000_024).unwrap(), None);
}

#[test]
fn v1_fixture_is_readable() {
    let fixture = fixture_dir();
    let segments = common::segment_files(&fixture);
    assert_eq!(
        segments.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect::<Vec<_>>(),
        [
            "00000000000000000000.log",
            "00000000000000000007.log",
            "00000000000000000012.log",
            "00000000000000000018.log"
        ],
        "the committed fixture is missing or was regenerated with another layout"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    common::copy_dir(&fixture, &dir);
    let before = common::snapshot(&dir);

    // Read-only: everything readable, sealed footers and index files accepted, nothing changed.
    let ro = Log::open_read_only(&dir, v1_config()).unwrap();
    assert_eq!(ro.recovery_report().scanned_segment, None, "a cleanly closed v1 log needs no scan");
    assert!(ro.segments().iter().all(|s| s.sealed));
    assert_eq!(ro.segments().len(), 4);
    check_v1(&ro);
    assert_eq!(ro.indexes_rebuilt(), 0, "v1 index files must be accepted as they are");
    drop(ro);
    common::assert_same_files(&before, &common::snapshot(&dir), "read-only open of the v1 fixture");

    // Read-write: same records, and appending continues at offset 24, in a
    // new segment of format version 2 (a v1 segment is never appended to):
    // the log then holds segments of both versions.
    let log = Log::open(&dir, v1_config()).unwrap();
    assert_eq!(log.recovery_report().scanned_segment, None);
    check_v1(&log);
    assert_eq!(log.indexes_rebuilt(), 0);
    let batch = [Record::new(b"v2 era").with_timestamp(1_700_000_000_000), Record::new(b"and more")];
    assert_eq!(log.append_batch(&batch).unwrap(), 24..26);
    assert_eq!(log.segments().len(), 5);
    log.close().unwrap();
    assert_eq!(segment_version(&dir, 18), 1, "the v1 segments are left as they are");
    assert_eq!(segment_version(&dir, 24), 2);
    for log in [Log::open_read_only(&dir, v1_config()).unwrap(), Log::open(&dir, v1_config()).unwrap()] {
        assert_eq!(log.get(24).unwrap().value.as_deref(), Some(&b"v2 era"[..]));
        let mut all = common::read_all(&log).unwrap();
        assert_eq!(all.split_off(24).len(), 2);
        assert_eq!(all, expected_v1());
        assert_eq!(log.offset_for_timestamp(1_600_000_000_024).unwrap(), Some(24));
        assert_eq!(log.read_from(23).unwrap().count(), 3, "a reader crosses from v1 to v2 segments");
    }
    let report = annal::inspect::verify(&dir).unwrap();
    assert!(report.is_clean() && report.records == 26, "{:?}", report.problems);
}

#[test]
fn compacting_v1_segments_writes_them_in_format_2_with_the_same_records() {
    // Compaction reads v1 frames and writes each kept record as an entry of
    // a batch frame: the same fields, a frame per run of kept records.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    common::copy_dir(&fixture_dir(), &dir);
    let log = Log::open(&dir, v1_config()).unwrap();
    // A new v2 segment after the fixture's four sealed v1 ones, so that all
    // of them are compacted.
    assert_eq!(log.append(&Record::new(b"v2")).unwrap(), 24);
    let now = 1_600_000_000_100; // tombstones younger than their retention: kept
    let outcome = log.compact_at(&annal::Compaction::default(), now).unwrap();
    // Kept: records without a key, and the latest record of each key.
    let expected: Vec<OwnedRecord> = expected_v1()
        .into_iter()
        .filter(|r| {
            r.key.as_ref().is_none_or(|k| {
                !V1_RECORDS[r.offset as usize + 1..].iter().any(|f| f.1.map(str::as_bytes) == Some(&k[..]))
            })
        })
        .collect();
    assert_eq!(outcome.records_removed, 24 - expected.len() as u64, "{outcome:?}");
    assert_eq!(outcome.segments_rewritten, 2, "segments 0 and 12 hold superseded records: {outcome:?}");
    let check = |log: &Log| {
        let mut got = common::read_all(log).unwrap();
        assert_eq!(got.pop().map(|r| r.offset), Some(24));
        assert_eq!(got, expected);
        for e in &expected {
            assert_eq!(&log.get(e.offset).unwrap(), e);
        }
    };
    check(&log);
    log.close().unwrap();
    let rewritten = [0u64, 7, 12, 18].iter().filter(|&&base| {
        let path = dir.join(annal::segment::log_file_name(base));
        path.exists() && segment_version(&dir, base) == 2
    });
    assert_eq!(rewritten.count(), outcome.segments_rewritten, "every rewritten segment is of format 2");
    check(&Log::open(&dir, v1_config()).unwrap());
    let report = annal::inspect::verify(&dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn a_frame_shorter_than_its_format_allows_is_a_bad_length_even_with_a_valid_checksum() {
    // Each length below a format's smallest frame, in a buffer that goes on
    // (so the bytes are there to read), with the magic byte where the length
    // reaches it and a checksum that matches: refused by its length, before
    // any field the frame is too short to hold is read.
    for (format, min, magic) in [
        (FrameFormat::Batch, batch::BATCH_HEADER_LEN + batch::ENTRY_HEADER_LEN, batch::BATCH_MAGIC),
        (FrameFormat::V1, RECORD_HEADER_LEN, RECORD_MAGIC),
    ] {
        for len in 0..min {
            let mut buf = vec![0u8; 128];
            buf[0..4].copy_from_slice(&(len as u32).to_le_bytes());
            if len > 24 {
                buf[24] = magic;
            }
            if len >= 8 {
                let mut h = crc32fast::Hasher::new();
                h.update(&buf[0..4]);
                h.update(&buf[8..len]);
                buf[4..8].copy_from_slice(&h.finalize().to_le_bytes());
            }
            match decode_frame_as(&buf, format) {
                Err(annal::CorruptionKind::BadLength(l)) => assert_eq!(l as usize, len),
                other => panic!("{format:?} frame of {len} bytes: {other:?}"),
            }
        }
    }
}

/// The format version in the header of segment `base` of the log in `dir`.
fn segment_version(dir: &Path, base: u64) -> u16 {
    let bytes = fs::read(dir.join(annal::segment::log_file_name(base))).unwrap();
    SegmentHeader::decode(&bytes[..64]).unwrap().version
}

#[test]
fn a_crashed_v1_log_recovers_and_continues_in_format_2() {
    // The last v1 segment, unsealed (its footer cut, as a crash of the older
    // build before its close would leave it): recovered by the v1 scan, then
    // sealed as v1 before the first batch goes to a v2 segment.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    common::copy_dir(&fixture_dir(), &dir);
    let last = dir.join("00000000000000000018.log");
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..bytes.len() - FOOTER_LEN]).unwrap();
    for ext in ["index", "timeindex"] {
        fs::remove_file(dir.join(format!("00000000000000000018.{ext}"))).unwrap();
    }
    let ro = Log::open_read_only(&dir, v1_config()).unwrap();
    assert_eq!(ro.recovery_report().scanned_segment, Some(18));
    check_v1(&ro);
    drop(ro);
    let log = Log::open(&dir, v1_config()).unwrap();
    assert_eq!((log.recovery_report().scanned_segment, log.recovery_report().records_scanned), (Some(18), 6));
    check_v1(&log);
    assert_eq!(log.append(&Record::new(b"first v2")).unwrap(), 24);
    assert_eq!(segment_version(&dir, 24), 2);
    log.close().unwrap();
    let log = Log::open(&dir, v1_config()).unwrap();
    let segs = log.segments();
    assert!(segs.iter().all(|s| s.sealed) && segs.len() == 5, "{segs:?}");
    assert_eq!(log.get(24).unwrap().value.as_deref(), Some(&b"first v2"[..]));
    let report = annal::inspect::verify(&dir).unwrap();
    assert!(report.is_clean() && report.records == 25, "{:?}", report.problems);
    drop(log);

    // An empty unsealed v1 segment after the fixture (a crash of the older
    // build right after a roll): replaced by a v2 segment at the same base.
    let dir = tmp.path().join("empty");
    common::copy_dir(&fixture_dir(), &dir);
    let mut head = vec![0u8; 4096];
    SegmentHeader { base_offset: 24, created_ms: TS, version: 1 }.encode(&mut head);
    encode_checkpoint(&mut head, DATA_START as u64);
    fs::write(dir.join("00000000000000000024.log"), &head).unwrap();
    let log = Log::open(&dir, v1_config()).unwrap();
    assert_eq!(log.recovery_report().scanned_segment, Some(24));
    assert_eq!(log.append(&Record::new(b"first v2")).unwrap(), 24);
    assert_eq!(segment_version(&dir, 24), 2);
    log.close().unwrap();
    let log = Log::open(&dir, v1_config()).unwrap();
    assert_eq!(common::read_all(&log).unwrap().len(), 25);
}

#[test]
fn v1_fixture_segments_are_byte_stable() {
    // The record bytes of the fixture are exactly what this build encodes for
    // the same records: a change of encoding would show here first.
    let expected = expected_v1();
    let mut offset = 0usize;
    for path in common::segment_files(&fixture_dir()) {
        let bytes = fs::read(&path).unwrap();
        let header = SegmentHeader::decode(&bytes[..64]).unwrap();
        assert_eq!(header.base_offset, offset as u64);
        let footer = SegmentFooter::decode(&bytes[bytes.len() - 64..], bytes.len() as u64).unwrap();
        let mut pos = DATA_START;
        while pos < footer.data_end as usize {
            let e = &expected[offset];
            let headers: Vec<Header<'_>> = e.headers.iter().map(|(n, v)| Header { name: n, value: v }).collect();
            let mut r = match (&e.value, &e.key) {
                (Some(v), _) => Record::new(v),
                (None, Some(k)) => Record::tombstone(k),
                (None, None) => unreachable!(),
            };
            if let Some(k) = &e.key {
                r = r.with_key(k);
            }
            let frame = record::v1::encode_to_vec(e.offset, e.timestamp, &r.with_headers(&headers)).unwrap();
            assert_eq!(&bytes[pos..pos + frame.len()], &frame[..], "record {offset} in {}", path.display());
            pos += frame.len();
            offset += 1;
        }
        assert_eq!(pos as u64, footer.data_end);
        assert_eq!(footer.next_offset, offset as u64);
    }
    assert_eq!(offset, expected.len());
}
