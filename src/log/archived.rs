//! The archive tier of a log: moving sealed segments to an [`ArchiveStore`],
//! reading them back through a bounded local cache, and dropping them when
//! retention passes them.
//!
//! The steps of archiving one segment, in the order that makes a crash at any
//! point safe (see docs/DESIGN.md, "Archival tier"):
//! 1. upload the segment's data file ([`ArchiveStore::put_file`]), which
//!    returns the digest (size, CRC-32) of what it read;
//! 2. read the object back and compare ([`ArchiveStore::verify`]);
//! 3. record the segment, with the digest and key, in the archive manifest
//!    (replaced atomically, directory fsynced) and in the segment set;
//! 4. delete the local files, or leave that to the last reader that maps them.
//!
//! A failure or crash before 3 leaves the segment local (and maybe an object
//! nobody refers to, replaced by the next upload). After 3 the segment is
//! archived; a local copy left behind is deleted by the next open.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::manifest::{self, ManifestEntry};
use super::retention::oldest_over_limits;
use super::{Log, SegmentInfo, Shared, now_ms, sealed_info};
use crate::archive::{ArchiveStore, DigestBuilder};
use crate::error::{ArchiveErrorKind, Error, IoContext, Result};
use crate::segment::{self, FOOTER_LEN, SealedMeta, Segment};
use crate::sync::{MutexExt, RwLockExt};
use crate::io::Io;

/// Name of the directory, inside a writable log's directory, that caches
/// segments fetched from the archive. Its content is dropped at every open.
pub const ARCHIVE_CACHE_DIR_NAME: &str = "archive-cache";

/// Bytes fetched from the archive per ranged read.
pub const FETCH_CHUNK: u64 = 4 << 20;

/// An archival policy: which sealed segments leave local disk for the
/// archive. Only sealed segments go, oldest first (always a prefix of the
/// log's local segments), never the active one.
///
/// ```
/// use std::time::Duration;
/// let policy = annal::ArchivePolicy::default().with_max_local_age(Duration::from_secs(86_400));
/// assert_eq!(policy.max_local_age(), Some(Duration::from_secs(86_400)));
/// assert!(!policy.is_none());
/// ```
#[must_use]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchivePolicy {
    max_local_age: Option<Duration>,
    max_local_bytes: Option<u64>,
}

impl ArchivePolicy {
    /// Archives sealed segments whose newest record is older than `age`.
    pub fn with_max_local_age(mut self, age: Duration) -> ArchivePolicy {
        self.max_local_age = Some(age);
        self
    }

    /// Archives the oldest sealed segments while the local segments (the
    /// active one included) hold more than `bytes` of record data.
    pub fn with_max_local_bytes(mut self, bytes: u64) -> ArchivePolicy {
        self.max_local_bytes = Some(bytes);
        self
    }

    /// A policy that archives every sealed segment.
    pub fn everything_sealed() -> ArchivePolicy {
        ArchivePolicy::default().with_max_local_bytes(0)
    }

    /// The age limit, if any.
    pub fn max_local_age(&self) -> Option<Duration> {
        self.max_local_age
    }

    /// The local size limit, if any.
    pub fn max_local_bytes(&self) -> Option<u64> {
        self.max_local_bytes
    }

    /// Whether the policy archives nothing.
    pub fn is_none(&self) -> bool {
        self.max_local_age.is_none() && self.max_local_bytes.is_none()
    }
}

/// What one archival run did.
#[must_use]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveOutcome {
    /// Segments uploaded, verified and recorded as archived.
    pub segments_archived: usize,
    /// Record data bytes in those segments.
    pub bytes_archived: u64,
    /// Of those segments, how many a reader still mapped: their local files
    /// go when the last reader lets go.
    pub deferred: usize,
    /// Objects under the log's key prefix that no manifest entry names and
    /// that lie below the log's first segment (left by a retention run whose
    /// deletion failed), deleted.
    pub orphans_deleted: usize,
}

/// One archived segment, as [`Log::archived_segments`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchivedSegmentInfo {
    /// Offset of the segment's first record.
    pub base_offset: u64,
    /// Offset after its last record.
    pub next_offset: u64,
    /// The object's key in the archive store.
    pub key: String,
    /// Size of the object (the whole segment file) in bytes.
    pub size: u64,
    /// CRC-32 of the object, checked on every fetch.
    pub crc32: u32,
    /// Largest record timestamp.
    pub max_timestamp: i64,
}

/// A log's side of the archive tier, in [`Shared::archive`].
#[derive(Debug)]
pub(crate) struct ArchiveTier {
    /// Where archived segments are fetched to: `<dir>/archive-cache`, or a
    /// temporary directory for a read-only log.
    pub(crate) cache_dir: PathBuf,
    /// Removes the temporary directory of a read-only log when dropped.
    _cache_tmp: Option<tempfile::TempDir>,
    /// The files fetched into `cache_dir`.
    pub(crate) cache: Mutex<ArchiveCache>,
    /// Held for a whole archival run: one at a time.
    pub(crate) running: Mutex<()>,
    /// Held for a whole fetch: one at a time.
    pub(crate) fetching: Mutex<()>,
}

impl ArchiveTier {
    /// The tier of a log fetching into `cache_dir` (a temporary directory
    /// that `tmp` removes, for a read-only log).
    pub(crate) fn new(cache_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> ArchiveTier {
        ArchiveTier {
            cache_dir,
            _cache_tmp: tmp,
            cache: Mutex::default(),
            running: Mutex::new(()),
            fetching: Mutex::new(()),
        }
    }
}

/// The local files of archived segments fetched for reading, least recently
/// used out first, within a byte bound.
#[derive(Debug, Default)]
pub(crate) struct ArchiveCache {
    /// (base offset, file size, last use).
    files: Vec<(u64, u64, u64)>,
    total: u64,
    tick: u64,
}

impl ArchiveCache {
    fn touch(&mut self, base: u64) -> bool {
        self.tick += 1;
        let tick = self.tick;
        self.files.iter_mut().find(|f| f.0 == base).map(|f| f.2 = tick).is_some()
    }

    fn forget(&mut self, base: u64) -> bool {
        let before = self.files.len();
        self.files.retain(|f| f.0 != base);
        self.total = self.files.iter().map(|f| f.1).sum();
        before != self.files.len()
    }

    /// Evicts files (those not in `held` first, least recently used first)
    /// until `incoming` more bytes fit within `bound`, or nothing is left.
    /// Returns the evicted bases.
    fn make_room(&mut self, incoming: u64, bound: u64, held: &HashSet<u64>) -> Vec<u64> {
        let mut evicted = Vec::new();
        while self.total + incoming > bound && !self.files.is_empty() {
            let victim = self
                .files
                .iter()
                .enumerate()
                .min_by_key(|(_, f)| (held.contains(&f.0), f.2))
                .map(|(i, _)| i)
                .expect("not empty");
            let (base, size, _) = self.files.swap_remove(victim);
            self.total -= size;
            evicted.push(base);
        }
        evicted
    }
}

impl Log {
    /// Moves the sealed segments `policy` selects to the log's archive store
    /// ([`crate::LogConfig::with_archive`]): each is uploaded, verified (size and
    /// CRC-32 read back from the store), recorded in the archive manifest,
    /// and only then deleted locally. Ages are measured against `now_ms`.
    ///
    /// On a failure (network, timeout, integrity), the segments archived
    /// before it stay archived, the failing one and the rest stay local, and
    /// the error is returned: the next run retries them. Reads of archived
    /// offsets keep working throughout.
    pub fn archive_at(&self, policy: &ArchivePolicy, now_ms: i64) -> Result<ArchiveOutcome> {
        self.archive_with_progress(policy, now_ms, &mut |_| {})
    }

    /// [`Log::archive_at`], calling `progress` after each segment is archived.
    /// `progress` must not archive or compact this log: it runs under the
    /// lock that serializes archival runs (docs/DESIGN.md, "Lock order").
    pub fn archive_with_progress(
        &self,
        policy: &ArchivePolicy,
        now_ms: i64,
        progress: &mut dyn FnMut(&SegmentInfo),
    ) -> Result<ArchiveOutcome> {
        self.shared.archive_run(policy, now_ms, progress)
    }

    /// [`Log::archive_at`] with the current time.
    pub fn archive(&self, policy: &ArchivePolicy) -> Result<ArchiveOutcome> {
        self.archive_at(policy, now_ms())
    }

    /// The sealed local segments an archival run with `policy` would archive
    /// at `now_ms`: for a progress bar.
    pub fn archival_backlog_at(&self, policy: &ArchivePolicy, now_ms: i64) -> Vec<SegmentInfo> {
        self.shared.archive_candidates(policy, now_ms).iter().map(sealed_info).collect()
    }

    /// [`Log::archival_backlog_at`] with the current time.
    pub fn archival_backlog(&self, policy: &ArchivePolicy) -> Vec<SegmentInfo> {
        self.archival_backlog_at(policy, now_ms())
    }

    /// The archived segments, oldest first.
    pub fn archived_segments(&self) -> Vec<ArchivedSegmentInfo> {
        let set = self.shared.segments.read_locked();
        set.archived
            .values()
            .map(|e| ArchivedSegmentInfo {
                base_offset: e.meta.footer.base_offset,
                next_offset: e.meta.footer.next_offset,
                key: e.key.clone(),
                size: e.digest.size,
                crc32: e.digest.crc32,
                max_timestamp: e.meta.footer.max_timestamp,
            })
            .collect()
    }

    /// Bytes of archived segments held in the local cache right now.
    pub fn archive_cache_bytes(&self) -> u64 {
        self.shared.archive.cache.locked().total
    }
}

/// The base offset named by an archived segment's key (`.../{base:020}.seg`).
fn key_base(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

impl Shared {
    fn archive_store(&self) -> Option<(&Arc<dyn ArchiveStore>, &str)> {
        self.config.archive.as_ref().map(|(s, p)| (s, p.as_str()))
    }

    fn archive_candidates(&self, policy: &ArchivePolicy, now: i64) -> Vec<SealedMeta> {
        if policy.is_none() {
            return Vec::new();
        }
        let active_bytes = self.active_info().map_or(0, |a| a.data_bytes);
        let start = self.start_offset.load(Ordering::Acquire);
        let local: Vec<SealedMeta> = {
            let set = self.segments.read_locked();
            set.sealed.iter().filter(|m| !set.archived.contains_key(&m.footer.base_offset)).copied().collect()
        };
        // Below the start: retention deletes them, archiving them is wasted
        // work; their bytes still count until then.
        let (below, rest) = local.split_at(local.partition_point(|m| m.footer.next_offset <= start));
        let other_bytes = active_bytes + below.iter().map(SealedMeta::data_bytes).sum::<u64>();
        let k = oldest_over_limits(rest, other_bytes, policy.max_local_age, policy.max_local_bytes, now);
        rest[..k].to_vec()
    }

    fn archive_run(
        &self,
        policy: &ArchivePolicy,
        now: i64,
        progress: &mut dyn FnMut(&SegmentInfo),
    ) -> Result<ArchiveOutcome> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.dir.clone() });
        }
        let Some((store, prefix)) = self.archive_store() else {
            return Err(Error::InvalidConfig(format!(
                "archiving {}: no archive store is configured (LogConfig::with_archive)",
                self.dir.display()
            )));
        };
        let _run = self.archive.running.locked();
        let mut outcome = ArchiveOutcome::default();
        for meta in self.archive_candidates(policy, now) {
            let base = meta.footer.base_offset;
            let key = format!("{prefix}/{base:020}.seg");
            let path = segment::log_path(&self.dir, base);
            // 1, 2: upload and read back.
            let digest = store.put_file(&key, &path)?;
            let expected_size = meta.footer.data_end + FOOTER_LEN as u64;
            if digest.size != expected_size {
                return Err(Error::Archive {
                    store: store.name().to_owned(),
                    key,
                    kind: ArchiveErrorKind::Integrity,
                    message: format!("uploaded {} bytes of a sealed segment of {expected_size}", digest.size),
                    source: None,
                });
            }
            store.verify(&key, &digest)?;
            // 3: record, serialized with retention (which holds the writer lock too).
            let recorded = {
                let w = self.writer.locked();
                self.check_writable(&w)?;
                let start = self.start_offset.load(Ordering::Acquire);
                let set = self.segments.read_locked();
                let present = set.sealed.binary_search_by_key(&base, |m| m.footer.base_offset).is_ok();
                if present && meta.footer.next_offset > start && !set.archived.contains_key(&base) {
                    let entry = ManifestEntry { meta, digest, key: key.clone() };
                    let mut entries: Vec<ManifestEntry> = set.archived.values().cloned().collect();
                    entries.push(entry.clone());
                    drop(set);
                    manifest::write(self.config.io.as_ref(), &self.dir, &entries)?;
                    self.segments.write_locked().archived.insert(base, entry);
                    true
                } else {
                    false
                }
            };
            if !recorded {
                // Retention took it meanwhile: the object is nobody's.
                let _ = store.delete(&key);
                continue;
            }
            // 4: the local copy goes (a failure leaves a file the next open deletes).
            if let Ok(true) = self.retire_segment(base) {
                outcome.deferred += 1;
            }
            outcome.segments_archived += 1;
            outcome.bytes_archived += meta.data_bytes();
            progress(&sealed_info(&meta));
        }
        outcome.orphans_deleted = self.delete_orphans(store.as_ref(), prefix);
        Ok(outcome)
    }

    /// Deletes the objects under the log's prefix that lie below its first
    /// segment and that the manifest does not name. Best effort: what fails
    /// stays for the next run.
    fn delete_orphans(&self, store: &dyn ArchiveStore, prefix: &str) -> usize {
        let first = {
            let set = self.segments.read_locked();
            set.sealed.first().map(|m| m.footer.base_offset).or(set.unsealed_base())
        };
        let first = first.unwrap_or_else(|| self.next_offset.load(Ordering::SeqCst));
        let Ok(objects) = store.list(&format!("{prefix}/")) else { return 0 };
        let mut deleted = 0;
        for object in objects {
            let Some(base) = key_base(&object.key) else { continue };
            if object.key.rsplit_once('/').map(|(p, _)| p) != Some(prefix) || base >= first {
                continue;
            }
            if store.delete(&object.key).is_ok() {
                deleted += 1;
            }
        }
        deleted
    }

    /// Takes the archived segments among `removed` (which retention just took
    /// out of the segment set) out of the manifest. Called under the writer
    /// lock, after the new start offset is recorded.
    pub(crate) fn drop_archived(&self, removed: &[SealedMeta]) -> (Vec<ManifestEntry>, Result<()>) {
        let mut set = self.segments.write_locked();
        let gone: Vec<ManifestEntry> =
            removed.iter().filter_map(|m| set.archived.remove(&m.footer.base_offset)).collect();
        if gone.is_empty() {
            return (gone, Ok(()));
        }
        let entries: Vec<ManifestEntry> = set.archived.values().cloned().collect();
        drop(set);
        // On failure the manifest still names segments below the start
        // offset: the next open drops them.
        let written = manifest::write(self.config.io.as_ref(), &self.dir, &entries);
        (gone, written)
    }

    /// Deletes the cached copies and the objects of archived segments that
    /// retention removed. Objects that cannot be deleted are left to the next
    /// archival run (they are below the log's first segment then).
    pub(crate) fn delete_archived(&self, gone: &[ManifestEntry]) {
        for entry in gone {
            let base = entry.meta.footer.base_offset;
            if self.archive.cache.locked().forget(base) {
                let _ = self.config.io.remove_file(&segment::log_path(&self.archive.cache_dir, base));
            }
            if let Some((store, _)) = self.archive_store() {
                let _ = store.delete(&entry.key);
            }
        }
    }

    /// The manifest entry of `base`, if that segment is archived.
    pub(crate) fn archived_entry(&self, base: u64) -> Option<ManifestEntry> {
        self.segments.read_locked().archived.get(&base).cloned()
    }

    /// Opens an archived segment: from the cache, or fetched from the store
    /// with ranged reads and checked against the manifest's digest.
    pub(crate) fn open_archived(&self, entry: &ManifestEntry) -> Result<Arc<Segment>> {
        let Some((store, _)) = self.archive_store() else {
            return Err(Error::Archive {
                store: "(none)".into(),
                key: entry.key.clone(),
                kind: ArchiveErrorKind::Unreachable,
                message: format!(
                    "offsets {}..{} are archived, and the log has no archive store configured (LogConfig::with_archive)",
                    entry.meta.footer.base_offset, entry.meta.footer.next_offset
                ),
                source: None,
            });
        };
        let base = entry.meta.footer.base_offset;
        let path = segment::log_path(&self.archive.cache_dir, base);
        let _fetch = self.archive.fetching.locked();
        let cached = self.archive.cache.locked().touch(base);
        if !cached {
            self.fetch(store.as_ref(), entry, &path)?;
        }
        match segment::open_sealed(self.config.io.as_ref(), &self.archive.cache_dir, &entry.meta, self.config.index_interval_bytes) {
            Ok((seg, _)) => Ok(seg),
            Err(e) => {
                // A damaged cached copy: drop it, the next read fetches it again.
                self.archive.cache.locked().forget(base);
                let _ = self.config.io.remove_file(&path);
                Err(e)
            }
        }
    }

    /// Downloads `entry` into the cache file `path`, verifying it.
    fn fetch(&self, store: &dyn ArchiveStore, entry: &ManifestEntry, path: &Path) -> Result<()> {
        let size = entry.digest.size;
        let evicted = {
            let held: HashSet<u64> = {
                let cache = self.cache.locked();
                cache.live.iter().filter(|(_, w)| w.strong_count() > 0).map(|(b, _)| *b).collect()
            };
            self.archive.cache.locked().make_room(
                size,
                self.config.archive_cache_bytes,
                &held,
            )
        };
        // Unlinking a mapped file is safe: the map keeps its pages.
        let io = self.config.io.as_ref();
        for base in evicted {
            let _ = io.remove_file(&segment::log_path(&self.archive.cache_dir, base));
        }
        io.create_dir_all(&self.archive.cache_dir).ctx("create archive cache directory", &self.archive.cache_dir)?;
        let tmp = crate::durable::tmp_path(path);
        let result = download(io, store, entry, &tmp);
        if let Err(e) = result {
            let _ = io.remove_file(&tmp);
            return Err(e);
        }
        io.rename(&tmp, path).ctx("rename", path)?;
        let mut cache = self.archive.cache.locked();
        cache.forget(entry.meta.footer.base_offset);
        cache.tick += 1;
        let tick = cache.tick;
        cache.files.push((entry.meta.footer.base_offset, size, tick));
        cache.total += size;
        Ok(())
    }
}

/// Copies the object of `entry` into the file `to` in ranged reads of
/// [`FETCH_CHUNK`] bytes, and checks its digest against the manifest's.
fn download(io: &dyn Io, store: &dyn ArchiveStore, entry: &ManifestEntry, to: &Path) -> Result<()> {
    let file = io.create(to).ctx("create", to)?;
    let size = entry.digest.size;
    let mut digest = DigestBuilder::default();
    let mut pos = 0;
    while pos < size {
        let end = (pos + FETCH_CHUNK).min(size);
        let chunk = store.get_range(&entry.key, pos..end)?;
        if chunk.len() as u64 != end - pos {
            return Err(integrity(store, entry, format!("a read of {pos}..{end} returned {} bytes", chunk.len())));
        }
        io.write_all_at(&file, &chunk, pos).ctx("write", to)?;
        digest.update(&chunk);
        pos = end;
    }
    let found = digest.finish();
    if found != entry.digest {
        return Err(integrity(
            store,
            entry,
            format!("the fetched object is {found}, the manifest says {}", entry.digest),
        ));
    }
    Ok(())
}

fn integrity(store: &dyn ArchiveStore, entry: &ManifestEntry, message: String) -> Error {
    Error::Archive {
        store: store.name().to_owned(),
        key: entry.key.clone(),
        kind: ArchiveErrorKind::Integrity,
        message,
        source: None,
    }
}

/// Empties the cache directory of a writable log at open: its files were
/// written without fsync and may be torn by a crash.
pub(crate) fn clear_cache_dir(io: &dyn Io, dir: &Path) -> Result<()> {
    match io.read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let p = dir.join(&entry.name);
                io.remove_file(&p).ctx("remove cached segment", &p)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("list archive cache", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bases() {
        assert_eq!(key_base("t/0/00000000000000000042.seg"), Some(42));
        assert_eq!(key_base("t/0/42.seg"), None);
        assert_eq!(key_base("t/0/00000000000000000042.log"), None);
    }

    #[test]
    fn cache_evicts_unheld_lru_first() {
        let mut c = ArchiveCache::default();
        for b in 0..3 {
            c.tick += 1;
            c.files.push((b, 10, c.tick));
            c.total += 10;
        }
        c.touch(0);
        let held: HashSet<u64> = [1].into();
        assert_eq!(c.make_room(10, 30, &held), vec![2]);
        assert_eq!(c.make_room(25, 30, &held), vec![0, 1]);
        assert_eq!(c.total, 0);
    }
}
