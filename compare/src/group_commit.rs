//! Group commit: W writer threads, each appending one 100-byte record per
//! call and waiting until it is durable, on annal (`Durability::Always`) and
//! on the **ideal group commit** of this machine: the same records copied
//! into one shared memory map under a mutex, with a dedicated syncer thread
//! that loops `fdatasync` while records are pending and wakes the writers
//! its sync covered (no leader hand-over, no index, no framing beyond
//! `[len | crc32 | payload]`). Both are timed in the same run, interleaved,
//! and report per-call latency percentiles and records per fsync.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use annal::io::{Io, OsIo};
use annal::{Durability, Log, LogConfig, Record};
use memmap2::MmapMut;
use serde::Serialize;

use crate::workload::{Result, Values};

/// The two group commits measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GcEngine {
    /// A mutex-protected memcpy into a map and a dedicated syncer thread.
    Ideal,
    /// annal with `Durability::Always`: every `append` returns once durable.
    Annal,
}

impl GcEngine {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            GcEngine::Ideal => "ideal group commit",
            GcEngine::Annal => "annal",
        }
    }
}

/// One run of W writers on one engine.
#[derive(Debug, Clone, Serialize)]
pub struct GcRun {
    /// Records per second, all writers together, over the whole run.
    pub records_per_sec: f64,
    /// fdatasync calls made during the run.
    pub fsyncs: u64,
    /// Per-call latency percentiles, in microseconds: p50, p99, p99.9, max.
    pub latency_us: [f64; 4],
}

/// The median run of (engine, writers), with every run's rate.
#[derive(Debug, Clone, Serialize)]
pub struct GcMeasurement {
    /// Which group commit.
    pub engine: GcEngine,
    /// Writer threads.
    pub writers: usize,
    /// Records appended per run, all writers together.
    pub records: usize,
    /// The median run (by records per second).
    pub median: GcRun,
    /// Records per second of every run, in run order.
    pub runs_records_per_sec: Vec<f64>,
    /// `median.records_per_sec` divided by the ideal's for the same writers.
    pub ratio_to_ideal: Option<f64>,
}

/// Runs `runs` rounds; in each, every writer count on both engines in turn.
pub fn measure(
    values: Values<'_>,
    writers: &[usize],
    runs: u32,
    parent: Option<&Path>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<GcMeasurement>> {
    let mut all: Vec<(GcEngine, usize, GcRun)> = Vec::new();
    for _ in 0..runs {
        for &w in writers {
            for engine in [GcEngine::Ideal, GcEngine::Annal] {
                bar.set_message(format!("group commit: {} with {w} writers", engine.name()));
                let tmp = match parent {
                    Some(p) => tempfile::Builder::new().prefix("annal-compare-gc").tempdir_in(p)?,
                    None => tempfile::Builder::new().prefix("annal-compare-gc").tempdir()?,
                };
                let run = match engine {
                    GcEngine::Ideal => ideal(tmp.path(), values, w)?,
                    GcEngine::Annal => annal(tmp.path(), values, w)?,
                };
                all.push((engine, w, run));
                bar.inc(1);
            }
        }
    }
    let mut out = Vec::new();
    for &w in writers {
        for engine in [GcEngine::Ideal, GcEngine::Annal] {
            let mut mine: Vec<GcRun> =
                all.iter().filter(|(e, n, _)| *e == engine && *n == w).map(|(_, _, r)| r.clone()).collect();
            let in_order: Vec<f64> = mine.iter().map(|r| r.records_per_sec).collect();
            mine.sort_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec));
            let median = mine.swap_remove((mine.len() - 1) / 2);
            out.push(GcMeasurement {
                engine,
                writers: w,
                records: values.len(),
                median,
                runs_records_per_sec: in_order,
                ratio_to_ideal: None,
            });
        }
    }
    let ideal: Vec<(usize, f64)> =
        out.iter().filter(|m| m.engine == GcEngine::Ideal).map(|m| (m.writers, m.median.records_per_sec)).collect();
    for m in &mut out {
        m.ratio_to_ideal = ideal.iter().find(|(w, _)| *w == m.writers).map(|(_, rate)| m.median.records_per_sec / rate);
    }
    Ok(out)
}

/// p50, p99, p99.9 and max of `lat` (nanoseconds), in microseconds.
fn percentiles(mut lat: Vec<u64>) -> [f64; 4] {
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
    [at(0.5), at(0.99), at(0.999), at(1.0)]
}

/// Runs `writers` threads, each calling `append(i)` for its share of the
/// `n` records (record i goes to writer i % writers) and timing each call;
/// returns the elapsed time and every call's latency in nanoseconds.
fn timed_writers(
    writers: usize,
    n: usize,
    append: &(dyn Fn(usize) -> Result<()> + Sync),
) -> Result<(Duration, Vec<u64>)> {
    let barrier = Barrier::new(writers + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let barrier = &barrier;
                s.spawn(move || -> Result<Vec<u64>> {
                    let mut lat = Vec::with_capacity(n / writers + 1);
                    barrier.wait();
                    for i in (w..n).step_by(writers) {
                        let t = Instant::now();
                        append(i)?;
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut lat = Vec::with_capacity(n);
        for h in handles {
            lat.extend(h.join().map_err(|_| "a writer thread panicked")??);
        }
        Ok((started.elapsed(), lat))
    })
}

/// annal's `Io` with a count of data fsyncs.
#[derive(Debug, Default)]
struct CountingIo {
    syncs: AtomicU64,
}

impl Io for CountingIo {
    fn create(&self, path: &Path) -> std::io::Result<File> {
        OsIo.create(path)
    }
    fn write_all_at(&self, file: &File, buf: &[u8], pos: u64) -> std::io::Result<()> {
        OsIo.write_all_at(file, buf, pos)
    }
    fn allocate(&self, file: &File, len: u64) -> std::io::Result<()> {
        OsIo.allocate(file, len)
    }
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        OsIo.sync_data(file)
    }
    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        OsIo.sync_all(file)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        OsIo.sync_dir(dir)
    }
    fn set_len(&self, file: &File, len: u64) -> std::io::Result<()> {
        OsIo.set_len(file, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsIo.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        OsIo.remove_file(path)
    }
}

fn annal(dir: &Path, values: Values<'_>, writers: usize) -> Result<GcRun> {
    let io = Arc::new(CountingIo::default());
    let config = LogConfig::default().with_durability(Durability::Always).with_io(io.clone());
    let log = Log::open(dir.join("log"), config)?;
    let before = io.syncs.load(Ordering::Relaxed);
    let append = |i: usize| -> Result<()> {
        let value = values.get(i).ok_or("no such value")?;
        log.append(&Record::new(value))?;
        Ok(())
    };
    let (elapsed, lat) = timed_writers(writers, values.len(), &append)?;
    let fsyncs = io.syncs.load(Ordering::Relaxed) - before;
    if log.next_offset() != values.len() as u64 {
        return Err(format!("annal holds {} records, {} were appended", log.next_offset(), values.len()).into());
    }
    log.close()?;
    Ok(GcRun { records_per_sec: values.len() as f64 / elapsed.as_secs_f64(), fsyncs, latency_us: percentiles(lat) })
}

/// The ideal group commit's shared state.
struct Shared {
    state: Mutex<State>,
    /// Wakes the syncer (records pending) and the writers (a sync finished).
    cv: Condvar,
}

struct State {
    map: MmapMut,
    /// End of the bytes written.
    written: usize,
    /// End of the bytes an fdatasync has covered.
    synced: usize,
    stop: bool,
    fsyncs: u64,
    error: Option<String>,
}

fn ideal(dir: &Path, values: Values<'_>, writers: usize) -> Result<GcRun> {
    let path = dir.join("ideal.log");
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let bytes = values.len() * (8 + values.size());
    // Preallocated like an annal segment, so the sync needs no size change.
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, bytes as u64)?;
    // SAFETY: the file was created by this process in its own temporary
    // directory; nothing else truncates or writes it while it is mapped.
    let map = unsafe { MmapMut::map_mut(&file)? };
    let shared = Arc::new(Shared {
        state: Mutex::new(State { map, written: 0, synced: 0, stop: false, fsyncs: 0, error: None }),
        cv: Condvar::new(),
    });
    let syncer = {
        let shared = Arc::clone(&shared);
        let file = file.try_clone()?;
        thread::spawn(move || syncer(&shared, &file))
    };
    let append = |i: usize| -> Result<()> {
        let value = values.get(i).ok_or("no such value")?;
        let mut st = shared.state.lock().map_err(|_| "poisoned")?;
        let at = st.written;
        let end = at + 8 + value.len();
        let frame = st.map.get_mut(at..end).ok_or("ideal: file full")?;
        frame[..4].copy_from_slice(&(value.len() as u32).to_le_bytes());
        frame[4..8].copy_from_slice(&crc32fast::hash(value).to_le_bytes());
        frame[8..].copy_from_slice(value);
        st.written = end;
        shared.cv.notify_all();
        while st.synced < end {
            if let Some(e) = &st.error {
                return Err(e.clone().into());
            }
            st = shared.cv.wait(st).map_err(|_| "poisoned")?;
        }
        Ok(())
    };
    let (elapsed, lat) = timed_writers(writers, values.len(), &append)?;
    let fsyncs = {
        let mut st = shared.state.lock().map_err(|_| "poisoned")?;
        st.stop = true;
        shared.cv.notify_all();
        st.fsyncs
    };
    syncer.join().map_err(|_| "the syncer panicked")?;
    Ok(GcRun { records_per_sec: values.len() as f64 / elapsed.as_secs_f64(), fsyncs, latency_us: percentiles(lat) })
}

/// Loops fdatasync while records are pending, then wakes every writer.
fn syncer(shared: &Shared, file: &File) {
    let mut st = shared.state.lock().expect("ideal state");
    loop {
        while st.written == st.synced && !st.stop {
            st = shared.cv.wait(st).expect("ideal state");
        }
        if st.stop {
            return;
        }
        let target = st.written;
        drop(st);
        let result = rustix::fs::fdatasync(file);
        st = shared.state.lock().expect("ideal state");
        st.fsyncs += 1;
        match result {
            Ok(()) => st.synced = target,
            Err(e) => st.error = Some(format!("fdatasync: {e}")),
        }
        shared.cv.notify_all();
        if st.error.is_some() {
            return;
        }
    }
}

/// The markdown table of the group-commit measurements.
pub fn markdown(results: &[GcMeasurement], runs: u32) -> String {
    let mut out = String::new();
    out.push_str("| writers | engine | records/s | x ideal | spread | records per fsync | p50 | p99 | p99.9 | max |\n");
    out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in results {
        let r = &m.median;
        let spread = if m.runs_records_per_sec.len() > 1 {
            let max = m.runs_records_per_sec.iter().copied().fold(f64::MIN, f64::max);
            let min = m.runs_records_per_sec.iter().copied().fold(f64::MAX, f64::min);
            format!("{:.0}%", (max - min) / r.records_per_sec * 100.0)
        } else {
            String::new()
        };
        let per_fsync = if r.fsyncs > 0 { format!("{:.2}", m.records as f64 / r.fsyncs as f64) } else { "-".into() };
        let [p50, p99, p999, max] = r.latency_us;
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {spread} | {per_fsync} | {p50:.0} µs | {p99:.0} µs | {p999:.0} µs | {max:.0} µs |\n",
            m.writers,
            m.engine.name(),
            r.records_per_sec,
            m.ratio_to_ideal.map_or("-".into(), |x| format!("{x:.2}")),
        ));
    }
    out.push_str(&format!(
        "\nGroup commit: {} records of 100 B per run, one record per call, each call waiting until its record is \
         durable; the median of {runs} runs (engines interleaved). The ideal group commit copies `[len | crc32 | \
         payload]` into one preallocated shared map under a mutex, and a dedicated syncer thread loops `fdatasync` \
         while records are pending and wakes the writers it covered. annal: `Log::append` under \
         `Durability::Always` (its fsyncs counted through its `Io`).\n",
        results.first().map_or(0, |m| m.records)
    ));
    out
}
