//! Helpers shared by the criterion benches: log construction, copying a
//! crashed log, timing threads released together, a cheap deterministic
//! PRNG and an fsync-counting `Io`.
//!
//! Each bench binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs::{self, File};
use std::hint::black_box;
use std::io;
use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

use annal::io::{Io, OsIo};
use annal::{Durability, Log, LogConfig, Record};

/// A benchmark group for slow iterations (whole runs of thousands of
/// records, fsyncs, reopens): 10 samples, flat sampling, and the given
/// warm-up and measurement times.
pub fn flat_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    warm_up: Duration,
    measurement: Duration,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(warm_up).measurement_time(measurement);
    group
}

/// Human-readable size for bench names: `16B`, `100B`, `1KiB`, `16KiB`, `64MiB`.
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

/// Appends `records` records of `value` per iteration, `batch` per call, into
/// a log opened beforehand (a 256 MiB segment, preallocated by `Log::open`);
/// returns the time spent appending. The log is then abandoned, not sealed:
/// the directory is removed anyway, and its dirty pages with it.
pub fn timed_appends(iters: u64, durability: Durability, value: &[u8], batch: usize, records: u64) -> Duration {
    let config = LogConfig::default().with_segment_bytes(256 << 20).with_durability(durability);
    let mut total = Duration::ZERO;
    let batch_records: Vec<Record<'_>> = (0..batch).map(|_| Record::new(value)).collect();
    for _ in 0..iters {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), config.clone()).expect("open");
        let start = Instant::now();
        if batch == 1 {
            for _ in 0..records {
                black_box(log.append(&batch_records[0]).expect("append"));
            }
        } else {
            for _ in 0..records / batch as u64 {
                black_box(log.append_batch(&batch_records).expect("append"));
            }
        }
        total += start.elapsed();
        log.abandon();
    }
    total
}

/// Appends records of `value_len` bytes in batches of 100 until about
/// `data_bytes` of record values have been written. Timestamps, when given,
/// are `ts0 + offset` (one millisecond per record, strictly increasing).
/// Returns the number of records appended.
pub fn fill(log: &Log, value_len: usize, data_bytes: u64, ts0: Option<i64>) -> u64 {
    let value = vec![0x5Au8; value_len];
    let records = data_bytes / value_len as u64;
    let mut done = 0u64;
    while done < records {
        let n = (records - done).min(100);
        let first = log.next_offset();
        let batch: Vec<Record<'_>> = (0..n)
            .map(|i| {
                let r = Record::new(&value);
                match ts0 {
                    Some(t) => r.with_timestamp(t + (first + i) as i64),
                    None => r,
                }
            })
            .collect();
        log.append_batch(&batch).expect("append");
        done += n;
    }
    records
}

/// Recreates the log directory `from` at `to` (which must not exist) by
/// hard-linking every file except those named in `skip`: the linked files
/// must only ever be read (see [`mtimes`] to check it).
pub fn link_dir_except(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if !skip.iter().any(|s| name.to_str() == Some(s)) {
            fs::hard_link(entry.path(), to.join(&name)).expect("hard link");
        }
    }
}

/// Modification times of every file in `dir`, sorted by name: used to check
/// that hard-linked files were not written to.
pub fn mtimes(dir: &Path) -> Vec<(String, std::time::SystemTime, u64)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let m = e.metadata().expect("metadata");
            (e.file_name().to_string_lossy().into_owned(), m.modified().expect("mtime"), m.len())
        })
        .collect();
    out.sort();
    out
}

/// Runs `work(0)` .. `work(threads - 1)` on `threads` threads released
/// together by a barrier (all spawned and waiting); returns the time from the
/// earliest start to the latest end, measured on the threads themselves, so
/// spawning and joining are not timed.
pub fn timed_threads(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(i);
                    (start, Instant::now())
                })
            })
            .collect();
        let times: Vec<(Instant, Instant)> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        let start = times.iter().map(|t| t.0).min().expect("a thread");
        let end = times.iter().map(|t| t.1).max().expect("a thread");
        end - start
    })
}

/// xorshift64*: deterministic pseudo-random numbers, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The real file system, counting fsyncs (`sync_data` and `sync_all`).
#[derive(Debug, Default)]
pub struct CountingIo {
    pub syncs: AtomicU64,
}

impl CountingIo {
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl Io for CountingIo {
    fn create(&self, path: &Path) -> io::Result<File> {
        OsIo.create(path)
    }
    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        OsIo.write_all_at(file, buf, pos)
    }
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        OsIo.allocate(file, len)
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        OsIo.sync_data(file)
    }
    fn sync_all(&self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        OsIo.sync_all(file)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsIo.sync_dir(dir)
    }
    fn set_len(&self, file: &File, len: u64) -> io::Result<()> {
        OsIo.set_len(file, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsIo.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsIo.remove_file(path)
    }
}
