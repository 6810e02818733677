//! Helpers shared by the integration tests: a fault-injecting [`Io`], small
//! configurations, deterministic record contents, directory snapshots and a
//! tiny seeded random number generator; [`cli`] runs the `annal` binary.

#![allow(dead_code)]

pub mod bank;
pub mod child;
#[cfg(feature = "cli")]
pub mod cli;
pub mod es_workload;
#[cfg(feature = "object-store")]
pub mod s3;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use annal::io::{Io, OsIo};
use annal::{Durability, Header, Log, LogConfig, OwnedRecord, Record};

/// errno EIO.
pub const EIO: i32 = 5;
/// errno ENOSPC.
pub const ENOSPC: i32 = 28;

/// An [`Io`] that forwards to [`OsIo`] unless a switch tells it to fail.
///
/// Every switch is sticky: it stays on until it is turned off. Counters tell
/// how often each call was made (successful or not), so tests can see, for
/// example, how many fsyncs a workload needed.
#[derive(Debug, Default)]
pub struct FaultIo {
    inner: OsIo,
    /// `sync_data` and `sync_all` fail with EIO.
    pub fail_sync: AtomicBool,
    /// `sync_dir` fails with EIO.
    pub fail_sync_dir: AtomicBool,
    /// `allocate` fails with ENOSPC.
    pub fail_allocate: AtomicBool,
    /// When set to `Some(n)`: `n` more directory syncs succeed, then `fail_sync_dir` turns on.
    pub fail_sync_dir_after: std::sync::Mutex<Option<u64>>,
    /// `rename` fails with EIO.
    pub fail_rename: AtomicBool,
    /// When set to `Some(n)`: `n` more renames succeed, then `fail_rename` turns on.
    pub fail_rename_after: std::sync::Mutex<Option<u64>>,
    /// When set, only files whose path ends with this suffix are subject to
    /// the sync and rename faults and countdowns (the target path for a
    /// rename); every other call goes through untouched.
    pub only_suffix: std::sync::Mutex<Option<String>>,
    /// When set to `Some(n)`: `n` more syncs succeed, then `fail_sync` turns on.
    pub fail_sync_after: std::sync::Mutex<Option<u64>>,
    /// Calls of `sync_data` + `sync_all`.
    pub syncs: AtomicU64,
    /// Calls of `sync_dir`.
    pub dir_syncs: AtomicU64,
    /// Calls of `allocate`.
    pub allocations: AtomicU64,
    /// `remove_file` fails with EIO.
    pub fail_remove: AtomicBool,
    /// `sync_data` and `sync_all` panic (as a buggy `Io` implementation might).
    pub panic_sync: AtomicBool,
    /// The next this many `read_at` calls are interrupted (EINTR) before reading.
    pub interrupt_reads: AtomicU64,
    /// `read_at` fails with EIO.
    pub fail_reads: AtomicBool,
    /// `seek_data` fails with EIO.
    pub fail_seek_data: AtomicBool,
    /// `read_at` reads nothing at or past this position, as if the file had
    /// been cut there after it was measured (0: off).
    pub reads_end_at: AtomicU64,
    /// `create_dir_all` fails with ENOSPC.
    pub fail_create_dir: AtomicBool,
    /// `open_read` and `open_writable` fail with EIO.
    pub fail_open: AtomicBool,
    /// `file_len` fails with EIO.
    pub fail_file_len: AtomicBool,
    /// `read_dir` fails with EIO.
    pub fail_read_dir: AtomicBool,
    /// Calls of `read_at` and `seek_data`.
    pub reads: AtomicU64,
}

impl FaultIo {
    pub fn new() -> FaultIo {
        FaultIo::default()
    }

    pub fn set_fail_sync(&self, on: bool) {
        self.fail_sync.store(on, Ordering::SeqCst);
    }

    pub fn set_fail_sync_dir(&self, on: bool) {
        self.fail_sync_dir.store(on, Ordering::SeqCst);
    }

    pub fn set_fail_allocate(&self, on: bool) {
        self.fail_allocate.store(on, Ordering::SeqCst);
    }

    /// Lets `n` more `sync_data`/`sync_all` calls succeed, then fails every later one.
    pub fn fail_sync_after(&self, n: u64) {
        *self.fail_sync_after.lock().unwrap() = Some(n);
    }

    /// Lets `n` more directory syncs succeed, then fails every later one.
    pub fn fail_sync_dir_after(&self, n: u64) {
        *self.fail_sync_dir_after.lock().unwrap() = Some(n);
    }

    /// Lets `n` more renames succeed, then fails every later one.
    pub fn fail_rename_after(&self, n: u64) {
        *self.fail_rename_after.lock().unwrap() = Some(n);
    }

    pub fn set_fail_rename(&self, on: bool) {
        self.fail_rename.store(on, Ordering::SeqCst);
    }

    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Restricts the sync and rename faults to files whose path ends with `suffix`
    /// (for example `".log"`: segment data files, not `.log.tmp` or index files).
    pub fn only_files_ending_with(&self, suffix: &str) {
        *self.only_suffix.lock().unwrap() = Some(suffix.to_owned());
    }

    fn applies_to(&self, path: Option<&Path>) -> bool {
        match &*self.only_suffix.lock().unwrap() {
            None => true,
            Some(suffix) => path.is_some_and(|p| p.to_string_lossy().ends_with(suffix.as_str())),
        }
    }

    fn sync_result(&self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic_sync.load(Ordering::SeqCst), "FaultIo: a panic in sync, on purpose");
        if !self.applies_to(path_of(file).as_deref()) {
            return Ok(());
        }
        countdown(&self.fail_sync_after, &self.fail_sync);
        if self.fail_sync.load(Ordering::SeqCst) { Err(io::Error::from_raw_os_error(EIO)) } else { Ok(()) }
    }
}

/// The path an open file has now (Linux: through /proc/self/fd).
fn path_of(file: &File) -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// Counts a call down; when the count is used up, turns `switch` on.
fn countdown(after: &std::sync::Mutex<Option<u64>>, switch: &AtomicBool) {
    let mut after = after.lock().unwrap();
    match *after {
        Some(0) => {
            *after = None;
            switch.store(true, Ordering::SeqCst);
        }
        Some(n) => *after = Some(n - 1),
        None => {}
    }
}

impl Io for FaultIo {
    fn create(&self, path: &Path) -> io::Result<File> {
        self.inner.create(path)
    }

    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(file, buf, pos)
    }

    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        self.allocations.fetch_add(1, Ordering::SeqCst);
        if self.fail_allocate.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        self.inner.allocate(file, len)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.sync_result(file)?;
        self.inner.sync_data(file)
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        self.sync_result(file)?;
        self.inner.sync_all(file)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.dir_syncs.fetch_add(1, Ordering::SeqCst);
        countdown(&self.fail_sync_dir_after, &self.fail_sync_dir);
        if self.fail_sync_dir.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.sync_dir(dir)
    }

    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        self.inner.set_len(file, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if !self.applies_to(Some(to)) {
            return self.inner.rename(from, to);
        }
        countdown(&self.fail_rename_after, &self.fail_rename);
        if self.fail_rename.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.fail_remove.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.remove_file(path)
    }

    fn read_at(&self, file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let interrupt =
            self.interrupt_reads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if interrupt {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let len = match self.reads_end_at.load(Ordering::SeqCst) {
            0 => buf.len(),
            end => usize::try_from(end.saturating_sub(pos)).unwrap_or(usize::MAX).min(buf.len()),
        };
        self.inner.read_at(file, &mut buf[..len], pos)
    }

    fn seek_data(&self, file: &File, pos: u64) -> io::Result<Option<u64>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_seek_data.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.seek_data(file, pos)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.fail_create_dir.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        self.inner.create_dir_all(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<File> {
        if self.fail_open.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.open_read(path)
    }

    fn open_writable(&self, path: &Path) -> io::Result<File> {
        if self.fail_open.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.open_writable(path)
    }

    fn file_len(&self, file: &File) -> io::Result<u64> {
        if self.fail_file_len.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.file_len(file)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<annal::io::DirEntry>> {
        if self.fail_read_dir.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.read_dir(dir)
    }
}

/// A fast configuration for tests: 64 KiB segments, an index entry every
/// 512 bytes, no fsync on append.
pub fn small_cfg() -> LogConfig {
    LogConfig::default().with_segment_bytes(64 * 1024).with_index_interval_bytes(512).with_durability(Durability::Never)
}

/// The smallest segments allowed (4 KiB), so that a few records roll the log.
pub fn tiny_cfg() -> LogConfig {
    LogConfig::default().with_segment_bytes(4096).with_index_interval_bytes(256).with_durability(Durability::Never)
}

/// The value stored at `offset` by the tests that derive contents from
/// offsets: the offset's 8 little-endian bytes repeated to a length between
/// 1 and `max_len` that also depends on the offset.
pub fn value_for(offset: u64, max_len: usize) -> Vec<u8> {
    let len = 1 + (offset.wrapping_mul(2_654_435_761) % max_len as u64) as usize;
    offset.to_le_bytes().iter().copied().cycle().take(len).collect()
}

/// The key stored at `offset` by the same tests.
pub fn key_for(offset: u64) -> Vec<u8> {
    format!("key-{offset}").into_bytes()
}

/// A record to append from its parts; `value: None` is a tombstone (which
/// needs a key); `timestamp: None` lets the log use the append time.
pub fn make_record<'a>(
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    timestamp: Option<i64>,
    headers: &'a [Header<'a>],
) -> Record<'a> {
    let mut r = match (value, key) {
        (Some(v), _) => Record::new(v),
        (None, Some(k)) => Record::tombstone(k),
        (None, None) => panic!("a tombstone needs a key"),
    };
    if let Some(k) = key {
        r = r.with_key(k);
    }
    if let Some(t) = timestamp {
        r = r.with_timestamp(t);
    }
    r.with_headers(headers)
}

/// Headers as the append API takes them.
pub fn header_refs(headers: &[(String, Vec<u8>)]) -> Vec<Header<'_>> {
    headers.iter().map(|(n, v)| Header { name: n, value: v }).collect()
}

/// Every record from the start of the log to its current end.
pub fn read_all(log: &Log) -> annal::Result<Vec<OwnedRecord>> {
    log.read_from(log.start_offset())?.collect()
}

/// A temporary directory on tmpfs (`/dev/shm`) when there is one: for tests
/// that open, sync and copy logs many times and are not about what reaches a disk.
/// Waits (up to 30 s) until `running` reaches `n`: for tests whose workers
/// count themselves in once they have done their first piece of work, so the
/// test's own workload is known to run alongside them.
pub fn await_workers(running: &AtomicUsize, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while running.load(Ordering::SeqCst) < n {
        assert!(std::time::Instant::now() < deadline, "{} of {n} workers started", running.load(Ordering::SeqCst));
        std::thread::yield_now();
    }
}

pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap()
}

/// Every file in `dir` (not recursive) with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.insert(e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap());
        }
    }
    out
}

/// Asserts that two snapshots are identical, naming the first file that differs.
pub fn assert_same_files(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>, what: &str) {
    let names_before: Vec<_> = before.keys().collect();
    let names_after: Vec<_> = after.keys().collect();
    assert_eq!(names_before, names_after, "{what}: the set of files changed");
    for (name, bytes) in before {
        let other = &after[name];
        assert!(
            bytes == other,
            "{what}: {name} changed (length {} -> {}, first difference at byte {:?})",
            bytes.len(),
            other.len(),
            bytes.iter().zip(other.iter()).position(|(a, b)| a != b)
        );
    }
}

/// Copies the files of `src` (not recursive) into `dst`, creating it.
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Every file below `dir`, hidden ones included, relative to it.
pub fn all_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{rel}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

/// The segment data files of a log directory, sorted by base offset.
pub fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| annal::segment::parse_log_file_name(n).is_some())
        })
        .collect();
    v.sort();
    v
}

/// The file names of the temporary files the last open of `log` removed, sorted.
pub fn removed_temp_names(log: &Log) -> Vec<String> {
    let mut removed: Vec<String> = log
        .recovery_report()
        .removed_temp_files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    removed
}

/// A thread that runs `f` with a stop flag to poll; dropping the handle
/// raises the flag and waits for the thread to end.
pub struct BackgroundThread {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundThread {
    pub fn spawn(f: impl FnOnce(&AtomicBool) + Send + 'static) -> BackgroundThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || f(&flag));
        BackgroundThread { stop, thread: Some(thread) }
    }
}

impl Drop for BackgroundThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// xorshift64*: a small deterministic generator for seeded tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi);
        lo + self.next_u64() % (hi - lo)
    }
}
