//! Criterion benchmarks of the log's hot paths: append (batched and single,
//! without fsync) and a full scan with CRC checks.
//!
//! Run with `cargo bench --bench log` (about a minute). Figures and the
//! machine they were taken on are in docs/BENCHMARKS.md. More suites:
//! `benches/append.rs`, `read.rs`, `recovery.rs`, `group_commit.rs`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use annal::{Durability, Log, LogConfig, Record};
use common::timed_appends;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: u64 = 100_000;

fn config() -> LogConfig {
    LogConfig::default().with_segment_bytes(256 << 20).with_durability(Durability::Never)
}

fn append(c: &mut Criterion) {
    let mut group = common::flat_group(c, "append", Duration::from_secs(1), Duration::from_secs(3));
    group.throughput(Throughput::Elements(RECORDS));
    for size in [100usize, 1024] {
        let value = vec![0x5Au8; size];
        for (name, batch) in [("batch100", 100), ("single", 1)] {
            group.bench_function(format!("{name}/{size}B"), |b| {
                b.iter_custom(|iters| timed_appends(iters, Durability::Never, &value, batch, RECORDS))
            });
        }
    }
    group.finish();
}

fn scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for size in [100usize, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), config()).expect("open");
        let value = vec![0xA5u8; size];
        let batch: Vec<Record<'_>> = (0..100).map(|_| Record::new(&value)).collect();
        for _ in 0..RECORDS / 100 {
            log.append_batch(&batch).expect("append");
        }
        group.throughput(Throughput::Elements(RECORDS));
        group.bench_function(format!("crc_checked/{size}B"), |b| {
            b.iter(|| {
                let mut reader = log.read_from(0).expect("reader");
                let mut bytes = 0usize;
                while let Some(r) = reader.next_record().expect("read") {
                    bytes += r.value().map_or(0, <[u8]>::len);
                }
                assert_eq!(bytes, size * RECORDS as usize);
                black_box(bytes)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append, scan);
criterion_main!(benches);
