//! The archive manifest: which segments of a log live in the archive tier,
//! and the digest each upload was verified against.
//!
//! Version 2 is an [`crate::envelope`] around `count` (u32), 4 zero bytes and
//! the entries; version 1, written before the envelope existed, is still
//! read:
//!
//! ```text
//!  0        8        12       16
//!  +--------+--------+--------+-----------------------------+--------+--------+
//!  |ANNALARM|version | count  | count entries (below)       | CRC-32 | zero   |
//!  +--------+--------+--------+-----------------------------+--------+--------+
//!
//!  entry: 72 bytes + key
//!  0      8      16     24     32     40     48     56    60    64    68  70  72
//!  +------+------+------+------+------+------+------+-----+-----+-----+---+---+-----+
//!  | base | next |record|data  | max  |created| size| crc | idx | tidx|len|0  | key |
//!  |      |offset|count | end  | ts   | ms   |      | 32  | crc | crc |   |   |     |
//!  +------+------+------+------+------+------+------+-----+-----+-----+---+---+-----+
//! ```
//!
//! Little-endian. The CRC-32 (IEEE) covers every byte before it. The first
//! six entry fields and the two index CRCs are the segment's footer (and
//! header creation time), so the log can hold the segment's metadata without
//! its file; `size` and `crc 32` are the digest of the object the upload was
//! verified against, and every later download is checked against it. Entries
//! are sorted by base offset and contiguous. The file is replaced atomically
//! (temporary file, fsync, rename, directory fsync). See docs/FORMAT.md.

use std::path::{Path, PathBuf};

use crate::archive::{ObjectDigest, is_valid_key};
use crate::envelope::{Decode, Encode, Reader, bad};
use crate::error::{CorruptionKind, Result};
use crate::io::Io;
use crate::segment::{FOOTER_LEN, SealedMeta, SegmentFooter};

/// File name of the archive manifest inside a log directory.
pub const ARCHIVE_MANIFEST_FILE_NAME: &str = "archive-manifest";

const MAGIC: [u8; 8] = *b"ANNALARM";
const V1_HEADER_LEN: usize = 16;
const ENTRY_FIXED_LEN: usize = 72;
const V1_TRAILER_LEN: usize = 8;

/// One archived segment, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestEntry {
    /// The segment's footer and creation time.
    pub(crate) meta: SealedMeta,
    /// Size and CRC-32 of the object (the whole segment file).
    pub(crate) digest: ObjectDigest,
    /// The object's key in the archive store.
    pub(crate) key: String,
}

/// The manifest's entries, sorted by base offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest(pub(crate) Vec<ManifestEntry>);

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(ARCHIVE_MANIFEST_FILE_NAME)
}

impl Encode for Manifest {
    const MAGIC: [u8; 8] = MAGIC;
    const VERSION: u16 = 2;

    fn encode_body(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        encode_entries(&self.0, b);
    }
}

impl Decode for Manifest {
    const MAGIC: [u8; 8] = MAGIC;
    const NAME: &'static str = "archive manifest";
    const FIRST_ENVELOPED: u16 = 2;
    const NEWEST: u16 = 2;

    fn decode_body(_version: u16, body: &[u8]) -> std::result::Result<Manifest, String> {
        let mut r = Reader::new(body);
        let count = r.u32()? as usize;
        if r.u32()? != 0 {
            return Err("reserved bytes are not zero".into());
        }
        let rest = r.take(r.remaining())?;
        decode_entries(count, rest).map(Manifest)
    }

    /// Version 1: magic, version (u32), count, entries, CRC, 4 zero bytes.
    fn decode_legacy(version: u16, b: &[u8]) -> std::result::Result<Manifest, CorruptionKind> {
        if b.len() < V1_HEADER_LEN + V1_TRAILER_LEN {
            return Err(bad::<Self>(format!("{} bytes is too short", b.len())));
        }
        let body_end = b.len() - V1_TRAILER_LEN;
        let stored = u32::from_le_bytes(b[body_end..body_end + 4].try_into().expect("4 bytes"));
        let actual = crc32fast::hash(&b[..body_end]);
        if stored != actual {
            return Err(bad::<Self>(format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")));
        }
        if b[body_end + 4..] != [0; 4] {
            return Err(bad::<Self>("reserved trailer bytes are not zero".into()));
        }
        if version != 1 || b[10..12] != [0; 2] {
            let v = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
            return Err(bad::<Self>(format!("unsupported version {v}")));
        }
        let count = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")) as usize;
        decode_entries(count, &b[V1_HEADER_LEN..body_end]).map(Manifest).map_err(bad::<Self>)
    }
}

fn encode_entries(entries: &[ManifestEntry], b: &mut Vec<u8>) {
    for e in entries {
        let f = &e.meta.footer;
        b.extend_from_slice(&f.base_offset.to_le_bytes());
        b.extend_from_slice(&f.next_offset.to_le_bytes());
        b.extend_from_slice(&f.record_count.to_le_bytes());
        b.extend_from_slice(&f.data_end.to_le_bytes());
        b.extend_from_slice(&f.max_timestamp.to_le_bytes());
        b.extend_from_slice(&e.meta.created_ms.to_le_bytes());
        b.extend_from_slice(&e.digest.size.to_le_bytes());
        b.extend_from_slice(&e.digest.crc32.to_le_bytes());
        b.extend_from_slice(&f.index_crc.to_le_bytes());
        b.extend_from_slice(&f.timeindex_crc.to_le_bytes());
        b.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(e.key.as_bytes());
    }
}

/// Decodes `count` entries that fill `b` exactly, checking each.
fn decode_entries(count: usize, b: &[u8]) -> std::result::Result<Vec<ManifestEntry>, String> {
    let end = b.len();
    let mut entries: Vec<ManifestEntry> = Vec::with_capacity(count.min(end / ENTRY_FIXED_LEN));
    let mut at = 0;
    for i in 0..count {
        if end - at < ENTRY_FIXED_LEN {
            return Err(format!("entry {i} runs past the end of the file"));
        }
        let e = &b[at..at + ENTRY_FIXED_LEN];
        let u64_at = |p: usize| u64::from_le_bytes(e[p..p + 8].try_into().expect("8 bytes"));
        let u32_at = |p: usize| u32::from_le_bytes(e[p..p + 4].try_into().expect("4 bytes"));
        let key_len = u16::from_le_bytes(e[68..70].try_into().expect("2 bytes")) as usize;
        if e[70..72] != [0, 0] {
            return Err(format!("reserved bytes of entry {i} are not zero"));
        }
        at += ENTRY_FIXED_LEN;
        if end - at < key_len {
            return Err(format!("the key of entry {i} runs past the end of the file"));
        }
        let key = std::str::from_utf8(&b[at..at + key_len])
            .ok()
            .filter(|k| is_valid_key(k))
            .ok_or_else(|| format!("entry {i} has an invalid key"))?
            .to_owned();
        at += key_len;
        let footer = SegmentFooter {
            base_offset: u64_at(0),
            next_offset: u64_at(8),
            record_count: u64_at(16),
            data_end: u64_at(24),
            max_timestamp: u64_at(32) as i64,
            index_crc: u32_at(60),
            timeindex_crc: u32_at(64),
        };
        let digest = ObjectDigest { size: u64_at(48), crc32: u32_at(56) };
        // A compacted segment holds fewer records than its range, never more.
        if footer.next_offset.checked_sub(footer.base_offset).is_none_or(|range| footer.record_count > range) {
            return Err(format!("entry {i}: more records than offsets in its range"));
        }
        if footer.data_end < crate::segment::DATA_START as u64
            || footer.data_end.checked_add(FOOTER_LEN as u64) != Some(digest.size)
        {
            return Err(format!("entry {i}: the object size does not match the segment's data end"));
        }
        if let Some(prev) = entries.last()
            && prev.meta.footer.next_offset != footer.base_offset
        {
            return Err(format!("entry {i} does not start where the one before it ends"));
        }
        // The manifest has no flag for compaction: a segment holding fewer
        // records than its offset range is a compacted (sparse) one, and one
        // that holds all of them reads the same either way.
        let sparse = footer.next_offset.saturating_sub(footer.base_offset) != footer.record_count;
        let meta = SealedMeta { footer, created_ms: u64_at(40) as i64, sparse };
        entries.push(ManifestEntry { meta, digest, key });
    }
    if at != end {
        return Err(format!("{} unexpected bytes after the entries", end - at));
    }
    Ok(entries)
}

/// The file's bytes for `entries` (sorted by base offset).
pub(crate) fn encode(entries: &[ManifestEntry]) -> Vec<u8> {
    Manifest(entries.to_vec()).encode()
}

/// Decodes the file's bytes; the error says what is wrong.
#[cfg(test)]
pub(crate) fn decode(b: &[u8]) -> std::result::Result<Vec<ManifestEntry>, CorruptionKind> {
    Manifest::decode(b).map(|m| m.0)
}

/// Reads the manifest in `dir`; no file means no archived segment. A damaged
/// file is corruption, never ignored (the segments it names exist nowhere else).
pub(crate) fn read(io: &dyn Io, dir: &Path) -> Result<Vec<ManifestEntry>> {
    Ok(crate::durable::read_decoded::<Manifest>(io, &path(dir))?.map_or_else(Vec::new, |m| m.0))
}

/// Durably replaces the manifest in `dir` with `entries`.
pub(crate) fn write(io: &dyn Io, dir: &Path, entries: &[ManifestEntry]) -> Result<()> {
    crate::durable::replace_file_durably(io, &path(dir), &encode(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: u64, n: u64) -> ManifestEntry {
        let footer = SegmentFooter {
            base_offset: base,
            data_end: 128 + 10 * n,
            record_count: n,
            next_offset: base + n,
            max_timestamp: 7,
            index_crc: 1,
            timeindex_crc: 2,
        };
        ManifestEntry {
            meta: SealedMeta { footer, created_ms: 5, sparse: false },
            digest: ObjectDigest { size: 128 + 10 * n + 64, crc32: 0xdead_beef },
            key: format!("t/0/{base:020}.seg"),
        }
    }

    #[test]
    fn roundtrip_and_damage() {
        let entries = vec![entry(0, 3), entry(3, 4)];
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 24 + 8 + 2 * (72 + 28));
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn gaps_are_refused() {
        let bytes = encode(&[entry(0, 3), entry(4, 4)]);
        assert!(decode(&bytes).is_err());
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    fn entry() -> ManifestEntry {
        let footer = SegmentFooter {
            base_offset: 0x10,
            next_offset: 0x20,
            record_count: 0x10,
            data_end: 0x1000,
            max_timestamp: 0x0102_0304,
            index_crc: 0xAABB_CCDD,
            timeindex_crc: 0x1122_3344,
        };
        ManifestEntry {
            meta: SealedMeta { footer, created_ms: 0x0506, sparse: false },
            digest: ObjectDigest { size: 0x1040, crc32: 0xDEAD_BEEF },
            key: "t/0/00000000000000000016.seg".into(),
        }
    }

    /// The entry's 72 fixed bytes and its key, as FORMAT.md lays them out.
    fn entry_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        for v in [0x10u64, 0x20, 0x10, 0x1000, 0x0102_0304, 0x0506, 0x1040] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [0xDEAD_BEEFu32, 0xAABB_CCDD, 0x1122_3344] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&28u16.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(b"t/0/00000000000000000016.seg");
        b
    }

    #[test]
    fn golden_archive_manifest_version_2() {
        let mut expected = Vec::new();
        expected.extend_from_slice(b"ANNALARM");
        expected.extend_from_slice(&2u16.to_le_bytes());
        expected.extend_from_slice(&0u16.to_le_bytes());
        expected.extend_from_slice(&(8 + 100u32).to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes()); // count
        expected.extend_from_slice(&[0; 4]);
        expected.extend_from_slice(&entry_bytes());
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[0; 4]);
        assert_eq!(encode(&[entry()]), expected);
        assert_eq!(decode(&expected), Ok(vec![entry()]));
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
    }

    #[test]
    fn version_1_written_before_the_envelope_is_still_read() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"ANNALARM");
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&entry_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        v1.extend_from_slice(&[0; 4]);
        assert_eq!(decode(&v1), Ok(vec![entry()]));
        // Damage to a version 1 file is named, as in version 2.
        let mut bad = v1.clone();
        bad[20] ^= 1;
        assert!(matches!(decode(&bad), Err(CorruptionKind::BadHeader(s)) if s.contains("checksum mismatch")));
        let mut bad = v1.clone();
        bad[9] = 1; // version 257
        assert!(matches!(decode(&bad), Err(CorruptionKind::BadHeader(s)) if s.contains("unsupported version")));
    }
}
