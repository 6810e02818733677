//! Faults in the active segment's pages ahead of the writer, on another thread.
//!
//! The first touch of a fresh page of a preallocated file costs the kernel a
//! page allocation and a zero fill, and the first store to a page mapped
//! read-only costs a write-protect fault (ext4's `page_mkwrite`). Measured on
//! the reference machine, the first was 60% of the time of appending 1-KiB
//! records, and with it moved here, the second still halved the rate of
//! 100-byte appends. The prefaulter takes both off the append path: the writer
//! asks (at most once per half window) for the next window beyond its
//! position, and this thread populates it.
//!
//! How depends on the durability (see [`Prefault::for_durability`]): populating
//! for writing dirties the pages, so an fsync writes their zeros too. Under
//! `Durability::Always` every append fsyncs, and writing up to a window of
//! zeros each time would cost far more than the faults it saves: there the
//! pages are only populated for reading, which dirties nothing.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::config::Durability;
use crate::mmap::MapArea;

const CHUNK: usize = 2 << 20;

/// How the active segment's pages are faulted in ahead of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefault {
    /// How far ahead of the writer, in bytes.
    pub(crate) window: usize,
    /// Populate for writing (dirtying the pages) rather than for reading.
    pub(crate) writable: bool,
}

impl Prefault {
    /// Writable pages 8 MiB ahead unless every append fsyncs; then read-only
    /// pages 32 MiB ahead. An fsync (the interval flusher's, or the one that
    /// seals a segment) writes at most 8 MiB of zeros beyond the records.
    pub(crate) fn for_durability(durability: Durability) -> Prefault {
        match durability {
            Durability::Always => Prefault { window: 32 << 20, writable: false },
            Durability::Never | Durability::Interval(_) => Prefault { window: 8 << 20, writable: true },
        }
    }
}

#[derive(Debug, Default)]
struct Request {
    area: Option<Arc<MapArea>>,
    from: usize,
    upto: usize,
    writable: bool,
    stop: bool,
}

#[derive(Debug)]
pub(crate) struct Prefaulter {
    state: Arc<(Mutex<Request>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Prefaulter {
    pub(crate) fn start() -> Prefaulter {
        let state = Arc::new((Mutex::new(Request::default()), Condvar::new()));
        let worker = Arc::clone(&state);
        let handle = std::thread::Builder::new().name("annal-prefault".into()).spawn(move || run(&worker)).ok();
        Prefaulter { state, handle }
    }

    /// Asks for `[from, upto)` of `area` to be faulted in. Never blocks on the work.
    pub(crate) fn request(&self, area: &Arc<MapArea>, from: usize, upto: usize, writable: bool) {
        let (lock, cv) = &*self.state;
        let mut r = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.area = Some(Arc::clone(area));
        r.from = from;
        r.upto = upto;
        r.writable = writable;
        cv.notify_one();
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.state;
            let mut r = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            r.stop = true;
            r.area = None;
            cv.notify_one();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(state: &(Mutex<Request>, Condvar)) {
    let (lock, cv) = state;
    // What this thread has already faulted in: (area, end).
    let mut done: Option<(Arc<MapArea>, usize)> = None;
    loop {
        let (area, from, upto, writable) = {
            let mut r = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if r.stop {
                    return;
                }
                if let Some(area) = &r.area {
                    let start = match &done {
                        Some((d, end)) if Arc::ptr_eq(d, area) => (*end).max(r.from),
                        _ => r.from,
                    };
                    if start < r.upto {
                        break (Arc::clone(area), start, r.upto, r.writable);
                    }
                }
                r = cv.wait(r).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let end = upto.min(from + CHUNK);
        // A failure (a kernel older than 5.14, without MADV_POPULATE_*) only costs speed.
        let _ = area.prefault(from, end - from, writable);
        done = Some((area, end));
    }
}
