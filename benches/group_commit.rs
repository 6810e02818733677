//! Group commit: N writer threads sharing one `Log` under
//! `Durability::Always`, each appending 100-byte records one per `append`
//! call (so every call waits for an fsync, about 2 ms on the reference VM).
//!
//! `group_commit/writers/<N>` for N = 1, 2, 4, 8, 16: each writer appends 50
//! records; the time is from the release of a barrier (all threads spawned
//! and waiting) to the last writer's last acknowledged append, measured on
//! the writers themselves (earliest start to latest end), so spawning and
//! joining are not timed. Throughput is total records (elements) per second
//! across all writers; with perfect group commit it grows with N while the
//! fsync rate stays the same. After each N the bench prints to stderr how
//! many records each fsync covered (counted through a wrapping `Io`).
//!
//! Run with `cargo bench --bench group_commit` (under a minute), or
//! `cargo bench --bench group_commit -- --quick`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use annal::{Durability, Log, LogConfig, Record};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use common::{CountingIo, timed_threads};

const WRITERS: [usize; 5] = [1, 2, 4, 8, 16];
const PER_WRITER: u64 = 50;
const VALUE: usize = 100;

/// One round: `writers` threads append `PER_WRITER` records each; returns the
/// time from the first writer leaving the barrier to the last one finishing.
fn round(log: &Log, writers: usize, value: &[u8]) -> Duration {
    timed_threads(writers, |_| {
        let record = Record::new(value);
        for _ in 0..PER_WRITER {
            black_box(log.append(&record).expect("append"));
        }
    })
}

fn group_commit(c: &mut Criterion) {
    let value = vec![0x5Au8; VALUE];
    let mut group = common::flat_group(c, "group_commit", Duration::from_millis(500), Duration::from_secs(3));
    for writers in WRITERS {
        let dir = tempfile::tempdir().expect("tempdir");
        let io = Arc::new(CountingIo::default());
        let config =
            LogConfig::default().with_segment_bytes(64 << 20).with_durability(Durability::Always).with_io(io.clone());
        let log = Log::open(dir.path(), config).expect("open");
        let syncs_before = io.syncs();
        let first = log.next_offset();
        group.throughput(Throughput::Elements(PER_WRITER * writers as u64));
        group.bench_function(format!("writers/{writers}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| round(&log, writers, &value)).sum());
        });
        let records = log.next_offset() - first;
        let syncs = io.syncs() - syncs_before;
        eprintln!(
            "group_commit/writers/{writers}: {records} records, {syncs} fsyncs, {:.2} records per fsync",
            records as f64 / syncs.max(1) as f64
        );
        log.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
