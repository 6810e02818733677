//! Limits shared by many logs: how many of them may hold their active
//! segment open at once, and how many sealed segments their caches may keep
//! mapped, all of them together.
//!
//! A log with an open active segment holds a file descriptor and a memory
//! map; a cached sealed segment holds a map. With thousands of partitions
//! in one process, those run into the process's limits (`ulimit -n`,
//! `vm.max_map_count`). Logs given the same [`SharedLimits`] stay within
//! them: when one more is needed than the limit allows, the least recently
//! used of a sample of the others gives its own up (its active segment is
//! parked, see [`crate::Log::park`]; its least recently used cached segment
//! is dropped), and takes it up again when it is next used.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::Shared;
use crate::sync::MutexExt;

/// How many logs are looked at to choose which one gives up a resource.
const SAMPLE: usize = 8;

/// Limits shared by the logs that are given it (through
/// [`crate::LogConfig::with_shared_limits`]; a store gives one to all its
/// partitions): at most `max_open_active` of them hold their active segment
/// open (a file descriptor and a memory map each), and their caches keep at
/// most `max_cached_sealed` sealed segments mapped, all together. Readers
/// may keep a few more mapped while they read them.
///
/// The least recently used log of a random sample gives its resource up when
/// another needs one beyond the limit, so the limits hold approximately
/// (they may be passed for a moment by concurrent appends).
///
/// ```
/// use annal::{Durability, Log, LogConfig, Record, SharedLimits};
/// let limits = SharedLimits::new(2, 16);
/// let dir = tempfile::tempdir()?;
/// let config = LogConfig::default().with_durability(Durability::Never).with_shared_limits(limits.clone());
/// let logs: Vec<Log> = (0..5).map(|i| Log::open(dir.path().join(i.to_string()), config.clone())).collect::<Result<_, _>>()?;
/// for log in &logs {
///     log.append(&Record::new(b"x"))?;
/// }
/// assert!(limits.open_active() <= 2, "the others are parked");
/// assert_eq!(logs[0].read_from(0)?.count(), 1, "a parked log still reads");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedLimits {
    max_active: usize,
    max_sealed: usize,
    active: AtomicUsize,
    sealed: AtomicUsize,
    logs: Mutex<Vec<Weak<Shared>>>,
    rng: AtomicU64,
}

impl SharedLimits {
    /// Limits of `max_open_active` open active segments and
    /// `max_cached_sealed` cached sealed segments (each at least 1).
    pub fn new(max_open_active: usize, max_cached_sealed: usize) -> Arc<SharedLimits> {
        Arc::new(SharedLimits {
            max_active: max_open_active.max(1),
            max_sealed: max_cached_sealed.max(1),
            active: AtomicUsize::new(0),
            sealed: AtomicUsize::new(0),
            logs: Mutex::new(Vec::new()),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        })
    }

    /// The limit of open active segments.
    pub fn max_open_active(&self) -> usize {
        self.max_active
    }

    /// The limit of cached sealed segments.
    pub fn max_cached_sealed(&self) -> usize {
        self.max_sealed
    }

    /// Logs holding their active segment open now.
    pub fn open_active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Sealed segments the logs' caches hold mapped now.
    pub fn cached_sealed(&self) -> usize {
        self.sealed.load(Ordering::Relaxed)
    }

    /// Adds a log to those sharing the limits.
    pub(crate) fn register(&self, shared: &Arc<Shared>) {
        let mut logs = self.logs.locked();
        if logs.len() >= 64 && logs.len().is_power_of_two() {
            logs.retain(|w| w.strong_count() > 0);
        }
        logs.push(Arc::downgrade(shared));
    }

    /// One more (`true`) or one less open active segment.
    pub(crate) fn count_active(&self, more: bool) {
        if more {
            self.active.fetch_add(1, Ordering::Relaxed);
        } else {
            self.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `n` more cached sealed segments (`n` may be negative).
    pub(crate) fn count_sealed(&self, n: isize) {
        if n >= 0 {
            self.sealed.fetch_add(n.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.sealed.fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// While more active segments are open than allowed, parks the least
    /// recently used of a sample of the other logs (never `me`). Called with
    /// no lock of any log held (a topic's `state` read lock may be held:
    /// docs/DESIGN.md, "Lock order").
    pub(crate) fn enforce_active(&self, me: &Shared) {
        let mut tries = 0;
        while self.open_active() > self.max_active && tries < SAMPLE {
            tries += 1;
            let victim = self.choose(me, |s| s.active_open().then(|| s.last_use()));
            match victim {
                Some(v) => {
                    v.park_idle();
                }
                None => return,
            }
        }
    }

    /// While the caches hold more sealed segments than allowed, drops the
    /// least recently used entry of the sampled log that caches the most.
    pub(crate) fn enforce_sealed(&self, me: &Shared) {
        let mut tries = 0;
        while self.cached_sealed() > self.max_sealed && tries < SAMPLE {
            tries += 1;
            // Largest cache first: `u64::MAX - n` orders it first.
            let victim = self.choose_including(me, |s| {
                let n = s.cached_segments();
                (n > 0).then(|| u64::MAX - n as u64)
            });
            match victim {
                Some(v) => v.evict_cached(),
                None => return,
            }
        }
    }

    /// The log of a random sample (other than `me`) with the smallest key,
    /// among those `key` gives one.
    fn choose(&self, me: &Shared, key: impl Fn(&Shared) -> Option<u64>) -> Option<Arc<Shared>> {
        self.pick(Some(me), key)
    }

    /// [`SharedLimits::choose`], `me` included.
    fn choose_including(&self, _me: &Shared, key: impl Fn(&Shared) -> Option<u64>) -> Option<Arc<Shared>> {
        self.pick(None, key)
    }

    fn pick(&self, except: Option<&Shared>, key: impl Fn(&Shared) -> Option<u64>) -> Option<Arc<Shared>> {
        let logs = self.logs.locked();
        if logs.is_empty() {
            return None;
        }
        let better = |best: &mut Option<(u64, Arc<Shared>)>, w: &Weak<Shared>| {
            let Some(s) = w.upgrade() else { return };
            if except.is_some_and(|e| std::ptr::eq(e, Arc::as_ptr(&s))) {
                return;
            }
            if let Some(k) = key(&s)
                && best.as_ref().is_none_or(|(b, _)| k < *b)
            {
                *best = Some((k, s));
            }
        };
        let mut best = None;
        for _ in 0..SAMPLE {
            let i = (self.next_random() % logs.len() as u64) as usize;
            better(&mut best, &logs[i]);
        }
        if best.is_none() {
            // The sample missed: look at every log (rare).
            for w in logs.iter() {
                better(&mut best, w);
            }
        }
        best.map(|(_, s)| s)
    }

    fn next_random(&self) -> u64 {
        // xorshift64*, shared: a lost update only repeats a number.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
