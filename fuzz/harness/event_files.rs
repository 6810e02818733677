//! Harness of the `event_files` target: the event store's decoders. The
//! first byte (its low 7 bits, modulo 4) picks an event record of the global
//! log (two bytes of key length, the key, the value), an index run file
//! (with bit 7, its checksums made right first, so that mutations reach the
//! checks behind them), a stream metadata event's data, or a persistent
//! subscription's state event (the second byte, modulo 3: settings,
//! checkpoint, parked event). Whatever decodes must encode to the same
//! bytes; nothing may panic.

pub fn run(data: &[u8]) {
    decodes(data);
}

/// Runs `data` through the harness; whether it decoded.
pub fn decodes(data: &[u8]) -> bool {
    annal::fuzzing::event_file_roundtrip(data)
}
