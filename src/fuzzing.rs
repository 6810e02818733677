//! Entry points for the fuzz targets in `fuzz/` (not part of the public API).
//!
//! **Unstable, for fuzzing only**: these functions expose crate-private
//! decoders so that the cargo-fuzz crate can reach them. They may change or
//! disappear in any release; nothing else should call them.

use crate::index::SegmentIndex;

/// Index interval the fuzzing entry points decode with. Decoding does not
/// depend on it; it only matters for entries added after loading.
const FUZZ_INDEX_INTERVAL: u32 = 4096;

/// Decodes the bytes of a segment's `.index` and `.timeindex` files the way
/// opening a sealed segment does (`SegmentIndex::decode`). Returns whether
/// they were accepted. Never panics, whatever the bytes.
pub fn decode_index_files(offsets: &[u8], times: &[u8], base_offset: u64, data_end: usize) -> bool {
    SegmentIndex::decode(offsets, times, base_offset, data_end, FUZZ_INDEX_INTERVAL).is_ok()
}

/// Decodes the index files like [`decode_index_files`] and, if they are
/// accepted, encodes the loaded index again. The format has exactly one
/// encoding of an index, so the result must equal the input bytes.
pub fn reencode_index_files(
    offsets: &[u8],
    times: &[u8],
    base_offset: u64,
    data_end: usize,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let index = SegmentIndex::decode(offsets, times, base_offset, data_end, FUZZ_INDEX_INTERVAL).ok()?;
    Some((index.encode_offsets(base_offset), index.encode_times(base_offset)))
}

/// Decodes a small metadata file (the start offset, the archive manifest,
/// `topic.meta`, `store.meta`, the event store's `events.meta` or its index
/// manifest, chosen by the low 7 bits of `data[0]`, modulo 6) from the rest of `data`; with the high bit of `data[0]` set,
/// the rest is first wrapped in a valid envelope of that structure's newest
/// version, so that the fuzzer reaches the body decoders past the checksum.
/// Whatever decodes must encode to a file that decodes to the same value,
/// and an input of the newest version must encode to the same bytes (each
/// value has one encoding). Panics if not; never on bad input. Returns
/// whether the file decoded.
pub fn small_file_roundtrip(data: &[u8]) -> bool {
    let Some((&selector, rest)) = data.split_first() else { return false };
    let wrap = selector & 0x80 != 0;
    match (selector & 0x7f) % 6 {
        0 => roundtrip::<crate::log::start::StartOffset>(rest, wrap),
        1 => roundtrip::<crate::log::manifest::Manifest>(rest, wrap),
        2 => roundtrip::<crate::topic::TopicMeta>(rest, wrap),
        3 => roundtrip::<crate::topic::store_meta::StoreMeta>(rest, wrap),
        4 => roundtrip::<crate::events::meta::EventsMeta>(rest, wrap),
        _ => roundtrip::<crate::events::meta::IndexManifest>(rest, wrap),
    }
}

fn roundtrip<T>(rest: &[u8], wrap: bool) -> bool
where
    T: crate::envelope::Encode + crate::envelope::Decode + PartialEq + std::fmt::Debug,
{
    let bytes = match wrap {
        true => crate::envelope::wrap(
            <T as crate::envelope::Encode>::MAGIC,
            <T as crate::envelope::Encode>::VERSION,
            &rest[..rest.len().min(crate::envelope::MAX_BODY)],
        ),
        false => rest.to_vec(),
    };
    let Ok(value) = T::decode(&bytes) else { return false };
    let again = value.encode();
    assert_eq!(T::decode(&again).as_ref(), Ok(&value), "a decoded value re-encodes to a file that decodes to it");
    if bytes[8..10] == <T as crate::envelope::Encode>::VERSION.to_le_bytes() {
        assert_eq!(again, bytes, "the newest version has one encoding of each value");
    }
    true
}

/// Decodes an event-store structure from `data[1..]`, chosen by the low 7
/// bits of `data[0]`, modulo 4:
///
/// - 0: an event record of the global log: two bytes (little-endian) give
///   the key's length (modulo what is left), then the key, then the value.
///   Whatever decodes must encode to the same value bytes.
/// - 1: an index run file; with bit 7 of `data[0]` set, its checksums are
///   first made right, so that the fuzzer reaches the checks behind them.
///   Whatever opens must read back, find each entry, and encode to the same
///   bytes.
/// - 2: the data of a stream metadata event. Whatever decodes must encode to
///   the same bytes.
/// - 3: the data of a persistent subscription's state event, chosen by
///   `data[1]` modulo 3 (settings, checkpoint, parked event) from
///   `data[2..]`. Whatever decodes must encode to the same bytes.
///
/// Panics if a check fails; never on bad input. Returns whether it decoded.
pub fn event_file_roundtrip(data: &[u8]) -> bool {
    let Some((&selector, rest)) = data.split_first() else { return false };
    match (selector & 0x7f) % 4 {
        0 => {
            let Some((len, rest)) = rest.split_first_chunk::<2>() else { return false };
            let (key, value) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
            let Ok(event) = crate::events::decode(Some(key), Some(value)) else { return false };
            assert_eq!(event.encode_value(), value, "an event record has one encoding");
            let owned = event.to_recorded(7, -1);
            assert_eq!((owned.stream.as_bytes(), owned.version, owned.id), (key, event.version, event.id));
            assert_eq!((owned.data.as_slice(), owned.metadata.as_slice()), (event.data, event.metadata));
            true
        }
        1 => {
            let mut bytes = rest.to_vec();
            if selector & 0x80 != 0 {
                crate::events::run::fix_checksums(&mut bytes);
            }
            crate::events::run::roundtrip_for_fuzzing(&bytes)
        }
        2 => {
            let Ok(meta) = crate::events::StreamMetadata::decode(rest) else { return false };
            assert_eq!(meta.encode(), rest, "stream metadata has one encoding");
            true
        }
        _ => {
            let Some((&which, rest)) = rest.split_first() else { return false };
            crate::consumer::persistent::records::roundtrip_for_fuzzing(which, rest)
        }
    }
}

/// The `consumer_records` target: the first byte picks, by its parity, a
/// record of the committed-offsets topic (even: two bytes of key length,
/// little-endian, the key, then the value, none if nothing follows: a
/// tombstone) or an idempotent producer's batch header (odd). Whatever
/// decodes must encode to the same bytes.
///
/// Panics if a check fails; never on bad input. Returns whether it decoded.
pub fn consumer_record_roundtrip(data: &[u8]) -> bool {
    let Some((&selector, data)) = data.split_first() else { return false };
    if selector % 2 == 1 {
        return crate::consumer::producer::roundtrip_for_fuzzing(data).is_ok();
    }
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return false };
    let (key, value) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
    let value = (!value.is_empty()).then_some(value);
    crate::consumer::record::roundtrip_for_fuzzing(key, value).is_ok()
}

/// The `es_records` target: the application layer's records, chosen by
/// `data[0]` modulo 5 from `data[1..]`:
///
/// - 0: the data of a snapshot event (docs/FORMAT.md, "Snapshot"). Whatever
///   decodes must encode to the same bytes.
/// - 1: the JSON metadata of an event, read for its correlation, causation
///   and schema version. Whatever it finds must be found again in the
///   metadata the layer writes with those values.
/// - 2: the data of a key-value read model's `$rows` event.
/// - 3: the data of a projection's parked-event record.
/// - 4: the data of a process manager's timeout record.
///
/// Panics if a check fails; never on bad input. Returns whether it decoded.
pub fn es_record_roundtrip(data: &[u8]) -> bool {
    let Some((&selector, rest)) = data.split_first() else { return false };
    match selector % 5 {
        0 => crate::es::snapshot::roundtrip_for_fuzzing(rest).is_ok(),
        2 => crate::es::records::rows_roundtrip_for_fuzzing(rest).is_ok(),
        3 => crate::es::records::parked_roundtrip_for_fuzzing(rest).is_ok(),
        4 => crate::es::records::timeout_roundtrip_for_fuzzing(rest).is_ok(),
        _ => {
            let meta = crate::es::EventMeta::parse(rest);
            let written = crate::es::CommandMeta {
                correlation_id: meta.correlation_id,
                causation_id: meta.causation_id,
                command_id: None,
            };
            let again = crate::es::EventMeta::parse(&crate::es::meta_for_fuzzing(&written, meta.schema_version));
            assert_eq!(again, meta, "metadata written with what was read reads the same");
            meta != crate::es::EventMeta::parse(b"")
        }
    }
}
