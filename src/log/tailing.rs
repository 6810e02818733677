//! Readers that wait for what comes next: a record appended
//! ([`crate::Log::wait_for`]) or made durable ([`crate::Log::wait_for_durable`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Shared;
use crate::sync::MutexExt;

/// The waiting readers of a log, in [`Shared::tail`].
#[derive(Debug, Default)]
pub(crate) struct Tailing {
    /// Held only to wait on `cv` and to notify it.
    pub(crate) lock: Mutex<()>,
    /// Notified when the log's end or its durable watermark moves, or the log closes.
    pub(crate) cv: Condvar,
    /// How many readers wait: appends notify only if some do.
    pub(crate) waiters: AtomicUsize,
}

impl Tailing {
    /// Wakes every waiting reader.
    pub(crate) fn wake_all(&self) {
        let _g = self.lock.locked();
        self.cv.notify_all();
    }
}

impl Shared {
    /// Wakes the waiting readers, if there are any: the log's end or its
    /// durable watermark moved.
    pub(crate) fn notify_appended(&self) {
        if self.tail.waiters.load(Ordering::SeqCst) > 0 {
            self.tail.wake_all();
        }
    }

    /// Waits until `watermark` (the next offset, or the durable one) is past
    /// `offset`, for at most `timeout`. Returns whether it is.
    pub(crate) fn wait_for(&self, watermark: &AtomicU64, offset: u64, timeout: Duration) -> bool {
        self.wait_for_unless(watermark, offset, timeout, &|| false)
    }

    /// [`Shared::wait_for`] that also gives up, returning false, once
    /// `interrupted()` holds. It is called with the waiting lock held, when
    /// the wait starts and each time it wakes, so a thread that makes it hold
    /// and then calls [`Tailing::wake_all`] is never missed.
    pub(crate) fn wait_for_unless(
        &self,
        watermark: &AtomicU64,
        offset: u64,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> bool {
        if watermark.load(Ordering::SeqCst) > offset {
            return true;
        }
        let deadline = Instant::now() + timeout;
        self.tail.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.tail.lock.locked();
        let found = loop {
            if watermark.load(Ordering::SeqCst) > offset {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || self.closed.load(Ordering::SeqCst) || interrupted() {
                break false;
            }
            guard = self.tail.cv.wait_timeout(guard, deadline - now).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        };
        drop(guard);
        self.tail.waiters.fetch_sub(1, Ordering::SeqCst);
        found
    }
}
