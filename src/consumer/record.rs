//! The records of the committed-offsets topic (docs/FORMAT.md, "Committed
//! offsets"): a key per (group, topic, partition) and a value with the
//! offset, its metadata, the committing member's generation, the time and
//! the topic's incarnation; a tombstone (no value) deletes the offset. The
//! frame's checksum covers both; these decoders check the layout.

use super::{MAX_COMMIT_METADATA_LEN, MAX_GROUP_NAME_LEN};
use crate::MAX_TOPIC_NAME_LEN;

/// The version byte of keys and values.
const VERSION: u8 = 1;
/// The kind byte of a key: a committed offset.
const KIND_OFFSET: u8 = 1;
/// The fixed part of a key.
const KEY_HEADER_LEN: usize = 10;
/// The fixed part of a value.
const VALUE_HEADER_LEN: usize = 32;

/// Which offset a record is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OffsetKey {
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) partition: u32,
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    /// The next record to read.
    pub(crate) offset: u64,
    /// The committing member's generation; 0 for a commit from outside the
    /// group protocol (a standalone consumer, a reset, the CLI).
    pub(crate) generation: u32,
    /// When it was committed, in ms since the Unix epoch.
    pub(crate) committed_ms: i64,
    /// The `created_ms` of the topic it was committed for: an offset of a
    /// topic deleted and created again under the same name is stale.
    pub(crate) topic_created_ms: i64,
    /// The committer's metadata string.
    pub(crate) metadata: String,
}

impl OffsetKey {
    // Format: version u8 | kind u8 | group_len u16 | topic_len u16 | partition u32 | group | topic (LE)
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(KEY_HEADER_LEN + self.group.len() + self.topic.len());
        b.push(VERSION);
        b.push(KIND_OFFSET);
        b.extend_from_slice(&(self.group.len() as u16).to_le_bytes());
        b.extend_from_slice(&(self.topic.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.partition.to_le_bytes());
        b.extend_from_slice(self.group.as_bytes());
        b.extend_from_slice(self.topic.as_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<OffsetKey, String> {
        let header = b.get(..KEY_HEADER_LEN).ok_or_else(|| format!("a key of {} bytes (at least 10)", b.len()))?;
        if header[0] != VERSION {
            return Err(format!("key version {} (this build reads 1)", header[0]));
        }
        if header[1] != KIND_OFFSET {
            return Err(format!("key kind {} (1: a committed offset)", header[1]));
        }
        let group_len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let topic_len = usize::from(u16::from_le_bytes([header[4], header[5]]));
        let partition = u32::from_le_bytes([header[6], header[7], header[8], header[9]]);
        if !(1..=MAX_GROUP_NAME_LEN).contains(&group_len) || !(1..=MAX_TOPIC_NAME_LEN).contains(&topic_len) {
            return Err(format!("a group name of {group_len} bytes and a topic name of {topic_len}"));
        }
        if b.len() != KEY_HEADER_LEN + group_len + topic_len {
            return Err(format!("a key of {} bytes, its lengths say {}", b.len(), KEY_HEADER_LEN + group_len + topic_len));
        }
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
        };
        let group = text(&b[KEY_HEADER_LEN..KEY_HEADER_LEN + group_len], "group name")?;
        let topic = text(&b[KEY_HEADER_LEN + group_len..], "topic name")?;
        crate::validate_topic_name(&topic).map_err(|e| e.to_string())?;
        Ok(OffsetKey { group, topic, partition })
    }
}

impl OffsetValue {
    // Format: version u8 | reserved u8 | metadata_len u16 | generation u32 | offset u64
    //         | committed_ms i64 | topic_created_ms i64 | metadata (LE)
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(VALUE_HEADER_LEN + self.metadata.len());
        b.push(VERSION);
        b.push(0);
        b.extend_from_slice(&(self.metadata.len() as u16).to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.committed_ms.to_le_bytes());
        b.extend_from_slice(&self.topic_created_ms.to_le_bytes());
        b.extend_from_slice(self.metadata.as_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<OffsetValue, String> {
        let h = b.get(..VALUE_HEADER_LEN).ok_or_else(|| format!("a value of {} bytes (at least 32)", b.len()))?;
        if h[0] != VERSION {
            return Err(format!("value version {} (this build reads 1)", h[0]));
        }
        if h[1] != 0 {
            return Err("a reserved byte is not zero".into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let metadata_len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        if metadata_len > MAX_COMMIT_METADATA_LEN || b.len() != VALUE_HEADER_LEN + metadata_len {
            return Err(format!("a value of {} bytes with {metadata_len} bytes of metadata", b.len()));
        }
        let metadata =
            String::from_utf8(b[VALUE_HEADER_LEN..].to_vec()).map_err(|_| "the metadata is not UTF-8".to_owned())?;
        Ok(OffsetValue {
            generation: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            offset: u64_at(8),
            committed_ms: u64_at(16) as i64,
            topic_created_ms: u64_at(24) as i64,
            metadata,
        })
    }
}

/// Decodes a key and an optional value as the fuzz target does: `Ok` only
/// for bytes that encode back to themselves.
pub fn roundtrip_for_fuzzing(key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
    let k = OffsetKey::decode(key)?;
    assert_eq!(k.encode(), key, "a decoded key encodes back to its bytes");
    if let Some(value) = value {
        let v = OffsetValue::decode(value)?;
        assert_eq!(v.encode(), value, "a decoded value encodes back to its bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (OffsetKey, OffsetValue) {
        let key = OffsetKey { group: "billing".into(), topic: "orders".into(), partition: 3 };
        let value = OffsetValue {
            offset: 1_000,
            generation: 7,
            committed_ms: 1_700_000_000_000,
            topic_created_ms: 1_600_000_000_000,
            metadata: "host-a".into(),
        };
        (key, value)
    }

    /// The bytes of docs/FORMAT.md's "Committed offsets": a change here is a
    /// format change.
    #[test]
    fn golden_commit_record() {
        let (key, value) = sample();
        let mut want_key = vec![1, 1, 7, 0, 6, 0, 3, 0, 0, 0];
        want_key.extend_from_slice(b"billingorders");
        assert_eq!(key.encode(), want_key);
        let mut want_value = vec![1, 0, 6, 0, 7, 0, 0, 0];
        want_value.extend_from_slice(&1_000u64.to_le_bytes());
        want_value.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        want_value.extend_from_slice(&1_600_000_000_000i64.to_le_bytes());
        want_value.extend_from_slice(b"host-a");
        assert_eq!(value.encode(), want_value);
        assert_eq!(OffsetKey::decode(&want_key).unwrap(), key);
        assert_eq!(OffsetValue::decode(&want_value).unwrap(), value);
    }

    #[test]
    fn damaged_records_are_refused_with_a_reason() {
        let (key, value) = sample();
        let (k, v) = (key.encode(), value.encode());
        for n in 0..k.len() {
            assert!(OffsetKey::decode(&k[..n]).is_err(), "a key cut to {n} bytes");
        }
        for n in 0..v.len() {
            assert!(OffsetValue::decode(&v[..n]).is_err(), "a value cut to {n} bytes");
        }
        let mut bad = k.clone();
        bad[0] = 2;
        assert!(OffsetKey::decode(&bad).unwrap_err().contains("version"));
        let mut bad = k.clone();
        bad[10] = 0xFF;
        assert!(OffsetKey::decode(&bad).unwrap_err().contains("UTF-8"));
        let mut bad = k;
        *bad.last_mut().unwrap() = b'/';
        assert!(OffsetKey::decode(&bad).is_err(), "a topic name with '/'");
        let mut bad = v.clone();
        bad[1] = 1;
        assert!(OffsetValue::decode(&bad).unwrap_err().contains("reserved"));
        let mut bad = v;
        bad.push(b'x');
        assert!(OffsetValue::decode(&bad).is_err(), "a byte past the metadata");
    }
}
