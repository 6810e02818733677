//! Crash simulation of a topic store: topics created, written, deleted,
//! re-created and grown, the store closed and reopened, with the process
//! dying at persistence calls and the power lost in a few ways.
//!
//! The store's root lies in the tree a [`PowerLossIo`] simulates, so the
//! crash points include the directory creations and removals of topic
//! administration (the store's own directories, a topic's staging directory
//! and its partitions, the rename into place, the rename to a tombstone and
//! its removal), and a power loss keeps or loses each undurable one. Each
//! workload (single-threaded, deterministic, `Durability::Always`) runs once
//! to count its persistence calls (N); then, for every crash point k in
//! 1..=N+1 (k = N+1: after the final close), it runs again with call k and
//! every later one failing, and the tree is rewritten to five post-crash
//! states (process crash, clean power loss, three random writebacks, two of
//! them with torn pages). The store is reopened there with the real file
//! system and must hold:
//!
//! - the open succeeds, and lists no staging or tombstone directory (names
//!   starting with '.') as a topic, nor leaves one in `topics/`;
//! - a topic whose `create_topic` returned `Ok` and whose deletion never
//!   started exists with its partition count (the old or the new one while
//!   an `add_partitions` was in flight, the new partitions empty) and every
//!   record whose send returned `Ok`, in order from offset 0, and nothing but
//!   those and the one send in flight;
//! - a topic whose `delete_topic` returned `Ok` is gone, unless it was
//!   created again: then it is the new one, with none of the old records;
//! - a topic whose creation or deletion was in flight at the crash is either
//!   absent or whole (it opens, every partition reads, its acknowledged
//!   records are all there);
//! - no other topic;
//! - closing and opening it again (recovery after recovery) gives the same
//!   topics with the same records.
//!
//! About a third of the post-crash states are also crashed during their
//! recovery (at a seeded call of the open and close that recovers them, through
//! a second simulator) and lose power again: the next open must pass the same
//! checks and find the very topics and records an uninterrupted recovery
//! found.
//!
//! Not covered here: several threads (the crash points would not be
//! deterministic), the archive tier (`tests/crash_sim_policies.rs`), and the
//! partition logs' own crash behaviour beyond what these workloads do
//! (`tests/crash_sim.rs`).
//!
//! A failure names the workload, the crash point and what it was, the calls
//! around it, the directory operations that were not durable, and what the
//! power loss chose. `ANNAL_SIM_SEED=<workload> [ANNAL_SIM_CRASH_AT=<k>] cargo
//! test --release --test crash_sim_store -- --nocapture` replays it
//! (`ANNAL_SIM_TRACE=1` prints every call of the case).

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annal::io::Io;
use annal::{Durability, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig, partition_for_key};
use common::fast_tempdir;
use powerloss::{LossMode, LossReport, PowerLossIo, SplitMix};

/// The store's directory inside the simulated tree (so that its creation is
/// simulated too).
const STORE: &str = "store";
/// Segment size of every topic: small, so that sends roll segments.
const SEGMENT_BYTES: u64 = 8 << 10;
const TS0: i64 = 1_700_000_000_000;
/// Workloads drawn from seeds, besides the three written out.
const RANDOM_PLANS: u64 = 5;
/// Share (%) of the post-crash states whose recovery is crashed too.
const SECOND_CRASH_PERCENT: u64 = 30;
/// Post-crash states per crash point.
const MODES: [LossMode; 5] = powerloss::SWEEP_MODES;

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    /// `create_topic(name)` with this many partitions.
    Create(&'static str, u32),
    /// This many sends to the topic, alternately keyed (`send`) and to a
    /// chosen partition (`send_to`).
    Write(&'static str, u32),
    Delete(&'static str),
    /// `add_partitions(name, n)`.
    Grow(&'static str, u32),
    /// `close` and `open` again.
    Reopen,
}

#[derive(Debug, Clone)]
struct Plan {
    id: u64,
    what: &'static str,
    ops: Vec<Op>,
}

/// The workloads: three written out, [`RANDOM_PLANS`] drawn from seeds.
fn plans() -> Vec<Plan> {
    use Op::{Create, Delete, Grow, Reopen, Write};
    let mut plans = vec![
        Plan {
            id: 0,
            what: "create, send, delete, re-create, reopen, grow",
            ops: vec![
                Create("a", 1),
                Write("a", 4),
                Create("b", 2),
                Write("b", 6),
                Delete("a"),
                Create("a", 3),
                Write("a", 3),
                Reopen,
                Write("b", 2),
                Grow("b", 3),
                Write("b", 4),
                Delete("b"),
                Write("a", 2),
            ],
        },
        Plan {
            id: 1,
            what: "one name deleted and re-created over and over",
            ops: vec![
                Create("x", 2),
                Write("x", 5),
                Delete("x"),
                Create("x", 2),
                Delete("x"),
                Create("x", 1),
                Write("x", 3),
                Reopen,
                Delete("x"),
                Create("x", 3),
                Write("x", 4),
            ],
        },
        Plan {
            id: 2,
            what: "three topics, grown and reopened",
            ops: vec![
                Create("t0", 3),
                Create("t1", 1),
                Write("t1", 3),
                Grow("t1", 2),
                Write("t0", 5),
                Reopen,
                Create("t2", 2),
                Delete("t0"),
                Write("t1", 3),
                Grow("t2", 3),
                Reopen,
                Write("t2", 3),
            ],
        },
    ];
    for id in 3..3 + RANDOM_PLANS {
        plans.push(random_plan(id));
    }
    plans
}

/// A valid sequence of operations drawn from `id`.
fn random_plan(id: u64) -> Plan {
    use Op::{Create, Delete, Grow, Reopen, Write};
    const NAMES: [&str; 3] = ["r0", "r1", "r2"];
    let mut rng = SplitMix::new(id.wrapping_mul(0x5851_F42D_4C95_7F2D) ^ 0x70_91C5);
    let mut exists: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut ops = Vec::new();
    while ops.len() < 12 {
        let absent: Vec<&'static str> = NAMES.iter().copied().filter(|n| !exists.contains_key(n)).collect();
        let present: Vec<(&'static str, u32)> = exists.iter().map(|(n, p)| (*n, *p)).collect();
        let op = match rng.below(100) {
            _ if present.is_empty() => {
                let n = absent[rng.below(absent.len() as u64) as usize];
                Create(n, 1 + rng.below(3) as u32)
            }
            0..45 => {
                let (n, _) = present[rng.below(present.len() as u64) as usize];
                Write(n, 1 + rng.below(5) as u32)
            }
            45..65 if !absent.is_empty() => {
                let n = absent[rng.below(absent.len() as u64) as usize];
                Create(n, 1 + rng.below(3) as u32)
            }
            65..80 => Delete(present[rng.below(present.len() as u64) as usize].0),
            80..90 => match present.iter().find(|(_, p)| *p < 3) {
                Some((n, p)) => Grow(n, p + 1),
                None => Reopen,
            },
            _ => Reopen,
        };
        match op {
            Create(n, p) | Grow(n, p) => {
                exists.insert(n, p);
            }
            Delete(n) => {
                exists.remove(n);
            }
            Write(..) | Reopen => {}
        }
        ops.push(op);
    }
    Plan { id, what: "drawn from its seed", ops }
}

/// The value of the record at `offset` of partition `p` of the
/// `incarnation`-th topic named `name` in workload `plan`: a record of
/// another topic, partition, offset or incarnation never passes for it.
fn value(plan: u64, name: &str, incarnation: usize, p: u32, offset: u64) -> Vec<u8> {
    let mut r = SplitMix::new(
        plan.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ annal::topic::fnv1a_64(name.as_bytes())
            ^ (incarnation as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
            ^ u64::from(p).wrapping_mul(0x94D0_49BB_1331_11EB)
            ^ offset.wrapping_mul(0xD6E8_FEB8_6659_FD93),
    );
    let len = 64 + r.below(1500) as usize;
    let mut v = format!("w{plan}/{name}#{incarnation}/p{p}/o{offset}/").into_bytes();
    v.extend((0..len).map(|_| r.next_u64() as u8));
    v
}

// ---------------------------------------------------------------------------
// What the workload did
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `create_topic` started and did not return `Ok`.
    Creating,
    /// Created, no deletion started.
    Live,
    /// `delete_topic` started and did not return `Ok`.
    Deleting,
    /// `delete_topic` returned `Ok`.
    Deleted,
}

/// One topic of a name, from its creation to its deletion.
#[derive(Debug, Clone)]
struct Incarnation {
    phase: Phase,
    partitions: u32,
    /// The partition count an `add_partitions` in flight asked for.
    growing: Option<u32>,
    /// Per partition, the values of the acknowledged records, from offset 0.
    acked: Vec<Vec<Vec<u8>>>,
    /// The send in flight: partition and value.
    in_flight: Option<(u32, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Book {
    topics: BTreeMap<&'static str, Vec<Incarnation>>,
    /// The operation during which the process died.
    died_in: Option<String>,
    /// Operations that returned `Ok` although a persistence call failed in them.
    swallowed: Vec<String>,
    /// Wrong results seen while the workload ran.
    problems: Vec<String>,
}

impl Book {
    fn last(&mut self, name: &'static str) -> &mut Incarnation {
        self.topics.get_mut(name).and_then(|v| v.last_mut()).expect("a topic the workload created")
    }

    fn incarnation(&self, name: &str) -> usize {
        self.topics.get(name).map_or(0, Vec::len)
    }
}

fn store_config(io: Option<&Arc<PowerLossIo>>) -> TopicStoreConfig {
    let mut log = LogConfig::default().with_durability(Durability::Always);
    if let Some(io) = io {
        log = log.with_io(Arc::clone(io) as Arc<dyn Io>);
    }
    TopicStoreConfig::default().with_log_config(log)
}

/// Sends `count` records to topic `name` (op `i`), keeping the book.
fn send(
    plan: &Plan,
    store: &TopicStore,
    book: &mut Book,
    i: usize,
    name: &'static str,
    count: u32,
) -> annal::Result<()> {
    let topic = store.topic(name)?;
    let incarnation = book.incarnation(name) - 1;
    for j in 0..count {
        let inc = book.last(name);
        let key = format!("key-{i}-{j}");
        let keyed = j % 2 == 0;
        let p = if keyed { partition_for_key(key.as_bytes(), inc.partitions) } else { (i as u32 + j) % inc.partitions };
        let offset = inc.acked[p as usize].len() as u64;
        let v = value(plan.id, name, incarnation, p, offset);
        inc.in_flight = Some((p, v.clone()));
        let record = Record::new(&v).with_timestamp(TS0 + (i * 100 + j as usize) as i64);
        let got = if keyed { topic.send(&record.with_key(key.as_bytes()))? } else { (p, topic.send_to(p, &record)?) };
        if got != (p, offset) {
            book.problems.push(format!("op {i}: send {j} to {name} went to {got:?}, expected {:?}", (p, offset)));
        }
        let inc = book.last(name);
        inc.acked[p as usize].push(v);
        inc.in_flight = None;
    }
    Ok(())
}

/// Runs `plan` with the store in `root` through `io`, until the end or until
/// the process dies; then drops the store (its calls fail if it died).
fn run_workload(plan: &Plan, root: &Path, io: &Arc<PowerLossIo>) -> Book {
    let dir = root.join(STORE);
    let mut book = Book::default();
    let mut store = match TopicStore::open(&dir, store_config(Some(io))) {
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
    let steps = plan.ops.iter().copied().map(Some).chain([None]);
    for (i, op) in steps.enumerate() {
        let s = store.as_ref().expect("a store while the process lives");
        let result: annal::Result<()> = match op {
            Some(Op::Create(name, n)) => {
                book.topics.entry(name).or_default().push(Incarnation {
                    phase: Phase::Creating,
                    partitions: n,
                    growing: None,
                    acked: vec![Vec::new(); n as usize],
                    in_flight: None,
                });
                let config = TopicConfig::default().with_partitions(n).with_segment_bytes(SEGMENT_BYTES);
                s.create_topic(name, config).map(|_| book.last(name).phase = Phase::Live)
            }
            Some(Op::Write(name, count)) => send(plan, s, &mut book, i, name, count),
            Some(Op::Delete(name)) => {
                book.last(name).phase = Phase::Deleting;
                s.delete_topic(name).map(|_| book.last(name).phase = Phase::Deleted)
            }
            Some(Op::Grow(name, n)) => {
                book.last(name).growing = Some(n);
                s.add_partitions(name, n).map(|()| {
                    let inc = book.last(name);
                    inc.partitions = n;
                    inc.acked.resize(n as usize, Vec::new());
                    inc.growing = None;
                })
            }
            Some(Op::Reopen) | None => {
                let closed = store.take().expect("a store").close();
                match (closed, op) {
                    (Ok(()), Some(_)) if !io.crashed() => {
                        TopicStore::open(&dir, store_config(Some(io))).map(|s| store = Some(s))
                    }
                    (closed, _) => closed,
                }
            }
        };
        let what = op.map_or_else(|| "the final close".to_owned(), |op| format!("op {i} {op:?}"));
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
    drop(store);
    book
}

// ---------------------------------------------------------------------------
// Checks after the crash
// ---------------------------------------------------------------------------

/// A topic as a recovered store holds it: per partition, its records' values.
type Seen = Vec<Vec<Vec<u8>>>;

/// Every topic of `store`, read whole.
fn snapshot(store: &TopicStore) -> Result<BTreeMap<String, Seen>, String> {
    let mut out = BTreeMap::new();
    for name in store.topics() {
        if name.starts_with('.') {
            return Err(format!("{name:?} is listed as a topic"));
        }
        let topic = store.topic(&name).map_err(|e| format!("topic {name} is listed but does not open: {e}"))?;
        let mut partitions = Vec::new();
        for p in 0..topic.partitions() {
            let start = topic.start_offset(p).map_err(|e| format!("{name}/{p}: start offset: {e}"))?;
            if start != 0 {
                return Err(format!("{name}/{p} starts at offset {start}, not 0"));
            }
            let reader = topic.read_from(p, 0).map_err(|e| format!("{name}/{p}: read_from(0): {e}"))?;
            let records = reader.collect::<annal::Result<Vec<_>>>().map_err(|e| format!("{name}/{p}: reading: {e}"))?;
            let next = topic.next_offset(p).map_err(|e| format!("{name}/{p}: next offset: {e}"))?;
            if next != records.len() as u64 {
                return Err(format!("{name}/{p}: next offset {next}, but {} records read", records.len()));
            }
            let mut values = Vec::with_capacity(records.len());
            for (i, r) in records.into_iter().enumerate() {
                if r.offset != i as u64 {
                    return Err(format!("{name}/{p}: record #{i} carries offset {}", r.offset));
                }
                values.push(r.value.unwrap_or_default());
            }
            partitions.push(values);
        }
        out.insert(name, partitions);
    }
    Ok(out)
}

/// Checks that `seen` is `inc`, whole: its partition count, every
/// acknowledged record, and at most the send in flight besides.
fn check_whole(name: &str, inc: &Incarnation, seen: &Seen) -> Result<(), String> {
    let count = seen.len() as u32;
    if count != inc.partitions && Some(count) != inc.growing {
        let growing = inc.growing.map_or(String::new(), |g| format!(" (or {g}: add_partitions was in flight)"));
        return Err(format!("topic {name} has {count} partitions, expected {}{growing}", inc.partitions));
    }
    for (p, got) in seen.iter().enumerate() {
        let want = inc.acked.get(p).map_or(&[][..], Vec::as_slice);
        let describe = |v: &[u8]| String::from_utf8_lossy(&v[..v.len().min(40)]).into_owned();
        for (o, (g, w)) in got.iter().zip(want).enumerate() {
            if g != w {
                return Err(format!(
                    "{name}/{p} offset {o} holds {:?}..., not the record sent there ({:?}...)",
                    describe(g),
                    describe(w)
                ));
            }
        }
        if got.len() < want.len() {
            return Err(format!("{name}/{p} holds {} records, but {} sends were acknowledged", got.len(), want.len()));
        }
        if let Some(extra) = got.get(want.len()) {
            let in_flight = inc.in_flight.as_ref().is_some_and(|(q, v)| *q as usize == p && v == extra);
            if !in_flight || got.len() > want.len() + 1 {
                return Err(format!(
                    "{name}/{p} holds {} records, {} acknowledged; the extra one ({:?}...) was {}",
                    got.len(),
                    want.len(),
                    describe(extra),
                    if in_flight { "in flight, but then more" } else { "never sent there" }
                ));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    /// Topics found and checked.
    topics: u64,
    /// Creations in flight at the crash: found whole, found absent.
    creating_whole: u64,
    creating_absent: u64,
    /// Deletions in flight at the crash: found whole, found absent.
    deleting_whole: u64,
    deleting_absent: u64,
    /// `add_partitions` in flight: found grown.
    grown_in_flight: u64,
    /// Outcomes that kept the send in flight.
    in_flight_kept: u64,
}

/// Opens the store in `dir` (real file system) after a crash and checks it
/// against `book`, then closes it and opens it again. Returns what it holds.
fn check(book: &Book, dir: &Path, counts: &mut Counts) -> Result<BTreeMap<String, Seen>, String> {
    let store = TopicStore::open(dir, store_config(None)).map_err(|e| format!("the store does not open: {e}"))?;
    let seen = snapshot(&store)?;
    for (name, incs) in &book.topics {
        let last = incs.last().expect("an incarnation");
        let got = seen.get(*name);
        match (last.phase, got) {
            (Phase::Live, None) => return Err(format!("topic {name} (created, never deleted) is missing")),
            (Phase::Deleted, Some(_)) => return Err(format!("topic {name} was deleted and is back")),
            (Phase::Deleted, None) => {}
            (Phase::Creating, None) => counts.creating_absent += 1,
            (Phase::Deleting, None) => counts.deleting_absent += 1,
            (phase, Some(s)) => {
                check_whole(name, last, s).map_err(|e| format!("{e} (topic {phase:?})"))?;
                counts.topics += 1;
                counts.creating_whole += u64::from(phase == Phase::Creating);
                counts.deleting_whole += u64::from(phase == Phase::Deleting);
                counts.grown_in_flight += u64::from(last.growing.is_some_and(|g| s.len() as u32 == g));
                counts.in_flight_kept += u64::from(
                    last.in_flight.as_ref().is_some_and(|(p, _)| s[*p as usize].len() > last.acked[*p as usize].len()),
                );
            }
        }
    }
    if let Some(other) = seen.keys().find(|n| !book.topics.contains_key(n.as_str())) {
        return Err(format!("topic {other} was never created"));
    }
    let topics_dir = dir.join(annal::topic::TOPICS_DIR_NAME);
    let hidden: Vec<String> = std::fs::read_dir(&topics_dir)
        .map_err(|e| format!("list {}: {e}", topics_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with('.'))
        .collect();
    if !hidden.is_empty() {
        return Err(format!("the open left {hidden:?} in topics/"));
    }
    store.close().map_err(|e| format!("close after recovery: {e}"))?;
    let again = TopicStore::open(dir, store_config(None)).map_err(|e| format!("the second open fails: {e}"))?;
    let seen2 = snapshot(&again).map_err(|e| format!("after a second open: {e}"))?;
    if seen2 != seen {
        let sizes = |s: &BTreeMap<String, Seen>| -> Vec<(String, Vec<usize>)> {
            s.iter().map(|(n, t)| (n.clone(), t.iter().map(Vec::len).collect())).collect()
        };
        return Err(format!(
            "a second open found other topics or records: {:?}, the first {:?} (topic, records per partition)",
            sizes(&seen2),
            sizes(&seen)
        ));
    }
    again.close().map_err(|e| format!("close after the second open: {e}"))?;
    Ok(seen)
}

/// Opens the store under `root` through `io` and closes it: a recovery,
/// which dies wherever `io` makes it.
fn recover(root: &Path, io: &Arc<PowerLossIo>) -> Result<(), String> {
    let store = TopicStore::open(root.join(STORE), store_config(Some(io))).map_err(|e| format!("open: {e}"))?;
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
    swallowed: u64,
    counts: Counts,
    failures: Vec<String>,
}

/// Whether call `desc` changes a directory (or syncs one).
fn is_dir_call(desc: &str) -> bool {
    ["create ", "rename ", "remove_file ", "create_dir_all ", "remove_dir_all ", "sync_dir "]
        .iter()
        .any(|p| desc.starts_with(p))
}

/// Runs `plan` crashed at call `k` and checks every mode of power loss; some
/// of the outcomes are crashed again during their recovery.
fn run_point(plan: &Plan, k: u64, stats: &mut Stats) {
    let tmp = fast_tempdir();
    let root = tmp.path().join("disk");
    let io = Arc::new(PowerLossIo::new(&root, Some(k)));
    let book = run_workload(plan, &root, &io);
    stats.crash_points += 1;
    stats.swallowed += book.swallowed.len() as u64;
    let trace = io.trace();
    let traced = std::env::var_os("ANNAL_SIM_TRACE").is_some();
    if traced {
        eprintln!("workload {} crash_at {k}: {book:?}\n  {}", plan.id, trace.join("\n  "));
    }
    let call = io.describe_call(k).unwrap_or_else(|| "none: after the workload".into());
    let around = {
        let from = (k as usize).saturating_sub(12);
        let to = (k as usize).min(trace.len());
        trace[from..to].join("\n      ")
    };
    let undurable = io.undurable();
    let context = |mode: Option<LossMode>, report: Option<&LossReport>| {
        format!(
            "crash_sim_store FAILURE: workload {} ({}) crash_at {k} (call: {call}; died in: {}){}\n    \
             operations: {:?}\n    the calls up to the crash:\n      {around}\n    \
             directory operations not durable at the crash: {undurable:?}{}\n    \
             replay: ANNAL_SIM_SEED={} ANNAL_SIM_CRASH_AT={k} cargo test --release --test crash_sim_store -- --nocapture",
            plan.id,
            plan.what,
            book.died_in.as_deref().unwrap_or("-"),
            mode.map_or(String::new(), |m| format!(", {m}")),
            plan.ops,
            report.map_or(String::new(), |r| format!("\n    power loss: {r}")),
            plan.id
        )
    };
    if !book.problems.is_empty() {
        stats.failures.push(format!("{}\n    {}", context(None, None), book.problems.join("; ")));
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
        let recovered = match check(&book, &target.join(STORE), &mut stats.counts) {
            Ok(seen) => seen,
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
        let dry = tmp.path().join(format!("dry-{v}"));
        io.power_loss_into(&dry, mode, &mut rng_dry);
        let io_dry = Arc::new(PowerLossIo::new(&dry, None));
        if let Err(e) = recover(&dry, &io_dry) {
            let e = format!("the recovery through the simulator fails: {e}");
            stats.failures.push(format!("{}\n    {e}", context(Some(mode), Some(&report))));
            return;
        }
        let k2 = 1 + rng.below(io_dry.calls());
        let again = tmp.path().join(format!("again-{v}"));
        io.power_loss_into(&again, mode, &mut rng_again);
        let io2 = Arc::new(PowerLossIo::new(&again, Some(k2)));
        let _ = recover(&again, &io2);
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
        let result = check(&book, &after2.join(STORE), &mut stats.counts).and_then(|seen| {
            if seen == recovered {
                return Ok(());
            }
            let sizes = |s: &BTreeMap<String, Seen>| -> Vec<(String, Vec<usize>)> {
                s.iter().map(|(n, t)| (n.clone(), t.iter().map(Vec::len).collect())).collect()
            };
            Err(format!(
                "it holds {:?}, an uninterrupted recovery {:?} (topic, records per partition)",
                sizes(&seen),
                sizes(&recovered)
            ))
        });
        if let Err(e) = result {
            stats.failures.push(format!(
                "{}\n    {stage}: {e}\n    the recovery's calls up to its crash:\n      {}\n    second power loss: {report2}",
                context(Some(mode), Some(&report)),
                io2.trace().join("\n      ")
            ));
            return;
        }
        for d in [dry, again, after2] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[test]
fn crash_at_the_calls_of_topic_administration() {
    let started = Instant::now();
    let only_plan = powerloss::env_u64("ANNAL_SIM_SEED");
    let only_k = powerloss::env_u64("ANNAL_SIM_CRASH_AT");
    let mut stats = Stats::default();
    let mut per_plan = Vec::new();
    for plan in plans().into_iter().filter(|p| only_plan.is_none_or(|id| id == p.id)) {
        // Count the calls of the whole workload (no crash).
        let tmp = fast_tempdir();
        let root = tmp.path().join("disk");
        let io = Arc::new(PowerLossIo::new(&root, None));
        let dry = run_workload(&plan, &root, &io);
        assert!(dry.problems.is_empty(), "workload {}: fails without any fault: {:?}", plan.id, dry.problems);
        let trace: Vec<String> = (1..=io.calls()).map(|k| io.describe_call(k).expect("a call")).collect();
        let n = trace.len() as u64;
        drop(tmp);
        stats.workloads += 1;
        let points: Vec<u64> = match only_k {
            Some(k) => vec![k],
            None => (1..=n + 1).collect(),
        };
        let dir_calls = trace.iter().filter(|c| is_dir_call(c)).count();
        per_plan.push(format!("workload {} ({}): {n} calls, {dir_calls} of them on directories", plan.id, plan.what));
        let failures = stats.failures.len();
        for k in points {
            run_point(&plan, k, &mut stats);
            if stats.failures.len() > failures {
                // One failure per workload is enough to see.
                break;
            }
        }
    }
    let c = &stats.counts;
    let summary = format!(
        "crash_sim_store: {} crash points, {} workloads, {} power-loss variants ({} per crash point: process crash, \
         clean, 3 random of which 2 with torn pages; {} after a second crash during recovery), {} topics checked \
         (creations in flight found whole {} / absent {}, deletions in flight found whole {} / absent {}, \
         {} grown in flight, {} sends in flight kept); {} outcomes changed by the power loss, {} lost a directory \
         operation; {} ops returned Ok despite a failed call, {} failures, {:.1} s\n  {}",
        stats.crash_points,
        stats.workloads,
        stats.variants,
        MODES.len(),
        stats.recovery_crashes,
        c.topics,
        c.creating_whole,
        c.creating_absent,
        c.deleting_whole,
        c.deleting_absent,
        c.grown_in_flight,
        c.in_flight_kept,
        stats.changed,
        stats.dir_ops_lost,
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
            ("crash points", stats.crash_points, 700),
            ("power-loss variants", stats.variants, 4500),
            ("second crashes during recovery", stats.recovery_crashes, 1000),
            ("topics checked", c.topics, 6000),
            ("creations in flight found whole", c.creating_whole, 200),
            ("creations in flight found absent", c.creating_absent, 1000),
            ("deletions in flight found whole", c.deleting_whole, 70),
            ("deletions in flight found absent", c.deleting_absent, 120),
            ("growths in flight found grown", c.grown_in_flight, 10),
            ("variants that lost a directory operation", stats.dir_ops_lost, 2000),
        ];
        powerloss::assert_fired(&summary, &seen);
    }
}

/// The simulator's tree: directory creations, renames of directories and
/// removals of subtrees are durable only once their parent is synced.
#[test]
fn simulator_models_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let io = PowerLossIo::new(&root, None);
    let mut rng = SplitMix::new(7);
    let write = |path: &Path, body: &[u8]| {
        let f = io.create(path).unwrap();
        io.write_all_at(&f, body, 0).unwrap();
        io.sync_data(&f).unwrap();
    };
    // a/b/f, with f durable in b and b in a, but a not durable in the root.
    io.create_dir_all(&root.join("a/b")).unwrap();
    write(&root.join("a/b/f"), b"f");
    io.sync_dir(&root.join("a/b")).unwrap();
    io.sync_dir(&root.join("a")).unwrap();
    let out = tmp.path().join("clean1");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert!(out.is_dir() && !out.join("a").exists(), "a directory whose creation was lost takes its contents");
    let out = tmp.path().join("proc1");
    io.power_loss_into(&out, LossMode::ProcessCrash, &mut rng);
    assert_eq!(std::fs::read(out.join("a/b/f")).unwrap(), b"f");
    io.sync_dir(&root).unwrap();
    let out = tmp.path().join("clean2");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert_eq!(std::fs::read(out.join("a/b/f")).unwrap(), b"f", "durable all the way up");

    // A file created in b is not durable until b is synced, whatever else is.
    write(&root.join("a/b/g"), b"g");
    io.sync_dir(&root).unwrap();
    let out = tmp.path().join("clean3");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert!(out.join("a/b/f").exists() && !out.join("a/b/g").exists());
    io.sync_dir(&root.join("a/b")).unwrap();

    // Renaming a directory moves its subtree as one: a/b -> c.
    io.rename(&root.join("a/b"), &root.join("c")).unwrap();
    let mut outcomes = std::collections::BTreeSet::new();
    for i in 0..40 {
        let out = tmp.path().join(format!("r{i}"));
        io.power_loss_into(&out, LossMode::Random { keep_percent: 50, torn: false }, &mut rng);
        let old = out.join("a/b/f").exists() && out.join("a/b/g").exists();
        let new = out.join("c/f").exists() && out.join("c/g").exists();
        assert!(old != new, "a rename of a directory is atomic: old {old}, new {new}");
        assert!(!out.join("a/b").exists() || !out.join("c").exists());
        outcomes.insert(new);
    }
    assert_eq!(outcomes.len(), 2, "both outcomes of an undurable rename occur");
    // Durable once either parent (here the source, a) is synced.
    io.sync_dir(&root.join("a")).unwrap();
    let out = tmp.path().join("clean4");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert!(out.join("c/f").exists() && !out.join("a/b").exists());

    // A removal of a subtree: lost, the subtree is back as it durably was.
    let unsynced = io.create(&root.join("c/h")).unwrap();
    io.write_all_at(&unsynced, b"h", 0).unwrap();
    io.remove_dir_all(&root.join("c")).unwrap();
    let out = tmp.path().join("clean5");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert_eq!(std::fs::read(out.join("c/f")).unwrap(), b"f");
    assert!(!out.join("c/h").exists(), "its creation in c was never durable");
    let out = tmp.path().join("proc5");
    io.power_loss_into(&out, LossMode::ProcessCrash, &mut rng);
    assert!(!out.join("c").exists());
    io.sync_dir(&root).unwrap();
    let out = tmp.path().join("clean6");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert!(!out.join("c").exists() && out.join("a").is_dir(), "a durable removal takes the subtree");

    // A file created behind the simulator's back (as lock files are) counts
    // as created when it is first seen: durable at its directory's sync.
    io.create_dir_all(&root.join("d")).unwrap();
    std::fs::write(root.join("d/lock"), b"").unwrap();
    let out = tmp.path().join("proc7");
    io.power_loss_into(&out, LossMode::ProcessCrash, &mut rng);
    assert!(out.join("d/lock").exists());
    io.sync_dir(&root).unwrap();
    let out = tmp.path().join("clean7");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert!(out.join("d").is_dir() && !out.join("d/lock").exists());
    io.sync_dir(&root.join("d")).unwrap();
    let out = tmp.path().join("clean8");
    io.power_loss_into(&out, LossMode::Clean, &mut rng);
    assert!(out.join("d/lock").exists());

    // Nothing outside the root is touched or tracked.
    let outside = tmp.path().join("outside");
    io.create_dir_all(&outside).unwrap();
    io.sync_dir(&outside).unwrap();
    // (The creation of c/h stays undurable for ever: c was removed before it
    // was ever synced.)
    assert_eq!(io.undurable(), ["create c/h"]);

    // The tree itself rewritten: what a clean power loss leaves, durable from then on.
    io.power_loss(LossMode::Clean, &mut rng);
    let left: Vec<String> = io.image().entries().into_keys().collect();
    assert_eq!(left, ["a", "d", "d/lock"]);
    assert!(io.undurable().is_empty());
}
