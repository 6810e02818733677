//! The bytes of the application layer's own records, other than snapshots
//! (docs/FORMAT.md, "Event sourcing"): a parked event's record, and a
//! key-value read model's commit, the data of one `$rows` event of the stream
//! `$projection-{name}`, the rows a batch of events changed and the
//! position the projection goes on from, stored together.
//!
//! ```text
//!  offset  size  field       type
//!  0       1     version     u8   1
//!  1       1     flags       u8   bit 0: FULL (the model is these rows only);
//!                                 bit 1: MORE (a FULL state continues in the next event)
//!  2       2     reserved    u16  0
//!  4       8     checkpoint  u64  the global position the projection goes on from
//!  12      4     count       u32  rows that follow
//!  16      ...   rows        count times: key_len u32, key, value_len u32
//!                            (0xFFFF_FFFF: the key is deleted, no value), value
//! ```
//!
//! Little-endian; the event is exactly as long as its rows.

use super::projection::ParkedEvent;
use uuid::Uuid;

// Format: version u8 (1) | reserved [u8; 3] | position u64 | attempts u32 | event_id [u8; 16] | reason (UTF-8, the rest)
pub(crate) fn encode_parked(p: &ParkedEvent) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + p.reason.len());
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&p.position.to_le_bytes());
    b.extend_from_slice(&p.attempts.to_le_bytes());
    b.extend_from_slice(p.event_id.as_bytes());
    b.extend_from_slice(p.reason.as_bytes());
    b
}

pub(crate) fn decode_parked(b: &[u8]) -> std::result::Result<ParkedEvent, String> {
    if b.len() < 32 || b[..4] != [1, 0, 0, 0] {
        return Err(format!("not a parked-event record ({} bytes)", b.len()));
    }
    let reason = std::str::from_utf8(&b[32..]).map_err(|e| format!("its reason is not UTF-8: {e}"))?;
    Ok(ParkedEvent {
        position: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
        attempts: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
        event_id: Uuid::from_bytes(b[16..32].try_into().expect("16 bytes")),
        reason: reason.to_owned(),
    })
}

/// Decodes a parked-event record as the fuzz target does.
pub fn parked_roundtrip_for_fuzzing(bytes: &[u8]) -> std::result::Result<(), String> {
    let p = decode_parked(bytes)?;
    assert_eq!(encode_parked(&p), bytes, "a decoded parked record encodes back to its bytes");
    Ok(())
}

/// The event type of a read model's commit.
pub const ROWS_EVENT_TYPE: &str = "$rows";

const VERSION: u8 = 1;
const FLAG_FULL: u8 = 1;
const FLAG_MORE: u8 = 2;
const DELETED: u32 = u32::MAX;
const HEADER_LEN: usize = 16;

/// One commit of a read model, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RowsRecord {
    /// The rows replace the whole model (the first event of a full state).
    pub(crate) full: bool,
    /// The full state goes on in the next event.
    pub(crate) more: bool,
    pub(crate) checkpoint: u64,
    /// Keys and their new values (`None`: deleted).
    pub(crate) rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl RowsRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let len: usize = self.rows.iter().map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        let mut b = Vec::with_capacity(HEADER_LEN + len);
        b.push(VERSION);
        b.push((u8::from(self.full) * FLAG_FULL) | (u8::from(self.more) * FLAG_MORE));
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.checkpoint.to_le_bytes());
        b.extend_from_slice(&u32::try_from(self.rows.len()).expect("rows under 4 G").to_le_bytes());
        for (k, v) in &self.rows {
            b.extend_from_slice(&u32::try_from(k.len()).expect("a key under 4 GiB").to_le_bytes());
            b.extend_from_slice(k);
            match v {
                Some(v) => {
                    let n = u32::try_from(v.len()).ok().filter(|&n| n != DELETED).expect("a value under 4 GiB");
                    b.extend_from_slice(&n.to_le_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&DELETED.to_le_bytes()),
            }
        }
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<RowsRecord, String> {
        if b.len() < HEADER_LEN {
            return Err(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", b.len()));
        }
        if b[0] != VERSION {
            return Err(format!("rows format version {} (this build reads {VERSION})", b[0]));
        }
        if b[1] & !(FLAG_FULL | FLAG_MORE) != 0 || b[2..4] != [0, 0] {
            return Err(format!("unknown flags {:#04x} or reserved bytes set", b[1]));
        }
        let checkpoint = u64::from_le_bytes(b[4..12].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let mut rest = &b[HEADER_LEN..];
        let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err(format!("{what} of {n} bytes with {} left", rest.len()));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        // Each row takes at least 8 bytes: the count is bounded by the input.
        let mut rows = Vec::with_capacity((count as usize).min((b.len() - HEADER_LEN) / 8));
        for _ in 0..count {
            let key_len = u32::from_le_bytes(take(4, "a key length")?.try_into().expect("4 bytes"));
            let key = take(key_len as usize, "a key")?.to_vec();
            let value_len = u32::from_le_bytes(take(4, "a value length")?.try_into().expect("4 bytes"));
            let value = match value_len {
                DELETED => None,
                n => Some(take(n as usize, "a value")?.to_vec()),
            };
            rows.push((key, value));
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes after the last row", rest.len()));
        }
        Ok(RowsRecord { full: b[1] & FLAG_FULL != 0, more: b[1] & FLAG_MORE != 0, checkpoint, rows })
    }
}

/// Decodes a rows record as the fuzz target does: `Ok` only for bytes that
/// encode back to themselves.
pub fn rows_roundtrip_for_fuzzing(bytes: &[u8]) -> Result<(), String> {
    let r = RowsRecord::decode(bytes)?;
    assert_eq!(r.encode(), bytes, "a decoded rows record encodes back to its bytes");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_the_bytes_format_md_gives() {
        let r = RowsRecord {
            full: true,
            more: false,
            checkpoint: 258,
            rows: vec![(b"a".to_vec(), Some(b"xy".to_vec())), (b"b".to_vec(), None)],
        };
        let golden: &[u8] = &[
            1, 1, 0, 0, // version, flags (FULL), reserved
            2, 1, 0, 0, 0, 0, 0, 0, // checkpoint 258
            2, 0, 0, 0, // count
            1, 0, 0, 0, b'a', 2, 0, 0, 0, b'x', b'y', // a = "xy"
            1, 0, 0, 0, b'b', 0xff, 0xff, 0xff, 0xff, // b deleted
        ];
        assert_eq!(r.encode(), golden);
        assert_eq!(RowsRecord::decode(golden).unwrap(), r);
        for cut in 0..golden.len() {
            assert!(RowsRecord::decode(&golden[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = golden.to_vec();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(RowsRecord::decode(&huge).is_err());
    }
}

/// What a timeout record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutKind {
    Scheduled = 1,
    Cancelled = 2,
    Fired = 3,
}

/// One record of a process manager's `$timeouts-{name}` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeoutRecord {
    pub(crate) kind: TimeoutKind,
    pub(crate) due_ms: i64,
    pub(crate) instance: String,
    pub(crate) name: String,
    pub(crate) payload: Vec<u8>,
}

// Format: version u8 (1) | kind u8 | reserved u16 | due_ms i64 | instance_len u16 | name_len u16
//         | instance (UTF-8) | name (UTF-8) | payload (the rest)
impl TimeoutRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.instance.len() + self.name.len() + self.payload.len());
        b.extend_from_slice(&[1, self.kind as u8, 0, 0]);
        b.extend_from_slice(&self.due_ms.to_le_bytes());
        b.extend_from_slice(&u16::try_from(self.instance.len()).expect("an instance under 64 KiB").to_le_bytes());
        b.extend_from_slice(&u16::try_from(self.name.len()).expect("a name under 64 KiB").to_le_bytes());
        b.extend_from_slice(self.instance.as_bytes());
        b.extend_from_slice(self.name.as_bytes());
        b.extend_from_slice(&self.payload);
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<TimeoutRecord, String> {
        if b.len() < 16 {
            return Err(format!("{} bytes, shorter than a timeout record's 16-byte header", b.len()));
        }
        if b[0] != 1 || b[2..4] != [0, 0] {
            return Err(format!("timeout record version {} or reserved bytes set", b[0]));
        }
        let kind = match b[1] {
            1 => TimeoutKind::Scheduled,
            2 => TimeoutKind::Cancelled,
            3 => TimeoutKind::Fired,
            k => return Err(format!("timeout record kind {k}")),
        };
        let due_ms = i64::from_le_bytes(b[4..12].try_into().expect("8 bytes"));
        let instance_len = usize::from(u16::from_le_bytes([b[12], b[13]]));
        let name_len = usize::from(u16::from_le_bytes([b[14], b[15]]));
        let rest = &b[16..];
        if rest.len() < instance_len + name_len {
            return Err(format!("an instance of {instance_len} and a name of {name_len} bytes in {}", rest.len()));
        }
        let utf8 = |s: &[u8], what: &str| String::from_utf8(s.to_vec()).map_err(|e| format!("{what} is not UTF-8: {e}"));
        let instance = utf8(&rest[..instance_len], "the instance")?;
        let name = utf8(&rest[instance_len..instance_len + name_len], "the name")?;
        let payload = rest[instance_len + name_len..].to_vec();
        if kind != TimeoutKind::Scheduled && (due_ms != 0 || !payload.is_empty()) {
            return Err("a cancelled or fired timeout has no due time or payload".into());
        }
        Ok(TimeoutRecord { kind, due_ms, instance, name, payload })
    }
}

/// Decodes a timeout record as the fuzz target does.
pub fn timeout_roundtrip_for_fuzzing(bytes: &[u8]) -> Result<(), String> {
    let r = TimeoutRecord::decode(bytes)?;
    assert_eq!(r.encode(), bytes, "a decoded timeout record encodes back to its bytes");
    Ok(())
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn timeout_records_have_the_bytes_format_md_gives() {
        let r = TimeoutRecord {
            kind: TimeoutKind::Scheduled,
            due_ms: 1000,
            instance: "o1".into(),
            name: "pay".into(),
            payload: vec![9],
        };
        let golden: &[u8] = &[1, 1, 0, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, b'o', b'1', b'p', b'a', b'y', 9];
        assert_eq!(r.encode(), golden);
        assert_eq!(TimeoutRecord::decode(golden).unwrap(), r);
        let fired = TimeoutRecord { kind: TimeoutKind::Fired, due_ms: 0, payload: vec![], ..r };
        assert_eq!(TimeoutRecord::decode(&fired.encode()).unwrap(), fired);
        for cut in 0..16 {
            assert!(TimeoutRecord::decode(&golden[..cut]).is_err());
        }
    }

    #[test]
    fn parked_records_have_the_bytes_format_md_gives() {
        let p = ParkedEvent { position: 77, event_id: Uuid::from_u128(1), attempts: 4, reason: "no".into() };
        let mut golden = vec![1, 0, 0, 0, 77, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];
        golden.extend_from_slice(&1u128.to_be_bytes());
        golden.extend_from_slice(b"no");
        assert_eq!(encode_parked(&p), golden);
        assert_eq!(decode_parked(&golden).unwrap(), p);
    }
}
