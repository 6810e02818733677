//! Finding the segment that holds an offset, and the bounded cache of open
//! (mapped) sealed segments it keeps (docs/DESIGN.md, "Resources").

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::{Shared, SharedLimits, manifest};
use crate::error::{IoContext, Result};
use crate::segment::{self, SealedMeta, Segment};
use crate::sync::{MutexExt, RwLockExt};

impl Drop for SegmentCache {
    fn drop(&mut self) {
        self.count(-(self.entries.len() as isize));
    }
}

/// A bounded cache of open (mapped) sealed segments, least recently used out first.
#[derive(Debug)]
pub(crate) struct SegmentCache {
    pub(crate) entries: Vec<(u64, Arc<Segment>, u64)>,
    /// Every sealed segment opened and not dropped yet, by base offset: a
    /// reader may still hold one that the LRU evicted, and retention must find
    /// it to defer the deletion of its files.
    pub(crate) live: HashMap<u64, Weak<Segment>>,
    tick: u64,
    capacity: usize,
    /// Limits shared with other logs, which count the entries.
    limits: Option<Arc<SharedLimits>>,
}

impl SegmentCache {
    pub(crate) fn new(capacity: usize, limits: Option<Arc<SharedLimits>>) -> SegmentCache {
        SegmentCache { entries: Vec::new(), live: HashMap::new(), tick: 0, capacity, limits }
    }

    /// Counts `n` entries more (or fewer) in the shared limits.
    pub(crate) fn count(&self, n: isize) {
        if let Some(l) = &self.limits {
            l.count_sealed(n);
        }
    }

    /// Drops the least recently used entry (its holders keep their map).
    pub(crate) fn evict_lru(&mut self) {
        if let Some(lru) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.2).map(|(i, _)| i) {
            self.entries.swap_remove(lru);
            self.count(-1);
        }
    }

    /// The open segment at `base`, if it is the file `meta` describes. A
    /// segment opened from a file that compaction has since replaced is
    /// forgotten (its holders keep their map of the old file).
    pub(crate) fn get(&mut self, base: u64, meta: &SealedMeta) -> Option<Arc<Segment>> {
        self.tick += 1;
        let tick = self.tick;
        let current = |seg: &Segment| seg.sealed.as_ref() == Some(meta);
        if let Some(i) = self.entries.iter().position(|e| e.0 == base) {
            if current(&self.entries[i].1) {
                self.entries[i].2 = tick;
                return Some(Arc::clone(&self.entries[i].1));
            }
            self.entries.swap_remove(i);
            self.count(-1);
        }
        // Evicted but still held by a reader: share that map instead of mapping again.
        let seg = self.live.get(&base).and_then(Weak::upgrade).filter(|s| current(s))?;
        self.push(base, Arc::clone(&seg));
        Some(seg)
    }

    /// Forgets the segment at `base` and returns it if anyone still holds it.
    pub(crate) fn remove(&mut self, base: u64) -> Option<Arc<Segment>> {
        let before = self.entries.len();
        self.entries.retain(|e| e.0 != base);
        self.count(self.entries.len() as isize - before as isize);
        self.live.remove(&base).and_then(|w| w.upgrade())
    }

    pub(crate) fn push(&mut self, base: u64, seg: Arc<Segment>) {
        if self.entries.len() >= self.capacity {
            self.evict_lru();
        }
        self.entries.push((base, seg, self.tick));
        self.count(1);
    }

    /// Inserts `seg` unless another thread opened the same segment meanwhile;
    /// returns the cached one. Evicts the least recently used entry when full.
    pub(crate) fn insert(&mut self, base: u64, seg: Arc<Segment>) -> Arc<Segment> {
        if let Some(meta) = seg.sealed
            && let Some(existing) = self.get(base, &meta)
        {
            return existing;
        }
        if self.live.len() >= 2 * self.capacity {
            self.live.retain(|_, w| w.strong_count() > 0);
        }
        self.live.insert(base, Arc::downgrade(&seg));
        self.push(base, Arc::clone(&seg));
        seg
    }
}

impl Shared {
    /// Forgets the cached segment at `base` (see `SegmentCache::remove`).
    pub(crate) fn cache_remove(&self, base: u64) -> Option<Arc<Segment>> {
        self.cache.locked().remove(base)
    }

    /// Sealed segments the cache holds mapped.
    pub(crate) fn cached_segments(&self) -> usize {
        self.cache.locked().entries.len()
    }

    /// Drops the cache's least recently used entry.
    pub(crate) fn evict_cached(&self) {
        self.cache.locked().evict_lru();
    }

    /// The segment holding `offset` (in its offset range), if any (the active
    /// one, or a sealed one opened through the cache).
    pub(crate) fn segment_for(&self, offset: u64) -> Result<Option<Arc<Segment>>> {
        Ok(self.segment_and_end_for(offset)?.map(|(seg, _)| seg))
    }

    /// [`Shared::segment_for`], with the end of the segment's offset range
    /// (`u64::MAX` for the last, unsealed segment, whose end grows).
    pub(crate) fn segment_and_end_for(&self, offset: u64) -> Result<Option<(Arc<Segment>, u64)>> {
        let meta = {
            let set = self.segments.read_locked();
            if set.unsealed_base().is_some_and(|base| offset >= base) {
                return Ok(set.last_unsealed()?.map(|seg| (seg, u64::MAX)));
            }
            let i = set.sealed.partition_point(|m| m.footer.base_offset <= offset);
            match i.checked_sub(1).map(|i| set.sealed[i]) {
                Some(m) if offset < m.footer.next_offset => m,
                _ => return Ok(None),
            }
        };
        match self.open_current(meta) {
            Ok(seg) => Ok(Some((seg, meta.footer.next_offset))),
            // Retention deleted the segment between the lookup and the open.
            Err(_) if meta.footer.next_offset <= self.start_offset.load(Ordering::Acquire) => {
                Err(self.out_of_range(offset))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens the sealed segment `meta` describes; if that fails because
    /// compaction replaced its file meanwhile (between the lookup of `meta`
    /// and the open), opens the new file with its new metadata instead.
    pub(crate) fn open_current(&self, mut meta: SealedMeta) -> Result<Arc<Segment>> {
        let mut attempts = 0;
        loop {
            match self.open_sealed(&meta) {
                Ok(seg) => return Ok(seg),
                Err(e) => match self.refreshed_meta(&meta) {
                    Some(newer) if attempts < 3 => {
                        attempts += 1;
                        meta = newer;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Newer metadata for the sealed segment `old` describes, if compaction
    /// replaced its file: the log's own (a writer swaps it in right after the
    /// rename), or, for a read-only log (a snapshot, while a writer in another
    /// process may compact), what the file on disk says now, which replaces
    /// the old metadata in the segment set.
    pub(crate) fn refreshed_meta(&self, old: &SealedMeta) -> Option<SealedMeta> {
        let base = old.footer.base_offset;
        let current = {
            let set = self.segments.read_locked();
            set.sealed.iter().find(|m| m.footer.base_offset == base).copied()
        }?;
        if current != *old {
            return Some(current);
        }
        if !self.read_only {
            return None;
        }
        match segment::inspect_file(self.config.io.as_ref(), &segment::log_path(&self.dir, base), base) {
            Ok(segment::OnDisk::Sealed(m, _)) if m != *old && m.footer.next_offset == old.footer.next_offset => {
                let mut set = self.segments.write_locked();
                if let Some(slot) = set.sealed.iter_mut().find(|s| **s == *old) {
                    *slot = m;
                }
                Some(m)
            }
            _ => None,
        }
    }

    pub(crate) fn open_sealed(&self, meta: &SealedMeta) -> Result<Arc<Segment>> {
        let base = meta.footer.base_offset;
        if let Some(seg) = self.cache.locked().get(base, meta) {
            return Ok(seg);
        }
        // Open (and possibly rebuild the index) outside the cache lock, so that
        // readers of other segments are not held up by a scan.
        let from_archive = |entry: manifest::ManifestEntry| -> Result<Arc<Segment>> {
            let seg = self.open_archived(&entry)?;
            Ok(self.cache.locked().insert(base, seg))
        };
        if let Some(entry) = self.archived_entry(base) {
            return from_archive(entry);
        }
        let (seg, rebuilt) = match segment::open_sealed(self.config.io.as_ref(), &self.dir, meta, self.config.index_interval_bytes) {
            Ok(opened) => opened,
            // Archived (and its local files deleted) since the lookup above.
            Err(e) => return self.archived_entry(base).map_or(Err(e), from_archive),
        };
        if rebuilt {
            self.indexes_rebuilt.fetch_add(1, Ordering::Relaxed);
            if !self.read_only {
                self.write_rebuilt_index(meta, &seg)?;
            }
        }
        let seg = self.cache.locked().insert(base, seg);
        if let Some(limits) = &self.limits
            && limits.cached_sealed() > limits.max_cached_sealed()
        {
            limits.enforce_sealed(self);
        }
        Ok(seg)
    }

    /// Writes the index files of the sealed segment `meta` describes, rebuilt
    /// by a reader into `seg`, if the segment is still sealed as it was:
    /// under the writer lock, so that the writer (which may have reopened it
    /// for appending, and writes index files when it seals it) and other
    /// readers never write the same temporary files at once.
    pub(crate) fn write_rebuilt_index(&self, meta: &SealedMeta, seg: &Segment) -> Result<()> {
        let _w = self.writer.locked();
        let current = self.segments.read_locked().sealed.iter().any(|m| m == meta);
        if !current {
            return Ok(());
        }
        let base = meta.footer.base_offset;
        let (ob, tb) = {
            let index = seg.index.read_locked();
            (index.encode_offsets(base), index.encode_times(base))
        };
        let io = self.config.io.as_ref();
        crate::durable::write_file_atomic(io, &segment::index_path(&self.dir, base), &ob)?;
        crate::durable::write_file_atomic(io, &segment::timeindex_path(&self.dir, base), &tb)?;
        io.sync_dir(&self.dir).ctx("fsync directory", &self.dir)
    }
}
