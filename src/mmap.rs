//! The memory-map wrapper: the only module in annal with `unsafe` code.
//!
//! A [`MapArea`] maps one segment file. It is shared (behind an `Arc`) between
//! the single writer of a segment and any number of readers. The rule that
//! makes the sharing sound is the *published* watermark:
//!
//! * bytes in `[data_start, published)` are immutable: readers may hold `&[u8]`
//!   slices of them, and nothing ever writes them again through this map;
//! * bytes in `[published, len)` and the header area `[0, data_start)` belong to
//!   the one [`MapWriter`], which alone can hand out `&mut [u8]` over them;
//! * the writer moves the watermark forward with a `Release` store only after
//!   the bytes below it are fully written; readers load it with `Acquire`.
//!
//! Readers never see the header area through a `MapArea`: the writer updates
//! the segment's checkpoint there while readers read records.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A mapped segment file with a published-bytes watermark.
#[derive(Debug)]
pub(crate) struct MapArea {
    raw: MmapRaw,
    data_start: usize,
    published: AtomicUsize,
    /// Set (after the final `published` store) once no more bytes will ever be
    /// published in this map: the segment was sealed or closed.
    finished: AtomicBool,
    writable: bool,
}

/// The unique write handle of a writable [`MapArea`].
#[derive(Debug)]
pub(crate) struct MapWriter {
    area: Arc<MapArea>,
}

impl MapArea {
    /// Maps `len` bytes of `file` for reading and writing, and returns the
    /// shared area together with its only writer. Nothing is published yet.
    pub(crate) fn writable(file: &File, len: usize, data_start: usize) -> io::Result<MapWriter> {
        if len < data_start {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "map shorter than its header"));
        }
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        let area = MapArea {
            raw,
            data_start,
            published: AtomicUsize::new(data_start),
            finished: AtomicBool::new(false),
            writable: true,
        };
        Ok(MapWriter { area: Arc::new(area) })
    }

    /// Maps `len` bytes of `file` read-only with `[data_start, published)`
    /// readable. The file must be at least `len` bytes long and must not shrink
    /// below `published` while mapped (annal never shrinks a file below its
    /// published data).
    pub(crate) fn read_only(file: &File, len: usize, data_start: usize, published: usize) -> io::Result<Arc<MapArea>> {
        if published > len || data_start > published || len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "published range outside the map"));
        }
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(Arc::new(MapArea {
            raw,
            data_start,
            published: AtomicUsize::new(published),
            finished: AtomicBool::new(true),
            writable: false,
        }))
    }

    /// Asks the kernel to fault in `[start, start + len)` ahead of the writer,
    /// so that the writer's first touch of each page is cheap. The range is
    /// clamped to the map. Changes no byte.
    ///
    /// `writable: false` (`MADV_POPULATE_READ`) allocates and zero-fills the
    /// page-cache pages and maps them read-only: the writer's first store to
    /// each page still takes a write-protect fault (the file system's
    /// `page_mkwrite`). `writable: true` (`MADV_POPULATE_WRITE`) takes that
    /// fault too, which leaves the pages dirty: an fsync before the writer
    /// reaches them writes their zeros to disk.
    pub(crate) fn prefault(&self, start: usize, len: usize, writable: bool) -> io::Result<()> {
        let start = start.min(self.len());
        let len = len.min(self.len() - start);
        if len == 0 {
            return Ok(());
        }
        let advice = if writable { memmap2::Advice::PopulateWrite } else { memmap2::Advice::PopulateRead };
        self.raw.advise_range(advice, start, len)
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// End of the published bytes (exclusive).
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// Whether the area will never publish more bytes. Read this *before*
    /// [`MapArea::published`] to know that the published end is final.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// The published bytes `[data_start, published)`. Index `i` of the slice is
    /// file position `data_start + i`.
    pub(crate) fn published_data(&self) -> &[u8] {
        let end = self.published();
        // SAFETY: `data_start <= end <= len` holds by construction (`publish`
        // checks it), so the range lies inside the live mapping owned by
        // `self.raw`, which outlives the returned borrow of `self`. Bytes in
        // `[data_start, published)` are never written again through this map
        // (MapWriter only hands out `&mut` at or beyond `published` and in the
        // header area), so no `&mut` aliases this shared slice.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(self.data_start), end - self.data_start) }
    }
}

impl MapWriter {
    /// The shared area this writer writes.
    pub(crate) fn area(&self) -> &Arc<MapArea> {
        &self.area
    }

    /// Mutable access to the unpublished bytes `[start, start + len)`.
    ///
    /// # Panics
    /// If the range starts below the published end or runs past the map: both
    /// are bugs in the caller, never a consequence of file contents.
    pub(crate) fn unpublished_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        let published = self.area.published.load(Ordering::Relaxed);
        assert!(self.area.writable, "write through a read-only map");
        assert!(start >= published, "write at {start} below published end {published}");
        assert!(start.checked_add(len).is_some_and(|end| end <= self.area.len()), "write past the map");
        // SAFETY: the range is inside the mapping (checked above) and at or
        // beyond `published`, so no reader holds a shared slice of it; `&mut
        // self` on the unique MapWriter guarantees no other `&mut` exists. The
        // map is writable (checked above).
        unsafe { std::slice::from_raw_parts_mut(self.area.raw.as_mut_ptr().add(start), len) }
    }

    /// Read access to the unpublished bytes `[start, end_of_map)`, used by
    /// recovery to scan what an earlier process wrote.
    pub(crate) fn unpublished(&self, start: usize) -> &[u8] {
        let published = self.area.published.load(Ordering::Relaxed);
        assert!(start >= published && start <= self.area.len(), "read outside the unpublished range");
        // SAFETY: inside the mapping (checked); only this writer can create a
        // `&mut` over unpublished bytes and it needs `&mut self` to do so, which
        // the borrow checker forbids while this `&self` borrow lives.
        unsafe { std::slice::from_raw_parts(self.area.raw.as_ptr().add(start), self.area.len() - start) }
    }

    /// Mutable access to the header area `[0, data_start)`, which readers never see.
    pub(crate) fn header_mut(&mut self) -> &mut [u8] {
        assert!(self.area.writable, "write through a read-only map");
        // SAFETY: `[0, data_start)` is inside the mapping (checked in
        // `writable`), readers' slices start at `data_start`, and `&mut self`
        // on the unique writer excludes other `&mut` borrows.
        unsafe { std::slice::from_raw_parts_mut(self.area.raw.as_mut_ptr(), self.area.data_start) }
    }

    /// Makes `[data_start, end)` visible to readers. `end` never moves back.
    #[expect(clippy::needless_pass_by_ref_mut, reason = "only the one writer, through `&mut`, may publish")]
    pub(crate) fn publish(&mut self, end: usize) {
        let current = self.area.published.load(Ordering::Relaxed);
        assert!(end >= current && end <= self.area.len(), "publish {end} out of order (published {current})");
        self.area.published.store(end, Ordering::Release);
    }

    /// Declares that nothing more will be published.
    #[expect(clippy::needless_pass_by_ref_mut, reason = "only the one writer, through `&mut`, may finish")]
    pub(crate) fn finish(&mut self) {
        self.area.finished.store(true, Ordering::Release);
    }
}
