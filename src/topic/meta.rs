//! The topic metadata file, `topic.meta`: a topic's partition count and
//! configuration, in one checksummed file.
//!
//! Version 3 (written) is a [`crate::envelope`] around these fields:
//!
//! ```text
//!  0  4  partitions                u32, 1 ..= MAX_PARTITIONS
//!  4  1  cleanup_policy            u8: 0 = delete, 1 = compact
//!  5  3  reserved                  zero
//!  8  8  retention_ms              u64, u64::MAX = no age limit
//! 16  8  retention_bytes           u64, u64::MAX = no size limit
//! 24  8  segment_bytes             u64, MIN_SEGMENT_BYTES ..= MAX_SEGMENT_BYTES
//! 32  8  tombstone_retention_ms    u64
//! 40  8  created_ms                i64, milliseconds since the Unix epoch
//!        only if the topic has its own archive policy:
//! 48  8  archive_max_local_age_ms  u64, u64::MAX = no age trigger
//! 56  8  archive_max_local_bytes   u64, u64::MAX = no size trigger
//! ```
//!
//! Versions 1 (72 bytes) and 2 (88 bytes, with an archive policy), written
//! before the envelope, are still read: magic, version u16, flags u16, the
//! fields above at offset 12 (partitions) to 64, the archive limits at 64 in
//! version 2, then a CRC-32 of everything before it and 4 zero bytes. The
//! file is replaced atomically (temporary file, fsync, rename, fsync of the
//! topic directory), so it holds either the old or the new contents, never
//! a mix. docs/FORMAT.md ("Topic metadata") is the reference;
//! `tests/topic.rs` pins the bytes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use crate::envelope::{Decode, Encode, Reader, bad};
use crate::error::{CorruptionKind, Error, Result};
use crate::io::Io;
use crate::log::{ArchivePolicy, Retention};

/// File name of the metadata file inside a topic directory.
pub const TOPIC_META_FILE_NAME: &str = "topic.meta";
/// Size of a version 1 `topic.meta` in bytes (a topic without its own archive policy).
pub const TOPIC_META_LEN: usize = 72;
/// Size of a version 2 `topic.meta` in bytes (a topic with its own archive policy).
pub const TOPIC_META_V2_LEN: usize = 88;
/// The newest `topic.meta` version this build writes and reads (it reads
/// every older one too).
pub const TOPIC_META_VERSION: u16 = 3;
/// Most partitions a topic may have: partition directories are named with
/// five decimal digits (`00000` to `99999`).
pub const MAX_PARTITIONS: u32 = 100_000;
/// Default segment size of a topic's partitions (64 MiB). Smaller than a lone
/// log's default (1 GiB): every partition preallocates its active segment.
pub const DEFAULT_TOPIC_SEGMENT_BYTES: u64 = 64 << 20;
/// Default time a tombstone is kept by compaction (1 day).
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(86_400);

const MAGIC: &[u8; 8] = b"ANNALTOP";
/// The longest `topic.meta` of any version (version 3 with an archive policy
/// is as long as version 2).
const MAX_FILE_LEN: usize = crate::envelope::OVERHEAD + 64;
/// The stored value meaning "no limit".
const NONE: u64 = u64::MAX;

/// What happens to a topic's old records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Whole old segments are deleted by the topic's retention limits (age,
    /// size). The default.
    #[default]
    Delete,
    /// Old records are compacted: only the latest record of each key is kept,
    /// and tombstones go after the tombstone retention (see
    /// [`crate::Compaction`]). Retention by age and size does not apply; the
    /// store's cleanup pass ([`crate::topic::TopicStore::run_compaction`], and the
    /// background thread) compacts the sealed segments of every partition.
    Compact,
}

impl CleanupPolicy {
    /// The policy's name: `delete` or `compact`.
    pub fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }

    fn code(self) -> u8 {
        match self {
            CleanupPolicy::Delete => 0,
            CleanupPolicy::Compact => 1,
        }
    }

    fn from_code(code: u8) -> Option<CleanupPolicy> {
        match code {
            0 => Some(CleanupPolicy::Delete),
            1 => Some(CleanupPolicy::Compact),
            _ => None,
        }
    }
}

impl std::fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a topic is created: partition count, cleanup policy, retention and
/// segment size. Start from [`TopicConfig::default`]:
///
/// ```
/// use std::time::Duration;
/// use annal::{Retention, TopicConfig};
/// let config = TopicConfig::default()
///     .with_partitions(8)
///     .with_retention(Retention::default().with_max_age(Duration::from_secs(7 * 86_400)));
/// assert_eq!(config.partitions(), 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct TopicConfig {
    pub(crate) partitions: u32,
    pub(crate) cleanup_policy: CleanupPolicy,
    pub(crate) retention: Retention,
    pub(crate) segment_bytes: u64,
    pub(crate) tombstone_retention: Duration,
    pub(crate) archive_policy: Option<ArchivePolicy>,
}

impl Default for TopicConfig {
    /// One partition, [`CleanupPolicy::Delete`], no retention limit (records
    /// are kept until deleted), [`crate::DEFAULT_TOPIC_SEGMENT_BYTES`] segments,
    /// [`crate::DEFAULT_TOMBSTONE_RETENTION`], and the store's archive policy.
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            cleanup_policy: CleanupPolicy::Delete,
            retention: Retention::default(),
            segment_bytes: DEFAULT_TOPIC_SEGMENT_BYTES,
            tombstone_retention: DEFAULT_TOMBSTONE_RETENTION,
            archive_policy: None,
        }
    }
}

impl TopicConfig {
    /// Number of partitions, `1 ..= MAX_PARTITIONS`. Default 1.
    pub fn with_partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }

    /// What happens to old records. Default [`CleanupPolicy::Delete`].
    pub fn with_cleanup_policy(mut self, policy: CleanupPolicy) -> Self {
        self.cleanup_policy = policy;
        self
    }

    /// Retention limits applied to every partition (under
    /// [`CleanupPolicy::Delete`]). Ages are stored in whole milliseconds; a
    /// limit of `u64::MAX` (bytes or milliseconds) means none. Default: none.
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Segment size of every partition. Default [`crate::DEFAULT_TOPIC_SEGMENT_BYTES`].
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// How long compaction keeps tombstones (stored in whole milliseconds).
    /// Default [`crate::DEFAULT_TOMBSTONE_RETENTION`].
    pub fn with_tombstone_retention(mut self, age: Duration) -> Self {
        self.tombstone_retention = age;
        self
    }

    /// The topic's own archive policy, recorded in its `topic.meta`: which
    /// sealed segments archival moves to the store's archive tier
    /// ([`crate::topic::TopicStoreConfig::with_archive`]). A topic without one follows
    /// the store's policy; [`ArchivePolicy::default`] (no limit) keeps the
    /// topic's segments local whatever the store's policy. Ages and sizes are
    /// stored in whole milliseconds and bytes. Default: none (the store's).
    pub fn with_archive(mut self, policy: ArchivePolicy) -> Self {
        self.archive_policy = Some(policy);
        self
    }

    /// The topic's own archive policy, if it has one.
    pub fn archive_policy(&self) -> Option<ArchivePolicy> {
        self.archive_policy
    }

    /// The partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The cleanup policy.
    pub fn cleanup_policy(&self) -> CleanupPolicy {
        self.cleanup_policy
    }

    /// The retention limits.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The segment size.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// The tombstone retention.
    pub fn tombstone_retention(&self) -> Duration {
        self.tombstone_retention
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(Error::InvalidConfig(format!(
                "a topic has 1..={MAX_PARTITIONS} partitions, not {}",
                self.partitions
            )));
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        Ok(())
    }
}

/// The contents of `topic.meta`, field by field (see the module documentation
/// for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMeta {
    /// Number of partitions.
    pub partitions: u32,
    /// What happens to old records.
    pub cleanup_policy: CleanupPolicy,
    /// Age limit in milliseconds; `u64::MAX` for none.
    pub retention_ms: u64,
    /// Size limit per partition in bytes of record data; `u64::MAX` for none.
    pub retention_bytes: u64,
    /// Segment size of the partitions.
    pub segment_bytes: u64,
    /// How long compaction keeps tombstones, in milliseconds.
    pub tombstone_retention_ms: u64,
    /// When the topic was created, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The topic's own archive policy (version 2 of the file), or `None` to
    /// follow the store's (version 1).
    pub archive_policy: Option<ArchivePolicy>,
}

impl TopicMeta {
    /// The metadata of a topic created at `created_ms` with `config`.
    pub fn new(config: &TopicConfig, created_ms: i64) -> TopicMeta {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE);
        TopicMeta {
            partitions: config.partitions,
            cleanup_policy: config.cleanup_policy,
            retention_ms: config.retention.max_age().map_or(NONE, ms),
            retention_bytes: config.retention.max_bytes().unwrap_or(NONE),
            segment_bytes: config.segment_bytes,
            tombstone_retention_ms: ms(config.tombstone_retention),
            created_ms,
            archive_policy: config.archive_policy.map(|p| {
                // Stored in whole milliseconds: what is read back is what is kept.
                let mut stored = ArchivePolicy::default();
                if let Some(age) = p.max_local_age() {
                    stored = stored.with_max_local_age(Duration::from_millis(ms(age)));
                }
                if let Some(bytes) = p.max_local_bytes() {
                    stored = stored.with_max_local_bytes(bytes);
                }
                stored
            }),
        }
    }

    /// The configuration the metadata records.
    pub fn config(&self) -> TopicConfig {
        TopicConfig {
            partitions: self.partitions,
            cleanup_policy: self.cleanup_policy,
            retention: self.retention(),
            segment_bytes: self.segment_bytes,
            tombstone_retention: Duration::from_millis(self.tombstone_retention_ms),
            archive_policy: self.archive_policy,
        }
    }

    /// The retention limits as a policy for each partition log.
    pub fn retention(&self) -> Retention {
        let mut r = Retention::default();
        if self.retention_ms != NONE {
            r = r.with_max_age(Duration::from_millis(self.retention_ms));
        }
        if self.retention_bytes != NONE {
            r = r.with_max_bytes(self.retention_bytes);
        }
        r
    }

    /// The file's bytes: version 3, the small-file envelope around the
    /// fields (48 bytes, or 64 with an archive policy of its own).
    pub fn encode(&self) -> Vec<u8> {
        <TopicMeta as Encode>::encode(self)
    }

    /// Decodes and checks the file's bytes, of any version: the envelope (or,
    /// for versions 1 and 2, the magic, version, the length that version
    /// has, checksum, reserved bytes), then that every field is in range. The
    /// error says what is wrong.
    pub fn decode(b: &[u8]) -> std::result::Result<TopicMeta, String> {
        <TopicMeta as Decode>::decode(b).map_err(|kind| match kind {
            CorruptionKind::BadHeader(why) => why,
            other => other.to_string(),
        })
    }

    /// The fields of versions 1 and 2, from the bytes after the version.
    fn decode_legacy_fields(version: u16, b: &[u8]) -> std::result::Result<TopicMeta, String> {
        let len = match version {
            1 => TOPIC_META_LEN,
            _ => TOPIC_META_V2_LEN,
        };
        if b.len() != len {
            return Err(format!("{} bytes, expected {len} for version {version}", b.len()));
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let crc_at = len - 8;
        let stored = u32::from_le_bytes(b[crc_at..crc_at + 4].try_into().expect("4 bytes"));
        let computed = crc32fast::hash(&b[0..crc_at]);
        if stored != computed {
            return Err(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
        }
        if b[10..12] != [0; 2] || b[17..24] != [0; 7] || b[crc_at + 4..len] != [0; 4] {
            return Err("reserved bytes are not zero".into());
        }
        let archive = (version == 2).then(|| (u64_at(64), u64_at(72)));
        TopicMeta::checked(
            u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
            b[16],
            [u64_at(24), u64_at(32), u64_at(40), u64_at(48)],
            i64::from_le_bytes(b[56..64].try_into().expect("8 bytes")),
            archive,
        )
    }

    /// The metadata from its stored fields, each checked: partitions,
    /// cleanup policy, `[retention_ms, retention_bytes, segment_bytes,
    /// tombstone_retention_ms]`, creation time, and the archive limits
    /// (age, bytes) of a policy of its own.
    fn checked(
        partitions: u32,
        policy: u8,
        [retention_ms, retention_bytes, segment_bytes, tombstone_retention_ms]: [u64; 4],
        created_ms: i64,
        archive: Option<(u64, u64)>,
    ) -> std::result::Result<TopicMeta, String> {
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(format!("{partitions} partitions, outside 1..={MAX_PARTITIONS}"));
        }
        let cleanup_policy = CleanupPolicy::from_code(policy).ok_or_else(|| format!("unknown cleanup policy {policy}"))?;
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
            return Err(format!("segment_bytes {segment_bytes}, outside the allowed range"));
        }
        let archive_policy = archive.map(|(age, bytes)| {
            let mut policy = ArchivePolicy::default();
            if age != NONE {
                policy = policy.with_max_local_age(Duration::from_millis(age));
            }
            if bytes != NONE {
                policy = policy.with_max_local_bytes(bytes);
            }
            policy
        });
        Ok(TopicMeta {
            partitions,
            cleanup_policy,
            retention_ms,
            retention_bytes,
            segment_bytes,
            tombstone_retention_ms,
            created_ms,
            archive_policy,
        })
    }
}

impl Encode for TopicMeta {
    const MAGIC: [u8; 8] = *MAGIC;
    const VERSION: u16 = TOPIC_META_VERSION;

    fn encode_body(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.partitions.to_le_bytes());
        b.push(self.cleanup_policy.code());
        b.extend_from_slice(&[0; 3]);
        for v in [self.retention_ms, self.retention_bytes, self.segment_bytes, self.tombstone_retention_ms] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.created_ms.to_le_bytes());
        if let Some(policy) = self.archive_policy {
            let age = policy.max_local_age().map_or(NONE, |d| u64::try_from(d.as_millis()).unwrap_or(NONE));
            b.extend_from_slice(&age.to_le_bytes());
            b.extend_from_slice(&policy.max_local_bytes().unwrap_or(NONE).to_le_bytes());
        }
    }
}

impl Decode for TopicMeta {
    const MAGIC: [u8; 8] = *MAGIC;
    const NAME: &'static str = "topic.meta";
    const FIRST_ENVELOPED: u16 = 3;
    const NEWEST: u16 = TOPIC_META_VERSION;

    fn decode_body(_version: u16, body: &[u8]) -> std::result::Result<TopicMeta, String> {
        let mut r = Reader::new(body);
        let partitions = r.u32()?;
        let policy = r.u8()?;
        if r.take(3)? != [0; 3] {
            return Err("reserved bytes are not zero".into());
        }
        let limits = [r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let created_ms = r.i64()?;
        let archive = match r.remaining() {
            0 => None,
            _ => Some((r.u64()?, r.u64()?)),
        };
        r.finish()?;
        TopicMeta::checked(partitions, policy, limits, created_ms, archive)
    }

    fn decode_legacy(version: u16, b: &[u8]) -> std::result::Result<TopicMeta, CorruptionKind> {
        match version {
            1 | 2 => TopicMeta::decode_legacy_fields(version, b).map_err(bad::<Self>),
            _ => Err(bad::<Self>(format!("unsupported version {version}"))),
        }
    }
}

pub(crate) fn path(topic_dir: &Path) -> PathBuf {
    topic_dir.join(TOPIC_META_FILE_NAME)
}

/// Reads the metadata of the topic in `topic_dir`, read-only. A missing file
/// means the directory is not a topic ([`Error::NotALog`]); a damaged one is
/// [`Error::Corruption`] naming the file, never ignored. `annal verify` uses it
/// to check a topic without opening its partitions.
pub fn read(topic_dir: &Path) -> Result<TopicMeta> {
    read_with(&crate::io::OsIo, topic_dir)
}

/// [`read`] through `io`.
pub(crate) fn read_with(io: &dyn Io, topic_dir: &Path) -> Result<TopicMeta> {
    let p = path(topic_dir);
    // Bounded: a file much longer than the format is damaged, whatever it holds.
    let bytes = match crate::io::read_bounded(io, &p, MAX_FILE_LEN) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotALog {
                path: topic_dir.to_owned(),
                reason: format!("no {TOPIC_META_FILE_NAME} file: not an annal topic"),
            });
        }
        Err(e) => return Err(Error::io("read", p, e)),
    };
    TopicMeta::decode(&bytes).map_err(|why| Error::Corruption {
        path: p,
        offset: 0,
        position: 0,
        kind: CorruptionKind::BadHeader(why),
    })
}

/// Durably replaces the metadata of the topic in `topic_dir`.
pub(crate) fn write(io: &dyn Io, topic_dir: &Path, meta: &TopicMeta) -> Result<()> {
    crate::durable::replace_file_durably(io, &path(topic_dir), &meta.encode())
}
