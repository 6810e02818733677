//! Deterministic crash simulation with simulated power loss.
//!
//! Each seed defines a workload: a sequence of appends (single and batched),
//! syncs, rolls, close-and-reopen, process restarts (abandon and reopen) and
//! reads, on a log with small segments, under `Durability::Always` or
//! `Durability::Never`. The workload runs once against a [`PowerLossIo`] to
//! count its persistence calls (N); then, for each crash point k (every k in
//! 1..=N+1 for short workloads, a seeded sample for long ones), it runs again
//! with call k and every later one failing (the process dies there; k = N+1:
//! after the last operation), and the directory is rewritten to a few possible
//! states after a power loss (or a mere process crash). The log is then reopened
//! with the real file system and must hold:
//!
//! - a prefix of what was appended: offsets dense from 0, each record equal to
//!   the one appended at its offset, none beyond what was appended;
//! - every durably acknowledged record (an `Ok` append under `Always`, or any
//!   append before an `Ok` `sync`, `roll` or `close`, or in a sealed segment);
//! - after a mere process crash, every acknowledged record;
//! - the same records through a read-only open, and the right record at
//!   random offsets and timestamps (through the sparse indexes);
//! - and it must accept appends, close, and reopen with everything in place.
//!
//! About a third of the outcomes are also crashed a second time, during the
//! recovery from the first crash (or the appends right after it), and lose
//! power again: a recovery that dies half-way must not lose what the first
//! crash left on disk either.
//!
//! Not covered here: `Durability::Interval` (its flusher thread makes the call
//! order, and so the crash points, nondeterministic; `tests/crash.rs` kills
//! processes under it), a process that dies between two writes into the map
//! rather than at a persistence call (also `tests/crash.rs`), and damage to
//! data that was synced (`tests/corruption.rs`, `tests/recovery.rs`).
//!
//! A failure prints its seed and crash point. Replay one with
//! `ANNAL_SIM_SEED=<seed> [ANNAL_SIM_CRASH_AT=<k>] cargo test --release --test crash_sim -- --nocapture`
//! (`ANNAL_SIM_TRACE=1` also prints the persistence calls of the case).
//! `ANNAL_SIM_SEEDS=<n>` runs n seeds per family instead of the default,
//! `ANNAL_SIM_VARIANTS=<v>` tries v power-loss outcomes per crash point.
//! Directories live in `/dev/shm` when it exists (`ANNAL_SIM_TMPDIR` picks
//! another place): the checks reopen logs with the real file system, whose
//! fsyncs on a disk would dominate the run time.

#[path = "common/powerloss.rs"]
mod powerloss;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annal::{Durability, Error, Header, Log, LogConfig, OwnedRecord, Record};
use powerloss::{LossMode, PowerLossIo, SplitMix};

/// Seeds below this are short workloads, crashed at every call; seeds from it
/// on are long workloads, crashed at sampled calls.
const LONG_SEEDS_FROM: u64 = 1000;
/// Default number of short workloads.
const SHORT_SEEDS: u64 = 20;
/// Default number of long workloads.
const LONG_SEEDS: u64 = 6;
/// Crash points sampled per long workload.
const LONG_SAMPLES: usize = 40;
/// Power-loss outcomes tried per crash point.
const VARIANTS: usize = 2;
/// Failures reported in full before the test gives up on a family.
const MAX_REPORTED: usize = 8;

/// A temporary directory, in memory (`/dev/shm`) when there is one: the
/// simulation needs no real fsync, and the checks after a crash run with the
/// real file system, whose fsyncs would otherwise dominate the run time.
/// `ANNAL_SIM_TMPDIR` picks another place.
fn sim_tempdir() -> tempfile::TempDir {
    let base = std::env::var_os("ANNAL_SIM_TMPDIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    match base {
        Some(b) => tempfile::Builder::new()
            .prefix("annal-crash-sim")
            .tempdir_in(&b)
            .unwrap_or_else(|_| tempfile::tempdir().expect("tempdir")),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

// ---------------------------------------------------------------------------
// Records: their contents are a function of (content seed, offset), so any
// record read back can be checked, and a record that was never appended (or
// was appended at that offset by an earlier life of the log) cannot pass.
// ---------------------------------------------------------------------------

fn expected(seed: u64, offset: u64) -> OwnedRecord {
    let mut r = SplitMix::new(seed.wrapping_mul(0xA076_1D64_78BD_642F) ^ offset.wrapping_mul(0xE703_7ED1_A0B4_28DB));
    let len = r.below(2000) as usize;
    let key = r.chance(70).then(|| format!("key-{seed}-{offset}-{}", r.below(1000)).into_bytes());
    let tombstone = key.is_some() && r.chance(5);
    let mut headers = Vec::new();
    if r.chance(20) {
        for i in 0..1 + r.below(2) {
            let hl = r.below(40) as usize;
            headers.push((format!("h{i}"), (0..hl).map(|_| r.next_u64() as u8).collect()));
        }
    }
    let value = (!tombstone).then(|| (0..len).map(|_| r.next_u64() as u8).collect());
    // Timestamps mostly increase, with some jitter backwards.
    let timestamp = 1_700_000_000_000 + offset as i64 * 10 - r.below(25) as i64;
    OwnedRecord { offset, timestamp, key, value, headers }
}

/// An upper bound of the size a record of [`expected`] takes in a batch: a
/// value under 2000 bytes, a key under 40, two headers under 50 each, and
/// the entry's 24-byte header.
const MAX_RECORD: u64 = 2000 + 40 + 2 * 50 + 24;

/// Content seed of the records appended after recovery (stage 2 and checks).
const AFTER_CRASH: u64 = 0xAF7E_5C4A_5600_0001;
const AFTER_RECOVERY: u64 = 0xAF7E_5EC0_7E20_0002;

/// Which content seed wrote which offsets: `(first offset, seed)`, in order.
/// A recovery that cut the log at `n` and appended again with another seed
/// starts a new era at `n`.
#[derive(Debug, Clone)]
struct Eras(Vec<(u64, u64)>);

impl Eras {
    fn new(seed: u64) -> Eras {
        Eras(vec![(0, seed)])
    }

    fn seed_at(&self, offset: u64) -> u64 {
        self.0.iter().rev().find(|(first, _)| *first <= offset).expect("an era from offset 0").1
    }

    /// These eras up to `first`, then `seed` from `first` on.
    fn then(&self, first: u64, seed: u64) -> Eras {
        let mut v: Vec<_> = self.0.iter().copied().filter(|(f, _)| *f < first).collect();
        v.push((first, seed));
        Eras(v)
    }
}

/// Appends `n` records starting at `start` as one batch, or one `append` if `single`.
fn append_expected(log: &Log, seed: u64, start: u64, n: u64, single: bool) -> annal::Result<std::ops::Range<u64>> {
    let owned: Vec<OwnedRecord> = (start..start + n).map(|o| expected(seed, o)).collect();
    let headers: Vec<Vec<Header<'_>>> =
        owned.iter().map(|o| o.headers.iter().map(|(n, v)| Header { name: n, value: v }).collect()).collect();
    let records: Vec<Record<'_>> = owned
        .iter()
        .zip(&headers)
        .map(|(o, h)| {
            let mut r = match (&o.value, &o.key) {
                (Some(v), _) => Record::new(v),
                (None, Some(k)) => Record::tombstone(k),
                (None, None) => unreachable!("a tombstone has a key"),
            };
            if let Some(k) = &o.key {
                r = r.with_key(k);
            }
            r.with_timestamp(o.timestamp).with_headers(h)
        })
        .collect();
    if single {
        assert_eq!(records.len(), 1);
        log.append(&records[0]).map(|o| o..o + 1)
    } else {
        log.append_batch(&records)
    }
}

/// Checks that `records` are the records at offsets `from..` that `eras` wrote.
fn check_records(eras: &Eras, from: u64, records: &[OwnedRecord]) -> Result<(), String> {
    for (i, r) in records.iter().enumerate() {
        let offset = from + i as u64;
        if r.offset != offset {
            return Err(format!("record #{i} carries offset {}, expected {offset} (offsets not dense)", r.offset));
        }
        let want = expected(eras.seed_at(offset), offset);
        if *r != want {
            let describe = |r: &OwnedRecord| {
                format!(
                    "key {:?}, value of {:?} bytes, timestamp {}, {} headers",
                    r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                    r.value.as_ref().map(Vec::len),
                    r.timestamp,
                    r.headers.len()
                )
            };
            return Err(format!(
                "the record at offset {offset} is not the one appended there: got {}, want {}",
                describe(r),
                describe(&want)
            ));
        }
    }
    Ok(())
}

fn read_all(log: &Log) -> Result<Vec<OwnedRecord>, String> {
    let reader = log.read_from(log.start_offset()).map_err(|e| format!("read_from(start): {e}"))?;
    reader.collect::<annal::Result<Vec<_>>>().map_err(|e| format!("reading the log: {e}"))
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Append,
    Batch(u64),
    /// A batch too large for one segment: refused with `BatchTooLarge`,
    /// nothing written.
    Oversized,
    Sync,
    Roll,
    CloseReopen,
    /// `abandon()` and reopen: a process crash in the middle of the workload.
    Restart,
    /// Read a few records from a (pseudo-random) acknowledged offset.
    Read(u64),
}

#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    durability: Durability,
    segment_bytes: u64,
    ops: Vec<Op>,
}

impl Plan {
    fn new(seed: u64) -> Plan {
        let long = seed >= LONG_SEEDS_FROM;
        let mut rng = SplitMix::new(seed ^ 0x5EED_0FC4_A5A5);
        // Durability alternates with the seed, so both are always covered.
        let durability = if seed % 2 == 1 { Durability::Always } else { Durability::Never };
        let segment_bytes = [8 << 10, 16 << 10, 32 << 10][rng.below(3) as usize];
        let n_ops = if long { 100 + rng.below(80) } else { 12 + rng.below(10) };
        // A batch is stored whole in one segment: as many records as always
        // fit (`expected` makes records of at most MAX_RECORD bytes).
        let fits = (segment_bytes - 192 - 32) / MAX_RECORD;
        let max_batch = (if long { 20 } else { 8 }).min(fits);
        let mut ops: Vec<Op> = (0..n_ops)
            .map(|_| match rng.below(100) {
                0..33 => Op::Append,
                33..35 => Op::Oversized,
                35..55 => Op::Batch(1 + rng.below(max_batch)),
                55..65 => Op::Sync,
                65..72 => Op::Roll,
                72..77 => Op::CloseReopen,
                77..82 => Op::Restart,
                _ => Op::Read(rng.next_u64()),
            })
            .collect();
        if !long {
            // Every short workload closes and reopens, restarts, rolls and
            // syncs at least once, somewhere after its first few appends.
            for op in [Op::CloseReopen, Op::Restart, Op::Roll, Op::Sync] {
                if !ops.contains(&op) {
                    let at = 2 + rng.below(ops.len() as u64 - 1) as usize;
                    ops.insert(at.min(ops.len()), op);
                }
            }
            // Half of them close right after a roll: the empty active segment
            // is removed on close.
            if rng.chance(50) {
                let at = (2 + rng.below(ops.len() as u64 - 1) as usize).min(ops.len());
                ops.splice(at..at, [Op::Roll, Op::CloseReopen]);
            }
        }
        Plan { seed, durability, segment_bytes, ops }
    }

    fn config(&self) -> LogConfig {
        LogConfig::default()
            .with_segment_bytes(self.segment_bytes)
            .with_index_interval_bytes(256)
            .with_durability(self.durability)
    }
}

/// What recovery must find.
#[derive(Debug, Clone, Default)]
struct Expect {
    /// Records handed to the log: nothing at or beyond this offset may appear.
    attempted: u64,
    /// Records acknowledged before the process died: a process crash (page
    /// cache kept) must keep all of them.
    acked: u64,
    /// Durably acknowledged records: a power loss must keep all of them.
    durable: u64,
    /// Whether the page cache can hold no torn write: true unless the files
    /// the process started from had a torn tail that it did not get to cut.
    untorn_cache: bool,
    /// The highest durable watermark the log reported (`durable_offset()`)
    /// before it died: a power loss must keep everything below it.
    watermark: u64,
    /// Where the batches handed to the log end (every append is a batch; the
    /// first batch starts at 0): recovery must end the log at one of these,
    /// never inside a batch.
    batch_ends: std::collections::BTreeSet<u64>,
}

impl Expect {
    /// Records that the next batch of `n` is handed to the log.
    fn attempt(&mut self, n: u64) {
        self.batch_ends.insert(self.attempted);
        self.attempted += n;
        self.batch_ends.insert(self.attempted);
    }
}

/// What a workload did before the process died.
#[derive(Debug, Default)]
struct Outcome {
    expect: Expect,
    /// The operation during which the process died.
    died_in: Option<String>,
    /// Operations that returned `Ok` although a persistence call failed in them.
    swallowed: Vec<String>,
    /// Wrong results seen while the workload ran.
    problems: Vec<String>,
}

/// Runs `plan` in `dir` through `io` until the end or until the process dies,
/// then abandons the log.
fn run_workload(plan: &Plan, dir: &Path, io: &Arc<PowerLossIo>) -> Outcome {
    let cfg = plan.config().with_io(Arc::clone(io) as Arc<dyn annal::io::Io>);
    let eras = Eras::new(plan.seed);
    let mut out = Outcome::default();
    out.expect.untorn_cache = true;
    out.expect.batch_ends.insert(0);
    let mut log = match Log::open(dir, cfg.clone()) {
        Ok(l) => Some(l),
        Err(e) => {
            if io.crashed() {
                out.died_in = Some(format!("the first open: {e}"));
            } else {
                out.problems.push(format!("the first open failed without an injected fault: {e}"));
            }
            return out;
        }
    };
    let seed = plan.seed;
    for (i, &op) in plan.ops.iter().enumerate() {
        let ex = &mut out.expect;
        let l = log.as_ref().expect("a log while the process lives");
        let result: annal::Result<()> = match op {
            Op::Append | Op::Batch(_) => {
                let (n, single) = if let Op::Batch(n) = op { (n, false) } else { (1, true) };
                let start = ex.attempted;
                ex.attempt(n);
                append_expected(l, seed, start, n, single).map(|range| {
                    if range != (start..start + n) {
                        out.problems
                            .push(format!("op {i} {op:?}: appended at {range:?}, expected {start}..{}", start + n));
                    }
                    if !io.crashed() {
                        ex.acked = ex.attempted;
                    }
                    if plan.durability == Durability::Always {
                        ex.durable = ex.attempted;
                    }
                })
            }
            Op::Oversized => {
                // Records that each fit, together larger than a segment.
                let value = vec![7u8; (plan.segment_bytes / 3) as usize];
                let records = [Record::new(&value), Record::new(&value), Record::new(&value)];
                match l.append_batch(&records) {
                    Err(Error::BatchTooLarge { .. }) => Ok(()),
                    Err(e) => Err(e),
                    Ok(range) => {
                        out.problems.push(format!("op {i}: a batch larger than a segment was stored at {range:?}"));
                        Ok(())
                    }
                }
            }
            Op::Sync => l.sync().map(|()| ex.durable = ex.attempted),
            Op::Roll => l.roll().map(|()| ex.durable = ex.attempted),
            Op::Read(r) if ex.acked > 0 => {
                let from = r % ex.acked;
                let want = (ex.attempted - from).min(5);
                l.read_from(from).and_then(|reader| reader.take(5).collect::<annal::Result<Vec<_>>>()).map(|recs| {
                    if let Err(e) = check_records(&eras, from, &recs) {
                        out.problems.push(format!("op {i} read from {from}: {e}"));
                    } else if recs.len() as u64 != want {
                        out.problems.push(format!("op {i} read from {from}: {} records, expected {want}", recs.len()));
                    }
                })
            }
            Op::Read(_) => Ok(()),
            Op::CloseReopen | Op::Restart => {
                let l = log.take().expect("a log");
                let closed = if op == Op::CloseReopen {
                    l.close().map(|()| ex.durable = ex.attempted)
                } else {
                    l.abandon();
                    Ok(())
                };
                closed.and_then(|()| {
                    if io.crashed() {
                        // The process died while closing: no reopen.
                        return Ok(());
                    }
                    let reopened = Log::open(dir, cfg.clone())?;
                    if !io.crashed() && reopened.next_offset() != ex.attempted {
                        out.problems.push(format!(
                            "op {i} {op:?}: reopened at next offset {}, but {} records were appended (the page cache kept them)",
                            reopened.next_offset(),
                            ex.attempted
                        ));
                    }
                    log = Some(reopened);
                    Ok(())
                })
            }
        };
        // Records in sealed segments are durable: sealing fsyncs them.
        if let Some(l) = &log
            && let Some(s) = l.segments().iter().rev().find(|s| s.sealed)
        {
            out.expect.durable = out.expect.durable.max(s.next_offset);
        }
        if let Some(l) = &log {
            out.expect.watermark = out.expect.watermark.max(l.durable_offset());
        }
        if io.crashed() {
            out.died_in = Some(format!("op {i} {op:?} -> {result:?}"));
            if result.is_ok() {
                out.swallowed.push(format!("op {i} {op:?}"));
            }
            break;
        }
        if let Err(e) = result {
            out.problems.push(format!("op {i} {op:?} failed without an injected fault: {e}"));
            break;
        }
        if !out.problems.is_empty() {
            break;
        }
    }
    if let Some(l) = log.take() {
        l.abandon();
    }
    out
}

/// Stage 2: a second crash, during the recovery from the first one. Opens
/// the log in `dir` (a post-crash state, all of it durable now) with call
/// `crash_at` failing, appends three records and syncs, and abandons it.
/// `n1` is what a clean recovery of `dir` finds. Returns what must hold after
/// a power loss of this second life, and its eras.
fn recovery_crash(plan: &Plan, dir: &Path, io: &Arc<PowerLossIo>, eras: &Eras, n1: u64) -> (Outcome, Eras) {
    let cfg = plan.config().with_io(Arc::clone(io) as Arc<dyn annal::io::Io>);
    let seed = plan.seed ^ AFTER_CRASH;
    // Everything a clean recovery finds is on disk, durable: a recovery that
    // crashes must not lose it either. The torn tail of the first crash, if
    // any, is there until recovery cuts it.
    let mut out = Outcome {
        expect: Expect {
            attempted: n1,
            acked: n1,
            durable: n1,
            watermark: n1,
            untorn_cache: false,
            batch_ends: [n1].into_iter().collect(),
        },
        ..Outcome::default()
    };
    let log = match Log::open(dir, cfg) {
        Ok(l) => l,
        Err(e) => {
            out.died_in = Some(format!("recovery: {e}"));
            if !io.crashed() {
                out.problems.push(format!("recovery failed without an injected fault: {e}"));
            }
            return (out, eras.clone());
        }
    };
    let b = log.next_offset();
    if b != n1 {
        out.problems.push(format!("a second recovery of the same files found {b} records, the first {n1}"));
    }
    let eras = eras.then(b, seed);
    let ex = &mut out.expect;
    ex.untorn_cache = true;
    let steps: [(&str, &dyn Fn() -> annal::Result<()>); 3] = [
        ("append_batch", &|| append_expected(&log, seed, b, 2, false).map(drop)),
        ("append", &|| append_expected(&log, seed, b + 2, 1, true).map(drop)),
        ("sync", &|| log.sync()),
    ];
    if io.crashed() {
        out.swallowed.push("recovery".into());
    }
    // Records handed to the log once each step has started.
    let upto = [b + 2, b + 3, b + 3];
    for (i, (what, step)) in steps.iter().enumerate() {
        ex.attempted = upto[i];
        ex.batch_ends.insert(upto[i]);
        let result = step();
        if result.is_ok() {
            let upto = upto[i];
            if !io.crashed() {
                ex.acked = upto;
            }
            if plan.durability == Durability::Always || i == 2 {
                ex.durable = upto;
            }
            ex.watermark = ex.watermark.max(log.durable_offset());
        }
        if io.crashed() {
            out.died_in = Some(format!("{what} after recovery -> {result:?}"));
            break;
        }
        if let Err(e) = result {
            out.problems.push(format!("{what} after recovery failed without an injected fault: {e}"));
            break;
        }
    }
    log.abandon();
    (out, eras)
}

// ---------------------------------------------------------------------------
// Checks after the crash
// ---------------------------------------------------------------------------

/// Opens the log in `dir` (real file system) after a crash and checks it
/// against `ex` and `eras`. Returns the number of records recovered and the
/// bytes of torn tail recovery cut.
fn check_recovered(plan: &Plan, ex: &Expect, eras: &Eras, dir: &Path, mode: LossMode) -> Result<(u64, u64), String> {
    let cfg = plan.config();

    // A read-only open first: it must change nothing and agree with the writer.
    let has_segments = std::fs::read_dir(dir)
        .map_err(|e| format!("list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_str().is_some_and(|n| annal::segment::parse_log_file_name(n).is_some()));
    let read_only = match Log::open_read_only(dir, cfg.clone()) {
        Ok(l) => {
            let recs = read_all(&l).map_err(|e| format!("read-only open: {e}"))?;
            let report = l.recovery_report().clone();
            drop(l);
            Some((recs, report))
        }
        Err(Error::NotALog { .. }) if !has_segments => None,
        Err(e) => return Err(format!("the read-only open failed: {e}")),
    };

    let log = Log::open(dir, cfg.clone()).map_err(|e| format!("the log does not open after the crash: {e}"))?;
    let cut = log.recovery_report().truncated_bytes;
    let recs = read_all(&log)?;
    let n = recs.len() as u64;
    if log.start_offset() != 0 {
        return Err(format!("the log starts at offset {}, not 0", log.start_offset()));
    }
    if log.next_offset() != n {
        return Err(format!("next_offset() is {} but {n} records can be read", log.next_offset()));
    }
    check_records(eras, 0, &recs)?;
    if n > ex.attempted {
        return Err(format!("{n} records recovered, but only {} were appended", ex.attempted));
    }
    if !ex.batch_ends.contains(&n) {
        let before = ex.batch_ends.range(..n).next_back().copied().unwrap_or(0);
        let after = ex.batch_ends.range(n..).next().copied().unwrap_or(n);
        return Err(format!("{n} records recovered: a part of the batch {before}..{after} (batches are atomic)"));
    }
    if n < ex.durable {
        return Err(format!(
            "{n} records recovered, but {} were durably acknowledged (records {n}..{} lost)",
            ex.durable, ex.durable
        ));
    }
    if n < ex.watermark {
        return Err(format!(
            "{n} records recovered, but the log reported a durable watermark of {} before the crash",
            ex.watermark
        ));
    }
    if mode == LossMode::ProcessCrash {
        if n < ex.acked {
            return Err(format!(
                "process crash (page cache kept): {n} records recovered, but {} were acknowledged",
                ex.acked
            ));
        }
        if cut != 0 && ex.untorn_cache {
            return Err(format!("process crash (page cache kept): recovery cut {cut} bytes of torn tail"));
        }
    }
    // Random access goes through the sparse indexes (loaded from index files
    // that the power loss may have reverted, or rebuilt): every lookup must
    // land on the right record.
    let mut rng = SplitMix::new(plan.seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    for _ in 0..if n == 0 { 0 } else { 12 } {
        let o = rng.below(n);
        let got = log.get(o).map_err(|e| format!("get({o}) after recovery: {e}"))?;
        if got != recs[o as usize] {
            return Err(format!("get({o}) after recovery returned the record at offset {}", got.offset));
        }
    }
    for _ in 0..if n == 0 { 1 } else { 6 } {
        let t = if n == 0 { 0 } else { recs[rng.below(n) as usize].timestamp + rng.below(30) as i64 - 15 };
        let want = recs.iter().find(|r| r.timestamp >= t).map(|r| r.offset);
        let got = log.offset_for_timestamp(t).map_err(|e| format!("offset_for_timestamp({t}) after recovery: {e}"))?;
        if got != want {
            return Err(format!("offset_for_timestamp({t}) after recovery is {got:?}, expected {want:?}"));
        }
    }
    if let Some((ro, report)) = &read_only {
        if *ro != recs {
            return Err(format!(
                "a read-only open sees {} records, the writable open {n} (report {report:?}, writable {:?})",
                ro.len(),
                log.recovery_report()
            ));
        }
        if report.truncated_bytes != cut {
            return Err(format!(
                "a read-only open would cut {} bytes, the writable open cut {cut}",
                report.truncated_bytes
            ));
        }
    }

    // The recovered log must take appends and keep them across a close.
    let seed = plan.seed ^ AFTER_RECOVERY;
    let eras = eras.then(n, seed);
    let range = append_expected(&log, seed, n, 2, false).map_err(|e| format!("append after recovery: {e}"))?;
    if range != (n..n + 2) {
        return Err(format!("a batch appended after recovery got offsets {range:?}, expected {}..{}", n, n + 2));
    }
    let o = append_expected(&log, seed, n + 2, 1, true).map_err(|e| format!("append after recovery: {e}"))?;
    if o != (n + 2..n + 3) {
        return Err(format!("a record appended after recovery got offset {}, expected {}", o.start, n + 2));
    }
    log.close().map_err(|e| format!("close after recovery: {e}"))?;
    let log = Log::open(dir, cfg).map_err(|e| format!("reopen after recovery and close: {e}"))?;
    let again = read_all(&log).map_err(|e| format!("after recovery, append, close and reopen: {e}"))?;
    check_records(&eras, 0, &again).map_err(|e| format!("after recovery, append, close and reopen: {e}"))?;
    if again.len() as u64 != n + 3 {
        return Err(format!("after recovery, append, close and reopen: {} records, expected {}", again.len(), n + 3));
    }
    if log.recovery_report().truncated_bytes != 0 || log.recovery_report().scanned_segment.is_some() {
        return Err(format!("a cleanly closed log was recovered like a crashed one: {:?}", log.recovery_report()));
    }
    log.close().map_err(|e| format!("final close: {e}"))?;
    Ok((n, cut))
}

fn pick_mode(rng: &mut SplitMix) -> LossMode {
    match rng.below(100) {
        0..15 => LossMode::ProcessCrash,
        15..30 => LossMode::Clean,
        p => LossMode::Random { keep_percent: [10, 50, 90][rng.below(3) as usize], torn: p >= 65 },
    }
}

// ---------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Stats {
    workloads: u64,
    crash_points: u64,
    variants: u64,
    process_crash: u64,
    clean: u64,
    random: u64,
    torn: u64,
    /// Variants followed by a second crash during recovery.
    recovery_crashes: u64,
    records_recovered: u64,
    records_durable: u64,
    /// Variants that lost acknowledged but not durable records.
    lost_undurable: u64,
    /// Variants whose recovery cut a torn tail.
    torn_tails: u64,
    /// Variants that lost a batch of several records, whole (the next batch
    /// after the recovered end holds more than one record).
    batches_lost_whole: u64,
    /// Variants in which the power loss changed something.
    changed: u64,
    swallowed: u64,
    failures: Vec<String>,
}

impl Stats {
    fn count_mode(&mut self, mode: LossMode) {
        self.variants += 1;
        match mode {
            LossMode::ProcessCrash => self.process_crash += 1,
            LossMode::Clean => self.clean += 1,
            LossMode::Random { torn, .. } => {
                self.random += 1;
                self.torn += u64::from(torn);
            }
        }
    }
}

/// Runs one crash point of `plan` and checks `variants` outcomes of it.
fn run_case(plan: &Plan, crash_at: u64, variants: usize, stats: &mut Stats) {
    let seed = plan.seed;
    let tmp = sim_tempdir();
    let dir = tmp.path().join("log");
    let io = Arc::new(PowerLossIo::new(&dir, Some(crash_at)));
    let out = run_workload(plan, &dir, &io);
    let trace = std::env::var_os("ANNAL_SIM_TRACE").is_some();
    if trace {
        eprintln!("seed {seed} crash_at {crash_at}: {out:?}\n  {}", io.trace().join("\n  "));
    }
    stats.crash_points += 1;
    stats.swallowed += out.swallowed.len() as u64;
    let call = io.describe_call(crash_at).unwrap_or_else(|| "none: after the workload".into());
    let context = format!(
        "crash_sim FAILURE: seed {seed} ({:?}, {} B segments) crash_at {crash_at} (call: {call}; died in: {})",
        plan.durability,
        plan.segment_bytes,
        out.died_in.as_deref().unwrap_or("-")
    );
    let replay = format!(
        "replay: ANNAL_SIM_SEED={seed} ANNAL_SIM_CRASH_AT={crash_at} cargo test --release --test crash_sim -- --nocapture"
    );
    let swallowed = if out.swallowed.is_empty() {
        String::new()
    } else {
        format!("; returned Ok despite a failed call: {:?}", out.swallowed)
    };
    if !out.problems.is_empty() {
        stats.failures.push(format!("{context}: {}\n    {replay}", out.problems.join("; ")));
        return;
    }
    let eras = Eras::new(seed);
    for v in 0..variants {
        let mut rng =
            SplitMix::new(seed.wrapping_mul(0x1000_0000_01B3) ^ crash_at.wrapping_mul(0xFF51_AFD7) ^ v as u64);
        let mode = pick_mode(&mut rng);
        stats.count_mode(mode);
        let second = rng.chance(30);
        let target = tmp.path().join(format!("after-{v}"));
        let fail = |stats: &mut Stats, stage: &str, e: String, ex: &Expect, report: &powerloss::LossReport| {
            stats.failures.push(format!(
                "{context} variant {v} ({mode}){stage}: {e}\n    appended {}, acknowledged {}, durable {}{swallowed}\n    power loss: {report}\n    {replay}",
                ex.attempted, ex.acked, ex.durable
            ));
        };
        // The same outcome twice: one copy to check, one for a second crash.
        let mut rng2 = rng.clone();
        let report = io.power_loss_into(&target, mode, &mut rng);
        let n1 = match check_recovered(plan, &out.expect, &eras, &target, mode) {
            Ok((n, cut)) => {
                stats.records_recovered += n;
                stats.records_durable += out.expect.durable;
                stats.lost_undurable += u64::from(n < out.expect.acked);
                stats.torn_tails += u64::from(cut > 0);
                stats.changed += u64::from(!report.lines.is_empty());
                let next_end = out.expect.batch_ends.range(n + 1..).next().copied().unwrap_or(n);
                stats.batches_lost_whole += u64::from(next_end > n + 1);
                n
            }
            Err(e) => {
                fail(stats, "", e, &out.expect, &report);
                return;
            }
        };
        if !second {
            continue;
        }
        // Stage 2: crash again while recovering from this outcome, lose power again.
        stats.recovery_crashes += 1;
        let dir2 = tmp.path().join(format!("again-{v}"));
        io.power_loss_into(&dir2, mode, &mut rng2);
        let k2 = 1 + rng.below(10);
        let io2 = Arc::new(PowerLossIo::new(&dir2, Some(k2)));
        let (out2, eras2) = recovery_crash(plan, &dir2, &io2, &eras, n1);
        stats.swallowed += out2.swallowed.len() as u64;
        if trace {
            eprintln!("  variant {v} stage 2 crash_at {k2}: {out2:?}\n    {}", io2.trace().join("\n    "));
        }
        let stage = format!(
            ", then a crash during recovery at its call {k2} ({}; died in: {})",
            io2.describe_call(k2).unwrap_or_else(|| "none".into()),
            out2.died_in.as_deref().unwrap_or("-")
        );
        if !out2.problems.is_empty() {
            fail(stats, &stage, out2.problems.join("; "), &out2.expect, &report);
            return;
        }
        let mode2 = pick_mode(&mut rng);
        stats.count_mode(mode2);
        let target2 = tmp.path().join(format!("after-{v}-2"));
        let report2 = io2.power_loss_into(&target2, mode2, &mut rng);
        if let Err(e) = check_recovered(plan, &out2.expect, &eras2, &target2, mode2) {
            fail(stats, &format!("{stage}, then a {mode2}"), e, &out2.expect, &report2);
            return;
        }
    }
}

/// The least a default run of a sweep must see, so that a simulator that
/// stops firing (no crash point reached, no power loss that changes
/// anything) fails instead of passing: about half of what a run sees.
#[derive(Debug)]
struct Minimums {
    crash_points: u64,
    changed: u64,
    lost_undurable: u64,
    torn_tails: u64,
    batches_lost_whole: u64,
    recovery_crashes: u64,
}

/// Runs `seeds`: counts each workload's calls, then crashes it at every call
/// (`samples: None`) or at `samples` seeded calls (plus the end). Unless
/// the seeds, crash point or variants were chosen by environment variables,
/// the counts must reach `min`.
fn sweep(family: &str, seeds: impl Iterator<Item = u64>, samples: Option<usize>, min: &Minimums) {
    let started = Instant::now();
    let only_k = env_u64("ANNAL_SIM_CRASH_AT");
    let variants = env_u64("ANNAL_SIM_VARIANTS").map_or(VARIANTS, |v| v as usize);
    let mut stats = Stats::default();
    for seed in seeds {
        let plan = Plan::new(seed);
        // Count the calls of the whole workload (no crash).
        let tmp = sim_tempdir();
        let io = Arc::new(PowerLossIo::new(&tmp.path().join("log"), None));
        let dry = run_workload(&plan, &tmp.path().join("log"), &io);
        assert!(dry.problems.is_empty(), "seed {seed}: the workload fails without any fault: {:?}", dry.problems);
        assert_eq!(dry.expect.attempted, dry.expect.acked, "seed {seed}: without faults every append is acknowledged");
        let n = io.calls();
        drop(tmp);
        stats.workloads += 1;
        let points: Vec<u64> = match (only_k, samples) {
            (Some(k), _) => vec![k],
            (None, None) => (1..=n + 1).collect(),
            (None, Some(m)) => {
                let mut rng = SplitMix::new(seed ^ 0xC7A5_4B01);
                let mut ks: Vec<u64> = (0..m).map(|_| 1 + rng.below(n)).collect();
                ks.push(n + 1);
                ks.sort_unstable();
                ks.dedup();
                ks
            }
        };
        let before = stats.failures.len();
        for k in points {
            run_case(&plan, k, variants, &mut stats);
            if stats.failures.len() > before {
                // One failure per seed is enough to see; go on with other seeds.
                break;
            }
        }
        if stats.failures.len() >= MAX_REPORTED {
            break;
        }
    }
    let summary = format!(
        "crash_sim[{family}]: {} crash points, {} workloads, {} power-loss variants \
         ({} process crash, {} clean, {} random of which {} with torn pages; {} after a second crash during recovery), \
         {} records recovered ({} durably acknowledged); {} outcomes changed by the power loss, \
         {} lost acknowledged but undurable records, {} cut a torn tail, {} lost a batch of several records whole; \
         {} ops returned Ok despite a failed call, {} failures, {:.1} s",
        stats.crash_points,
        stats.workloads,
        stats.variants,
        stats.process_crash,
        stats.clean,
        stats.random,
        stats.torn,
        stats.recovery_crashes,
        stats.records_recovered,
        stats.records_durable,
        stats.changed,
        stats.lost_undurable,
        stats.torn_tails,
        stats.batches_lost_whole,
        stats.swallowed,
        stats.failures.len(),
        started.elapsed().as_secs_f64()
    );
    // Straight to the stream, so that the summary shows without --nocapture.
    let _ = writeln!(std::io::stderr(), "{summary}");
    assert!(
        stats.failures.is_empty(),
        "{summary}\n\n{}",
        stats.failures.iter().take(MAX_REPORTED).cloned().collect::<Vec<_>>().join("\n\n")
    );
    let chosen = ["ANNAL_SIM_SEED", "ANNAL_SIM_SEEDS", "ANNAL_SIM_CRASH_AT", "ANNAL_SIM_VARIANTS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !chosen {
        let seen = [
            ("crash points", stats.crash_points, min.crash_points),
            ("outcomes changed by the power loss", stats.changed, min.changed),
            ("outcomes that lost undurable records", stats.lost_undurable, min.lost_undurable),
            ("torn tails cut", stats.torn_tails, min.torn_tails),
            ("batches of several records lost whole", stats.batches_lost_whole, min.batches_lost_whole),
            ("second crashes during recovery", stats.recovery_crashes, min.recovery_crashes),
        ];
        for (what, got, least) in seen {
            assert!(
                got >= least,
                "{summary}\n\nthe simulator fired too little: {got} {what}, at least {least} expected"
            );
        }
    }
}

/// The seeds to run: `ANNAL_SIM_SEED` alone if it is set (whichever family
/// it belongs to: each test then crashes it its own way, every call or
/// sampled calls, so that neither passes by running nothing), else `count`
/// seeds from `first`.
fn seeds(first: u64, count: u64) -> Vec<u64> {
    match env_u64("ANNAL_SIM_SEED") {
        Some(s) => vec![s],
        None => (first..first + env_u64("ANNAL_SIM_SEEDS").unwrap_or(count)).collect(),
    }
}

/// Short workloads, crashed at every persistence call.
#[test]
fn crash_at_every_call() {
    let min = Minimums {
        crash_points: 1000,
        changed: 900,
        lost_undurable: 150,
        torn_tails: 50,
        batches_lost_whole: 150,
        recovery_crashes: 400,
    };
    sweep("every call", seeds(1, SHORT_SEEDS).into_iter(), None, &min);
}

/// Long workloads (many rolls, reopens and restarts), crashed at sampled calls.
#[test]
fn crash_at_sampled_calls() {
    let min = Minimums {
        crash_points: 150,
        changed: 150,
        lost_undurable: 30,
        torn_tails: 12,
        batches_lost_whole: 50,
        recovery_crashes: 60,
    };
    sweep("sampled calls", seeds(LONG_SEEDS_FROM, LONG_SEEDS).into_iter(), Some(LONG_SAMPLES), &min);
}

/// The simulator itself: synced data survives a clean power loss, unsynced
/// data and undurable names do not, and a process crash keeps everything.
#[test]
fn simulator_models_the_disk() {
    use annal::io::Io;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let io = PowerLossIo::new(&dir, None);
    let a = io.create(&dir.join("a.tmp")).unwrap();
    io.write_all_at(&a, &[1u8; 5000], 0).unwrap();
    io.sync_data(&a).unwrap();
    io.write_all_at(&a, &[2u8; 100], 6000).unwrap();
    io.rename(&dir.join("a.tmp"), &dir.join("a")).unwrap();
    io.sync_dir(&dir).unwrap();
    let b = io.create(&dir.join("b")).unwrap();
    io.write_all_at(&b, b"unsynced", 0).unwrap();
    io.sync_data(&b).unwrap();
    io.rename(&dir.join("b"), &dir.join("c")).unwrap();
    io.remove_file(&dir.join("a")).unwrap();

    let mut rng = SplitMix::new(1);
    io.power_loss_into(&tmp.path().join("clean"), LossMode::Clean, &mut rng);
    let clean = tmp.path().join("clean");
    assert_eq!(std::fs::read(clean.join("a")).unwrap(), vec![1u8; 5000], "synced data, durable name");
    assert!(!clean.join("b").exists() && !clean.join("c").exists(), "a creation never made durable");

    io.power_loss_into(&tmp.path().join("proc"), LossMode::ProcessCrash, &mut rng);
    let proc_ = tmp.path().join("proc");
    assert!(!proc_.join("a").exists(), "a removal survives a process crash");
    assert_eq!(std::fs::read(proc_.join("c")).unwrap(), b"unsynced");

    // Crash at a call: it and later calls fail with no effect.
    let dir2 = tmp.path().join("d2");
    let io = PowerLossIo::new(&dir2, Some(3));
    let f = io.create(&dir2.join("x")).unwrap();
    io.write_all_at(&f, b"hello", 0).unwrap();
    assert!(io.sync_data(&f).is_err());
    assert!(io.rename(&dir2.join("x"), &dir2.join("y")).is_err());
    assert!(dir2.join("x").exists() && io.crashed());
    io.power_loss_into(&tmp.path().join("p2"), LossMode::ProcessCrash, &mut rng);
    assert_eq!(std::fs::read(tmp.path().join("p2").join("x")).unwrap(), b"hello");
    io.power_loss_into(&tmp.path().join("c2"), LossMode::Clean, &mut rng);
    assert!(!tmp.path().join("c2").join("x").exists());

    // A rename over an existing file is atomic: after any power loss the name
    // holds the old file or the new one, never neither, and the new one is
    // back under its old name if the rename is lost.
    let dir3 = tmp.path().join("d3");
    let io = PowerLossIo::new(&dir3, None);
    for (name, body) in [("idx", &b"old"[..]), ("idx.tmp", &b"new"[..])] {
        let f = io.create(&dir3.join(name)).unwrap();
        io.write_all_at(&f, body, 0).unwrap();
        io.sync_data(&f).unwrap();
    }
    io.sync_dir(&dir3).unwrap();
    io.rename(&dir3.join("idx.tmp"), &dir3.join("idx")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let out = tmp.path().join(format!("r{i}"));
        io.power_loss_into(&out, LossMode::Random { keep_percent: 50, torn: true }, &mut rng);
        let idx = std::fs::read(out.join("idx")).unwrap();
        let tmp_file = std::fs::read(out.join("idx.tmp")).ok();
        match (&idx[..], tmp_file.as_deref()) {
            (b"new", None) | (b"old", Some(b"new")) => {}
            other => panic!("impossible outcome of an atomic rename: {other:?}"),
        }
        seen.insert(idx);
    }
    assert_eq!(seen.len(), 2, "both outcomes of an undurable rename occur");
}
