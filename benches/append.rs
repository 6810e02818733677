//! Append throughput by record size, batch size and durability.
//!
//! Bench ids are `append/<durability>/<single|batch100>/<value size>`:
//! value sizes 16 B, 100 B, 1 KiB and 16 KiB; one record per `append` call or
//! 100 per `append_batch`; durability `never` (no fsync), `interval` (a
//! background fsync every 100 ms) and `always` (an fsync per call, ~2 ms on
//! the reference VM, so those runs append far fewer records). Throughput is in
//! records (elements); the value size is in the name.
//!
//! Every iteration appends into a freshly opened log (256 MiB segment,
//! preallocated by `Log::open`); only the appends are timed: opening the log,
//! building the records and dropping the log (`abandon`, then removing the
//! directory) are not.
//!
//! Run with `cargo bench --bench append` (about 2 minutes), or
//! `cargo bench --bench append -- --quick`; filter with e.g.
//! `cargo bench --bench append -- append/never`.

mod common;

use std::time::Duration;

use annal::Durability;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use common::{size_name, timed_appends};

const SIZES: [usize; 4] = [16, 100, 1024, 16 << 10];

/// Records appended per iteration: up to 100,000, and about 64 MiB of values
/// at most (so 16-KiB records stay within a 256 MiB segment); a multiple of
/// 100. Under `Always` every call is an fsync: 50 calls single, 10 batched.
fn records_per_iter(durability: Durability, size: usize, batch: usize) -> u64 {
    match durability {
        Durability::Always => {
            if batch == 1 {
                50
            } else {
                1_000
            }
        }
        _ => ((64u64 << 20) / size as u64).min(100_000) / 100 * 100,
    }
}

fn append(c: &mut Criterion) {
    let durabilities = [
        ("never", Durability::Never),
        ("interval", Durability::Interval(Duration::from_millis(100))),
        ("always", Durability::Always),
    ];
    let mut group = common::flat_group(c, "append", Duration::from_millis(500), Duration::from_secs(2));
    for (dname, durability) in durabilities {
        for size in SIZES {
            let value = vec![0x5Au8; size];
            for (bname, batch) in [("single", 1usize), ("batch100", 100)] {
                let records = records_per_iter(durability, size, batch);
                group.throughput(Throughput::Elements(records));
                group.bench_function(format!("{dname}/{bname}/{}", size_name(size)), |b| {
                    b.iter_custom(|iters| timed_appends(iters, durability, &value, batch, records));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
