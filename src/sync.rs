//! Taking locks, with one policy for a lock that a panicking thread left
//! poisoned: the guard is taken anyway. What a poisoned lock means for the
//! data it guards is decided where that matters, not at every acquisition:
//! a log whose writer, segment set or group-commit state was poisoned is put
//! into the failed state (as after a failed fsync: it refuses writes, reads
//! keep working, a reopen recovers it; see `Shared::check_writable`), and
//! every other lock guards state that each critical section leaves whole
//! (caches, counters, maps replaced in one step). Panicking on a poisoned
//! lock instead would turn one thread's panic into every thread's.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that takes the guard of a poisoned mutex too.
pub(crate) trait MutexExt<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that take the guard of a poisoned
/// lock too.
pub(crate) trait RwLockExt<T> {
    /// The read guard, poisoned or not.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// The write guard, poisoned or not.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`Condvar::wait`] that takes the guard back even if the mutex was poisoned.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
}
