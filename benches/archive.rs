//! Scan rate of archived segments read back from a local-directory archive
//! store: a log of 64 MiB segments is fully archived, then read from offset 0
//! with a cold cache (every segment fetched in 4 MiB ranged reads, CRC-checked,
//! its index rebuilt) and again with a warm cache.
//!
//! `cargo bench --bench archive` prints MB/s and records/s for both passes.

use std::sync::Arc;
use std::time::Instant;

use annal::ArchivePolicy;
use annal::archive::{ArchiveStore, LocalDirArchive};
use annal::{Durability, Log, LogConfig, Record};

const RECORDS: u64 = 400_000;
const VALUE: usize = 1_000;

fn scan(log: &Log) -> (u64, u64) {
    let mut reader = log.read_from(0).unwrap();
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(r) = reader.next_record().unwrap() {
        n += 1;
        bytes += r.value().map_or(0, <[u8]>::len) as u64;
    }
    (n, bytes)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tempfile::tempdir().unwrap();
    let store: Arc<dyn ArchiveStore> = Arc::new(LocalDirArchive::open(arch.path()).unwrap());
    let config = LogConfig::default()
        .with_segment_bytes(64 << 20)
        .with_durability(Durability::Never)
        .with_archive(Arc::clone(&store), "bench/0")
        .with_archive_cache_bytes(2 << 30);
    let log = Log::open(dir.path(), config.clone()).unwrap();
    let value = vec![0x5a; VALUE];
    for _ in 0..RECORDS / 1_000 {
        let batch: Vec<Record<'_>> = (0..1_000).map(|_| Record::new(&value)).collect();
        log.append_batch(&batch).unwrap();
    }
    log.roll().unwrap();
    let t = Instant::now();
    let out = log.archive_at(&ArchivePolicy::everything_sealed(), 0).unwrap();
    let archive_secs = t.elapsed().as_secs_f64();
    log.close().unwrap();
    println!(
        "archived {} segments, {:.0} MB in {:.2} s ({:.0} MB/s upload + verify)",
        out.segments_archived,
        out.bytes_archived as f64 / 1e6,
        archive_secs,
        out.bytes_archived as f64 / 1e6 / archive_secs
    );

    let log = Log::open(dir.path(), config).unwrap();
    for pass in ["cold cache", "warm cache"] {
        let t = Instant::now();
        let (n, bytes) = scan(&log);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(n, RECORDS);
        println!(
            "scan of archived segments, {pass}: {n} records, {:.0} MB of values in {secs:.2} s: {:.0} MB/s, {:.2} M records/s",
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs,
            n as f64 / 1e6 / secs
        );
    }
}
