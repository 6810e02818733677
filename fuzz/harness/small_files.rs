//! Harness of the `small_files` target: the decoders of the small metadata
//! files in their envelope (start offset, archive manifest, `topic.meta`,
//! `store.meta`, the event store's `events.meta` and index manifest), any
//! version. The first byte picks the structure (its low 7 bits, modulo 6) and, with its high bit, wraps the rest in a valid
//! envelope so that the body decoders are reached past the checksum.
//! Whatever decodes must re-encode to the same value (and to the same bytes,
//! for the newest version); nothing may panic.

pub fn run(data: &[u8]) {
    decodes(data);
}

/// Runs `data` through the harness; whether the file decoded.
pub fn decodes(data: &[u8]) -> bool {
    annal::fuzzing::small_file_roundtrip(data)
}
