//! Opening a log: a clean reopen after `close`, and recovery after a crash.
//!
//! Logs of 64 MiB and 512 MiB of 1-KiB records in 8 MiB segments (about 10
//! and 70 segments), then a roll and a last segment holding 1 MiB or 7 MiB.
//!
//! - `reopen/clean/<size>_<n>seg`: `Log::open` of a cleanly closed log (last
//!   segment 7 MiB). Reads each segment's header and footer and reopens the
//!   last sealed segment for appending (which removes its footer and fsyncs
//!   it). Expected flat in the log size. The log is closed again (sealed)
//!   after each open, outside the timing.
//! - `reopen/crash/<size>_<n>seg/active<m>`: `Log::open` after
//!   `Log::abandon` (dropped without sealing, as if the process had been
//!   killed; `Durability::Never`, so the last segment has no checkpoint and
//!   is scanned from its start, CRC by CRC). Expected proportional to the
//!   last segment's bytes, not to the log size. Recovery rewrites the last
//!   segment, so every iteration first recreates the crashed directory from
//!   a pristine copy, outside the timing: the sealed segments and their
//!   indexes are hard-linked (recovery only reads them; checked at the end
//!   through their mtimes and lengths), the last segment is copied as a
//!   preallocated file holding the same records (the bytes after them are
//!   unwritten extents, as in the original).
//!
//! Everything is in the page cache (a process crash, not a power loss).
//! The logs are built once per bench, outside the timing (a few seconds).
//!
//! Run with `cargo bench --bench recovery` (about a minute), or
//! `cargo bench --bench recovery -- --quick`.

mod common;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use annal::io::{Io, OsIo};
use annal::segment::{DATA_START, log_file_name};
use annal::{Durability, Log, LogConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use tempfile::TempDir;

use common::{fill, link_dir_except, mtimes, size_name};

const VALUE: usize = 1024;
const SEGMENT: u64 = 8 << 20;
const LOG_SIZES: [u64; 2] = [64 << 20, 512 << 20];
const LOCK_FILE: &str = "annal.lock";

fn config() -> LogConfig {
    LogConfig::default().with_segment_bytes(SEGMENT).with_durability(Durability::Never)
}

/// A log on disk, closed cleanly or abandoned.
struct Built {
    dir: TempDir,
    segments: usize,
    last_base: u64,
    last_data_bytes: u64,
    last_records: u64,
}

/// `data` bytes of values, a roll, then `last` bytes of values in the last
/// segment; then `close` or `abandon`.
fn build(data: u64, last: u64, crash: bool) -> Built {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config()).expect("open");
    fill(&log, VALUE, data, None);
    log.roll().expect("roll");
    let first = log.next_offset();
    fill(&log, VALUE, last, None);
    let segments = log.segments();
    let info = *segments.last().expect("a segment");
    assert!(!info.sealed && info.base_offset == first, "the last segment holds exactly the last records");
    let built = Built {
        segments: segments.len(),
        last_base: info.base_offset,
        last_data_bytes: info.data_bytes,
        last_records: info.next_offset - info.base_offset,
        dir,
    };
    if crash {
        log.abandon();
    } else {
        log.close().expect("close");
    }
    built
}

/// Copies the first `used` bytes of `src` into a new file `dst` preallocated
/// to `src`'s length (as annal preallocates segments).
fn copy_prefix(src: &Path, dst: &Path, used: u64) {
    let from = File::open(src).expect("open source");
    let len = from.metadata().expect("stat").len();
    let to = OpenOptions::new().read(true).write(true).create_new(true).open(dst).expect("create copy");
    OsIo.allocate(&to, len).expect("preallocate");
    let mut buf = vec![0u8; used as usize];
    from.read_exact_at(&mut buf, 0).expect("read");
    to.write_all_at(&buf, 0).expect("write");
}

fn reopen(c: &mut Criterion) {
    let mut group = common::flat_group(c, "reopen", Duration::from_millis(500), Duration::from_secs(1));

    for size in LOG_SIZES {
        let built = build(size, 7 << 20, false);
        let dir = built.dir.path();
        group.bench_function(format!("clean/{}_{}seg", size_name(size as usize), built.segments), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let log = Log::open(dir, config()).expect("open");
                    total += start.elapsed();
                    assert_eq!(log.recovery_report().scanned_segment, None, "a clean reopen scans nothing");
                    log.close().expect("close");
                }
                total
            });
        });
    }

    for size in LOG_SIZES {
        for last in [1u64 << 20, 7 << 20] {
            let built = build(size, last, true);
            let pristine = built.dir.path();
            let active = log_file_name(built.last_base);
            let before = mtimes(pristine);
            let work = tempfile::tempdir().expect("tempdir");
            let mut n = 0u64;
            let name =
                format!("crash/{}_{}seg/active{}", size_name(size as usize), built.segments, size_name(last as usize));
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let dir = work.path().join(n.to_string());
                        link_dir_except(pristine, &dir, &[&active, LOCK_FILE]);
                        copy_prefix(
                            &pristine.join(&active),
                            &dir.join(&active),
                            DATA_START as u64 + built.last_data_bytes,
                        );

                        let start = Instant::now();
                        let log = Log::open(&dir, config()).expect("open");
                        total += start.elapsed();

                        let report = log.recovery_report();
                        assert_eq!(report.scanned_segment, Some(built.last_base));
                        assert_eq!(report.records_scanned, built.last_records);
                        assert_eq!(report.truncated_bytes, 0);
                        log.abandon();
                        fs::remove_dir_all(&dir).expect("remove");
                    }
                    total
                });
            });
            assert_eq!(mtimes(pristine), before, "recovery wrote to a hard-linked file");
        }
    }
    group.finish();
}

criterion_group!(benches, reopen);
criterion_main!(benches);
