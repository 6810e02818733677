//! Group commit and the durable watermark: one fsync at a time on behalf of
//! every appender waiting for durability (docs/DESIGN.md, "Durability and
//! group commit").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::Shared;
use crate::error::{Error, IoContext, Result};
use crate::sync::MutexExt;

/// The state of group commit, in [`Shared::commit`].
#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// Whether a leader is inside its fsync.
    pub(crate) state: Mutex<CommitState>,
    /// Waited on by the appenders the leader's fsync will cover.
    pub(crate) cv: Condvar,
    /// The durable watermark: every offset below it was covered by an fsync
    /// (of its segment while active, or when it was sealed). It only grows,
    /// and always lies at a batch boundary.
    pub(crate) durable: AtomicU64,
}

impl GroupCommit {
    /// Group commit with everything below `durable` already durable.
    pub(crate) fn new(durable: u64) -> GroupCommit {
        GroupCommit { state: Mutex::new(CommitState::default()), cv: Condvar::new(), durable: AtomicU64::new(durable) }
    }
}

#[derive(Debug, Default)]
pub(crate) struct CommitState {
    /// A thread is inside fsync on behalf of everyone.
    syncing: bool,
}

/// Held by the group-commit leader during its fsync; dropped only if that
/// fsync panics (it is forgotten otherwise): fails the log and wakes the
/// threads waiting for the fsync, which then see the failure.
struct SyncLeader<'a> {
    shared: &'a Shared,
}

impl Drop for SyncLeader<'_> {
    fn drop(&mut self) {
        let shared = self.shared;
        shared.fail(&Error::Panicked { path: shared.dir.clone(), during: "a group-commit fsync" });
        shared.commit.state.locked().syncing = false;
        shared.commit.cv.notify_all();
    }
}

impl Shared {
    /// Moves the durable watermark up to `upto` (if it is not there yet) and
    /// wakes the threads waiting on it.
    pub(crate) fn mark_durable(&self, upto: u64) {
        let before = self.commit.durable.fetch_max(upto, Ordering::AcqRel);
        if upto > before {
            self.notify_appended();
        }
    }

    /// Group commit: returns once every offset below `target` is durable. One
    /// caller at a time runs fsync; the others wait for it and are covered by
    /// it if their records were written before it started.
    pub(crate) fn sync_to(&self, target: u64) -> Result<()> {
        let mut st = self.commit.state.locked();
        loop {
            if self.failed.load(Ordering::Acquire) {
                return Err(self.failed_error());
            }
            if self.commit.durable.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if st.syncing {
                st = crate::sync::wait(&self.commit.cv, st);
                continue;
            }
            st.syncing = true;
            drop(st);
            // If the fsync panics, the waiters must not wait for it forever:
            // the log fails and they are woken to see it.
            let leader = SyncLeader { shared: self };
            let result = self.sync_once();
            std::mem::forget(leader);
            st = self.commit.state.locked();
            st.syncing = false;
            self.commit.cv.notify_all();
            match result {
                Ok(upto) => self.mark_durable(upto),
                Err(e) => {
                    self.fail(&e);
                    return Err(e);
                }
            }
        }
    }

    /// One fsync of the active segment; returns the offset it made durable up
    /// to. Segments before the active one were synced when they were sealed.
    pub(crate) fn sync_once(&self) -> Result<u64> {
        let captured = {
            let mut w = self.writer.locked();
            if let Some(p) = w.parked.as_mut() {
                // Parked: the log is idle; sync it without mapping it again.
                p.sync(self.config.io.as_ref())?;
                return Ok(p.next_offset());
            }
            w.active
                .as_ref()
                .map(|a| (Arc::clone(&a.file), a.path().to_owned(), a.position(), a.next_offset(), a.base_offset()))
        };
        let Some((file, path, end, next, base)) = captured else {
            return Ok(self.next_offset.load(Ordering::SeqCst));
        };
        file.sync(self.config.io.as_ref(), false).ctx("fsync segment", &path)?;
        let mut w = self.writer.locked();
        if let Some(a) = w.active.as_mut()
            && a.base_offset() == base
        {
            a.write_checkpoint(end);
        }
        Ok(next)
    }
}
