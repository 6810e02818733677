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
