//! The event store's small files, each in the shared envelope
//! ([`crate::envelope`]; docs/FORMAT.md, "Event store metadata" and "Index
//! manifest"):
//!
//! - `events.meta`: what the store is, fixed when it is created: the key of
//!   the stream hash.
//! - `index/index.manifest`: which index runs hold the indexes, and the
//!   global position up to which they cover the log.


use siphasher::sip128::SipHasher13;

use super::run::{RunHeader, RunKind};
use crate::envelope::{Decode, Encode, Reader};



/// File name of the store's metadata, in its root directory.
pub const EVENTS_META_FILE_NAME: &str = "events.meta";

/// File name of the index manifest, in the index directory.
pub const INDEX_MANIFEST_FILE_NAME: &str = "index.manifest";

/// The most runs a manifest lists (merges keep far fewer).
pub const MAX_RUNS: usize = 4096;

/// The contents of `events.meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsMeta {
    /// The SipHash-1-3 key of the stream hash, drawn at random when the
    /// store was created.
    pub hash_key: [u8; 16],
}

impl EventsMeta {
    /// A new store's metadata, with a random hash key.
    pub fn new_random() -> EventsMeta {
        // A version-4 UUID is 122 random bits from the OS; the key is those.
        EventsMeta { hash_key: *uuid::Uuid::new_v4().as_bytes() }
    }

    /// The hasher of stream ids under this store's key.
    pub(crate) fn hasher(&self) -> StreamHasher {
        StreamHasher(SipHasher13::new_with_key(&self.hash_key))
    }
}

impl Encode for EventsMeta {
    const MAGIC: [u8; 8] = *b"ANNALEVM";
    const VERSION: u16 = 1;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash_key);
    }
}

impl Decode for EventsMeta {
    const MAGIC: [u8; 8] = *b"ANNALEVM";
    const NAME: &'static str = "events.meta";
    const FIRST_ENVELOPED: u16 = 1;
    const NEWEST: u16 = 1;

    fn decode_body(_version: u16, body: &[u8]) -> std::result::Result<EventsMeta, String> {
        let mut r = Reader::new(body);
        let hash_key = r.take(16)?.try_into().expect("16 bytes");
        r.finish()?;
        Ok(EventsMeta { hash_key })
    }
}

/// Hashes stream ids under a store's key (128-bit SipHash-1-3).
#[derive(Debug, Clone)]
pub(crate) struct StreamHasher(SipHasher13);

impl StreamHasher {
    /// The hash of `stream`.
    pub(crate) fn hash(&self, stream: &str) -> u128 {
        self.0.hash(stream.as_bytes()).as_u128()
    }
}

/// One run, as the manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRecord {
    /// Its sequence number: the file is `run-{seq:020}.run`.
    pub seq: u64,
    /// Its header, which the file's must equal.
    pub header: RunHeader,
}

impl RunRecord {
    /// The file name of run `seq`.
    pub fn file_name(seq: u64) -> String {
        format!("run-{seq:020}.run")
    }
}

/// The contents of `index.manifest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexManifest {
    /// The runs cover the global log's positions below this one.
    pub indexed_to: u64,
    /// The sequence number of the next run written.
    pub next_seq: u64,
    /// The runs, oldest first.
    pub runs: Vec<RunRecord>,
}

const RUN_RECORD_LEN: usize = 40;

impl Encode for IndexManifest {
    const MAGIC: [u8; 8] = *b"ANNALIXM";
    const VERSION: u16 = 1;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.indexed_to.to_le_bytes());
        out.extend_from_slice(&self.next_seq.to_le_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for r in &self.runs {
            out.extend_from_slice(&r.seq.to_le_bytes());
            out.push(r.header.kind as u8);
            out.extend_from_slice(&[0; 3]);
            out.extend_from_slice(&r.header.table_crc.to_le_bytes());
            out.extend_from_slice(&r.header.entries.to_le_bytes());
            out.extend_from_slice(&r.header.from.to_le_bytes());
            out.extend_from_slice(&r.header.to.to_le_bytes());
        }
    }
}

impl Decode for IndexManifest {
    const MAGIC: [u8; 8] = *b"ANNALIXM";
    const NAME: &'static str = "index manifest";
    const FIRST_ENVELOPED: u16 = 1;
    const NEWEST: u16 = 1;

    fn decode_body(_version: u16, body: &[u8]) -> std::result::Result<IndexManifest, String> {
        let mut r = Reader::new(body);
        let indexed_to = r.u64()?;
        let next_seq = r.u64()?;
        let count = r.u32()? as usize;
        if r.u32()? != 0 {
            return Err("reserved bytes are not zero".into());
        }
        if count > MAX_RUNS {
            return Err(format!("{count} runs (at most {MAX_RUNS})"));
        }
        if r.remaining() != count * RUN_RECORD_LEN {
            return Err(format!("{} bytes for {count} runs", r.remaining()));
        }
        let mut runs = Vec::with_capacity(count);
        for i in 0..count {
            let seq = r.u64()?;
            let kind = r.u8()?;
            let kind = RunKind::of_byte(kind).ok_or_else(|| format!("run {i}: unknown kind {kind}"))?;
            if r.take(3)? != [0; 3] {
                return Err(format!("run {i}: reserved bytes are not zero"));
            }
            let table_crc = r.u32()?;
            let (entries, from, to) = (r.u64()?, r.u64()?, r.u64()?);
            if seq >= next_seq {
                return Err(format!("run {i} has sequence number {seq}, not below the next one ({next_seq})"));
            }
            if entries == 0 || from > to || to > indexed_to {
                return Err(format!(
                    "run {i}: {entries} entries over positions {from}..{to} (indexed to {indexed_to})"
                ));
            }
            runs.push(RunRecord { seq, header: RunHeader { kind, entries, from, to, table_crc } });
        }
        r.finish()?;
        Ok(IndexManifest { indexed_to, next_seq, runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_events_meta() {
        let meta = EventsMeta { hash_key: *b"0123456789abcdef" };
        let mut expected = b"ANNALEVM".to_vec();
        expected.extend_from_slice(&[1, 0, 0, 0]); // version 1, flags 0
        expected.extend_from_slice(&16u32.to_le_bytes());
        expected.extend_from_slice(b"0123456789abcdef");
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[0; 4]);
        assert_eq!(meta.encode(), expected);
        assert_eq!(EventsMeta::decode(&expected), Ok(meta));
    }

    #[test]
    fn golden_index_manifest() {
        let header = RunHeader { kind: RunKind::EventId, entries: 3, from: 5, to: 9, table_crc: 0xAABB_CCDD };
        let manifest = IndexManifest { indexed_to: 9, next_seq: 8, runs: vec![RunRecord { seq: 7, header }] };
        let mut body = Vec::new();
        body.extend_from_slice(&9u64.to_le_bytes()); // indexed_to
        body.extend_from_slice(&8u64.to_le_bytes()); // next_seq
        body.extend_from_slice(&1u32.to_le_bytes()); // runs
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&7u64.to_le_bytes()); // seq
        body.extend_from_slice(&[2, 0, 0, 0]); // kind, reserved
        body.extend_from_slice(&0xAABB_CCDDu32.to_le_bytes());
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(&5u64.to_le_bytes());
        body.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(manifest.encode(), crate::envelope::wrap(*b"ANNALIXM", 1, &body));
        assert_eq!(IndexManifest::decode(&manifest.encode()), Ok(manifest));
    }

    #[test]
    fn inconsistent_manifests_are_refused() {
        let header = RunHeader { kind: RunKind::Stream, entries: 3, from: 5, to: 9, table_crc: 1 };
        let ok = IndexManifest { indexed_to: 9, next_seq: 8, runs: vec![RunRecord { seq: 7, header }] };
        let cases = vec![
            IndexManifest { indexed_to: 8, ..ok.clone() },
            IndexManifest { next_seq: 7, ..ok.clone() },
            IndexManifest {
                runs: vec![RunRecord { seq: 7, header: RunHeader { entries: 0, ..header } }],
                ..ok.clone()
            },
            IndexManifest { runs: vec![RunRecord { seq: 7, header: RunHeader { from: 10, ..header } }], ..ok.clone() },
        ];
        for bad in cases {
            assert!(IndexManifest::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        assert!(IndexManifest::decode(&ok.encode()).is_ok());
    }

    #[test]
    fn stream_hashes_depend_on_the_key() {
        let a = EventsMeta { hash_key: [1; 16] }.hasher();
        let b = EventsMeta { hash_key: [2; 16] }.hasher();
        assert_eq!(a.hash("order-1"), a.hash("order-1"));
        assert_ne!(a.hash("order-1"), a.hash("order-2"));
        assert_ne!(a.hash("order-1"), b.hash("order-1"));
        // Pinned: the hash is part of the format (runs store it).
        assert_eq!(format!("{:032x}", a.hash("order-1")), "24c1721da4e59486673e270c5adb7d4b");
        assert_ne!(EventsMeta::new_random().hash_key, EventsMeta::new_random().hash_key);
    }
}
