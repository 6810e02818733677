//! SIGKILL: a child process appends and reports each acknowledged offset; the
//! parent kills it at a random moment, reopens the log and checks that every
//! acknowledged record is there with the right contents, that offsets are
//! dense from 0, and that no record exists that was never written.
//!
//! The child is this test binary itself, re-executed to run only the ignored
//! `child_writer` test, with the log directory and the durability in
//! environment variables.
//! One run kills a child at least 50 times, under `Durability::Always`,
//! `Interval` (5 ms) and `Never`.
//! Another test kills, 30 times, a child whose second thread runs archival
//! (into a `LocalDirArchive`), size retention and `delete_before` in a loop
//! while it appends under `Always`; a third, 30 times, a child whose second
//! thread compacts in a loop while it appends records over a few keys.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use annal::{Durability, Log, LogConfig, Record};
use common::child::Child;
use common::{Rng, key_for, read_all, value_for};

const ENV_DIR: &str = "ANNAL_CRASH_TEST_DIR";
const ENV_DURABILITY: &str = "ANNAL_CRASH_TEST_DURABILITY";
const ENV_SEED: &str = "ANNAL_CRASH_TEST_SEED";
const MAX_VALUE: usize = 700;
/// Starts every line the child reports (the test harness prints on the same stream).
const MARK: &str = "annal-child:";
/// Passes a child's background thread (policies, compaction) must complete
/// before the child is killed: its failures must have a chance to show.
const MIN_PASSES: u64 = 4;
/// The child stops by itself after this many appends, in case nobody kills it.
const CHILD_MAX_APPENDS: u64 = 20_000;

fn cfg(durability: Durability) -> LogConfig {
    LogConfig::default().with_segment_bytes(8192).with_index_interval_bytes(512).with_durability(durability)
}

/// The interval of the `Durability::Interval` variant.
const INTERVAL: Duration = Duration::from_millis(5);

fn durability_from(name: &str) -> Durability {
    match name {
        "always" => Durability::Always,
        "interval" => Durability::Interval(INTERVAL),
        "never" => Durability::Never,
        "always-policies" | "always-compaction" => Durability::Always,
        other => panic!("unknown durability {other}"),
    }
}

/// The child: appends records (value and key derived from the offset) in
/// single appends and small batches, printing `BEGIN start end` before and
/// `ACK start end` after each append returns. Does nothing when run as part
/// of the normal test suite (the environment variable is not set).
#[test]
#[ignore = "run by the SIGKILL tests as their child process"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else { return };
    let durability = durability_from(&std::env::var(ENV_DURABILITY).unwrap());
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let variant = std::env::var(ENV_DURABILITY).unwrap();
    let config = if variant == "always-policies" { policy_cfg(Path::new(&dir)) } else { cfg(durability) };
    let log = Log::open(&dir, config).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let compaction = variant == "always-compaction";
    std::thread::scope(|scope| {
        match variant.as_str() {
            "always-policies" => {
                scope.spawn(|| or_abort("the policy thread", || run_policies(&log, &stop)));
            }
            "always-compaction" => {
                scope.spawn(|| or_abort("the compaction thread", || run_compaction(&log, &stop)));
            }
            _ => {}
        }
        or_abort("the writer", || append_and_report(&log, seed, compaction));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// Tells the parent that a background thread of the child completed one more
/// pass (the parent kills the child only after enough of them).
fn report_pass() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}PASS").unwrap();
    out.flush().unwrap();
}

/// Runs `f` in the child; if it panics, reports `FAILED` to the parent and
/// aborts the child at once: a failure of a background thread must not wait
/// for the parent's SIGKILL, which would hide it.
fn or_abort(what: &str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{MARK}FAILED {what}: {}", message.replace('\n', " "));
        let _ = out.flush();
        std::process::abort();
    }
}

/// Number of distinct keys the compaction children write (the key of offset
/// `o` is `compaction_key(o)`), so that most records are superseded.
const COMPACTION_KEYS: u64 = 37;

fn compaction_key(offset: u64) -> Vec<u8> {
    format!("key-{}", offset % COMPACTION_KEYS).into_bytes()
}

/// The child's compaction thread: compacts in a loop while the main thread
/// appends. Any error is a failure.
fn run_compaction(log: &Log, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = log.compact(&annal::Compaction::default()).unwrap();
        report_pass();
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// The child's appends (see [`child_writer`]); with `few_keys`, keys repeat
/// every [`COMPACTION_KEYS`] offsets.
fn append_and_report(log: &Log, seed: u64, few_keys: bool) {
    // Stdout is locked per line: the background thread reports too.
    let report = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{MARK}{line}").unwrap();
        out.flush().unwrap();
    };
    report(format!("OPENED {}", log.next_offset()));
    let mut rng = Rng::new(seed);
    for _ in 0..CHILD_MAX_APPENDS {
        let start = log.next_offset();
        let n = if rng.range(0, 4) == 0 { rng.range(2, 6) } else { 1 };
        let key = if few_keys { compaction_key } else { key_for };
        let keys: Vec<Vec<u8>> = (start..start + n).map(key).collect();
        let values: Vec<Vec<u8>> = (start..start + n).map(|o| value_for(o, MAX_VALUE)).collect();
        let batch: Vec<Record<'_>> = keys.iter().zip(&values).map(|(k, v)| Record::new(v).with_key(k)).collect();
        report(format!("BEGIN {start} {}", start + n));
        let range = log.append_batch(&batch).unwrap();
        assert_eq!(range, start..start + n);
        report(format!("ACK {} {}", range.start, range.end));
    }
}

/// The configuration of the children that run retention and archival: the
/// archive is a directory beside the log.
fn policy_cfg(dir: &Path) -> LogConfig {
    let store = annal::archive::LocalDirArchive::open(dir.with_extension("archive")).unwrap();
    cfg(Durability::Always).with_archive(std::sync::Arc::new(store), "t/0")
}

/// The child's policy thread: archival, size retention and `delete_before`
/// in a loop while the main thread appends. Any error is a failure (the
/// child then dies of a panic, not of SIGKILL).
fn run_policies(log: &Log, stop: &std::sync::atomic::AtomicBool) {
    let archive = annal::ArchivePolicy::default().with_max_local_bytes(24_000);
    let retention = annal::Retention::default().with_max_bytes(60_000);
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        i += 1;
        let _ = log.archive_at(&archive, 0).unwrap();
        let _ = log.apply_retention_at(&retention, 0).unwrap();
        if i.is_multiple_of(3) {
            let target = log.next_offset().saturating_sub(150);
            let _ = log.delete_before(target).unwrap();
        }
        report_pass();
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// What the parent learned from one child before and after killing it.
#[derive(Debug, Default)]
struct ChildRun {
    opened_at: Option<u64>,
    /// End of the highest acknowledged range.
    acked_end: u64,
    acks: u64,
    /// End of the highest range the child started to append.
    begun_end: u64,
    /// A thread of the child failed (and the child aborted): what it said.
    failed: Option<String>,
    /// Passes the child's background thread completed.
    passes: u64,
}

fn parse_line(line: &str, run: &mut ChildRun) {
    let Some(at) = line.find(MARK) else { return };
    let parts: Vec<&str> = line[at + MARK.len()..].split_whitespace().collect();
    match parts.as_slice() {
        ["OPENED", n] => {
            let n = n.parse().unwrap();
            run.opened_at = Some(n);
            run.acked_end = n;
            run.begun_end = n;
        }
        ["BEGIN", _, end] => run.begun_end = run.begun_end.max(end.parse().unwrap()),
        ["ACK", start, end] => {
            let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
            assert_eq!(start, run.acked_end, "acknowledged ranges follow each other");
            run.acked_end = end;
            run.acks += 1;
        }
        ["FAILED", ..] => run.failed = Some(line[at + MARK.len()..].to_owned()),
        ["PASS"] => run.passes += 1,
        other => panic!("unexpected report from the child: {other:?}"),
    }
}

/// Starts the child on `dir`, kills it with SIGKILL once it acknowledged
/// `kill_after` appends and its background thread (if it has one) completed
/// `min_passes` passes (plus `delay_us` microseconds), and returns what it
/// reported. A failure of any of its threads fails the test.
fn run_child(dir: &Path, durability: &str, seed: u64, kill_after: u64, min_passes: u64, delay_us: u64) -> ChildRun {
    let stderr_path = dir.with_extension(format!("stderr-{seed}"));
    let seed = seed.to_string();
    let envs = [(ENV_DIR, dir.to_str().unwrap()), (ENV_DURABILITY, durability), (ENV_SEED, seed.as_str())];
    let child = Child::spawn("child_writer", &envs, &stderr_path);
    let mut run = ChildRun::default();
    while run.acks < kill_after || run.passes < min_passes {
        if let Some(failure) = &run.failed {
            child.fail(&format!("the child failed: {failure}"));
        }
        match child.line(Duration::from_secs(60)) {
            Ok(line) => parse_line(&line, &mut run),
            Err(e) => child.fail(&format!("child stopped reporting ({e}) after {} acks", run.acks)),
        }
    }
    if delay_us > 0 {
        std::thread::sleep(Duration::from_micros(delay_us));
    }
    let ended = child.kill();
    for line in &ended.lines {
        parse_line(line, &mut run);
    }
    if let Some(failure) = &run.failed {
        panic!("the child failed before it was killed: {failure}; stderr:\n{}", ended.stderr);
    }
    let status = ended.status;
    assert_eq!(status.signal(), Some(9), "the child must die by SIGKILL, not {status:?}; stderr:\n{}", ended.stderr);
    run
}

/// Reopens the log after a kill and checks it against what the child reported.
fn check_after_kill(dir: &Path, durability: Durability, run: &ChildRun, expected_start: u64, round: u64) -> u64 {
    let what = format!("round {round} ({durability:?}, {} acks)", run.acks);
    assert_eq!(run.opened_at, Some(expected_start), "{what}: the child opened where the last round ended");
    let log = Log::open(dir, cfg(durability)).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let next = log.next_offset();
    assert!(next >= run.acked_end, "{what}: acknowledged records lost: next offset {next} < {}", run.acked_end);
    assert!(
        next <= run.begun_end.max(expected_start),
        "{what}: {next} records, but only {} were written",
        run.begun_end
    );
    let all = read_all(&log).unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    assert_eq!(all.len() as u64, next, "{what}");
    for (i, r) in all.iter().enumerate() {
        let o = i as u64;
        assert_eq!(r.offset, o, "{what}: offsets are dense");
        assert_eq!(r.key.as_deref(), Some(&key_for(o)[..]), "{what}: key of {o}");
        assert_eq!(r.value.as_deref(), Some(&value_for(o, MAX_VALUE)[..]), "{what}: value of {o}");
    }
    // Half of the time the parent closes cleanly, half of the time it "crashes" too.
    if round.is_multiple_of(2) {
        log.close().unwrap()
    } else {
        log.abandon()
    }
    next
}

/// Runs `rounds` children on one log, killing each; returns the number of kills.
/// Kills `rounds` children; returns how many were killed with an append in
/// flight (begun, not acknowledged).
fn kill_rounds(durability: Durability, name: &str, rounds: u64, max_acks: u64) -> u64 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut rng = Rng::new(0xC0FFEE ^ rounds ^ (name.bytes().map(u64::from).sum::<u64>() << 16));
    let mut next = 0;
    let mut max_segments = 0;
    let mut in_flight = 0;
    for round in 0..rounds {
        let kill_after = rng.range(1, max_acks + 1);
        let delay_us = if rng.range(0, 3) == 0 { 0 } else { rng.range(0, 3000) };
        let run = run_child(&dir, name, round * 7919 + 1, kill_after, 0, delay_us);
        in_flight += u64::from(run.begun_end > run.acked_end);
        next = check_after_kill(&dir, durability, &run, next, round);
        max_segments = max_segments.max(common::segment_files(&dir).len());
    }
    assert!(max_segments >= 5, "{name}: the children must roll segments ({max_segments})");
    assert!(next > rounds, "{name}: {next} records after {rounds} rounds");
    in_flight
}

/// Every durability, each on its own log, the three at once: under `Always`
/// every acknowledged record is on disk; under `Interval` and `Never` a
/// process kill loses nothing acknowledged either, since the page cache
/// survives the process.
#[test]
fn sigkill_under_every_durability() {
    let variants = [
        (Durability::Always, "always", 30, 100),
        (Durability::Interval(INTERVAL), "interval", 16, 300),
        (Durability::Never, "never", 16, 300),
    ];
    let in_flight: Vec<(u64, Duration)> = std::thread::scope(|scope| {
        let runs: Vec<_> = variants
            .iter()
            .map(|&(durability, name, rounds, max_acks)| {
                scope.spawn(move || {
                    let started = std::time::Instant::now();
                    (kill_rounds(durability, name, rounds, max_acks), started.elapsed())
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let each: Vec<String> = variants
        .iter()
        .zip(&in_flight)
        .map(|(v, (k, t))| format!("{}: {} kills, {k} with an append in flight, in {:.1} s", v.1, v.2, t.as_secs_f64()))
        .collect();
    println!("sigkill: {}", each.join("; "));
    // A kill that always lands between appends tests less than it seems.
    let total: u64 = in_flight.iter().map(|k| k.0).sum();
    assert!(total > 0, "no child was killed with an append in flight: {}", each.join("; "));
}

/// Reopens a log that a child appended to while its policy thread ran
/// retention and archival, and checks it: every acknowledged record at or
/// above the start offset is there, nothing below the start is readable, no
/// segment file wholly below the start is left, read-only and read-write
/// opens agree. Returns (next offset, start offset, archived segments).
fn check_after_policy_kill(dir: &Path, run: &ChildRun, expected_next: u64, round: u64) -> (u64, u64, usize) {
    let what = format!("policies round {round} ({} acks)", run.acks);
    assert_eq!(run.opened_at, Some(expected_next), "{what}: the child opened where the last round ended");
    let ro = Log::open_read_only(dir, policy_cfg(dir)).unwrap_or_else(|e| panic!("{what}: read-only open: {e}"));
    let ro_view = (ro.start_offset(), ro.next_offset(), read_all(&ro).unwrap_or_else(|e| panic!("{what}: {e}")));
    drop(ro);
    let log = Log::open(dir, policy_cfg(dir)).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let (start, next) = (log.start_offset(), log.next_offset());
    assert!(next >= run.acked_end, "{what}: acknowledged records lost: next offset {next} < {}", run.acked_end);
    assert!(
        next <= run.begun_end.max(expected_next),
        "{what}: {next} records, but only {} were written",
        run.begun_end
    );
    assert!(start <= next, "{what}: start {start} is past the end {next}");
    let all = read_all(&log).unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    assert_eq!(all.len() as u64, next - start, "{what}: records from the start {start}");
    for (i, r) in all.iter().enumerate() {
        let o = start + i as u64;
        assert_eq!(r.offset, o, "{what}: offsets are dense");
        assert_eq!(r.key.as_deref(), Some(&key_for(o)[..]), "{what}: key of {o}");
        assert_eq!(r.value.as_deref(), Some(&value_for(o, MAX_VALUE)[..]), "{what}: value of {o}");
    }
    assert_eq!((ro_view.0, ro_view.1), (start, next), "{what}: the read-only open disagrees");
    assert_eq!(ro_view.2, all, "{what}: the read-only open reads other records");
    if start > 0 {
        assert!(
            matches!(log.read_from(start - 1), Err(annal::Error::OffsetOutOfRange { .. })),
            "{what}: offset {} below the start {start} is readable",
            start - 1
        );
    }
    let bases: Vec<u64> = common::segment_files(dir)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().and_then(annal::segment::parse_log_file_name))
        .collect();
    for w in bases.windows(2) {
        assert!(w[1] > start, "{what}: segment {} is wholly below the start {start} and still on disk", w[0]);
    }
    let archived = log.archived_segments();
    for a in &archived {
        assert!(!bases.contains(&a.base_offset), "{what}: archived segment {} has a local copy", a.base_offset);
    }
    if round.is_multiple_of(2) {
        log.close().unwrap()
    } else {
        log.abandon()
    }
    (next, start, archived.len())
}

/// A child appends under `Always` while a thread of it archives and applies
/// retention in a loop; it is killed at random moments (during uploads,
/// manifest and start-offset writes, deletions).
#[test]
fn sigkill_while_retention_and_archival_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut rng = Rng::new(0x5EED_9011_C1E5);
    let rounds = 30;
    let (mut next, mut max_start, mut max_archived) = (0, 0, 0);
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let kill_after = rng.range(1, 250);
        let delay_us = if rng.range(0, 3) == 0 { 0 } else { rng.range(0, 3000) };
        let run = run_child(&dir, "always-policies", round * 7919 + 3, kill_after, MIN_PASSES, delay_us);
        let (n, start, archived) = check_after_policy_kill(&dir, &run, next, round);
        next = n;
        max_start = max_start.max(start);
        max_archived = max_archived.max(archived);
    }
    println!(
        "sigkill with policies: {rounds} kills in {:.1} s, {next} records, start offset up to {max_start}, up to {max_archived} segments archived",
        started.elapsed().as_secs_f64()
    );
    assert!(max_start > 0, "retention never moved the start");
    assert!(max_archived > 0, "nothing was ever archived");
}

/// Reopens a log that a child appended to while it compacted, and checks it:
/// every record present is the one written at its offset; an offset is
/// missing only if a later record of its key exists (compaction never drops
/// a key's latest record); every acknowledged record's key still has a value
/// from it or later; read-only and read-write opens agree. Returns (next
/// offset, records missing).
fn check_after_compaction_kill(dir: &Path, run: &ChildRun, expected_next: u64, round: u64) -> (u64, u64) {
    let what = format!("compaction round {round} ({} acks)", run.acks);
    assert_eq!(run.opened_at, Some(expected_next), "{what}: the child opened where the last round ended");
    let ro = Log::open_read_only(dir, cfg(Durability::Always)).unwrap_or_else(|e| panic!("{what}: read-only: {e}"));
    let ro_all = read_all(&ro).unwrap_or_else(|e| panic!("{what}: {e}"));
    drop(ro);
    let log = Log::open(dir, cfg(Durability::Always)).unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let next = log.next_offset();
    assert!(next >= run.acked_end, "{what}: acknowledged records lost: next offset {next} < {}", run.acked_end);
    assert!(
        next <= run.begun_end.max(expected_next),
        "{what}: {next} records, but only {} were written",
        run.begun_end
    );
    let all = read_all(&log).unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    let mut present = vec![false; next as usize];
    let mut last = None;
    for r in &all {
        assert!(last.is_none_or(|l| r.offset > l), "{what}: offsets go up");
        last = Some(r.offset);
        assert_eq!(r.key.as_deref(), Some(&compaction_key(r.offset)[..]), "{what}: key of {}", r.offset);
        assert_eq!(r.value.as_deref(), Some(&value_for(r.offset, MAX_VALUE)[..]), "{what}: value of {}", r.offset);
        present[r.offset as usize] = true;
    }
    // The latest record of each key is there, so every missing one has a later
    // record of its key (at most COMPACTION_KEYS offsets on, or further if that
    // one was dropped too: the chain ends at a record that is there).
    let latest_from = next.saturating_sub(COMPACTION_KEYS);
    for o in latest_from..next {
        assert!(present[o as usize], "{what}: offset {o}, the latest of its key, was dropped");
    }
    assert_eq!(ro_all, all, "{what}: the read-only open reads other records");
    let missing = present.iter().filter(|p| !**p).count() as u64;
    if round.is_multiple_of(2) {
        log.close().unwrap()
    } else {
        log.abandon()
    }
    (next, missing)
}

/// A child appends under `Always` over a few keys while a thread of it
/// compacts in a loop; it is killed at random moments (while compacted
/// segments are written, renamed into place, and the directory synced).
#[test]
fn sigkill_while_compaction_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut rng = Rng::new(0xC0_4AC7_0000);
    let rounds = 30;
    let (mut next, mut missing) = (0, 0);
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let kill_after = rng.range(1, 250);
        let delay_us = if rng.range(0, 3) == 0 { 0 } else { rng.range(0, 3000) };
        let run = run_child(&dir, "always-compaction", round * 7919 + 5, kill_after, MIN_PASSES, delay_us);
        (next, missing) = check_after_compaction_kill(&dir, &run, next, round);
    }
    println!(
        "sigkill with compaction: {rounds} kills in {:.1} s, {next} records written, {missing} compacted away",
        started.elapsed().as_secs_f64()
    );
    assert!(missing > 0, "compaction never removed anything");
}
