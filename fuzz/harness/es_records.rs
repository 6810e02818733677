//! Harness of the `es_records` target: the application layer's records.
//! The first byte (modulo 5) picks a snapshot event's data, an event's
//! JSON metadata (correlation, causation, schema version), a key-value read
//! model's `$rows` event, a parked-event record or a process manager's
//! timeout record. Whatever decodes
//! must encode to the same bytes (or read the same); nothing may panic.

pub fn run(data: &[u8]) {
    decodes(data);
}

/// Runs `data` through the harness; whether it decoded.
pub fn decodes(data: &[u8]) -> bool {
    annal::fuzzing::es_record_roundtrip(data)
}
