//! Crash simulation of retention and archival: a log is filled and rolled,
//! then a sequence of policy steps runs (`delete_before`, `apply_retention`
//! by age and by size, `Log::archive` into a [`LocalDirArchive`], appends and
//! rolls between them), and the process dies at every persistence call of
//! those steps ([`PowerLossIo`], as in `tests/crash_sim.rs`). The directory is
//! then rewritten to a few possible post-power-loss states, and the log is
//! opened read-only and read-write with the real file system. It must hold:
//!
//! - a start offset that is the one recorded before the crashed step or the
//!   one that step moves to (never back past a completed step, never past
//!   the end of the log);
//! - every record from the start to the durable end (the records appended
//!   before the crashed step: each step ends with a roll or a sync) readable
//!   and identical to what was appended, whether its segment is local or
//!   archived, and nothing below the start;
//! - after the read-write open, no segment file wholly below the start and
//!   no local copy of an archived segment;
//! - each archived segment's object matching the digest in the manifest;
//! - the same start and records through the read-only open.
//!
//! The archive store's writes go through the same `PowerLossIo` (it takes an
//! `Io`), so crash points fall inside uploads and object deletions too, and
//! every store call after the crash fails. The simulator models the
//! durability of the log directory only: the archive directory is kept as
//! the dead process left it (a store that is durable once a call returns, as
//! S3 is), and each post-crash variant gets its own copy of it.
//!
//! A failure prints its workload and crash point;
//! `ANNAL_SIM_SEED=<workload> [ANNAL_SIM_CRASH_AT=<k>] cargo test --release --test crash_sim_policies`
//! replays it (`ANNAL_SIM_TRACE=1` prints the calls).

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal::ArchivePolicy;
use annal::archive::{ArchiveStore, LocalDirArchive, ObjectDigest};
use annal::{Durability, Error, Log, LogConfig, OwnedRecord, Record, Retention};
use common::fast_tempdir;
use powerloss::{LossMode, PowerLossIo, SplitMix};

/// Post-crash outcomes tried per crash point.
const VARIANTS: u64 = 2;
const PREFIX: &str = "t/0";
const BASE_TS: i64 = 1_700_000_000_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// The record at `offset`: contents and timestamp are functions of it.
fn value(offset: u64) -> Vec<u8> {
    let mut r = SplitMix::new(offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0DD5);
    let len = 100 + r.below(600) as usize;
    (0..len).map(|_| r.next_u64() as u8).collect()
}

fn key(offset: u64) -> Vec<u8> {
    format!("k{offset}").into_bytes()
}

fn ts(offset: u64) -> i64 {
    BASE_TS + offset as i64 * 1000
}

fn check_record(r: &OwnedRecord, offset: u64) -> Result<(), String> {
    if r.offset != offset {
        return Err(format!("expected offset {offset}, got a record at {}", r.offset));
    }
    if r.value.as_deref() != Some(&value(offset)[..]) || r.key.as_deref() != Some(&key(offset)[..]) {
        return Err(format!("the record at offset {offset} is not the one appended there"));
    }
    if r.timestamp != ts(offset) {
        return Err(format!("the record at offset {offset} has timestamp {}, not {}", r.timestamp, ts(offset)));
    }
    Ok(())
}

/// Appends `n` records, in batches of at most 5 (a batch is stored whole in
/// one segment, and these segments hold about 18 records).
fn append(log: &Log, n: u64) -> annal::Result<()> {
    let start = log.next_offset();
    let values: Vec<Vec<u8>> = (start..start + n).map(value).collect();
    let keys: Vec<Vec<u8>> = (start..start + n).map(key).collect();
    let batch: Vec<Record<'_>> = (0..n as usize)
        .map(|i| Record::new(&values[i]).with_key(&keys[i]).with_timestamp(ts(start + i as u64)))
        .collect();
    let mut at = start;
    for chunk in batch.chunks(5) {
        let range = log.append_batch(chunk)?;
        assert_eq!(range, at..at + chunk.len() as u64, "append offsets");
        at = range.end;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// `delete_before(start + n)` (clamped to the end).
    DeleteBefore(u64),
    /// `apply_retention(max_age)` with `now` such that segments whose newest
    /// record is below offset `start + n` are too old.
    RetainAge(u64),
    /// `apply_retention(max_bytes)` keeping `percent` % of the record bytes.
    RetainSize(u64),
    /// `archive` with a local-bytes limit of `percent` % of the local bytes
    /// (0: every sealed segment).
    Archive(u64),
    /// Append `n` records, then roll.
    AppendRoll(u64),
    /// `sync` (also the end of every step under `Never`).
    Sync,
}

#[derive(Debug, Clone)]
struct Plan {
    id: u64,
    durability: Durability,
    setup_records: u64,
    steps: Vec<Step>,
}

fn plans() -> Vec<Plan> {
    use Step::*;
    let shapes: Vec<Vec<Step>> = vec![
        // Retention only.
        vec![DeleteBefore(7), RetainAge(30), AppendRoll(20), RetainSize(60), DeleteBefore(1000)],
        // Archival, then retention over archived segments.
        vec![Archive(50), DeleteBefore(5), Archive(0), RetainAge(40), AppendRoll(25), RetainSize(50), Archive(0)],
        // Interleaved, ending with a start moved into the active segment.
        vec![RetainSize(80), Archive(0), AppendRoll(15), Archive(30), RetainAge(60), DeleteBefore(1000), Sync],
    ];
    let mut out = Vec::new();
    for (i, steps) in shapes.into_iter().enumerate() {
        for (j, durability) in [Durability::Always, Durability::Never].into_iter().enumerate() {
            out.push(Plan {
                id: (i * 2 + j) as u64,
                durability,
                setup_records: 90 + 7 * i as u64,
                steps: steps.clone(),
            });
        }
    }
    out
}

fn config(plan: &Plan, io: Arc<dyn annal::io::Io>, archive_root: &Path) -> LogConfig {
    let store = LocalDirArchive::with_io(archive_root, Arc::clone(&io)).expect("archive store");
    LogConfig::default()
        .with_segment_bytes(8 << 10)
        .with_index_interval_bytes(256)
        .with_durability(plan.durability)
        .with_archive(Arc::new(store), PREFIX)
        .with_io(io)
}

fn local_bytes(log: &Log) -> u64 {
    let archived: Vec<u64> = log.archived_segments().iter().map(|a| a.base_offset).collect();
    log.segments().iter().filter(|s| !archived.contains(&s.base_offset)).map(|s| s.data_bytes).sum()
}

fn run_step(log: &Log, step: Step) -> annal::Result<()> {
    let start = log.start_offset();
    match step {
        Step::DeleteBefore(n) => log.delete_before((start + n).min(log.next_offset())).map(drop),
        Step::RetainAge(n) => {
            let policy = Retention::default().with_max_age(Duration::from_secs(1));
            log.apply_retention_at(&policy, ts(start + n) + 1000).map(drop)
        }
        Step::RetainSize(percent) => {
            let total: u64 = log.segments().iter().map(|s| s.data_bytes).sum();
            log.apply_retention_at(&Retention::default().with_max_bytes(total * percent / 100), ts(0)).map(drop)
        }
        Step::Archive(percent) => {
            let policy = ArchivePolicy::default().with_max_local_bytes(local_bytes(log) * percent / 100);
            log.archive_at(&policy, ts(0)).map(drop)
        }
        Step::AppendRoll(n) => append(log, n).and_then(|()| log.roll()),
        Step::Sync => log.sync(),
    }
}

/// What the run of a plan observed, step by step.
#[derive(Debug, Default, Clone)]
struct Trace {
    /// Persistence calls made when the policy steps began.
    calls_at_steps: u64,
    /// Per step: calls after it, start offset after it, next offset after it.
    after: Vec<(u64, u64, u64)>,
    /// Start and next offset when the steps began.
    initial: (u64, u64),
    /// The most segments archived after any step.
    archived: usize,
}

/// Runs `plan`: the setup, then its steps, until the end or the crash.
/// Returns the trace and the index of the step the process died in.
fn run(plan: &Plan, dir: &Path, archive: &Path, io: &Arc<PowerLossIo>) -> Result<(Trace, Option<usize>), String> {
    let cfg = config(plan, Arc::clone(io) as Arc<dyn annal::io::Io>, archive);
    let mut trace = Trace::default();
    let log = Log::open(dir, cfg).map_err(|e| format!("setup open: {e}"))?;
    // Setup: several sealed segments, durable.
    let mut left = plan.setup_records;
    while left > 0 {
        let n = left.min(9);
        append(&log, n).map_err(|e| format!("setup append: {e}"))?;
        left -= n;
        if left.is_multiple_of(27) {
            log.roll().map_err(|e| format!("setup roll: {e}"))?;
        }
    }
    log.sync().map_err(|e| format!("setup sync: {e}"))?;
    if io.crashed() {
        return Err("crashed during the setup".into());
    }
    trace.calls_at_steps = io.calls();
    trace.initial = (log.start_offset(), log.next_offset());
    let mut died = None;
    for (i, &step) in plan.steps.iter().enumerate() {
        let result = run_step(&log, step);
        if io.crashed() {
            died = Some(i);
            break;
        }
        result.map_err(|e| format!("step {i} {step:?} failed without an injected fault: {e}"))?;
        trace.after.push((io.calls(), log.start_offset(), log.next_offset()));
        trace.archived = trace.archived.max(log.archived_segments().len());
    }
    log.abandon();
    Ok((trace, died))
}

fn bases_in(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(annal::segment::parse_log_file_name))
        .collect();
    v.sort_unstable();
    v
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create dir");
    for e in std::fs::read_dir(src).expect("list").filter_map(|e| e.ok()) {
        let t = e.file_type().expect("file type");
        if t.is_dir() {
            copy_tree(&e.path(), &dst.join(e.file_name()));
        } else if t.is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
        }
    }
}

/// What must hold after a crash in a step (or after the last one).
#[derive(Debug)]
struct Expect {
    /// The start offset recorded before the crashed step, and the one that
    /// step moves to (equal when it does not move it).
    start_before: u64,
    start_target: u64,
    /// Records appended before the crashed step (durable: each step ends
    /// with a roll or a sync under either durability).
    durable_end: u64,
    /// Records handed to the log by the end of the crashed step.
    attempted_end: u64,
}

/// Reads `[start, next)` and checks it; checks that `start - 1` is refused.
fn check_contents(log: &Log, ex: &Expect, what: &str) -> Result<(u64, u64, usize), String> {
    let start = log.start_offset();
    let next = log.next_offset();
    if start != ex.start_before && start != ex.start_target {
        return Err(format!(
            "{what}: start offset {start}, expected {} (before the step) or {} (after it)",
            ex.start_before, ex.start_target
        ));
    }
    if start > next {
        return Err(format!("{what}: start offset {start} is past the end {next}"));
    }
    if next < ex.durable_end {
        return Err(format!("{what}: the log ends at {next}, but {} records were durable", ex.durable_end));
    }
    if next > ex.attempted_end {
        return Err(format!("{what}: the log ends at {next}, but only {} records were appended", ex.attempted_end));
    }
    let records: Vec<OwnedRecord> = log
        .read_from(start)
        .map_err(|e| format!("{what}: read_from({start}): {e}"))?
        .collect::<annal::Result<_>>()
        .map_err(|e| format!("{what}: reading from {start}: {e}"))?;
    if records.len() as u64 != next - start {
        return Err(format!("{what}: {} records read from {start}, the log ends at {next}", records.len()));
    }
    for (i, r) in records.iter().enumerate() {
        check_record(r, start + i as u64).map_err(|e| format!("{what}: {e}"))?;
    }
    if start > 0 {
        match log.read_from(start - 1) {
            Err(Error::OffsetOutOfRange { .. }) => {}
            Err(e) => return Err(format!("{what}: read_from(start - 1) failed with {e}, not OffsetOutOfRange")),
            Ok(mut r) => {
                if let Some(rec) = r.next() {
                    return Err(format!("{what}: read_from(start - 1) returned {:?}", rec.map(|r| r.offset)));
                }
            }
        }
    }
    Ok((start, next, log.archived_segments().len()))
}

fn check(plan: &Plan, ex: &Expect, dir: &Path, archive: &Path) -> Result<usize, String> {
    let store: Arc<dyn ArchiveStore> = Arc::new(LocalDirArchive::open(archive).map_err(|e| format!("archive: {e}"))?);
    let cfg = LogConfig::default()
        .with_segment_bytes(8 << 10)
        .with_index_interval_bytes(256)
        .with_durability(plan.durability)
        .with_archive(Arc::clone(&store), PREFIX);
    let ro = Log::open_read_only(dir, cfg.clone()).map_err(|e| format!("the read-only open failed: {e}"))?;
    let ro_seen = check_contents(&ro, ex, "read-only open")?;
    drop(ro);
    let log = Log::open(dir, cfg.clone()).map_err(|e| format!("the log does not open after the crash: {e}"))?;
    let rw_seen = check_contents(&log, ex, "read-write open")?;
    if ro_seen != rw_seen {
        return Err(format!("read-only open saw (start, next, archived) {ro_seen:?}, the read-write open {rw_seen:?}"));
    }
    let start = log.start_offset();
    // No segment file wholly below the start, no local copy of an archived one.
    let bases = bases_in(dir);
    let archived = log.archived_segments();
    for w in bases.windows(2) {
        if w[1] <= start {
            return Err(format!("segment {} is wholly below the start {start} and still on disk", w[0]));
        }
    }
    for a in &archived {
        if bases.contains(&a.base_offset) {
            return Err(format!("segment {} is archived and still has a local copy", a.base_offset));
        }
        if a.next_offset <= start {
            return Err(format!("archived segment {}..{} is below the start {start}", a.base_offset, a.next_offset));
        }
        store
            .verify(&a.key, &ObjectDigest { size: a.size, crc32: a.crc32 })
            .map_err(|e| format!("the object of archived segment {}: {e}", a.base_offset))?;
    }
    if let (Some(first_local), Some(last_archived)) = (bases.first(), archived.last())
        && *first_local < last_archived.next_offset
    {
        return Err(format!("local segment {first_local} overlaps archived {}..", last_archived.base_offset));
    }
    // The log keeps working: an append, a close, a reopen with the same start.
    let next = log.next_offset();
    append(&log, 2).map_err(|e| format!("append after recovery: {e}"))?;
    log.close().map_err(|e| format!("close after recovery: {e}"))?;
    let log = Log::open(dir, cfg).map_err(|e| format!("reopen after recovery: {e}"))?;
    if log.start_offset() != start || log.next_offset() != next + 2 {
        return Err(format!(
            "after append, close and reopen: start {} next {}, expected {start} and {}",
            log.start_offset(),
            log.next_offset(),
            next + 2
        ));
    }
    let ex2 = Expect { start_before: start, start_target: start, durable_end: next + 2, attempted_end: next + 2 };
    check_contents(&log, &ex2, "after append, close and reopen")?;
    log.close().map_err(|e| format!("final close: {e}"))?;
    Ok(archived.len())
}

fn pick_mode(rng: &mut SplitMix) -> LossMode {
    match rng.below(100) {
        0..20 => LossMode::ProcessCrash,
        20..40 => LossMode::Clean,
        p => LossMode::Random { keep_percent: [10, 50, 90][rng.below(3) as usize], torn: p >= 70 },
    }
}

#[derive(Debug, Default)]
struct Stats {
    crash_points: u64,
    variants: u64,
    start_moved: u64,
    start_kept: u64,
    with_archived: u64,
    failures: Vec<String>,
}

fn run_point(plan: &Plan, dry: &Trace, k: u64, stats: &mut Stats) {
    let tmp = fast_tempdir();
    let dir = tmp.path().join("log");
    let archive = tmp.path().join("archive");
    std::fs::create_dir_all(&archive).expect("archive dir");
    let io = Arc::new(PowerLossIo::new(&dir, Some(k)));
    let context = |io: &PowerLossIo| {
        format!(
            "crash_sim_policies FAILURE: workload {} ({:?}, steps {:?}) crash_at {k} (call: {})\n    replay: ANNAL_SIM_SEED={} ANNAL_SIM_CRASH_AT={k} cargo test --release --test crash_sim_policies",
            plan.id,
            plan.durability,
            plan.steps,
            io.describe_call(k).unwrap_or_else(|| "none: after the last step".into()),
            plan.id
        )
    };
    let (trace, died) = match run(plan, &dir, &archive, &io) {
        Ok(t) => t,
        Err(e) => {
            stats.failures.push(format!("{}: {e}", context(&io)));
            return;
        }
    };
    if std::env::var_os("ANNAL_SIM_TRACE").is_some() {
        eprintln!("workload {} crash_at {k}: died in step {died:?}\n  {}", plan.id, io.trace().join("\n  "));
    }
    stats.crash_points += 1;
    // Which step died, and what it was to do (from the dry run).
    let step = died.unwrap_or(plan.steps.len());
    if trace.after[..] != dry.after[..step] {
        stats.failures.push(format!("{}: the run diverged from the dry run before the crash", context(&io)));
        return;
    }
    let before =
        if step == 0 { (trace.initial.0, trace.initial.1) } else { (dry.after[step - 1].1, dry.after[step - 1].2) };
    let after = dry.after.get(step).map_or(before, |a| (a.1, a.2));
    let ex = Expect { start_before: before.0, start_target: after.0, durable_end: before.1, attempted_end: after.1 };
    for v in 0..VARIANTS {
        let mut rng = SplitMix::new(plan.id.wrapping_mul(0x1000_0000_01B3) ^ k.wrapping_mul(0xFF51_AFD7) ^ v);
        let mode = pick_mode(&mut rng);
        let target = tmp.path().join(format!("after-{v}"));
        let target_archive = tmp.path().join(format!("archive-{v}"));
        let report = io.power_loss_into(&target, mode, &mut rng);
        copy_tree(&archive, &target_archive);
        stats.variants += 1;
        match check(plan, &ex, &target, &target_archive) {
            Ok(archived) => stats.with_archived += u64::from(archived > 0),
            Err(e) => {
                stats.failures.push(format!(
                    "{} variant {v} ({mode}): {e}\n    expected {ex:?}\n    power loss: {report}",
                    context(&io)
                ));
                return;
            }
        }
        // Which start the recovered log has (counted once per point).
        if v == 0 {
            let cfg = LogConfig::default().with_segment_bytes(8 << 10);
            if let Ok(l) = Log::open_read_only(&target, cfg) {
                if l.start_offset() == ex.start_target && ex.start_target != ex.start_before {
                    stats.start_moved += 1;
                } else {
                    stats.start_kept += 1;
                }
            }
        }
    }
}

#[test]
fn crash_at_every_call_of_retention_and_archival() {
    let started = Instant::now();
    let only_plan = env_u64("ANNAL_SIM_SEED");
    let only_k = env_u64("ANNAL_SIM_CRASH_AT");
    let mut stats = Stats::default();
    let mut per_plan = Vec::new();
    for plan in plans().into_iter().filter(|p| only_plan.is_none_or(|id| id == p.id)) {
        // Dry run: count the calls of each step.
        let tmp = fast_tempdir();
        let archive = tmp.path().join("archive");
        std::fs::create_dir_all(&archive).expect("archive dir");
        let io = Arc::new(PowerLossIo::new(&tmp.path().join("log"), None));
        let (dry, died) = run(&plan, &tmp.path().join("log"), &archive, &io).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(died, None);
        assert_eq!(dry.after.len(), plan.steps.len());
        // The steps must do something, or the workload tests nothing.
        let final_start = dry.after.last().expect("steps").1;
        assert!(final_start > dry.initial.0, "workload {}: retention never moved the start", plan.id);
        if plan.steps.iter().any(|s| matches!(s, Step::Archive(_))) {
            assert!(dry.archived > 0, "workload {}: nothing was ever archived", plan.id);
        }
        let first = dry.calls_at_steps + 1;
        let last = io.calls() + 1;
        drop(tmp);
        let points: Vec<u64> = match only_k {
            Some(k) => vec![k],
            None => (first..=last).collect(),
        };
        per_plan.push(format!("workload {} ({:?}): {} calls in the steps", plan.id, plan.durability, last - first));
        let failures = stats.failures.len();
        for k in points {
            run_point(&plan, &dry, k, &mut stats);
            if stats.failures.len() > failures {
                break;
            }
        }
    }
    let summary = format!(
        "crash_sim_policies: {} crash points, {} post-crash states checked ({} recovered to the step's new start, \
         {} to the previous one; {} with archived segments), {} failures, {:.1} s\n  {}",
        stats.crash_points,
        stats.variants,
        stats.start_moved,
        stats.start_kept,
        stats.with_archived,
        stats.failures.len(),
        started.elapsed().as_secs_f64(),
        per_plan.join("\n  ")
    );
    let _ = writeln!(std::io::stderr(), "{summary}");
    assert!(stats.failures.is_empty(), "{summary}\n\n{}", stats.failures.join("\n\n"));
}
