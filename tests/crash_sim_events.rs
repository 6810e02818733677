//! Crash simulation of the event store: appends of single events and batches
//! to a few streams, multi-stream appends, appends with caller ids and their
//! retries, refused appends, index flushes and merges, and closes and reopens
//! (clean, and abandoned like a killed process), with the process dying at
//! persistence calls and the power lost in a few ways.
//!
//! The store's directory lies in the tree a [`PowerLossIo`] simulates, so the
//! crash points include its creation, `events.meta`, the global log's segment
//! files and syncs, and every file of the indexes (runs written, renamed and
//! removed, the manifest replaced). Flushes and merges happen inside the
//! workloads (a flush every 5 to 12 events, a merge when an index has more
//! than 2 or 3 runs). Each workload (single-threaded, deterministic, under
//! `Durability::Always` or `Never`) runs once to count its persistence calls
//! (N), and once more to check that it makes the same calls; then, for every
//! crash point k in 1..=N+1 (k = N+1: after the final close), it runs again
//! with call k and every later one failing, and the tree is rewritten to five
//! post-crash states (process crash, clean power loss, three random
//! writebacks, two of them with torn pages). The store is reopened there with
//! the real file system and must hold:
//!
//! - the open succeeds, and its `index_recovery()` reports no rebuild;
//! - `$all` (`read_all`, forward and backward) is exactly the first events the
//!   workload handed to the store, each event whole (stream, version, type,
//!   data, metadata, content types, the caller's id or a version-7 one, ids
//!   unique), ending at the end of an append: no append is there in part, the
//!   events of a multi-stream append in all their streams or in none;
//! - it holds every append acknowledged under `Always`, everything below the
//!   durable watermark the log reported (`durable_offset`, which a flush,
//!   a close and every sync move), and, after a process crash (the page cache
//!   survives), every acknowledged append; under `Never` an acknowledged append
//!   beyond that may be lost, whole;
//! - each stream's versions are dense from 0 and grow with positions, and
//!   `read_stream` (forward and backward, whole and from the middle),
//!   `stream_version`, `read_category` and `read_event_type` (forward and
//!   backward, whole and from the middle) agree with `$all`;
//! - a retry (the same ids, with a stale expected version) of every append
//!   with ids that is there, acknowledged or in flight at the crash, returns
//!   its original results and writes nothing (`head_position` unchanged);
//! - a multi-stream append to every stream with the next exact versions is
//!   accepted, and after a close and a second open (which must replay nothing
//!   and rebuild nothing) everything, that append included, reads the same.
//!
//! Inside the workloads, too: every result is the one the model predicts, a
//! retry returns the original results and writes nothing, a stale expected
//! version and a partial retry are refused and write nothing, and a reopen
//! finds every event appended.
//!
//! About a third of the post-crash states are also crashed during their
//! recovery (at a seeded call of the open and close that recover them,
//! through a second simulator) and lose power again: the next open must pass
//! the same checks and find the very events an uninterrupted recovery found.
//!
//! What the sweep counts without failing: opens that replay events the index
//! runs covered before the crash. A flush makes its runs and manifest durable
//! in `index/`, but nothing makes the creation of `index/` itself durable in
//! the store's directory, so a power loss can take the whole index away, and
//! the next open silently replays the entire global log (reads stay right:
//! the log is the truth). That is an engine bug, reproduced by the ignored
//! test `a_flushed_index_survives_a_power_loss`; once it is fixed the count
//! should be 0.
//!
//! Not covered here: several threads (the crash points would not be
//! deterministic: `tests/crash_events.rs` kills processes that append),
//! subscriptions, and `Durability::Interval` (its flusher thread makes the
//! calls nondeterministic).
//!
//! A failure names the workload, the crash point and what it was, the calls
//! around it, the directory operations that were not durable, and what the
//! power loss chose. `ANNAL_SIM_SEED=<workload> [ANNAL_SIM_CRASH_AT=<k>] cargo
//! test --release --test crash_sim_events -- --nocapture` replays it
//! (`ANNAL_SIM_TRACE=1` prints every call of the case).

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annal::events::{
    AppendResult, CurrentVersion, Direction, Error, EventStore, EventStoreConfig, ExpectedVersion, NewEvent,
    RecordedEvent, StreamAppend,
};
use annal::io::Io;
use annal::{Durability, LogConfig};
use common::fast_tempdir;
use powerloss::{LossMode, LossReport, PowerLossIo, SplitMix};
use uuid::Uuid;

/// The store's directory inside the simulated tree (so that its creation is
/// simulated too).
const STORE: &str = "store";
/// Segment size of the global log: small, so that the workloads roll it.
const SEGMENT_BYTES: u64 = 16 << 10;
/// The streams, in three categories (`ledger` is its own).
const STREAMS: [&str; 5] = ["order-1", "order-2", "cart-1", "cart-2", "ledger"];
const CATEGORIES: [&str; 3] = ["order", "cart", "ledger"];
const TYPES: [&str; 3] = ["Placed", "Paid", "Shipped"];
/// Workloads drawn from seeds, besides the three written out.
const RANDOM_PLANS: u64 = 4;
/// Share (%) of the post-crash states whose recovery is crashed too.
const SECOND_CRASH_PERCENT: u64 = 30;
/// The append number of the append every check makes after recovery (its ids
/// are derived from it).
const AFTER_RECOVERY: usize = 999;
/// Post-crash states per crash point.
const MODES: [LossMode; 5] = powerloss::SWEEP_MODES;

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// One append: per part, a stream (an index into [`STREAMS`]) and a number
    /// of events; several parts make a multi-stream append. With caller ids
    /// if `ids`; with a loose expected state (`Any`, `StreamExists` or
    /// `NoStream`) rather than the exact version if `loose`.
    Append { parts: Vec<(usize, u32)>, ids: bool, loose: bool },
    /// The `n`-th acknowledged append with ids (modulo their number) again,
    /// with a stale expected version: its original results, nothing written.
    Retry(usize),
    /// The first event of the `n`-th acknowledged append with ids, followed
    /// by a new one: refused as a partial retry, nothing written.
    PartialRetry(usize),
    /// An append to a stream expecting a version it is not at: refused,
    /// nothing written.
    Stale(usize),
    /// `flush_index`.
    Flush,
    /// `close` (or `abandon`, like a killed process) and open again.
    Reopen { clean: bool },
}

#[derive(Debug, Clone)]
struct Plan {
    id: u64,
    what: &'static str,
    durability: Durability,
    flush_entries: usize,
    merge_runs: usize,
    ops: Vec<Op>,
}

fn one(stream: usize, n: u32, ids: bool) -> Op {
    Op::Append { parts: vec![(stream, n)], ids, loose: false }
}

fn multi(parts: &[(usize, u32)], ids: bool) -> Op {
    Op::Append { parts: parts.to_vec(), ids, loose: false }
}

/// The workloads: three written out, [`RANDOM_PLANS`] drawn from seeds.
fn plans() -> Vec<Plan> {
    use Op::{Flush, PartialRetry, Reopen, Retry, Stale};
    let loose = |stream, n| Op::Append { parts: vec![(stream, n)], ids: false, loose: true };
    let mut plans = vec![
        Plan {
            id: 0,
            what: "single events and batches to three streams, a multi-stream append, retries, a clean reopen",
            durability: Durability::Always,
            flush_entries: 5,
            merge_runs: 2,
            ops: vec![
                one(0, 1, true),
                one(1, 3, false),
                one(0, 2, true),
                one(2, 1, true),
                multi(&[(0, 1), (1, 2), (2, 1)], true),
                Retry(0),
                loose(1, 1),
                Stale(0),
                Flush,
                one(3, 4, true),
                Reopen { clean: true },
                Retry(2),
                multi(&[(0, 1), (3, 1)], true),
                PartialRetry(1),
                one(4, 2, false),
                Retry(3),
            ],
        },
        Plan {
            id: 1,
            what: "no fsync per append: batches, multi-stream appends and retries around an abandoned process",
            durability: Durability::Never,
            flush_entries: 8,
            merge_runs: 3,
            ops: vec![
                one(0, 2, true),
                multi(&[(1, 1), (2, 2)], true),
                one(4, 3, false),
                one(0, 1, false),
                Reopen { clean: false },
                Retry(1),
                one(2, 4, true),
                multi(&[(0, 2), (3, 1), (4, 1)], true),
                Stale(2),
                Flush,
                one(1, 1, true),
                loose(3, 2),
                Reopen { clean: true },
                Retry(0),
                multi(&[(2, 1), (1, 3)], false),
                one(0, 3, true),
                PartialRetry(2),
            ],
        },
        Plan {
            id: 2,
            what: "multi-stream appends with ids, retried across an abandoned process, flushes and merges",
            durability: Durability::Always,
            flush_entries: 12,
            merge_runs: 2,
            ops: vec![
                multi(&[(0, 2), (2, 1)], true),
                multi(&[(1, 1), (3, 2), (4, 1)], true),
                one(0, 4, true),
                Retry(0),
                multi(&[(2, 3), (4, 2)], true),
                Reopen { clean: false },
                Retry(1),
                Retry(2),
                multi(&[(0, 1), (1, 2), (3, 1)], true),
                one(4, 4, false),
                Flush,
                multi(&[(1, 1), (2, 1)], true),
                Retry(3),
                Reopen { clean: false },
                multi(&[(3, 3), (0, 2)], true),
                Retry(4),
            ],
        },
    ];
    for id in 3..3 + RANDOM_PLANS {
        plans.push(random_plan(id));
    }
    plans
}

/// A workload drawn from `id` (odd ids under `Never`).
fn random_plan(id: u64) -> Plan {
    use Op::{Flush, PartialRetry, Reopen, Retry, Stale};
    let mut rng = SplitMix::new(id.wrapping_mul(0x5851_F42D_4C95_7F2D) ^ 0xE7E1_7500);
    let durability = if id % 2 == 1 { Durability::Never } else { Durability::Always };
    let flush_entries = [5, 6, 8][rng.below(3) as usize];
    let merge_runs = 2 + rng.below(2) as usize;
    let mut ops = Vec::new();
    while ops.len() < 16 {
        let op = match rng.below(100) {
            0..55 => {
                let count = if rng.chance(70) { 1 } else { 2 + rng.below(2) as usize };
                let mut streams: Vec<usize> = (0..STREAMS.len()).collect();
                let mut parts = Vec::new();
                for _ in 0..count {
                    let s = streams.remove(rng.below(streams.len() as u64) as usize);
                    parts.push((s, 1 + rng.below(4) as u32));
                }
                Op::Append { parts, ids: rng.chance(60), loose: count == 1 && rng.chance(20) }
            }
            55..67 => Retry(rng.next_u64() as usize),
            67..71 => Stale(rng.below(STREAMS.len() as u64) as usize),
            71..75 => PartialRetry(rng.next_u64() as usize),
            75..85 => Flush,
            85..92 => Reopen { clean: true },
            _ => Reopen { clean: false },
        };
        ops.push(op);
    }
    Plan { id, what: "drawn from its seed", durability, flush_entries, merge_runs, ops }
}

/// The `j`-th event of part `part` of append `a` of workload `plan`: its
/// data names all of that (and carries padding of a length drawn from it), so
/// an event of another append, part or workload never passes for it.
fn event_for(plan: u64, a: usize, part: usize, j: u32, ids: bool) -> NewEvent {
    let mut r = SplitMix::new(
        plan.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (a as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
            ^ (part as u64).wrapping_mul(0x94D0_49BB_1331_11EB)
            ^ u64::from(j).wrapping_mul(0xD6E8_FEB8_6659_FD93),
    );
    let pad: String = (0..r.below(700)).map(|_| char::from(b'a' + r.below(26) as u8)).collect();
    let event_type = TYPES[(a + part + j as usize) % TYPES.len()];
    let data = format!("{{\"w\":{plan},\"a\":{a},\"p\":{part},\"j\":{j},\"pad\":\"{pad}\"}}");
    let mut e =
        if r.chance(80) { NewEvent::json(event_type, data) } else { NewEvent::binary(event_type, data.into_bytes()) };
    e = match r.below(3) {
        0 => e.with_json_metadata(format!("{{\"$correlationId\":\"w{plan}-a{a}\"}}")),
        1 => e.with_binary_metadata((0..r.below(40)).map(|_| r.next_u64() as u8).collect::<Vec<u8>>()),
        _ => e,
    };
    if ids {
        e = e.with_id(id_for(plan, a, part, j));
    }
    e
}

fn id_for(plan: u64, a: usize, part: usize, j: u32) -> Uuid {
    let n = (u128::from(plan) << 48) | ((a as u128) << 16) | ((part as u128) << 8) | u128::from(j);
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

// ---------------------------------------------------------------------------
// What the workload did
// ---------------------------------------------------------------------------

/// One append the workload handed to the store (that wrote, or was in flight
/// when the process died).
#[derive(Debug, Clone)]
struct Write {
    /// Its append number (the index of its op), from which its events derive.
    a: usize,
    /// Per part: the stream, the version of its first event, its events.
    parts: Vec<(usize, u64, u32)>,
    ids: bool,
    /// The position of its first event.
    start: u64,
    len: u64,
    /// What it returned, once it returned `Ok`.
    acked: Option<Vec<AppendResult>>,
}

impl Write {
    fn end(&self) -> u64 {
        self.start + self.len
    }

    /// What it returns (and what a retry of it returns).
    fn results(&self) -> Vec<AppendResult> {
        let mut position = self.start;
        self.parts
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

    /// The call itself, each part expecting what `expected` says of it.
    fn call(&self, plan: u64, expected: impl Fn(usize, u64) -> ExpectedVersion) -> Vec<StreamAppend> {
        self.parts
            .iter()
            .enumerate()
            .map(|(p, &(s, first, n))| {
                let events = (0..n).map(|j| event_for(plan, self.a, p, j, self.ids)).collect();
                StreamAppend::new(STREAMS[s], expected(s, first), events)
            })
            .collect()
    }
}

/// One event the workload handed to the store, at its position.
#[derive(Debug, Clone)]
struct Planned {
    stream: usize,
    version: u64,
    /// The index of its append in [`Book::writes`].
    write: usize,
    event: NewEvent,
}

#[derive(Debug, Default)]
struct Book {
    /// In position order; only the last one may be unacknowledged.
    writes: Vec<Write>,
    /// Every event handed to the store, by position.
    events: Vec<Planned>,
    /// The highest durable watermark the log reported.
    watermark: u64,
    /// The highest position up to which the index runs covered the log
    /// (their manifest durably replaced) before the crash.
    indexed_to: u64,
    /// The operation during which the process died.
    died_in: Option<String>,
    /// Operations that returned `Ok` although a persistence call failed in them.
    swallowed: Vec<String>,
    /// Wrong results seen while the workload ran.
    problems: Vec<String>,
}

impl Book {
    /// The end of the last acknowledged append.
    fn acked_end(&self) -> u64 {
        self.writes.iter().rev().find(|w| w.acked.is_some()).map_or(0, Write::end)
    }

    fn attempted(&self) -> u64 {
        self.events.len() as u64
    }

    /// The acknowledged appends with ids, oldest first.
    fn with_ids(&self) -> Vec<&Write> {
        self.writes.iter().filter(|w| w.ids && w.acked.is_some()).collect()
    }
}

fn config(plan: &Plan, io: Option<&Arc<PowerLossIo>>) -> EventStoreConfig {
    let mut log = LogConfig::default().with_segment_bytes(SEGMENT_BYTES).with_durability(plan.durability);
    if let Some(io) = io {
        log = log.with_io(Arc::clone(io) as Arc<dyn Io>);
    }
    EventStoreConfig::default()
        .with_log_config(log)
        .with_flush_entries(plan.flush_entries)
        .with_merge_runs(plan.merge_runs)
}

/// The next version of each stream in the model.
fn next_versions(book: &Book) -> [u64; STREAMS.len()] {
    let mut v = [0; STREAMS.len()];
    for e in &book.events {
        v[e.stream] = e.version + 1;
    }
    v
}

/// Runs append op `i` (see [`Op::Append`]), keeping the book.
fn append(plan: &Plan, store: &EventStore, book: &mut Book, i: usize, op: &Op) -> annal::events::Result<()> {
    let Op::Append { parts, ids, loose } = op else { unreachable!("an append") };
    let next = next_versions(book);
    let write = Write {
        a: i,
        parts: parts.iter().map(|&(s, n)| (s, next[s], n)).collect(),
        ids: *ids,
        start: book.attempted(),
        len: parts.iter().map(|&(_, n)| u64::from(n)).sum(),
        acked: None,
    };
    let call = write.call(plan.id, |s, first| match (*loose, first) {
        (false, 0) => ExpectedVersion::NoStream,
        (false, f) => ExpectedVersion::Exact(f - 1),
        (true, 0) if s % 2 == 0 => ExpectedVersion::NoStream,
        (true, _) if s % 2 == 0 => ExpectedVersion::Any,
        (true, 0) => ExpectedVersion::Any,
        (true, _) => ExpectedVersion::StreamExists,
    });
    let index = book.writes.len();
    for (a, &(s, first, _)) in call.iter().zip(&write.parts) {
        for (j, e) in a.events.iter().enumerate() {
            book.events.push(Planned { stream: s, version: first + j as u64, write: index, event: e.clone() });
        }
    }
    let want = write.results();
    book.writes.push(write);
    let got = if call.len() == 1 {
        let a = call.into_iter().next().expect("one part");
        store.append(&a.stream, a.expected, a.events).map(|r| vec![r])
    } else {
        store.append_to_streams(call)
    }?;
    if got != want {
        book.problems.push(format!("op {i}: the append returned {got:?}, the model says {want:?}"));
    }
    book.writes[index].acked = Some(got);
    Ok(())
}

/// Checks that the store's head is where the book says: `what` wrote nothing.
fn unchanged(store: &EventStore, book: &mut Book, i: usize, what: &str) {
    let head = store.head_position();
    if head != book.attempted() {
        book.problems.push(format!("op {i}: {what} moved the head from {} to {head}", book.attempted()));
    }
}

/// Runs `plan` with the store in `root` through `io`, until the end or until
/// the process dies; then abandons the store.
fn run_workload(plan: &Plan, root: &Path, io: &Arc<PowerLossIo>) -> Book {
    let dir = root.join(STORE);
    let mut book = Book::default();
    let mut store = match EventStore::open(&dir, config(plan, Some(io))) {
        Ok(s) => Some(s),
        Err(e) => {
            if io.crashed() {
                book.died_in = Some(format!("the first open: {e}"));
            } else {
                book.problems.push(format!("the first open failed without an injected fault: {e}"));
            }
            return book;
        }
    };
    let steps = plan.ops.iter().map(Some).chain([None]);
    for (i, op) in steps.enumerate() {
        let s = store.as_ref().expect("a store while the process lives");
        let result: annal::events::Result<()> = match op {
            Some(op @ Op::Append { .. }) => append(plan, s, &mut book, i, op),
            Some(&Op::Retry(n)) => {
                let with_ids = book.with_ids();
                match with_ids.get(n % with_ids.len().max(1)) {
                    None => Ok(()),
                    Some(w) => {
                        let w = (*w).clone();
                        // Whatever the expected state: a retry is recognized by its ids.
                        let call = w.call(plan.id, |_, first| match first % 2 {
                            0 => ExpectedVersion::Exact(first + 7),
                            _ => ExpectedVersion::NoStream,
                        });
                        let got = s.append_to_streams(call);
                        if let Ok(got) = &got
                            && Some(got) != w.acked.as_ref()
                        {
                            book.problems.push(format!(
                                "op {i}: a retry of op {} returned {got:?}, the original {:?}",
                                w.a, w.acked
                            ));
                        }
                        unchanged(s, &mut book, i, &format!("a retry of op {}", w.a));
                        got.map(drop)
                    }
                }
            }
            Some(&Op::PartialRetry(n)) => {
                let with_ids = book.with_ids();
                match with_ids.get(n % with_ids.len().max(1)) {
                    None => Ok(()),
                    Some(w) => {
                        let w = (*w).clone();
                        let (s0, _, _) = w.parts[0];
                        let events = vec![event_for(plan.id, w.a, 0, 0, true), event_for(plan.id, i, 0, 0, true)];
                        match s.append(STREAMS[s0], ExpectedVersion::Any, events) {
                            Err(Error::IdempotencyConflict { .. }) => {}
                            other => book.problems.push(format!(
                                "op {i}: a partial retry of op {} returned {other:?}, not a conflict",
                                w.a
                            )),
                        }
                        unchanged(s, &mut book, i, &format!("a partial retry of op {}", w.a));
                        Ok(())
                    }
                }
            }
            Some(&Op::Stale(stream)) => {
                let next = next_versions(&book)[stream];
                let events = vec![event_for(plan.id, i, 0, 0, false)];
                match s.append(STREAMS[stream], ExpectedVersion::Exact(next + 3), events) {
                    Err(Error::WrongExpectedVersion { actual, .. }) => {
                        let want = next.checked_sub(1).map_or(CurrentVersion::NoStream, CurrentVersion::Version);
                        if actual != want {
                            book.problems.push(format!("op {i}: the stream is at {actual}, the model says {want}"));
                        }
                    }
                    other => book.problems.push(format!("op {i}: a stale expected version returned {other:?}")),
                }
                unchanged(s, &mut book, i, "a refused append");
                Ok(())
            }
            Some(Op::Flush) => s.flush_index().map(drop),
            Some(Op::Reopen { clean: true }) | None => {
                let closed = store.take().expect("a store").close();
                match (closed, op) {
                    (Ok(()), Some(_)) if !io.crashed() => EventStore::open(&dir, config(plan, Some(io))).map(|s| {
                        store = Some(s);
                    }),
                    (closed, _) => closed,
                }
            }
            Some(Op::Reopen { clean: false }) => {
                store.take().expect("a store").abandon();
                EventStore::open(&dir, config(plan, Some(io))).map(|s| store = Some(s))
            }
        };
        let what = op.map_or_else(|| "the final close".to_owned(), |op| format!("op {i} {op:?}"));
        if let Some(s) = &store {
            book.watermark = book.watermark.max(s.log().durable_offset());
            book.indexed_to = book.indexed_to.max(s.index_stats().indexed_to);
            if !io.crashed() && matches!(op, Some(Op::Reopen { .. })) {
                if s.head_position() != book.attempted() {
                    book.problems.push(format!(
                        "{what}: reopened at head {}, but {} events were appended (the page cache kept them)",
                        s.head_position(),
                        book.attempted()
                    ));
                }
                if let Some(why) = &s.index_recovery().rebuilt {
                    book.problems.push(format!("{what}: the reopen rebuilt the index: {why}"));
                }
            }
        }
        if io.crashed() {
            if result.is_ok() {
                book.swallowed.push(what.clone());
            }
            book.died_in = Some(format!("{what} -> {result:?}"));
            break;
        }
        if let Err(e) = result {
            book.problems.push(format!("{what} failed without an injected fault: {e}"));
            break;
        }
        if !book.problems.is_empty() {
            break;
        }
    }
    if let Some(s) = store {
        s.abandon();
    }
    book
}

// ---------------------------------------------------------------------------
// Checks after the crash
// ---------------------------------------------------------------------------

/// An event in a message: where it is and what it says.
fn shown(e: &RecordedEvent) -> String {
    let data = String::from_utf8_lossy(&e.data[..e.data.len().min(40)]).into_owned();
    format!("{} v{} @{} {} {data}...", e.stream, e.version, e.position, e.event_type)
}

/// Why `got` (at position `p`) is not `want`, if it is not.
fn differs(p: u64, got: &RecordedEvent, want: &Planned) -> Option<String> {
    let e = &want.event;
    let same = got.position == p
        && got.stream == STREAMS[want.stream]
        && got.version == want.version
        && got.event_type == e.event_type()
        && got.data == e.data()
        && got.data_type == e.data_type()
        && got.metadata == e.metadata()
        && got.metadata_type == e.metadata_type()
        && e.id().map_or(got.id.get_version_num() == 7, |id| got.id == id);
    (!same).then(|| {
        format!(
            "position {p} holds {}, not {} v{} {} {}... (id {:?}, content types {:?}/{:?})",
            shown(got),
            STREAMS[want.stream],
            want.version,
            e.event_type(),
            String::from_utf8_lossy(&e.data()[..e.data().len().min(40)]),
            e.id(),
            e.data_type(),
            e.metadata_type()
        )
    })
}

/// Checks that a read of `what` returned `want` (positions of `all`).
fn same(what: &str, got: &[RecordedEvent], want: &[&RecordedEvent]) -> Result<(), String> {
    let got_p: Vec<u64> = got.iter().map(|e| e.position).collect();
    let want_p: Vec<u64> = want.iter().map(|e| e.position).collect();
    if got_p != want_p {
        return Err(format!("{what} reads positions {got_p:?}, $all says {want_p:?}"));
    }
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != *w) {
        return Err(format!("{what} reads {} at position {}, $all {}", shown(g), g.position, shown(w)));
    }
    Ok(())
}

/// Forward and backward reads of one stream, category or type, whole and
/// from the middle, against `want` (what `$all` holds of it).
fn reads_agree(
    what: &str,
    want: &[&RecordedEvent],
    read: impl Fn(u64, Direction, usize) -> annal::events::Result<Vec<RecordedEvent>>,
    key: impl Fn(&RecordedEvent) -> u64,
) -> Result<(), String> {
    let r = |from, dir, max| read(from, dir, max).map_err(|e| format!("{what} from {from} {dir:?}: {e}"));
    same(&format!("{what} forward"), &r(0, Direction::Forward, usize::MAX)?, want)?;
    let back: Vec<&RecordedEvent> = want.iter().rev().copied().collect();
    same(&format!("{what} backward"), &r(u64::MAX, Direction::Backward, usize::MAX)?, &back)?;
    if let Some(mid) = want.get(want.len() / 2) {
        let from = key(mid);
        let fwd: Vec<&RecordedEvent> = want.iter().filter(|e| key(e) >= from).take(3).copied().collect();
        same(&format!("{what} forward from {from}"), &r(from, Direction::Forward, 3)?, &fwd)?;
        let bwd: Vec<&RecordedEvent> = want.iter().rev().filter(|e| key(e) <= from).take(3).copied().collect();
        same(&format!("{what} backward from {from}"), &r(from, Direction::Backward, 3)?, &bwd)?;
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    /// Events found and checked.
    events: u64,
    /// Appends in flight at the crash: found whole, found absent.
    in_flight_whole: u64,
    in_flight_absent: u64,
    /// Outcomes that lost acknowledged (undurable) appends, whole.
    acked_lost: u64,
    /// Multi-stream appends found whole.
    multi_whole: u64,
    /// Retries checked after recovery.
    retries: u64,
    /// Opens that replayed events the index runs covered before the crash
    /// (the manifest and runs were durable, the `index/` directory was not).
    index_lost: u64,
    /// Opens that removed files of the index (runs of an interrupted flush
    /// or merge, temporary files).
    removed: u64,
    /// Outcomes whose power loss changed or lost a file of the index.
    index_files_hit: u64,
}

/// What an uninterrupted recovery found: the events of `$all`.
type Recovered = Vec<RecordedEvent>;

/// Opens the store in `dir` (real file system) after a crash, checks it
/// against `book` (at least `floor` events must be there), appends to every
/// stream, closes, opens again and checks again. Returns what it held.
fn check(plan: &Plan, book: &Book, dir: &Path, floor: u64, counts: &mut Counts) -> Result<Recovered, String> {
    let store = EventStore::open(dir, config(plan, None)).map_err(|e| format!("the store does not open: {e}"))?;
    let recovery = store.index_recovery().clone();
    if let Some(why) = &recovery.rebuilt {
        return Err(format!("the open rebuilt the index: {why} ({recovery:?})"));
    }
    let all = store.read_all(0, Direction::Forward, usize::MAX).map_err(|e| format!("read_all: {e}"))?;
    let n = all.len() as u64;
    if store.head_position() != n {
        return Err(format!("head_position() is {} but $all holds {n} events", store.head_position()));
    }
    if n > book.attempted() {
        return Err(format!("{n} events, but only {} were appended", book.attempted()));
    }
    for (p, e) in all.iter().enumerate() {
        if let Some(why) = differs(p as u64, e, &book.events[p]) {
            return Err(why);
        }
    }
    if n > 0 && book.writes[book.events[n as usize - 1].write].end() != n {
        let w = &book.writes[book.events[n as usize - 1].write];
        return Err(format!(
            "$all ends at {n}, inside the append of op {} (positions {}..{}): an append is there in part",
            w.a,
            w.start,
            w.end()
        ));
    }
    if n < floor {
        let lost: Vec<usize> = book.writes.iter().filter(|w| w.end() > n && w.end() <= floor).map(|w| w.a).collect();
        return Err(format!(
            "{n} events, but {floor} must be there (acknowledged end {}, durable watermark {}): the appends of ops \
             {lost:?} are lost",
            book.acked_end(),
            book.watermark
        ));
    }
    let ids: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
    if ids.len() != all.len() {
        return Err("two events share an id".into());
    }
    let back = store.read_all(u64::MAX, Direction::Backward, usize::MAX).map_err(|e| format!("read_all back: {e}"))?;
    same("$all backward", &back, &all.iter().rev().collect::<Vec<_>>())?;

    for (s, name) in STREAMS.iter().enumerate() {
        let want: Vec<&RecordedEvent> = all.iter().filter(|e| e.stream == *name).collect();
        if let Some((v, e)) = want.iter().enumerate().find(|(v, e)| e.version != *v as u64) {
            return Err(format!("{name}: its event #{v} has version {} (versions not dense)", e.version));
        }
        if want.windows(2).any(|w| w[0].position >= w[1].position) {
            return Err(format!("{name}: versions do not grow with positions"));
        }
        let version = store.stream_version(name).map_err(|e| format!("stream_version({name}): {e}"))?;
        let want_version = want.last().map_or(CurrentVersion::NoStream, |e| CurrentVersion::Version(e.version));
        if version != want_version {
            return Err(format!("stream_version({name}) is {version}, $all says {want_version}"));
        }
        let read = |from, dir, max| store.read_stream(STREAMS[s], from, dir, max);
        reads_agree(&format!("stream {name}"), &want, read, |e| e.version)?;
    }
    for c in CATEGORIES {
        let want: Vec<&RecordedEvent> = all.iter().filter(|e| annal::events::category(&e.stream) == c).collect();
        let read = |from, dir, max| store.read_category(c, from, dir, max);
        reads_agree(&format!("category {c}"), &want, read, |e| e.position)?;
    }
    for t in TYPES {
        let want: Vec<&RecordedEvent> = all.iter().filter(|e| e.event_type == t).collect();
        let read = |from, dir, max| store.read_event_type(t, from, dir, max);
        reads_agree(&format!("event type {t}"), &want, read, |e| e.position)?;
    }

    // Retries of every append with ids that is there: its results, nothing written.
    for w in book.writes.iter().filter(|w| w.ids && w.end() <= n) {
        let want = w.results();
        if let Some(acked) = &w.acked
            && *acked != want
        {
            return Err(format!("op {}: acknowledged as {acked:?}, the model says {want:?}", w.a));
        }
        let call = w.call(plan.id, |_, first| ExpectedVersion::Exact(first + 100));
        let got = store.append_to_streams(call).map_err(|e| format!("a retry of op {} after recovery: {e}", w.a))?;
        if got != want {
            return Err(format!("a retry of op {} after recovery returned {got:?}, the original {want:?}", w.a));
        }
        if store.head_position() != n {
            return Err(format!("a retry of op {} after recovery wrote (head {})", w.a, store.head_position()));
        }
        counts.retries += 1;
    }

    // The recovered store takes an append to every stream at its next version.
    let next: Vec<u64> = STREAMS.iter().map(|name| all.iter().filter(|e| e.stream == *name).count() as u64).collect();
    let after = Write {
        a: AFTER_RECOVERY,
        parts: next.iter().enumerate().map(|(s, &v)| (s, v, 1)).collect(),
        ids: true,
        start: n,
        len: STREAMS.len() as u64,
        acked: None,
    };
    let expected =
        |_: usize, first: u64| first.checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
    let got =
        store.append_to_streams(after.call(plan.id, expected)).map_err(|e| format!("append after recovery: {e}"))?;
    if got != after.results() {
        return Err(format!("an append after recovery returned {got:?}, expected {:?}", after.results()));
    }
    let whole = store.read_all(0, Direction::Forward, usize::MAX).map_err(|e| format!("read_all: {e}"))?;
    store.close().map_err(|e| format!("close after recovery: {e}"))?;

    let again = EventStore::open(dir, config(plan, None)).map_err(|e| format!("the second open fails: {e}"))?;
    let r2 = again.index_recovery();
    if r2.rebuilt.is_some() || r2.replayed != 0 {
        return Err(format!("the open after a clean close rebuilt or replayed: {r2:?}"));
    }
    let whole2 = again.read_all(0, Direction::Forward, usize::MAX).map_err(|e| format!("read_all: {e}"))?;
    if whole2 != whole {
        return Err(format!(
            "a second open reads {} events, the first {} (after an append of 5)",
            whole2.len(),
            whole.len()
        ));
    }
    for (s, name) in STREAMS.iter().enumerate() {
        let want: Vec<&RecordedEvent> = whole.iter().filter(|e| e.stream == *name).collect();
        let got = again.read_stream(name, 0, Direction::Forward, usize::MAX).map_err(|e| format!("{name}: {e}"))?;
        same(&format!("stream {name} after a second open"), &got, &want)?;
        if want.last().map(|e| e.version) != Some(next[s]) {
            return Err(format!("{name}: the append after recovery is not its last event"));
        }
    }
    let retried =
        again.append_to_streams(after.call(plan.id, |_, _| ExpectedVersion::Any)).map_err(|e| e.to_string())?;
    if retried != after.results() || again.head_position() != n + STREAMS.len() as u64 {
        return Err(format!(
            "a retry of the append after recovery returned {retried:?} (head {})",
            again.head_position()
        ));
    }
    again.close().map_err(|e| format!("close after the second open: {e}"))?;

    counts.events += n;
    // The runs covered the log up to `indexed_to` (their manifest durably
    // replaced): an open replays at most the rest.
    let allowed = n - book.indexed_to.min(n);
    if recovery.replayed > allowed {
        counts.index_lost += 1;
        return Err(format!(
            "the open replayed {} events, but durable index runs covered all but {allowed}: {recovery:?}",
            recovery.replayed
        ));
    }
    counts.removed += u64::from(!recovery.removed.is_empty());
    counts.multi_whole += book.writes.iter().filter(|w| w.parts.len() > 1 && w.end() <= n).count() as u64;
    if let Some(w) = book.writes.last().filter(|w| w.acked.is_none()) {
        if w.end() <= n {
            counts.in_flight_whole += 1;
        } else {
            counts.in_flight_absent += 1;
        }
    }
    counts.acked_lost += u64::from(n < book.acked_end());
    Ok(all)
}

/// Opens the store under `root` through `io` and closes it: a recovery,
/// which dies wherever `io` makes it.
fn recover(plan: &Plan, root: &Path, io: &Arc<PowerLossIo>) -> Result<(), String> {
    let store = EventStore::open(root.join(STORE), config(plan, Some(io))).map_err(|e| format!("open: {e}"))?;
    store.close().map_err(|e| format!("close: {e}"))
}

// ---------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Stats {
    crash_points: u64,
    workloads: u64,
    variants: u64,
    /// Variants in which the power loss changed something.
    changed: u64,
    /// Variants that lost a directory operation.
    dir_ops_lost: u64,
    /// Variants followed by a second crash during recovery.
    recovery_crashes: u64,
    /// Crash points inside a flush or a merge of the index (a call on a file
    /// of `index/`).
    index_points: u64,
    swallowed: u64,
    counts: Counts,
    failures: Vec<String>,
}

/// Runs `plan` crashed at call `k` and checks every mode of power loss; some
/// of the outcomes are crashed again during their recovery. `dry` is the
/// trace of the workload without a crash.
fn run_point(plan: &Plan, k: u64, dry: &[String], stats: &mut Stats) {
    let tmp = fast_tempdir();
    let root = tmp.path().join("disk");
    let io = Arc::new(PowerLossIo::new(&root, Some(k)));
    let book = run_workload(plan, &root, &io);
    stats.crash_points += 1;
    stats.swallowed += book.swallowed.len() as u64;
    let trace = io.trace();
    let traced = std::env::var_os("ANNAL_SIM_TRACE").is_some();
    if traced {
        eprintln!(
            "workload {} crash_at {k}: died in {:?}, watermark {}, indexed to {}, appends {:?}\n  {}",
            plan.id,
            book.died_in,
            book.watermark,
            book.indexed_to,
            book.writes,
            trace.join("\n  ")
        );
    }
    let call = io.describe_call(k).unwrap_or_else(|| "none: after the workload".into());
    stats.index_points += u64::from(call.contains("index/"));
    let around = {
        let from = (k as usize).saturating_sub(12);
        let to = (k as usize).min(trace.len());
        trace[from..to].join("\n      ")
    };
    let undurable = io.undurable();
    let context = |mode: Option<LossMode>, report: Option<&LossReport>| {
        format!(
            "crash_sim_events FAILURE: workload {} ({}; {:?}, flush every {} events, merge above {} runs) crash_at {k} \
             (call: {call}; died in: {}){}\n    operations: {:?}\n    appends: {} acknowledged up to position {}, \
             {} events handed to the store, durable watermark {}\n    the calls up to the crash:\n      {around}\n    \
             directory operations not durable at the crash: {undurable:?}{}\n    \
             replay: ANNAL_SIM_SEED={} ANNAL_SIM_CRASH_AT={k} cargo test --release --test crash_sim_events -- --nocapture",
            plan.id,
            plan.what,
            plan.durability,
            plan.flush_entries,
            plan.merge_runs,
            book.died_in.as_deref().unwrap_or("-"),
            mode.map_or(String::new(), |m| format!(", {m}")),
            plan.ops,
            book.writes.iter().filter(|w| w.acked.is_some()).count(),
            book.acked_end(),
            book.attempted(),
            book.watermark,
            report.map_or(String::new(), |r| format!("\n    power loss: {r}")),
            plan.id
        )
    };
    if !book.problems.is_empty() {
        stats.failures.push(format!("{}\n    {}", context(None, None), book.problems.join("; ")));
        return;
    }
    if k <= dry.len() as u64 && dry[k as usize - 1] != call {
        let e = format!(
            "the workload is not deterministic: call {k} is {call:?}, without a crash {:?}",
            dry[k as usize - 1]
        );
        stats.failures.push(format!("{}\n    {e}", context(None, None)));
        return;
    }
    for (v, mode) in MODES.into_iter().enumerate() {
        let mut rng = SplitMix::new(plan.id.wrapping_mul(0x1000_0000_01B3) ^ k.wrapping_mul(0xFF51_AFD7) ^ v as u64);
        let second = rng.chance(SECOND_CRASH_PERCENT);
        // The same outcome three times: to check, to count a recovery's calls, to crash one.
        let (mut rng_dry, mut rng_again) = (rng.clone(), rng.clone());
        let target = tmp.path().join(format!("after-{v}"));
        let report = io.power_loss_into(&target, mode, &mut rng);
        stats.variants += 1;
        stats.changed += u64::from(!report.lines.is_empty());
        stats.dir_ops_lost += u64::from(report.lines.iter().any(|l| l.starts_with("lost: ")));
        stats.counts.index_files_hit += u64::from(report.lines.iter().any(|l| l.contains("index/")));
        let mut floor = book.watermark;
        if plan.durability == Durability::Always || mode == LossMode::ProcessCrash {
            floor = floor.max(book.acked_end());
        }
        let recovered = match check(plan, &book, &target.join(STORE), floor, &mut stats.counts) {
            Ok(all) => all,
            Err(e) => {
                stats.failures.push(format!("{}\n    {e}", context(Some(mode), Some(&report))));
                return;
            }
        };
        let _ = std::fs::remove_dir_all(&target);
        if !second {
            continue;
        }
        // Stage 2: the recovery of this outcome dies at one of its calls and
        // the power goes again. What the next recovery finds must be what
        // the uninterrupted one found.
        let dry_dir = tmp.path().join(format!("dry-{v}"));
        io.power_loss_into(&dry_dir, mode, &mut rng_dry);
        let io_dry = Arc::new(PowerLossIo::new(&dry_dir, None));
        if let Err(e) = recover(plan, &dry_dir, &io_dry) {
            let e = format!("the recovery through the simulator fails: {e}");
            stats.failures.push(format!("{}\n    {e}", context(Some(mode), Some(&report))));
            return;
        }
        let k2 = 1 + rng.below(io_dry.calls());
        let again = tmp.path().join(format!("again-{v}"));
        io.power_loss_into(&again, mode, &mut rng_again);
        let io2 = Arc::new(PowerLossIo::new(&again, Some(k2)));
        let _ = recover(plan, &again, &io2);
        if traced {
            eprintln!("  variant {v} stage 2 crash_at {k2}:\n    {}", io2.trace().join("\n    "));
        }
        let mode2 = MODES[rng.below(MODES.len() as u64) as usize];
        let after2 = tmp.path().join(format!("after-{v}-2"));
        let report2 = io2.power_loss_into(&after2, mode2, &mut rng);
        stats.recovery_crashes += 1;
        stats.variants += 1;
        let stage = format!(
            "then a crash during the recovery at its call {k2} ({}), then a {mode2}",
            io2.describe_call(k2).unwrap_or_else(|| "none".into())
        );
        let n1 = recovered.len() as u64;
        let result = check(plan, &book, &after2.join(STORE), n1, &mut stats.counts).and_then(|seen| {
            if seen == recovered {
                return Ok(());
            }
            Err(format!("it holds {} events, an uninterrupted recovery {n1} (or other ones)", seen.len()))
        });
        if let Err(e) = result {
            stats.failures.push(format!(
                "{}\n    {stage}: {e}\n    the recovery's calls up to its crash:\n      {}\n    second power loss: {report2}",
                context(Some(mode), Some(&report)),
                io2.trace().join("\n      ")
            ));
            return;
        }
        for d in [dry_dir, again, after2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The calls of `plan` without a crash, checked to be the same twice.
fn dry_run(plan: &Plan) -> Vec<String> {
    let mut traces = Vec::new();
    for _ in 0..2 {
        let tmp = fast_tempdir();
        let root = tmp.path().join("disk");
        let io = Arc::new(PowerLossIo::new(&root, None));
        let book = run_workload(plan, &root, &io);
        assert!(book.problems.is_empty(), "workload {}: fails without any fault: {:?}", plan.id, book.problems);
        assert!(book.writes.iter().all(|w| w.acked.is_some()), "workload {}: an append was not acknowledged", plan.id);
        traces.push((1..=io.calls()).map(|k| io.describe_call(k).expect("a call")).collect::<Vec<_>>());
    }
    assert_eq!(traces[0], traces[1], "workload {}: two runs make different calls", plan.id);
    traces.pop().expect("a trace")
}

#[test]
fn crash_at_every_call_of_the_event_store() {
    let started = Instant::now();
    let only_plan = powerloss::env_u64("ANNAL_SIM_SEED");
    let only_k = powerloss::env_u64("ANNAL_SIM_CRASH_AT");
    let mut stats = Stats::default();
    let mut per_plan = Vec::new();
    for plan in plans().into_iter().filter(|p| only_plan.is_none_or(|id| id == p.id)) {
        let trace = dry_run(&plan);
        let n = trace.len() as u64;
        stats.workloads += 1;
        let points: Vec<u64> = match only_k {
            Some(k) => vec![k],
            None => (1..=n + 1).collect(),
        };
        let index_calls = trace.iter().filter(|c| c.contains("index/")).count();
        let manifests = trace.iter().filter(|c| c.starts_with("rename") && c.ends_with("index.manifest")).count();
        let runs_removed = trace.iter().filter(|c| c.starts_with("remove_file") && c.contains("index/run-")).count();
        let appends = plan.ops.iter().filter(|o| matches!(o, Op::Append { .. })).count();
        per_plan.push(format!(
            "workload {} ({:?}, {appends} appends, flush every {} events, merge above {} runs): {n} calls, {index_calls} \
             on the index, {manifests} manifests written, {runs_removed} runs removed by merges",
            plan.id, plan.durability, plan.flush_entries, plan.merge_runs
        ));
        let failures = stats.failures.len();
        for k in points {
            run_point(&plan, k, &trace, &mut stats);
            if stats.failures.len() > failures {
                // One failure per workload is enough to see.
                break;
            }
        }
    }
    let c = &stats.counts;
    let summary = format!(
        "crash_sim_events: {} crash points ({} in a flush or merge of the index), {} workloads, {} power-loss variants \
         ({} per crash point: process crash, clean, 3 random of which 2 with torn pages; {} after a second crash during \
         recovery), {} events checked (appends in flight found whole {} / absent {}, {} acknowledged undurable appends \
         lost whole, {} multi-stream appends found whole, {} retries after recovery); {} outcomes changed by the power \
         loss, {} lost a directory operation, {} changed a file of the index; opens: 0 rebuilt the index, {} removed \
         leftover index files, {} replayed events that durable index runs covered (the index/ directory lost); {} ops returned Ok despite a failed call (appends whose index flush failed after them), {} failures, \
         {:.1} s\n  {}",
        stats.crash_points,
        stats.index_points,
        stats.workloads,
        stats.variants,
        MODES.len(),
        stats.recovery_crashes,
        c.events,
        c.in_flight_whole,
        c.in_flight_absent,
        c.acked_lost,
        c.multi_whole,
        c.retries,
        stats.changed,
        stats.dir_ops_lost,
        c.index_files_hit,
        c.removed,
        c.index_lost,
        stats.swallowed,
        stats.failures.len(),
        started.elapsed().as_secs_f64(),
        per_plan.join("\n  ")
    );
    // Straight to the stream, so that the summary shows without --nocapture.
    let _ = writeln!(std::io::stderr(), "{summary}");
    assert!(stats.failures.is_empty(), "{summary}\n\n{}", stats.failures.join("\n\n"));
    if only_plan.is_none() && only_k.is_none() {
        // A simulator that stops firing fails instead of passing: about half
        // of what a run sees.
        let seen = [
            ("crash points", stats.crash_points, 900),
            ("crash points in a flush or merge of the index", stats.index_points, 600),
            ("power-loss variants", stats.variants, 5900),
            ("second crashes during recovery", stats.recovery_crashes, 1300),
            ("events checked", c.events, 110_000),
            // An append whose index flush fails afterwards returns Ok (its
            // events are in the log, durable under Always): few appends die
            // in flight with their events whole.
            ("appends in flight found whole", c.in_flight_whole, 50),
            ("appends in flight found absent", c.in_flight_absent, 250),
            ("acknowledged undurable appends lost whole", c.acked_lost, 20),
            ("multi-stream appends found whole", c.multi_whole, 9000),
            ("retries after recovery", c.retries, 21_000),
            ("outcomes that changed a file of the index", c.index_files_hit, 2400),
            ("opens that removed leftover index files", c.removed, 2200),
            ("variants that lost a directory operation", stats.dir_ops_lost, 2700),
        ];
        powerloss::assert_fired(&summary, &seen);
    }
}

/// Reproduces an engine bug found by this simulation: `Indexes::open`
/// creates `index/` without an fsync of the store's directory, and nothing
/// syncs that directory afterwards, so a power loss can take the whole index
/// with it, although every run and the manifest were fsynced and their
/// directory synced. The next open then replays the entire global log, and
/// its `index_recovery()` reports neither a rebuild nor a loss. Reads stay
/// right (the log is the truth); what is lost is the bound on recovery work
/// that docs/EVENTS.md promises ("recovery reads at most what one flush
/// would have written"). The engine now syncs the store's directory after
/// creating `index/`; the sweep fails an open that replays what durable index
/// runs covered.
#[test]
fn a_flushed_index_survives_a_power_loss() {
    let tmp = fast_tempdir();
    let root = tmp.path().join("disk");
    let io = Arc::new(PowerLossIo::new(&root, None));
    let plan = Plan {
        id: 100,
        what: "a flushed index",
        durability: Durability::Always,
        flush_entries: 1000,
        merge_runs: 2,
        ops: Vec::new(),
    };
    let store = EventStore::open(root.join(STORE), config(&plan, Some(&io))).unwrap();
    for i in 0..20 {
        store
            .append("order-1", ExpectedVersion::Any, vec![NewEvent::json("Placed", format!("{{\"i\":{i}}}"))])
            .unwrap();
    }
    // The flush writes the runs and the manifest, each fsynced, and syncs index/.
    store.flush_index().unwrap();
    assert_eq!(store.index_stats().indexed_to, 20);
    store.close().unwrap();
    let after = tmp.path().join("after");
    io.power_loss_into(&after, LossMode::Clean, &mut SplitMix::new(1));
    let files = common::all_files(&after.join(STORE));
    let store = EventStore::open(after.join(STORE), config(&plan, None)).unwrap();
    assert_eq!(store.read_stream("order-1", 0, Direction::Forward, 100).unwrap().len(), 20);
    let recovery = store.index_recovery().clone();
    store.close().unwrap();
    assert_eq!(
        recovery.replayed,
        0,
        "the durable index was lost: {recovery:?}; the store after a clean power loss holds {files:?}; \
         directory operations the simulator saw not durable: {:?}",
        io.undurable()
    );
}
