//! Harness of the `event_files` target: the event store's decoders. Bit 0
//! of the first byte picks an event record of the global log (two bytes of
//! key length, the key, the value) or an index run file (with bit 7, its
//! checksums made right first, so that mutations reach the checks behind
//! them). Whatever decodes must encode to the same bytes; nothing may panic.

pub fn run(data: &[u8]) {
    decodes(data);
}

/// Runs `data` through the harness; whether it decoded.
pub fn decodes(data: &[u8]) -> bool {
    annal::fuzzing::event_file_roundtrip(data)
}
