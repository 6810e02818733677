//! Faults in the active segment's pages ahead of the writer, on another thread.
//!
//! The first touch of a fresh page of a preallocated file costs the kernel a
//! page allocation and a zero fill; measured on the reference machine that was
//! 60% of the time of appending 1-KiB records. The prefaulter takes that work
//! off the append path: the writer asks (at most once per half window) for the
//! next window beyond its position, and this thread populates it with
//! `MADV_POPULATE_READ`, which allocates and zero-fills page-cache pages
//! without dirtying them (so no zeros are ever written back to disk).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::mmap::MapArea;

/// How far ahead of the writer pages are faulted in.
pub(crate) const WINDOW: usize = 32 << 20;
const CHUNK: usize = 2 << 20;

#[derive(Debug, Default)]
struct Request {
    area: Option<Arc<MapArea>>,
    from: usize,
    upto: usize,
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
    pub(crate) fn request(&self, area: &Arc<MapArea>, from: usize, upto: usize) {
        let (lock, cv) = &*self.state;
        let mut r = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.area = Some(Arc::clone(area));
        r.from = from;
        r.upto = upto;
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
        let (area, from, upto) = {
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
                        break (Arc::clone(area), start, r.upto);
                    }
                }
                r = cv.wait(r).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let end = upto.min(from + CHUNK);
        // A failure (an old kernel without MADV_POPULATE_READ) only costs speed.
        let _ = area.prefault(from, end - from);
        done = Some((area, end));
    }
}
