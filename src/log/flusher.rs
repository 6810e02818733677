//! The interval flusher: one thread, shared by every log of the process
//! opened with `Durability::Interval`, that syncs each log at its interval.
//!
//! A log registers when it opens and unregisters when it closes (or is
//! abandoned); unregistering waits for a sync of that log in progress, so
//! that nothing reaches the log's files through the flusher afterwards. The
//! thread holds only weak references between syncs, and sleeps until the
//! next log is due. A failed sync fails the log (as any failed fsync does)
//! and drops it from the schedule.

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::Shared;
use crate::error::{Error, Result};
use crate::sync::MutexExt;

#[derive(Debug)]
struct Entry {
    id: u64,
    shared: Weak<Shared>,
    every: Duration,
    due: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    /// The log being synced now, if any.
    syncing: Option<u64>,
    next_id: u64,
    started: bool,
}

#[derive(Debug, Default)]
struct Flusher {
    state: Mutex<State>,
    /// Wakes the thread (a new log, an earlier due time) and the threads
    /// waiting for a sync to end.
    cv: Condvar,
}

fn flusher() -> &'static Flusher {
    static FLUSHER: OnceLock<Flusher> = OnceLock::new();
    FLUSHER.get_or_init(Flusher::default)
}

/// A log's place in the flusher's schedule; dropping it unregisters the log.
#[derive(Debug)]
pub(crate) struct Registration {
    id: u64,
}

/// Schedules a sync of `shared` every `every`, starting the thread if it is
/// not running.
pub(crate) fn register(shared: &Arc<Shared>, every: Duration) -> Result<Registration> {
    let f = flusher();
    let mut st = f.state.locked();
    if !st.started {
        std::thread::Builder::new()
            .name("annal-flusher".into())
            .spawn(|| run(flusher()))
            .map_err(|e| Error::io("start flusher thread", shared.dir.clone(), e))?;
        st.started = true;
    }
    st.next_id += 1;
    let id = st.next_id;
    st.entries.push(Entry { id, shared: Arc::downgrade(shared), every, due: Instant::now() + every });
    f.cv.notify_all();
    Ok(Registration { id })
}

impl Drop for Registration {
    /// Removes the log from the schedule, after the sync of it in progress (if any).
    fn drop(&mut self) {
        let f = flusher();
        let mut st = f.state.locked();
        st.entries.retain(|e| e.id != self.id);
        while st.syncing == Some(self.id) {
            st = crate::sync::wait(&f.cv, st);
        }
    }
}

fn run(f: &Flusher) {
    let mut st = f.state.locked();
    loop {
        let now = Instant::now();
        let due = st.entries.iter().enumerate().min_by_key(|(_, e)| e.due).map(|(i, e)| (i, e.due));
        let i = match due {
            None => {
                st = crate::sync::wait(&f.cv, st);
                continue;
            }
            Some((_, due)) if due > now => {
                st = f.cv.wait_timeout(st, due - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                continue;
            }
            Some((i, _)) => i,
        };
        let e = &mut st.entries[i];
        e.due = now + e.every;
        let id = e.id;
        let Some(shared) = e.shared.upgrade() else {
            st.entries.swap_remove(i);
            continue;
        };
        st.syncing = Some(id);
        drop(st);
        let target = shared.next_offset.load(std::sync::atomic::Ordering::SeqCst);
        let failed = shared.sync_to(target).is_err();
        drop(shared);
        st = f.state.locked();
        st.syncing = None;
        if failed {
            // The log is failed: no later sync can succeed.
            st.entries.retain(|e| e.id != id);
        }
        f.cv.notify_all();
    }
}
