//! `annal bench`: append, reopen and scan throughput.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;

use annal::{Log, LogConfig, Record};

use super::{CliResult, DurabilityArg, Failure, print, progress_bar};

/// Distinct value slices the pool holds beyond one batch, so that consecutive
/// batches do not append identical bytes.
const POOL_SHIFTS: usize = 251;

/// Benchmark: append records in batches, close and reopen the log, scan it.
///
/// Appends --records values of --record-size bytes (no key, no headers) with
/// `append_batch` in batches of --batch from --writers threads sharing one log,
/// closes the log, times reopening it, then reads every record back with a
/// reader that checks every CRC. Prints append and scan rates (MB = 10^6 bytes
/// of payload: key, headers and value; the on-disk rate counts whole record
/// frames), the latency of each `append_batch` call (p50, p99, p99.9, max; with
/// `--durability always` that includes the fsync, shared across writers by
/// group commit) and the reopen time. Values are prepared before the timed
/// loop. A progress bar is shown only when stdout is a terminal.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Log directory, kept afterwards; it must be missing or empty (default:
    /// a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Number of records to append.
    #[arg(long, default_value_t = 1_000_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Size of each record's value in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    record_size: usize,
    /// Records per `append_batch` call.
    #[arg(long, default_value_t = 100, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Durability policy (`interval` fsyncs every 100 ms).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Never)]
    durability: DurabilityArg,
    /// Writer threads appending to the one log at the same time; the records
    /// are split evenly between them. With `--durability always` their fsyncs
    /// are shared (group commit).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    writers: u64,
    /// Segment size in bytes (default: the library default, 1 GiB).
    #[arg(long, value_name = "N")]
    segment_bytes: Option<u64>,
    /// Also print the results as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// A log directory that is either the user's or a temporary one.
enum BenchDir {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl BenchDir {
    fn path(&self) -> &Path {
        match self {
            BenchDir::Kept(p) => p,
            BenchDir::Temporary(t) => t.path(),
        }
    }
}

fn bench_dir(dir: Option<&Path>) -> CliResult<BenchDir> {
    match dir {
        None => tempfile::tempdir()
            .map(BenchDir::Temporary)
            .map_err(|e| Failure::Error(format!("creating a temporary directory: {e}"))),
        Some(d) => {
            let not_empty = match std::fs::read_dir(d) {
                Ok(mut entries) => entries.next().is_some(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(Failure::Error(format!("{}: {e}", d.display()))),
            };
            if not_empty {
                return Err(Failure::Error(format!(
                    "{} is not empty; bench needs a new or empty directory",
                    d.display()
                )));
            }
            Ok(BenchDir::Kept(d.to_owned()))
        }
    }
}

fn progress(len: u64, what: &'static str) -> ProgressBar {
    let bar = progress_bar(len, "{msg:6} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})");
    bar.set_message(what);
    bar
}

/// Fills `buf` with cheap pseudo-random bytes (xorshift64).
fn fill(buf: &mut [u8]) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn per_sec(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn run(args: &BenchArgs) -> CliResult {
    let dir = bench_dir(args.dir.as_deref())?;
    let mut config = LogConfig::default().with_durability(args.durability.to_durability());
    if let Some(n) = args.segment_bytes {
        config = config.with_segment_bytes(n);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let size = args.record_size;
    let batch =
        usize::try_from(args.batch).unwrap_or(usize::MAX).min(usize::try_from(args.records).unwrap_or(usize::MAX));
    let total = args.records;

    // Values: slices of one pseudo-random pool, prepared before timing.
    let mut pool = vec![0u8; (batch + POOL_SHIFTS) * size];
    fill(&mut pool);

    let log = Log::open(dir.path(), config.clone())?;
    let bar = progress(total, "append");
    let writers = usize::try_from(args.writers).unwrap_or(1).min(usize::try_from(total).unwrap_or(usize::MAX)).max(1);
    let started = Instant::now();
    let outcomes: Vec<CliResult<Vec<u32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                // Writer w appends its share: total / writers, the first
                // total % writers writers one more.
                let share = total / writers as u64 + u64::from((w as u64) < total % writers as u64);
                let (log, pool, bar) = (&log, &pool, &bar);
                scope.spawn(move || append_share(log, pool, size, batch, share, w, bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(appended) => appended.map_err(Failure::from),
                Err(_) => Err(Failure::Error("a writer thread panicked".to_owned())),
            })
            .collect()
    });
    let append_time = started.elapsed();
    bar.finish_and_clear();
    let mut latencies_us = Vec::new();
    for outcome in outcomes {
        latencies_us.extend(outcome?);
    }
    let latency = Latency::of(&mut latencies_us);
    let segments = log.segments();
    let disk_bytes: u64 = segments.iter().map(|s| s.data_bytes).sum();
    let started = Instant::now();
    log.close()?;
    let close_time = started.elapsed();

    let started = Instant::now();
    let log = Log::open(dir.path(), config)?;
    let reopen_time = started.elapsed();

    let bar = progress(total, "scan");
    let started = Instant::now();
    let mut reader = log.read_from(log.start_offset())?;
    let mut count = 0u64;
    let mut value_bytes = 0u64;
    while let Some(r) = reader.next_record()? {
        count += 1;
        value_bytes += r.value().map_or(0, <[u8]>::len) as u64;
        if count & 0xFFFF == 0 {
            bar.set_position(count);
        }
    }
    let scan_time = started.elapsed();
    bar.finish_and_clear();
    drop(reader);
    log.close()?;
    let payload = total * size as u64;
    if count != total || value_bytes != payload {
        return Err(Failure::Error(format!(
            "scan read {count} records with {value_bytes} value bytes, expected {total} records with {payload}"
        )));
    }

    let mb = |bytes: u64, t: Duration| per_sec(bytes as f64, t) / 1e6;
    let append_rps = per_sec(total as f64, append_time);
    let append_mbps = mb(payload, append_time);
    let append_disk_mbps = mb(disk_bytes, append_time);
    let scan_rps = per_sec(count as f64, scan_time);
    let scan_mbps = mb(payload, scan_time);
    let durability = args.durability.to_durability();
    let segment_bytes = log_segment_bytes(args.segment_bytes);
    let kept = match &dir {
        BenchDir::Kept(p) => format!("kept in {}", p.display()),
        BenchDir::Temporary(_) => "temporary directory, removed afterwards".to_owned(),
    };

    let mut text = String::new();
    text.push_str(&format!(
        "annal bench: {total} records of {size} bytes, batch {}, {writers} writer{}, durability {durability}, segments of {segment_bytes} bytes, {cores} cores ({kept})\n",
        args.batch,
        if writers == 1 { "" } else { "s" }
    ));
    text.push_str(&format!(
        "append: {:.3} s, {append_rps:.0} records/s, {append_mbps:.1} MB/s payload, {append_disk_mbps:.1} MB/s on disk ({} segments)\n",
        append_time.as_secs_f64(),
        segments.len()
    ));
    text.push_str(&format!(
        "append_batch latency over {} calls: p50 {} us, p99 {} us, p99.9 {} us, max {} us{}\n",
        latency.calls,
        latency.p50,
        latency.p99,
        latency.p999,
        latency.max,
        if matches!(args.durability, DurabilityArg::Always) { " (each includes its fsync)" } else { "" }
    ));
    text.push_str(&format!("close:  {:.1} ms (seals the active segment)\n", ms(close_time)));
    text.push_str(&format!("reopen: {:.1} ms\n", ms(reopen_time)));
    text.push_str(&format!(
        "scan:   {:.3} s, {scan_rps:.0} records/s, {scan_mbps:.1} MB/s payload (every CRC checked)\n",
        scan_time.as_secs_f64()
    ));
    if args.json {
        let json = serde_json::json!({
            "records": total,
            "record_size": size,
            "batch": args.batch,
            "writers": writers,
            "durability": args.durability.name(),
            "segment_bytes": segment_bytes,
            "segments": segments.len(),
            "cores": cores,
            "payload_bytes": payload,
            "disk_bytes": disk_bytes,
            "append_secs": append_time.as_secs_f64(),
            "append_records_per_sec": append_rps,
            "append_mb_per_sec": append_mbps,
            "append_disk_mb_per_sec": append_disk_mbps,
            "append_calls": latency.calls,
            "append_latency_us": {
                "p50": latency.p50,
                "p99": latency.p99,
                "p99_9": latency.p999,
                "max": latency.max,
            },
            "close_ms": ms(close_time),
            "reopen_ms": ms(reopen_time),
            "scan_secs": scan_time.as_secs_f64(),
            "scan_records_per_sec": scan_rps,
            "scan_mb_per_sec": scan_mbps,
        });
        text.push_str(&json.to_string());
        text.push('\n');
    }
    print(&text)?;
    drop(dir);
    Ok(())
}

fn log_segment_bytes(arg: Option<u64>) -> u64 {
    arg.unwrap_or_else(|| LogConfig::default().segment_bytes())
}

/// Appends `share` records in batches of at most `batch` from one writer
/// thread, returning the latency of each `append_batch` call in microseconds.
fn append_share(
    log: &Log,
    pool: &[u8],
    size: usize,
    batch: usize,
    share: u64,
    writer: usize,
    bar: &ProgressBar,
) -> annal::Result<Vec<u32>> {
    let mut latencies = Vec::with_capacity(usize::try_from(share.div_ceil(batch as u64)).unwrap_or(0));
    let mut records: Vec<Record<'_>> = Vec::with_capacity(batch);
    let mut done = 0u64;
    // Writers start at different places in the pool so they append different bytes.
    let mut round = writer * 97;
    while done < share {
        let k = (share - done).min(batch as u64) as usize;
        let shift = round % POOL_SHIFTS;
        records.clear();
        records.extend((0..k).map(|i| Record::new(&pool[(shift + i) * size..(shift + i + 1) * size])));
        let call = Instant::now();
        log.append_batch(&records)?;
        latencies.push(u32::try_from(call.elapsed().as_micros()).unwrap_or(u32::MAX));
        done += k as u64;
        round += 1;
        bar.inc(k as u64);
    }
    Ok(latencies)
}

/// Percentiles of per-call latencies, in microseconds (nearest rank).
struct Latency {
    calls: usize,
    p50: u32,
    p99: u32,
    p999: u32,
    max: u32,
}

impl Latency {
    fn of(samples: &mut [u32]) -> Latency {
        samples.sort_unstable();
        let rank = |p: f64| -> u32 {
            if samples.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest sample with at least p of them at or below it.
            let r = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[r - 1]
        };
        Latency {
            calls: samples.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}
