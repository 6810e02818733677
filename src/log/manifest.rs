//! The archive manifest: which segments of a log live in the archive tier,
//! and the digest each upload was verified against.
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
use crate::error::{CorruptionKind, Error, Result};
use crate::io::Io;
use crate::segment::{FOOTER_LEN, SealedMeta, SegmentFooter};

/// File name of the archive manifest inside a log directory.
pub const ARCHIVE_MANIFEST_FILE_NAME: &str = "archive-manifest";

const MAGIC: &[u8; 8] = b"ANNALARM";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 16;
const ENTRY_FIXED_LEN: usize = 72;
const TRAILER_LEN: usize = 8;

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

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(ARCHIVE_MANIFEST_FILE_NAME)
}

/// The file's bytes for `entries` (sorted by base offset).
pub(crate) fn encode(entries: &[ManifestEntry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + TRAILER_LEN + entries.len() * (ENTRY_FIXED_LEN + 40));
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
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
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

/// Decodes the file's bytes; the error says what is wrong.
pub(crate) fn decode(b: &[u8]) -> std::result::Result<Vec<ManifestEntry>, CorruptionKind> {
    let bad = |why: String| CorruptionKind::BadHeader(format!("archive manifest: {why}"));
    if b.len() < HEADER_LEN + TRAILER_LEN {
        return Err(bad(format!("{} bytes is too short", b.len())));
    }
    if &b[0..8] != MAGIC {
        return Err(bad("wrong magic".into()));
    }
    let body_end = b.len() - TRAILER_LEN;
    let stored = u32::from_le_bytes(b[body_end..body_end + 4].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&b[..body_end]);
    if stored != actual {
        return Err(bad(format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})")));
    }
    if b[body_end + 4..] != [0; 4] {
        return Err(bad("reserved trailer bytes are not zero".into()));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(format!("unsupported version {version}")));
    }
    let count = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")) as usize;
    let mut entries: Vec<ManifestEntry> = Vec::with_capacity(count.min(body_end / ENTRY_FIXED_LEN));
    let mut at = HEADER_LEN;
    for i in 0..count {
        if body_end - at < ENTRY_FIXED_LEN {
            return Err(bad(format!("entry {i} runs past the end of the file")));
        }
        let e = &b[at..at + ENTRY_FIXED_LEN];
        let u64_at = |p: usize| u64::from_le_bytes(e[p..p + 8].try_into().expect("8 bytes"));
        let u32_at = |p: usize| u32::from_le_bytes(e[p..p + 4].try_into().expect("4 bytes"));
        let key_len = u16::from_le_bytes(e[68..70].try_into().expect("2 bytes")) as usize;
        if e[70..72] != [0, 0] {
            return Err(bad(format!("reserved bytes of entry {i} are not zero")));
        }
        at += ENTRY_FIXED_LEN;
        if body_end - at < key_len {
            return Err(bad(format!("the key of entry {i} runs past the end of the file")));
        }
        let key = std::str::from_utf8(&b[at..at + key_len])
            .ok()
            .filter(|k| is_valid_key(k))
            .ok_or_else(|| bad(format!("entry {i} has an invalid key")))?
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
            return Err(bad(format!("entry {i}: more records than offsets in its range")));
        }
        if footer.data_end < crate::segment::DATA_START as u64
            || footer.data_end.checked_add(FOOTER_LEN as u64) != Some(digest.size)
        {
            return Err(bad(format!("entry {i}: the object size does not match the segment's data end")));
        }
        if let Some(prev) = entries.last()
            && prev.meta.footer.next_offset != footer.base_offset
        {
            return Err(bad(format!("entry {i} does not start where the one before it ends")));
        }
        // The manifest predates compaction and has no flag for it: a segment
        // holding fewer records than its offset range is a compacted (sparse)
        // one, and one that holds all of them reads the same either way.
        let sparse = footer.next_offset.saturating_sub(footer.base_offset) != footer.record_count;
        let meta = SealedMeta { footer, created_ms: u64_at(40) as i64, sparse };
        entries.push(ManifestEntry { meta, digest, key });
    }
    if at != body_end {
        return Err(bad(format!("{} unexpected bytes after the entries", body_end - at)));
    }
    Ok(entries)
}

/// Reads the manifest in `dir`; no file means no archived segment. A damaged
/// file is corruption, never ignored (the segments it names exist nowhere else).
pub(crate) fn read(dir: &Path) -> Result<Vec<ManifestEntry>> {
    let p = path(dir);
    let Some(bytes) = crate::durable::read_optional(&p)? else { return Ok(Vec::new()) };
    decode(&bytes).map_err(|kind| Error::Corruption { path: p, offset: 0, position: 0, kind })
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
        assert_eq!(bytes.len(), 16 + 2 * (72 + 28) + 8);
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
