//! Harness of the `consumer_records` target: the first byte picks (by its
//! parity) a record of the consumer groups' committed-offsets topic (two
//! bytes of key length, the key, then the value, none if nothing follows) or
//! an idempotent producer's batch header. Whatever decodes must encode to the
//! same bytes; nothing may panic.

pub fn run(data: &[u8]) {
    decodes(data);
}

/// Runs `data` through the harness; whether it decoded.
pub fn decodes(data: &[u8]) -> bool {
    annal::fuzzing::consumer_record_roundtrip(data)
}
