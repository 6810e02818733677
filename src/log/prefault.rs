//! Faults in active segments' pages ahead of their writers, on one thread
//! shared by every log of the process.
//!
//! The first touch of a fresh page of a preallocated file costs the kernel a
//! page allocation and a zero fill, and the first store to a page mapped
//! read-only costs a write-protect fault (ext4's `page_mkwrite`). Measured on
//! the reference machine, the first was 60% of the time of appending 1-KiB
//! records, and with it moved here, the second still halved the rate of
//! 100-byte appends. The prefaulter takes both off the append path: a writer
//! asks (at most once per half window) for the next window beyond its
//! position, and the worker populates it, a chunk at a time, going round the
//! segments that asked.
//!
//! **Bounded.** One thread serves every log (started by the first request),
//! and the pages it has populated ahead of the writers, all segments
//! together, never exceed [`BUDGET`]: with thousands of partitions each gets
//! a small share, and a request beyond the budget is cut short (the writer
//! then faults its pages itself: slower, never wrong). A segment's entry goes
//! once it is finished (sealed) or dropped.
//!
//! How depends on the durability (see [`Prefault::for_durability`]): populating
//! for writing dirties the pages, so an fsync writes their zeros too. Under
//! `Durability::Always` every append fsyncs, and writing up to a window of
//! zeros each time would cost far more than the faults it saves: there the
//! pages are only populated for reading, which dirties nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use crate::config::Durability;
use crate::mmap::MapArea;
use crate::sync::MutexExt;

/// Bytes populated per step before the worker looks at the other segments.
const CHUNK: usize = 2 << 20;
/// The most bytes the worker keeps populated ahead of the writers, over all
/// segments of the process.
pub(crate) const BUDGET: usize = 64 << 20;

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

/// What the worker knows of one segment.
#[derive(Debug)]
struct Entry {
    area: Weak<MapArea>,
    /// The writer's position at its last request.
    pos: usize,
    /// Populate up to here (the writer's window, within the allocated file).
    upto: usize,
    /// Populated up to here.
    done: usize,
    writable: bool,
    /// In the worker's queue.
    queued: bool,
}

impl Entry {
    /// Bytes populated ahead of the writer.
    fn ahead(&self) -> usize {
        self.done.saturating_sub(self.pos)
    }
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    /// Indexes into `entries` with work to do, in turn.
    queue: VecDeque<usize>,
    started: bool,
}

#[derive(Debug, Default)]
struct Worker {
    state: Mutex<State>,
    cv: Condvar,
}

fn worker() -> &'static Worker {
    static WORKER: OnceLock<Worker> = OnceLock::new();
    WORKER.get_or_init(Worker::default)
}

/// Asks for `[from, upto)` of `area` to be faulted in, `from` being the
/// writer's position. Never blocks on the work. If the worker thread cannot
/// be started, nothing is prefaulted (it only costs speed).
pub(crate) fn request(area: &Arc<MapArea>, from: usize, upto: usize, writable: bool) {
    let w = worker();
    let mut st = w.state.locked();
    if !st.started {
        let spawned = std::thread::Builder::new().name("annal-prefault".into()).spawn(|| run(worker()));
        if spawned.is_err() {
            return;
        }
        st.started = true;
    }
    let i = match st.entries.iter().position(|e| std::ptr::eq(e.area.as_ptr(), Arc::as_ptr(area))) {
        Some(i) => i,
        None => {
            // Reuse the slot of a segment that is gone.
            let entry = Entry { area: Arc::downgrade(area), pos: from, upto, done: from, writable, queued: false };
            match st.entries.iter().position(|e| e.area.strong_count() == 0 && !e.queued) {
                Some(i) => {
                    st.entries[i] = entry;
                    i
                }
                None => {
                    st.entries.push(entry);
                    st.entries.len() - 1
                }
            }
        }
    };
    let e = &mut st.entries[i];
    e.pos = from;
    e.upto = e.upto.max(upto);
    e.done = e.done.max(from);
    e.writable = writable;
    if !e.queued && e.done < e.upto {
        e.queued = true;
        st.queue.push_back(i);
        w.cv.notify_one();
    }
}

fn run(w: &Worker) {
    loop {
        let (area, from, to, writable, i) = {
            let mut st = w.state.locked();
            loop {
                let Some(i) = st.queue.pop_front() else {
                    st = crate::sync::wait(&w.cv, st);
                    continue;
                };
                st.entries[i].queued = false;
                let area = match st.entries[i].area.upgrade() {
                    Some(a) if !a.is_finished() => a,
                    // Sealed or dropped: nothing more to do for it.
                    _ => {
                        st.entries[i].area = Weak::new();
                        continue;
                    }
                };
                // The budget, over every segment: what is populated ahead
                // of the writers now.
                let ahead: usize = st.entries.iter().filter(|e| e.area.strong_count() > 0).map(Entry::ahead).sum();
                let room = BUDGET.saturating_sub(ahead);
                let e = &st.entries[i];
                let to = e.upto.min(e.done + CHUNK).min(e.done + room);
                if to <= e.done {
                    // Over budget: this request waits for the writers to
                    // catch up (their next request brings it back).
                    continue;
                }
                break (area, e.done, to, e.writable, i);
            }
        };
        // A failure (a kernel older than 5.14, without MADV_POPULATE_*) only costs speed.
        let _ = area.prefault(from, to - from, writable);
        let mut st = w.state.locked();
        let e = &mut st.entries[i];
        if std::ptr::eq(e.area.as_ptr(), Arc::as_ptr(&area)) {
            e.done = e.done.max(to);
            if !e.queued && e.done < e.upto {
                e.queued = true;
                st.queue.push_back(i);
            }
        }
    }
}
