//! SIGKILL of an event store: a child process appends to overlapping streams
//! (single and multi-stream appends, exact expected versions, caller ids,
//! retries of its own appends) and reports each append as it starts and as
//! it is acknowledged; the parent kills it at a random moment, reopens the
//! store and checks what survived against what the child reported.
//!
//! The child is this test binary itself, re-executed to run only the ignored
//! `child_event_writer` test, with the store's directory, the variant and a
//! seed in environment variables. Its index flushes every 16 events and
//! merges above 2 runs, and its log rolls every 64 KiB, so that kills land in
//! flushes, merges and rolls as well as in appends (and, in some rounds, in
//! the open that replays the log). After each kill the parent checks:
//!
//! - the store opens, and reports no rebuild of its index;
//! - `$all` holds only events the child appended, each whole (stream, version,
//!   type, data, id), and every append either whole (the events of a
//!   multi-stream append in all their streams) or not at all, at consecutive
//!   positions;
//! - every acknowledged append is there, at the positions and versions its
//!   result gave: under `Durability::Always` because it was durable, under
//!   `Never` because a killed process leaves the page cache to the OS;
//! - each stream's versions are dense from 0 and grow with positions, and
//!   `read_stream`, `stream_version`, `read_category` and `read_event_type`
//!   agree with `$all`;
//! - a retry (the same ids, a stale expected version) of the acknowledged
//!   appends of the last child and of a sample of older ones, and of an
//!   append in flight at the kill that survived, returns its results and
//!   writes nothing.
//!
//! Then it closes the store (or abandons it, every other round) and starts
//! the next child on it. `Durability::Always` and `Never` each run on their
//! own store, at the same time.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use annal::events::{
    AppendResult, CurrentVersion, Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent, RecordedEvent,
    StreamAppend,
};
use annal::{Durability, LogConfig};
use common::Rng;
use common::child::Child;
use uuid::Uuid;

const ENV_DIR: &str = "ANNAL_EVENTS_CRASH_DIR";
const ENV_VARIANT: &str = "ANNAL_EVENTS_CRASH_VARIANT";
const ENV_SEED: &str = "ANNAL_EVENTS_CRASH_SEED";
/// Starts every line the child reports (the test harness prints on the same stream).
const MARK: &str = "annal-events-child:";
/// The child stops by itself after this many appends, in case nobody kills it.
const CHILD_MAX_APPENDS: u64 = 20_000;
/// The streams the child appends to, overlapping from one append to the next.
const STREAMS: [&str; 6] = ["acct-1", "acct-2", "acct-3", "order-1", "order-2", "audit"];
const CATEGORIES: [&str; 3] = ["acct", "order", "audit"];
const TYPES: [&str; 3] = ["Deposited", "Withdrawn", "Noted"];
/// Every how many appends the child retries its previous one.
const RETRY_EVERY: u64 = 7;
/// The high bits of every id the child gives (see [`id_for`]).
const ID_PREFIX: u128 = 0x0191_0000_0000_7000_8000_0000_0000_0000;

fn config(variant: &str) -> EventStoreConfig {
    let durability = match variant {
        "always" => Durability::Always,
        "never" => Durability::Never,
        other => panic!("unknown variant {other}"),
    };
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(64 << 10).with_durability(durability))
        .with_flush_entries(16)
        .with_merge_runs(2)
}

/// The id of event `j` of part `p` of the child's `k`-th append, in the
/// child of seed `seed` (below 2^23): every event of every child has its own.
fn id_for(seed: u64, k: u64, p: usize, j: u32) -> Uuid {
    Uuid::from_u128(ID_PREFIX | (u128::from(seed) << 40) | (u128::from(k) << 16) | ((p as u128) << 8) | u128::from(j))
}

/// What [`id_for`] made `id` of, if it made it.
fn parse_id(id: Uuid) -> Option<(u64, u64, usize, u32)> {
    let n = id.as_u128();
    let low = n & !ID_PREFIX;
    (n & ID_PREFIX == ID_PREFIX && low >> 63 == 0).then_some((
        (low >> 40) as u64,
        ((low >> 16) & 0xFF_FFFF) as u64,
        ((low >> 8) & 0xFF) as usize,
        (low & 0xFF) as u32,
    ))
}

/// The event `j` of part `p` of append `k` of the child of seed `seed`.
fn event_for(seed: u64, k: u64, p: usize, j: u32) -> NewEvent {
    let pad = "x".repeat(((seed ^ k.wrapping_mul(31) ^ (p as u64 * 7) ^ u64::from(j)) % 400) as usize);
    let data = format!("{{\"seed\":{seed},\"k\":{k},\"p\":{p},\"j\":{j},\"pad\":\"{pad}\"}}");
    NewEvent::json(TYPES[(k as usize + p + j as usize) % TYPES.len()], data).with_id(id_for(seed, k, p, j))
}

/// One append of the child: per part, a stream, the version of its first
/// event, and its number of events.
type Parts = Vec<(usize, u64, u32)>;

/// The call of append `k` with `parts`, each part expecting what `expected`
/// says of its first version.
fn call(seed: u64, k: u64, parts: &Parts, expected: impl Fn(u64) -> ExpectedVersion) -> Vec<StreamAppend> {
    parts
        .iter()
        .enumerate()
        .map(|(p, &(s, first, n))| {
            let events = (0..n).map(|j| event_for(seed, k, p, j)).collect();
            StreamAppend::new(STREAMS[s], expected(first), events)
        })
        .collect()
}

fn exact(first: u64) -> ExpectedVersion {
    first.checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact)
}

/// The results of an append of `parts` whose first event is at `start`.
fn results_at(parts: &Parts, start: u64) -> Vec<AppendResult> {
    let mut position = start;
    parts
        .iter()
        .map(|&(_, first, n)| {
            position += u64::from(n);
            AppendResult {
                first_version: first,
                next_expected_version: first + u64::from(n) - 1,
                position: position - 1,
            }
        })
        .collect()
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// The child: opens the store, reads its streams' versions, and appends to
/// them with exact expected versions (a third of the appends to two or three
/// streams at once), printing `BEGIN` before and `ACK` after each append,
/// and retrying an earlier append now and then. Does nothing when run as
/// part of the normal test suite (the environment variable is not set).
#[test]
#[ignore = "run by the SIGKILL test as its child process"]
fn child_event_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else { return };
    let variant = std::env::var(ENV_VARIANT).unwrap();
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    if let Err(panic) = std::panic::catch_unwind(|| append_and_report(Path::new(&dir), &variant, seed)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        // A failure must not wait for the parent's SIGKILL, which would hide it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{MARK}FAILED {}", message.replace('\n', " "));
        let _ = out.flush();
        std::process::abort();
    }
}

fn append_and_report(dir: &Path, variant: &str, seed: u64) {
    let store = EventStore::open(dir, config(variant)).unwrap();
    let mut next: Vec<u64> = STREAMS
        .iter()
        .map(|s| match store.stream_version(s).unwrap() {
            CurrentVersion::NoStream => 0,
            CurrentVersion::Version(v) => v + 1,
        })
        .collect();
    report(&format!("OPENED {}", store.head_position()));
    let mut rng = Rng::new(seed);
    let mut last: Option<(u64, Parts, Vec<AppendResult>)> = None;
    for k in 0..CHILD_MAX_APPENDS {
        if k % RETRY_EVERY == RETRY_EVERY - 1
            && let Some((k0, parts, results)) = &last
        {
            let head = store.head_position();
            let got = store.append_to_streams(call(seed, *k0, parts, |f| ExpectedVersion::Exact(f + 1000))).unwrap();
            assert_eq!(&got, results, "a retry of append {k0} returns its results");
            assert_eq!(store.head_position(), head, "a retry of append {k0} writes nothing");
            report(&format!("RETRY {seed} {k0}"));
        }
        let count = if rng.range(0, 3) == 0 { rng.range(2, 4) as usize } else { 1 };
        let mut streams: Vec<usize> = (0..STREAMS.len()).collect();
        let mut parts = Parts::new();
        for _ in 0..count {
            let s = streams.remove(rng.range(0, streams.len() as u64) as usize);
            parts.push((s, next[s], rng.range(1, 5) as u32));
        }
        let described: Vec<String> = parts.iter().map(|(s, f, n)| format!("{s}:{f}:{n}")).collect();
        report(&format!("BEGIN {seed} {k} {}", described.join(" ")));
        let results = if count == 1 {
            let a = call(seed, k, &parts, exact).pop().unwrap();
            vec![store.append(&a.stream, a.expected, a.events).unwrap()]
        } else {
            store.append_to_streams(call(seed, k, &parts, exact)).unwrap()
        };
        for (&(s, first, n), r) in parts.iter().zip(&results) {
            assert_eq!((r.first_version, r.next_expected_version), (first, first + u64::from(n) - 1));
            next[s] = first + u64::from(n);
        }
        let stats = store.index_stats();
        let shown: Vec<String> =
            results.iter().map(|r| format!("{}:{}:{}", r.first_version, r.next_expected_version, r.position)).collect();
        report(&format!("ACK {seed} {k} {} | {} {}", shown.join(" "), stats.indexed_to, stats.stream_runs));
        last = Some((k, parts, results));
    }
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

/// An append the child started.
#[derive(Debug, Clone)]
struct Begun {
    parts: Parts,
    /// Its results, once acknowledged.
    acked: Option<Vec<AppendResult>>,
}

/// What every child of one store reported, by (seed, append number).
#[derive(Debug, Default)]
struct Book {
    appends: BTreeMap<(u64, u64), Begun>,
}

/// What the parent learned from one child.
#[derive(Debug, Default)]
struct ChildRun {
    opened_at: Option<u64>,
    acks: u64,
    retries: u64,
    /// The append begun and not acknowledged when the child died.
    in_flight: Option<(u64, u64)>,
    /// The highest `indexed_to` the child reported, and whether its stream
    /// index ever had fewer runs than before (a merge).
    indexed_to: u64,
    runs: Option<u64>,
    merged: bool,
    failed: Option<String>,
}

fn parse_line(line: &str, run: &mut ChildRun, book: &mut Book) {
    let Some(at) = line.find(MARK) else { return };
    let rest = &line[at + MARK.len()..];
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("a number in {rest:?}")) };
    match parts.as_slice() {
        ["OPENED", head] => run.opened_at = Some(num(head)),
        ["BEGIN", seed, k, described @ ..] => {
            let parts = described
                .iter()
                .map(|d| {
                    let f: Vec<u64> = d.split(':').map(num).collect();
                    (f[0] as usize, f[1], f[2] as u32)
                })
                .collect();
            book.appends.insert((num(seed), num(k)), Begun { parts, acked: None });
            run.in_flight = Some((num(seed), num(k)));
        }
        ["ACK", seed, k, results @ ..] => {
            let bar = results.iter().position(|r| *r == "|").expect("ACK ... | stats");
            let acked = results[..bar]
                .iter()
                .map(|r| {
                    let f: Vec<u64> = r.split(':').map(num).collect();
                    AppendResult { first_version: f[0], next_expected_version: f[1], position: f[2] }
                })
                .collect();
            let key = (num(seed), num(k));
            book.appends.get_mut(&key).expect("an append begun").acked = Some(acked);
            assert_eq!(run.in_flight, Some(key), "acknowledgements follow their beginnings");
            run.in_flight = None;
            run.acks += 1;
            run.indexed_to = run.indexed_to.max(num(results[bar + 1]));
            let runs = num(results[bar + 2]);
            run.merged |= run.runs.is_some_and(|r| runs < r);
            run.runs = Some(runs);
        }
        ["RETRY", ..] => run.retries += 1,
        ["FAILED", ..] => run.failed = Some(rest.to_owned()),
        other => panic!("unexpected report from the child: {other:?}"),
    }
}

/// How the parent decides when to kill a child.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Once it acknowledged this many appends, then after this many µs.
    AfterAcks(u64, u64),
    /// This many µs after it was started, whatever it reported (it may still
    /// be opening the store).
    AfterStart(u64),
}

/// Starts a child on `dir`, kills it with SIGKILL as `kill` says, and
/// returns what it reported. A failure of the child fails the test.
fn run_child(dir: &Path, variant: &str, seed: u64, kill: Kill, book: &mut Book) -> ChildRun {
    let stderr_path = dir.with_extension(format!("stderr-{seed}"));
    let seed = seed.to_string();
    let envs = [(ENV_DIR, dir.to_str().unwrap()), (ENV_VARIANT, variant), (ENV_SEED, seed.as_str())];
    let started = Instant::now();
    let child = Child::spawn("child_event_writer", &envs, &stderr_path);
    let mut run = ChildRun::default();
    match kill {
        Kill::AfterAcks(acks, delay_us) => {
            while run.acks < acks {
                if let Some(failure) = &run.failed {
                    child.fail(&format!("the child failed: {failure}"));
                }
                match child.line(Duration::from_secs(60)) {
                    Ok(line) => parse_line(&line, &mut run, book),
                    Err(e) => child.fail(&format!("the child stopped reporting ({e}) after {} acks", run.acks)),
                }
            }
            std::thread::sleep(Duration::from_micros(delay_us));
        }
        Kill::AfterStart(us) => {
            let at = started + Duration::from_micros(us);
            while let Some(left) = at.checked_duration_since(Instant::now()) {
                if let Ok(line) = child.line(left) {
                    parse_line(&line, &mut run, book);
                }
            }
        }
    }
    let ended = child.kill();
    for line in &ended.lines {
        parse_line(line, &mut run, book);
    }
    if let Some(failure) = &run.failed {
        panic!("the child failed before it was killed: {failure}; stderr:\n{}", ended.stderr);
    }
    let status = ended.status;
    assert_eq!(status.signal(), Some(9), "the child must die by SIGKILL, not {status:?}; stderr:\n{}", ended.stderr);
    run
}

/// Checks that a read of `what` returned `want` (events of `$all`).
fn same(what: &str, got: &[RecordedEvent], want: &[&RecordedEvent]) {
    let got_p: Vec<u64> = got.iter().map(|e| e.position).collect();
    let want_p: Vec<u64> = want.iter().map(|e| e.position).collect();
    assert_eq!(got_p, want_p, "{what}: the positions it reads, and those $all says");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, *w, "{what}: the event at position {}", g.position);
    }
}

/// What one check found.
#[derive(Debug, Default)]
struct Found {
    events: u64,
    /// The append in flight at the kill: there (whole), or not.
    in_flight_kept: bool,
    in_flight_lost: bool,
    retries: u64,
}

/// Reopens the store after a kill and checks it against `book` (see the
/// module documentation). `what` names the round in failure messages.
fn check_after_kill(dir: &Path, variant: &str, book: &Book, run: &ChildRun, what: &str) -> Found {
    let store =
        EventStore::open(dir, config(variant)).unwrap_or_else(|e| panic!("{what}: the store does not open: {e}"));
    let recovery = store.index_recovery().clone();
    assert!(recovery.rebuilt.is_none(), "{what}: the index was rebuilt after a kill: {recovery:?}");
    let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap_or_else(|e| panic!("{what}: read_all: {e}"));
    let n = all.len() as u64;
    assert_eq!(store.head_position(), n, "{what}: head_position and $all");
    if let Some(opened) = run.opened_at {
        assert!(n >= opened, "{what}: {n} events, but the child opened the store at {opened}");
    }

    // $all is a sequence of whole appends the children began.
    let mut present: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut i = 0usize;
    while i < all.len() {
        let e = &all[i];
        let (seed, k, p, j) =
            parse_id(e.id).unwrap_or_else(|| panic!("{what}: position {i} holds an event no child appended: {e:?}"));
        assert_eq!(
            (p, j),
            (0, 0),
            "{what}: position {i} holds event {j} of part {p} of append {k} of child {seed} without what precedes it"
        );
        let begun = book
            .appends
            .get(&(seed, k))
            .unwrap_or_else(|| panic!("{what}: append {k} of child {seed} at {i} was never begun"));
        assert!(present.insert((seed, k), i as u64).is_none(), "{what}: append {k} of child {seed} is there twice");
        for (p, &(s, first, count)) in begun.parts.iter().enumerate() {
            for j in 0..count {
                let got = all.get(i).unwrap_or_else(|| {
                    panic!("{what}: $all ends at {n}, inside append {k} of child {seed} (part {p}, event {j}): an append in part")
                });
                let want = event_for(seed, k, p, j);
                let fields =
                    |e: &RecordedEvent| (e.id, e.stream.clone(), e.version, e.event_type.clone(), e.data.clone());
                assert_eq!(
                    fields(got),
                    (
                        want.id().unwrap(),
                        STREAMS[s].to_owned(),
                        first + u64::from(j),
                        want.event_type().to_owned(),
                        want.data().to_vec()
                    ),
                    "{what}: position {i}: event {j} of part {p} of append {k} of child {seed}"
                );
                i += 1;
            }
        }
        if let Some(acked) = &begun.acked {
            let start = present[&(seed, k)];
            assert_eq!(
                *acked,
                results_at(&begun.parts, start),
                "{what}: append {k} of child {seed} as acknowledged and as found"
            );
        }
    }
    for (&(seed, k), b) in &book.appends {
        if b.acked.is_some() {
            assert!(
                present.contains_key(&(seed, k)),
                "{what}: the acknowledged append {k} of child {seed} ({:?}) is lost ({variant})",
                b.parts
            );
        }
    }
    let ids: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), all.len(), "{what}: ids are unique");

    // Every read agrees with $all.
    for name in STREAMS {
        let want: Vec<&RecordedEvent> = all.iter().filter(|e| e.stream == name).collect();
        for (v, e) in want.iter().enumerate() {
            assert_eq!(e.version, v as u64, "{what}: {name}: versions are dense from 0");
        }
        assert!(want.windows(2).all(|w| w[0].position < w[1].position), "{what}: {name}: versions grow with positions");
        let version = store.stream_version(name).unwrap();
        assert_eq!(
            version,
            want.last().map_or(CurrentVersion::NoStream, |e| CurrentVersion::Version(e.version)),
            "{what}: stream_version({name})"
        );
        same(
            &format!("{what}: stream {name}"),
            &store.read_stream(name, 0, Direction::Forward, usize::MAX).unwrap(),
            &want,
        );
        let back: Vec<&RecordedEvent> = want.iter().rev().copied().collect();
        same(
            &format!("{what}: stream {name} backward"),
            &store.read_stream(name, u64::MAX, Direction::Backward, usize::MAX).unwrap(),
            &back,
        );
    }
    for c in CATEGORIES {
        let want: Vec<&RecordedEvent> = all.iter().filter(|e| annal::events::category(&e.stream) == c).collect();
        same(
            &format!("{what}: category {c}"),
            &store.read_category(c, 0, Direction::Forward, usize::MAX).unwrap(),
            &want,
        );
        let back: Vec<&RecordedEvent> = want.iter().rev().copied().collect();
        same(
            &format!("{what}: category {c} backward"),
            &store.read_category(c, u64::MAX, Direction::Backward, usize::MAX).unwrap(),
            &back,
        );
    }
    for t in TYPES {
        let want: Vec<&RecordedEvent> = all.iter().filter(|e| e.event_type == t).collect();
        same(
            &format!("{what}: type {t}"),
            &store.read_event_type(t, 0, Direction::Forward, usize::MAX).unwrap(),
            &want,
        );
    }

    // Retries: the last child's acknowledged appends, a sample of older
    // ones, and the one in flight if it is there.
    let mut found = Found { events: n, ..Found::default() };
    let last_seed = run.in_flight.map(|(s, _)| s).or_else(|| book.appends.keys().next_back().map(|(s, _)| *s));
    let mut rng = Rng::new(n ^ 0x5EED);
    for (&(seed, k), b) in &book.appends {
        let Some(&start) = present.get(&(seed, k)) else { continue };
        let recent = Some(seed) == last_seed;
        if !recent && rng.range(0, 20) != 0 {
            continue;
        }
        let got = store
            .append_to_streams(call(seed, k, &b.parts, |f| ExpectedVersion::Exact(f + 1000)))
            .unwrap_or_else(|e| panic!("{what}: a retry of append {k} of child {seed}: {e}"));
        assert_eq!(got, results_at(&b.parts, start), "{what}: a retry of append {k} of child {seed}");
        assert_eq!(store.head_position(), n, "{what}: a retry of append {k} of child {seed} wrote");
        found.retries += 1;
    }
    if let Some(key) = run.in_flight {
        found.in_flight_kept = present.contains_key(&key);
        found.in_flight_lost = !found.in_flight_kept;
    }
    // Half of the time the parent closes cleanly, half of the time it is killed too.
    if n.is_multiple_of(2) {
        store.close().unwrap()
    } else {
        store.abandon()
    }
    found
}

/// Totals of one variant.
#[derive(Debug, Default)]
struct Totals {
    kills: u64,
    killed_before_open: u64,
    in_flight_kept: u64,
    in_flight_lost: u64,
    acked: u64,
    multi: u64,
    child_retries: u64,
    retries: u64,
    events: u64,
    indexed_to: u64,
    merged: bool,
    time: Duration,
}

/// Kills `rounds` children appending to one store under `variant`.
fn kill_rounds(variant: &'static str, rounds: u64, seed0: u64) -> Totals {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut rng = Rng::new(seed0);
    let mut book = Book::default();
    let mut t = Totals::default();
    for round in 0..rounds {
        // A child reports the store open 0.5 to 6 ms after it was started.
        let kill = match rng.range(0, 8) {
            0 | 1 => Kill::AfterStart(rng.range(300, 4000)),
            2 => Kill::AfterAcks(rng.range(1, 5), 0),
            _ => Kill::AfterAcks(rng.range(1, 150), rng.range(0, 3000)),
        };
        let seed = seed0 * 1000 + round;
        let run = run_child(&dir, variant, seed, kill, &mut book);
        let what = format!("{variant} round {round} (child {seed}, killed {kill:?}, {} acks)", run.acks);
        let found = check_after_kill(&dir, variant, &book, &run, &what);
        t.kills += 1;
        t.killed_before_open += u64::from(run.opened_at.is_none());
        t.in_flight_kept += u64::from(found.in_flight_kept);
        t.in_flight_lost += u64::from(found.in_flight_lost);
        t.acked += run.acks;
        t.child_retries += run.retries;
        t.retries += found.retries;
        t.events = found.events;
        t.indexed_to = t.indexed_to.max(run.indexed_to);
        t.merged |= run.merged;
    }
    t.multi = book.appends.values().filter(|b| b.acked.is_some() && b.parts.len() > 1).count() as u64;
    t.time = started.elapsed();
    t
}

/// `Always` and `Never`, each on its own store, at the same time: every
/// acknowledged append survives a SIGKILL under both (under `Never` because
/// the page cache outlives the process).
#[test]
fn sigkill_while_appending_events() {
    let variants = [("always", 40, 11), ("never", 30, 12)];
    let totals: Vec<Totals> = std::thread::scope(|scope| {
        let runs: Vec<_> = variants
            .iter()
            .map(|&(variant, rounds, seed0)| scope.spawn(move || kill_rounds(variant, rounds, seed0)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let each: Vec<String> = variants
        .iter()
        .zip(&totals)
        .map(|(v, t)| {
            format!(
                "{}: {} kills ({} before the store opened; {} with an append in flight, kept {} / lost {}), \
                 {} appends acknowledged ({} multi-stream), {} events at the end, indexed to {}{}, \
                 {} retries by the children and {} after the kills, in {:.1} s",
                v.0,
                t.kills,
                t.killed_before_open,
                t.in_flight_kept + t.in_flight_lost,
                t.in_flight_kept,
                t.in_flight_lost,
                t.acked,
                t.multi,
                t.events,
                t.indexed_to,
                if t.merged { ", index runs merged" } else { "" },
                t.child_retries,
                t.retries,
                t.time.as_secs_f64()
            )
        })
        .collect();
    let summary = format!("sigkill events: {}", each.join("; "));
    let _ = writeln!(std::io::stderr(), "{summary}");
    // A kill that always lands between appends, a child that never flushes
    // or merges, or checks that retry nothing, test less than they seem.
    let in_flight: u64 = totals.iter().map(|t| t.in_flight_kept + t.in_flight_lost).sum();
    assert!(in_flight > 0, "no child was killed with an append in flight: {summary}");
    for (v, t) in variants.iter().zip(&totals) {
        assert!(t.merged && t.indexed_to > 0, "{}: the children never flushed and merged the index: {summary}", v.0);
        assert!(t.multi > 0 && t.retries > 0 && t.child_retries > 0, "{}: {summary}", v.0);
    }
}
