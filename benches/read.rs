//! Point reads through the indexes, on a multi-segment log.
//!
//! - `get/<size>/<n>seg/cache<k>`: `Log::get(offset)` at pseudo-random offsets
//!   over 1,000,000 records of 100 B in 4 MiB segments (about 34 segments),
//!   with the default cache of 64 mapped segments (every segment stays
//!   mapped) and with `max_open_segments(4)` (most reads open and map a
//!   sealed segment and load its index first).
//! - `offset_for_timestamp/<size>/<n>seg`: the first offset at or after a
//!   pseudo-random timestamp, over the same log (record i has timestamp
//!   t0 + i ms).
//!
//! Throughput is in lookups (elements). The log is built once, outside the
//! timing. The sequential CRC-checked scan is in `benches/log.rs`
//! (`scan/crc_checked/...`).
//!
//! Run with `cargo bench --bench read` (under a minute), or
//! `cargo bench --bench read -- --quick`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use annal::{Durability, Log, LogConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use common::{Rng, fill, size_name};

const VALUE: usize = 100;
const RECORDS: u64 = 1_000_000;
const SEGMENT: u64 = 4 << 20;
const T0: i64 = 1_700_000_000_000;
/// Lookups are drawn from a table of this many pseudo-random keys.
const KEYS: usize = 1 << 16;

fn config() -> LogConfig {
    LogConfig::default().with_segment_bytes(SEGMENT).with_durability(Durability::Never)
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), config()).expect("open");
        let n = fill(&log, VALUE, RECORDS * VALUE as u64, Some(T0));
        assert_eq!(n, RECORDS);
        log.close().expect("close");
    }
    let mut rng = Rng::new(0x00C0_FFEE);
    let offsets: Vec<u64> = (0..KEYS).map(|_| rng.below(RECORDS)).collect();
    let stamps: Vec<i64> = (0..KEYS).map(|_| T0 + rng.below(RECORDS) as i64).collect();

    let mut group = c.benchmark_group("get");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for cache in [64usize, 4] {
        let log = Log::open(dir.path(), config().with_max_open_segments(cache)).expect("open");
        let segments = log.segments().len();
        group.bench_function(format!("{}/{segments}seg/cache{cache}", size_name(VALUE)), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let r = log.get(offsets[i % KEYS]).expect("get");
                    black_box(r);
                }
                start.elapsed()
            });
        });
        log.close().expect("close");
    }
    group.finish();

    let log = Log::open(dir.path(), config()).expect("open");
    let segments = log.segments().len();
    let mut group = c.benchmark_group("offset_for_timestamp");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{}/{segments}seg", size_name(VALUE)), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters as usize {
                let ts = stamps[i % KEYS];
                let found = log.offset_for_timestamp(ts).expect("lookup");
                debug_assert_eq!(found, Some((ts - T0) as u64));
                black_box(found);
            }
            start.elapsed()
        });
    });
    // Check the answers once, outside the timing.
    for &ts in &stamps[..1000] {
        assert_eq!(log.offset_for_timestamp(ts).expect("lookup"), Some((ts - T0) as u64));
    }
    for &o in &offsets[..1000] {
        assert_eq!(log.get(o).expect("get").offset, o);
    }
    group.finish();
    log.close().expect("close");
}

criterion_group!(benches, reads);
criterion_main!(benches);
