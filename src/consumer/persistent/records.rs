//! The state of a persistent subscription, as events of the store's own
//! streams (docs/FORMAT.md, "Persistent subscription state"): the group's
//! settings, its checkpoint and its parked events. Each is the binary data
//! of one event; little-endian, a version byte first, reserved bytes zero,
//! and exactly as long as its fields (the global log's frame checksum covers
//! it). One encoding per value: a decoded record encodes to the same bytes.
//!
//! ```text
//!  settings ($persistent-{group}, type $persistent.settings)
//!  0   1   version             u8   1
//!  1   1   target_kind         u8   0 $all, 1 stream, 2 category
//!  2   1   strategy            u8   0 round robin, 1 pinned
//!  3   1   start_kind          u8   0 beginning, 1 end, 2 position
//!  4   4   max_retries         u32
//!  8   8   start_position      u64  (0 unless start_kind is 2)
//!  16  16  group_id            the group's id (RFC 9562 byte order)
//!  32  8   message_timeout_ms  u64  1..=u32::MAX
//!  40  4   checkpoint_interval u32  >= 1
//!  44  4   buffer_size         u32  1..=1048576
//!  48  2   target_len          u16  N (0 for $all)
//!  50  2   reserved            0
//!  52  N   target              UTF-8: the stream id or the category
//!
//!  checkpoint ($persistent.checkpoint-{group}, type $persistent.checkpoint)
//!  0   1   version             u8   1
//!  1   7   reserved            0
//!  8   16  group_id
//!  24  8   position            u64  every event of the target below it is done with
//!  32  8   parked_from         u64  every parked event below this version of the parked stream is done with
//!  40  8   replay_to           u64  parked events below this version are being replayed (>= parked_from)
//!
//!  parked event ($persistent.parked-{group}, type $persistent.parked)
//!  0   1   version             u8   1
//!  1   1   reason              u8   1 nacked with Park, 2 retries exhausted
//!  2   2   message_len         u16  M, at most 1024
//!  4   4   retries             u32  failed deliveries before it was parked
//!  8   16  group_id
//!  24  8   position            u64  the parked event's global position
//!  32  M   message             UTF-8
//! ```

use uuid::Uuid;

use super::settings::{GroupSettings, GroupTarget, MAX_BUFFER_SIZE, MAX_MESSAGE_TIMEOUT_MS, MAX_TARGET_LEN, Strategy};
use crate::events::StartFrom;

/// The category of the groups' settings streams: `$persistent-{group}`.
pub const SETTINGS_CATEGORY: &str = "$persistent";
/// The prefix of a group's checkpoint stream: `$persistent.checkpoint-{group}`.
pub const CHECKPOINT_STREAM_PREFIX: &str = "$persistent.checkpoint-";
/// The prefix of a group's parked stream: `$persistent.parked-{group}`.
pub const PARKED_STREAM_PREFIX: &str = "$persistent.parked-";

/// The type of a settings event.
pub const SETTINGS_EVENT_TYPE: &str = "$persistent.settings";
/// The type of a checkpoint event.
pub const CHECKPOINT_EVENT_TYPE: &str = "$persistent.checkpoint";
/// The type of a parked event.
pub const PARKED_EVENT_TYPE: &str = "$persistent.parked";

/// The longest message of a parked event, in bytes (a longer one is cut).
pub const MAX_PARK_MESSAGE_LEN: usize = 1024;

const VERSION: u8 = 1;
const SETTINGS_FIXED_LEN: usize = 52;
const CHECKPOINT_LEN: usize = 48;
const PARKED_FIXED_LEN: usize = 32;

/// The three streams that hold a group's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateStreams {
    /// `$persistent-{group}`: the settings (the last event).
    pub(crate) settings: String,
    /// `$persistent.checkpoint-{group}`: the checkpoint (the last event).
    pub(crate) checkpoint: String,
    /// `$persistent.parked-{group}`: the parked events.
    pub(crate) parked: String,
}

impl StateStreams {
    pub(crate) fn of(group: &str) -> StateStreams {
        StateStreams {
            settings: format!("{SETTINGS_CATEGORY}-{group}"),
            checkpoint: format!("{CHECKPOINT_STREAM_PREFIX}{group}"),
            parked: format!("{PARKED_STREAM_PREFIX}{group}"),
        }
    }
}

/// A settings event: the group's id and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingsRecord {
    /// Drawn when the group is created; its other state events carry it, so
    /// that those of an earlier group of the same name are never taken for
    /// its own.
    pub(crate) group_id: Uuid,
    pub(crate) settings: GroupSettings,
}

/// A checkpoint event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointRecord {
    pub(crate) group_id: Uuid,
    /// Every event of the target below this global position was
    /// acknowledged, skipped or parked.
    pub(crate) position: u64,
    /// Every parked event below this version of the parked stream was
    /// replayed and done with.
    pub(crate) parked_from: u64,
    /// The parked events from `parked_from` below this version are to be
    /// replayed (none when equal).
    pub(crate) replay_to: u64,
}

/// Why an event was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParkReason {
    /// A member nacked it with [`super::NackAction::Park`].
    Nacked,
    /// It failed more times than the group's `max_retries` (nacks with
    /// [`super::NackAction::Retry`], or message timeouts).
    RetriesExhausted,
}

impl ParkReason {
    fn byte(self) -> u8 {
        match self {
            ParkReason::Nacked => 1,
            ParkReason::RetriesExhausted => 2,
        }
    }
}

/// A parked event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParkedRecord {
    pub(crate) group_id: Uuid,
    /// The parked event's global position.
    pub(crate) position: u64,
    /// Its failed deliveries before it was parked.
    pub(crate) retries: u32,
    pub(crate) reason: ParkReason,
    /// The member's reason, or what timed out (at most
    /// [`MAX_PARK_MESSAGE_LEN`] bytes).
    pub(crate) message: String,
}

impl SettingsRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let s = &self.settings;
        let (target_kind, target) = match s.target() {
            GroupTarget::All => (0u8, ""),
            GroupTarget::Stream(name) => (1, name.as_str()),
            GroupTarget::Category(name) => (2, name.as_str()),
        };
        let (start_kind, start_position) = match s.start() {
            StartFrom::Beginning => (0u8, 0),
            StartFrom::End => (1, 0),
            StartFrom::Position(p) => (2, p),
        };
        let strategy = match s.strategy() {
            Strategy::RoundRobin => 0u8,
            Strategy::Pinned => 1,
        };
        let mut out = Vec::with_capacity(SETTINGS_FIXED_LEN + target.len());
        out.extend_from_slice(&[VERSION, target_kind, strategy, start_kind]);
        out.extend_from_slice(&s.max_retries().to_le_bytes());
        out.extend_from_slice(&start_position.to_le_bytes());
        out.extend_from_slice(self.group_id.as_bytes());
        out.extend_from_slice(&s.message_timeout_ms().to_le_bytes());
        out.extend_from_slice(&s.checkpoint_interval().to_le_bytes());
        out.extend_from_slice(&s.buffer_size().to_le_bytes());
        out.extend_from_slice(&(target.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(target.as_bytes());
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<SettingsRecord, String> {
        let fixed = data
            .get(..SETTINGS_FIXED_LEN)
            .ok_or_else(|| format!("settings of {} bytes (at least {SETTINGS_FIXED_LEN})", data.len()))?;
        check_version(fixed[0], "settings")?;
        let target_len = usize::from(u16_at(fixed, 48));
        if fixed[50..52] != [0, 0] {
            return Err("settings with reserved bytes that are not zero".into());
        }
        if data.len() != SETTINGS_FIXED_LEN + target_len {
            return Err(format!("settings of {} bytes for a target of {target_len}", data.len()));
        }
        if target_len > MAX_TARGET_LEN {
            return Err(format!("a target of {target_len} bytes (at most {MAX_TARGET_LEN})"));
        }
        let name = std::str::from_utf8(&data[SETTINGS_FIXED_LEN..]).map_err(|_| "a target that is not UTF-8")?;
        let target = match (fixed[1], target_len) {
            (0, 0) => GroupTarget::All,
            (0, _) => return Err("a $all target with a name".into()),
            (1, _) => GroupTarget::Stream(name.to_owned()),
            (2, _) => GroupTarget::Category(name.to_owned()),
            (kind, _) => return Err(format!("target kind {kind} (0 $all, 1 stream, 2 category)")),
        };
        let strategy = match fixed[2] {
            0 => Strategy::RoundRobin,
            1 => Strategy::Pinned,
            s => return Err(format!("strategy {s} (0 round robin, 1 pinned)")),
        };
        let start_position = u64_at(fixed, 8);
        let start = match (fixed[3], start_position) {
            (0, 0) => StartFrom::Beginning,
            (1, 0) => StartFrom::End,
            (2, p) => StartFrom::Position(p),
            (0 | 1, _) => return Err("a start position with a start that is not a position".into()),
            (kind, _) => return Err(format!("start kind {kind} (0 beginning, 1 end, 2 position)")),
        };
        let timeout_ms = u64_at(fixed, 32);
        if timeout_ms == 0 || timeout_ms > MAX_MESSAGE_TIMEOUT_MS {
            return Err(format!("a message timeout of {timeout_ms} ms (1 to {MAX_MESSAGE_TIMEOUT_MS})"));
        }
        let settings = GroupSettings::new(target)
            .with_strategy(strategy)
            .with_start(start)
            .with_max_retries(u32_at(fixed, 4))
            .with_message_timeout(std::time::Duration::from_millis(timeout_ms))
            .with_checkpoint_interval(u32_at(fixed, 40))
            .with_buffer_size(u32_at(fixed, 44));
        if let Some(reason) = settings.problem() {
            return Err(format!("settings that cannot be used: {reason} (the buffer holds 1 to {MAX_BUFFER_SIZE})"));
        }
        Ok(SettingsRecord { group_id: uuid_at(fixed, 16), settings })
    }
}

impl CheckpointRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_LEN);
        out.extend_from_slice(&[VERSION, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(self.group_id.as_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.parked_from.to_le_bytes());
        out.extend_from_slice(&self.replay_to.to_le_bytes());
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<CheckpointRecord, String> {
        if data.len() != CHECKPOINT_LEN {
            return Err(format!("a checkpoint of {} bytes (it has {CHECKPOINT_LEN})", data.len()));
        }
        check_version(data[0], "checkpoint")?;
        if data[1..8] != [0; 7] {
            return Err("a checkpoint with reserved bytes that are not zero".into());
        }
        let record = CheckpointRecord {
            group_id: uuid_at(data, 8),
            position: u64_at(data, 24),
            parked_from: u64_at(data, 32),
            replay_to: u64_at(data, 40),
        };
        if record.replay_to < record.parked_from {
            return Err(format!(
                "a checkpoint replaying parked events up to version {} though it is done with them up to {}",
                record.replay_to, record.parked_from
            ));
        }
        Ok(record)
    }
}

impl ParkedRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let message = cut(&self.message, MAX_PARK_MESSAGE_LEN);
        let mut out = Vec::with_capacity(PARKED_FIXED_LEN + message.len());
        out.extend_from_slice(&[VERSION, self.reason.byte()]);
        out.extend_from_slice(&(message.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.retries.to_le_bytes());
        out.extend_from_slice(self.group_id.as_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(message.as_bytes());
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<ParkedRecord, String> {
        let fixed = data
            .get(..PARKED_FIXED_LEN)
            .ok_or_else(|| format!("a parked event of {} bytes (at least {PARKED_FIXED_LEN})", data.len()))?;
        check_version(fixed[0], "parked event")?;
        let reason = match fixed[1] {
            1 => ParkReason::Nacked,
            2 => ParkReason::RetriesExhausted,
            r => return Err(format!("park reason {r} (1 nacked, 2 retries exhausted)")),
        };
        let message_len = usize::from(u16_at(fixed, 2));
        if message_len > MAX_PARK_MESSAGE_LEN {
            return Err(format!("a message of {message_len} bytes (at most {MAX_PARK_MESSAGE_LEN})"));
        }
        if data.len() != PARKED_FIXED_LEN + message_len {
            return Err(format!("a parked event of {} bytes for a message of {message_len}", data.len()));
        }
        let message = std::str::from_utf8(&data[PARKED_FIXED_LEN..]).map_err(|_| "a message that is not UTF-8")?;
        Ok(ParkedRecord {
            group_id: uuid_at(fixed, 8),
            position: u64_at(fixed, 24),
            retries: u32_at(fixed, 4),
            reason,
            message: message.to_owned(),
        })
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn check_version(version: u8, what: &str) -> Result<(), String> {
    match version {
        VERSION => Ok(()),
        v => Err(format!("{what} of format version {v} (this build reads {VERSION})")),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn uuid_at(b: &[u8], at: usize) -> Uuid {
    Uuid::from_bytes(b[at..at + 16].try_into().expect("16 bytes"))
}

/// Decodes `data` as each of the three records (chosen by `selector`
/// modulo 3) and checks that whatever decodes encodes to the same bytes.
/// For the fuzz target (`crate::fuzzing::event_file_roundtrip`). Panics if
/// a check fails; never on bad input. Returns whether it decoded.
pub(crate) fn roundtrip_for_fuzzing(selector: u8, data: &[u8]) -> bool {
    match selector % 3 {
        0 => SettingsRecord::decode(data).map(|r| assert_eq!(r.encode(), data, "settings have one encoding")).is_ok(),
        1 => CheckpointRecord::decode(data)
            .map(|r| assert_eq!(r.encode(), data, "a checkpoint has one encoding"))
            .is_ok(),
        _ => {
            ParkedRecord::decode(data).map(|r| assert_eq!(r.encode(), data, "a parked event has one encoding")).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GROUP_ID: Uuid = Uuid::from_bytes([
        0x4a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x40, 0x61, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7, 0xe8, 0xf9,
    ]);

    fn settings() -> SettingsRecord {
        let settings = GroupSettings::new(GroupTarget::Category("order".into()))
            .with_strategy(Strategy::Pinned)
            .with_start(StartFrom::Position(1234))
            .with_max_retries(5)
            .with_message_timeout(Duration::from_millis(2500))
            .with_checkpoint_interval(20)
            .with_buffer_size(64);
        SettingsRecord { group_id: GROUP_ID, settings }
    }

    /// The bytes of a settings event, pinned (docs/FORMAT.md, "Persistent
    /// subscription state").
    #[test]
    fn golden_settings() {
        let mut expected = vec![1, 2, 1, 2];
        expected.extend_from_slice(&5u32.to_le_bytes());
        expected.extend_from_slice(&1234u64.to_le_bytes());
        expected.extend_from_slice(GROUP_ID.as_bytes());
        expected.extend_from_slice(&2500u64.to_le_bytes());
        expected.extend_from_slice(&20u32.to_le_bytes());
        expected.extend_from_slice(&64u32.to_le_bytes());
        expected.extend_from_slice(&5u16.to_le_bytes());
        expected.extend_from_slice(&[0, 0]);
        expected.extend_from_slice(b"order");
        assert_eq!(settings().encode(), expected);
        assert_eq!(SettingsRecord::decode(&expected), Ok(settings()));
        // $all from the end, round robin, with the defaults.
        let all = SettingsRecord {
            group_id: GROUP_ID,
            settings: GroupSettings::new(GroupTarget::All).with_start(StartFrom::End),
        };
        let bytes = all.encode();
        assert_eq!(bytes.len(), 52);
        assert_eq!(bytes[..4], [1, 0, 0, 1]);
        assert_eq!(bytes[4..8], 10u32.to_le_bytes());
        assert_eq!(bytes[32..40], 30_000u64.to_le_bytes());
        assert_eq!(bytes[40..48], [100, 0, 0, 0, 244, 1, 0, 0]);
        assert_eq!(SettingsRecord::decode(&bytes), Ok(all));
    }

    #[test]
    fn golden_checkpoint() {
        let record = CheckpointRecord { group_id: GROUP_ID, position: 77, parked_from: 3, replay_to: 9 };
        let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(GROUP_ID.as_bytes());
        expected.extend_from_slice(&77u64.to_le_bytes());
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(record.encode(), expected);
        assert_eq!(CheckpointRecord::decode(&expected), Ok(record));
    }

    #[test]
    fn golden_parked() {
        let record = ParkedRecord {
            group_id: GROUP_ID,
            position: 42,
            retries: 3,
            reason: ParkReason::RetriesExhausted,
            message: "timed out".into(),
        };
        let mut expected = vec![1, 2];
        expected.extend_from_slice(&9u16.to_le_bytes());
        expected.extend_from_slice(&3u32.to_le_bytes());
        expected.extend_from_slice(GROUP_ID.as_bytes());
        expected.extend_from_slice(&42u64.to_le_bytes());
        expected.extend_from_slice(b"timed out");
        assert_eq!(record.encode(), expected);
        assert_eq!(ParkedRecord::decode(&expected), Ok(record));
    }

    #[test]
    fn a_long_park_message_is_cut_at_a_character_boundary() {
        let message = "é".repeat(600);
        let record = ParkedRecord { group_id: GROUP_ID, position: 1, retries: 0, reason: ParkReason::Nacked, message };
        let decoded = ParkedRecord::decode(&record.encode()).unwrap();
        assert_eq!(decoded.message, "é".repeat(512));
    }

    /// Every single-byte change of a valid record is refused or decodes to
    /// something that encodes to the changed bytes; truncations and garbage
    /// are refused; nothing panics.
    #[test]
    fn damaged_records_are_refused_and_never_panic() {
        let parked = ParkedRecord {
            group_id: GROUP_ID,
            position: 5,
            retries: 1,
            reason: ParkReason::Nacked,
            message: "bad".into(),
        };
        let checkpoint = CheckpointRecord { group_id: GROUP_ID, position: 7, parked_from: 0, replay_to: 0 };
        let samples = [(0u8, settings().encode()), (1, checkpoint.encode()), (2, parked.encode())];
        for (selector, good) in &samples {
            assert!(roundtrip_for_fuzzing(*selector, good));
            for cut in 0..good.len() {
                assert!(!roundtrip_for_fuzzing(*selector, &good[..cut]), "selector {selector}, cut at {cut}");
            }
            let mut longer = good.clone();
            longer.push(0);
            assert!(!roundtrip_for_fuzzing(*selector, &longer), "selector {selector}, one byte more");
            for i in 0..good.len() {
                for x in [0x01u8, 0x80, 0xff] {
                    let mut bad = good.clone();
                    bad[i] ^= x;
                    roundtrip_for_fuzzing(*selector, &bad);
                }
            }
            assert!(!roundtrip_for_fuzzing(*selector, &vec![0; good.len()]), "all zeros");
        }
        // Specific refusals.
        let mut bad = settings().encode();
        bad[0] = 2;
        assert!(SettingsRecord::decode(&bad).unwrap_err().contains("format version 2"));
        let mut bad = settings().encode();
        bad[44..48].copy_from_slice(&0u32.to_le_bytes());
        assert!(SettingsRecord::decode(&bad).unwrap_err().contains("buffer"));
        let mut bad = settings().encode();
        bad[1] = 0;
        assert!(SettingsRecord::decode(&bad).is_err(), "a $all target with a name");
        let mut bad = settings().encode();
        bad[52] = b'$';
        assert!(SettingsRecord::decode(&bad).is_err(), "a target of the store's own");
        let bad = CheckpointRecord { replay_to: 2, parked_from: 3, ..checkpoint }.encode();
        assert!(CheckpointRecord::decode(&bad).is_err());
        let mut bad = parked.encode();
        bad[1] = 3;
        assert!(ParkedRecord::decode(&bad).is_err());
        let mut bad = parked.encode();
        bad[32] = 0xff;
        assert!(ParkedRecord::decode(&bad).unwrap_err().contains("UTF-8"));
    }
}
