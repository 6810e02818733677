//! A snapshot's bytes (docs/FORMAT.md, "Snapshot"): the data of one
//! `$snapshot` event in the stream `$snapshots-{stream}`, a 40-byte header
//! and the codec's bytes of the aggregate's state.
//!
//! ```text
//!  offset size       field           type
//!  0      1          version         u8   1
//!  1      1          codec           u8   1 = JSON, 2 = postcard
//!  2      2          reserved        u16  0
//!  4      4          schema_version  u32  the aggregate's SNAPSHOT_VERSION
//!  8      8          fingerprint     u64  of TYPE, SNAPSHOT_VERSION, codec and upcasters
//!  16     8          stream_version  u64  the last event it covers
//!  24     8          covered_ms      i64  that event's timestamp
//!  32     4          state_len       u32  S
//!  36     4          state_crc       u32  CRC-32 (IEEE) of the state
//!  40     S          state
//! ```
//!
//! Little-endian. The event store's frame checksum covers the whole event
//! already; the state's own CRC lets a snapshot be checked where it is
//! used, whatever copied it there.

use std::time::Duration;

/// The event type of a snapshot.
pub const SNAPSHOT_EVENT_TYPE: &str = "$snapshot";

/// The prefix of the stream that holds a stream's snapshots.
pub const SNAPSHOT_STREAM_PREFIX: &str = "$snapshots-";

/// The format version written.
const VERSION: u8 = 1;
/// Bytes before the state.
pub(crate) const HEADER_LEN: usize = 40;

/// A snapshot's header fields (its state follows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotHeader {
    pub(crate) codec: u8,
    pub(crate) schema_version: u32,
    pub(crate) fingerprint: u64,
    pub(crate) stream_version: u64,
    pub(crate) covered_ms: i64,
}

impl SnapshotHeader {
    /// The bytes of a snapshot of `state`.
    pub(crate) fn encode(&self, state: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + state.len());
        b.push(VERSION);
        b.push(self.codec);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.schema_version.to_le_bytes());
        b.extend_from_slice(&self.fingerprint.to_le_bytes());
        b.extend_from_slice(&self.stream_version.to_le_bytes());
        b.extend_from_slice(&self.covered_ms.to_le_bytes());
        b.extend_from_slice(&u32::try_from(state.len()).expect("a state under 4 GiB").to_le_bytes());
        b.extend_from_slice(&crc32fast::hash(state).to_le_bytes());
        b.extend_from_slice(state);
        b
    }

    /// The header and state of a snapshot's bytes, or what is wrong with
    /// them: checks the version, the reserved bytes, the length and the CRC.
    pub(crate) fn decode(b: &[u8]) -> Result<(SnapshotHeader, &[u8]), String> {
        if b.len() < HEADER_LEN {
            return Err(format!("{} bytes, shorter than a snapshot's {HEADER_LEN}-byte header", b.len()));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if b[0] != VERSION {
            return Err(format!("snapshot format version {} (this build reads {VERSION})", b[0]));
        }
        if b[2..4] != [0, 0] {
            return Err("reserved bytes 2..4 are not zero".into());
        }
        let header = SnapshotHeader {
            codec: b[1],
            schema_version: u32_at(4),
            fingerprint: u64_at(8),
            stream_version: u64_at(16),
            covered_ms: u64_at(24) as i64,
        };
        let state_len = u32_at(32) as usize;
        let state = &b[HEADER_LEN..];
        if state.len() != state_len {
            return Err(format!("a state of {} bytes where the header says {state_len}", state.len()));
        }
        let crc = crc32fast::hash(state);
        if crc != u32_at(36) {
            return Err(format!("state checksum {crc:#010x}, the header says {:#010x}", u32_at(36)));
        }
        Ok((header, state))
    }
}

/// When the repository writes a snapshot of an aggregate.
///
/// A snapshot is written after the command's own append (a crash between
/// the two loses only the snapshot: the next load replays a little more);
/// the newest [`crate::es::Repository::with_kept_snapshots`] are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Never: snapshots are neither written nor read (loads replay the
    /// whole stream).
    #[default]
    Never,
    /// Each time the stream's length crosses a multiple of this many events.
    EveryEvents(u64),
    /// When a load replayed more than this many events past the newest
    /// snapshot (also a load without a command).
    ReplayedOver(u64),
    /// When the newest snapshot covers an event older than this (or there
    /// is none) and events came after it.
    OlderThan(Duration),
}

/// Decodes a snapshot's bytes as the fuzz target does: `Ok` only for bytes
/// that encode back to themselves.
pub fn roundtrip_for_fuzzing(bytes: &[u8]) -> Result<(), String> {
    let (header, state) = SnapshotHeader::decode(bytes)?;
    assert_eq!(header.encode(state), bytes, "a decoded snapshot encodes back to its bytes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_has_the_bytes_format_md_gives() {
        let header = SnapshotHeader {
            codec: 1,
            schema_version: 3,
            fingerprint: 0x0102_0304_0506_0708,
            stream_version: 41,
            covered_ms: 1_700_000_000_000,
        };
        let bytes = header.encode(b"{}");
        let golden: &[u8] = &[
            1, 1, 0, 0, // version, codec, reserved
            3, 0, 0, 0, // schema_version
            8, 7, 6, 5, 4, 3, 2, 1, // fingerprint
            41, 0, 0, 0, 0, 0, 0, 0, // stream_version
            0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, // covered_ms
            2, 0, 0, 0, // state_len
            0x43, 0xbf, 0xa6, 0xa3, // CRC-32 of "{}"
            b'{', b'}',
        ];
        assert_eq!(bytes, golden);
        assert_eq!(SnapshotHeader::decode(&bytes).unwrap(), (header, &b"{}"[..]));
        roundtrip_for_fuzzing(&bytes).unwrap();
    }

    #[test]
    fn damaged_snapshots_are_refused_with_what_is_wrong() {
        let header =
            SnapshotHeader { codec: 2, schema_version: 1, fingerprint: 7, stream_version: 0, covered_ms: -5 };
        let good = header.encode(b"state");
        assert!(SnapshotHeader::decode(&good[..39]).unwrap_err().contains("shorter"));
        for (at, what) in [(0, "version"), (2, "reserved"), (32, "says 4"), (36, "checksum"), (41, "checksum")] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            let e = SnapshotHeader::decode(&bad).unwrap_err();
            assert!(e.contains(what), "byte {at}: {e}");
        }
        assert!(SnapshotHeader::decode(&[0; 40]).is_err(), "zeros are not a snapshot");
    }
}
