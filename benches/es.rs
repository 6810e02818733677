//! The application layer's workloads (docs/BENCHMARKS.md, "Event sourcing
//! (aggregates, snapshots, projections)"): loading one aggregate of
//! 1,000,000 events from its newest snapshot and by a full replay; the
//! throughput of `Repository::execute` over 100,000 aggregates from 1 and 8
//! threads, durable and not; and a projection catching up over 1,000,000
//! events into a `KvModel`. Each workload runs `ROUNDS` times (default 3);
//! the median and the spread are printed, then one JSON line per workload.
//!
//! `cargo bench --bench es`; `cargo bench --bench es -- --quick` divides
//! every count by 100 and runs one round (unless `ROUNDS` says otherwise).
//! Sizes: `LOAD_EVENTS` events of the one aggregate (default 1,000,000),
//! written by commands of `LOAD_BATCH` events (default 100), a snapshot every
//! `SNAPSHOT_EVERY` events (default 1,000), `LOADS` loads from the snapshot
//! per round (default 200; each round's figure is their median); `AGGREGATES`
//! aggregates of the execute workloads (default 100,000), `COMMANDS`
//! not-durable commands (default 100,000) and `DURABLE_COMMANDS` durable
//! commands per thread (default 5,000); `PROJECTION_EVENTS` events the
//! projection goes over (default 1,000,000) in `PROJECTION_AGGREGATES`
//! aggregates (default 100,000). `TMPDIR` for the directories.

#[path = "support/rounds.rs"]
mod rounds;

use std::sync::Arc;
use std::time::Instant;

use rounds::{Results, env};

use annal::Durability;
use annal::es::{Aggregate, DomainEvent, Json, KvModel, Projection, ProjectionRunner, ProjectionSource, Repository};
use annal::es::{Rows, SnapshotPolicy};
use annal::events::{EventStore, EventStoreConfig, RecordedEvent};
use serde::{Deserialize, Serialize};

/// A bank account (as tests/common/bank.rs): opened, then deposits.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    open: bool,
    balance: i64,
    deposits: u64,
}

enum Command {
    Open,
    Deposit(i64),
    /// `count` deposits of `amount` at once (to write a long stream quickly).
    DepositMany {
        count: u32,
        amount: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum AccountEvent {
    Opened,
    Deposited { amount: i64, currency: String },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
        }
    }
}

#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = Command;
    type Event = AccountEvent;
    type Error = Refused;

    fn handle(&self, command: &Command) -> Result<Vec<AccountEvent>, Refused> {
        let deposit = |amount| AccountEvent::Deposited { amount, currency: "USD".into() };
        match *command {
            Command::Open if self.open => Err(Refused("open already")),
            Command::Open => Ok(vec![AccountEvent::Opened]),
            _ if !self.open => Err(Refused("not open")),
            Command::Deposit(amount) => Ok(vec![deposit(amount)]),
            Command::DepositMany { count, amount } => Ok((0..count).map(|_| deposit(amount)).collect()),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened => self.open = true,
            AccountEvent::Deposited { amount, .. } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

fn config(durability: Durability) -> EventStoreConfig {
    let default = EventStoreConfig::default();
    let log = default.log_config().clone().with_durability(durability);
    default.with_log_config(log)
}

fn open(dir: &std::path::Path, durability: Durability) -> Arc<EventStore> {
    Arc::new(EventStore::open(dir, config(durability)).expect("open"))
}

fn close(store: Arc<EventStore>) {
    Arc::into_inner(store).expect("the only handle").close().expect("close");
}

fn us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The one long aggregate: `events` events written by commands of `batch`,
/// a snapshot every `every` events by the repository's policy.
fn long_aggregate(store: &Arc<EventStore>, events: u64, batch: u64, every: u64) -> Repository<Account, Json> {
    let repo = Repository::new(Arc::clone(store), Json).with_snapshots(SnapshotPolicy::EveryEvents(every));
    repo.execute("big", &Command::Open).expect("open");
    let mut written = 1;
    while written < events {
        let count = batch.min(events - written);
        repo.execute("big", &Command::DepositMany { count: count as u32, amount: 1 }).expect("deposit");
        written += count;
    }
    repo
}

/// Loads of the long aggregate from its snapshot (`loads` of them, their
/// median in µs) and by a full replay (one, in µs), checked.
fn load_round(
    snapshots: &Repository<Account, Json>,
    replays: &Repository<Account, Json>,
    loads: u64,
    events: u64,
    tail: u64,
) -> (f64, f64) {
    let mut each = Vec::with_capacity(loads as usize);
    for _ in 0..loads {
        let t = Instant::now();
        let a = snapshots.load("big").expect("load");
        each.push(us(t));
        assert_eq!((a.state.deposits + 1, a.replayed), (events, tail), "from a snapshot");
        assert!(a.snapshot.is_some());
    }
    let t = Instant::now();
    let a = replays.load("big").expect("load");
    let replay = us(t);
    assert_eq!((a.state.deposits + 1, a.replayed, a.snapshot), (events, events, None), "a full replay");
    (median(each), replay)
}

/// Commands per second of `Repository::execute` from `threads` threads over
/// `aggregates` aggregates opened beforehand (untimed): command i deposits to
/// aggregate i mod `aggregates`, each aggregate kept by one thread.
fn executes(durability: Durability, threads: u64, aggregates: u64, commands: u64) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let names: Vec<String> = (0..aggregates).map(|i| format!("a{i}")).collect();
    {
        let store = open(dir.path(), Durability::Never);
        let repo = Repository::<Account, Json>::new(Arc::clone(&store), Json);
        for name in &names {
            repo.execute(name, &Command::Open).expect("open");
        }
        drop(repo);
        close(store);
    }
    // The prefill's writeback out of the way of the timed fsyncs.
    rustix::fs::sync();
    let store = open(dir.path(), durability);
    let repo = Repository::<Account, Json>::new(Arc::clone(&store), Json);
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..threads {
            let (repo, names) = (&repo, &names);
            s.spawn(move || {
                for i in (w..commands).step_by(threads as usize) {
                    let done = repo.execute(&names[(i % aggregates) as usize], &Command::Deposit(1)).expect("execute");
                    assert_eq!(done.attempts, 1, "each aggregate has one writer");
                }
            });
        }
    });
    let rate = commands as f64 / start.elapsed().as_secs_f64();
    assert_eq!(store.head_position(), aggregates + commands, "every command wrote its event");
    let last = &names[((commands - 1) % aggregates) as usize];
    assert_eq!(repo.load(last).expect("load").state.balance, commands.div_ceil(aggregates) as i64);
    drop(repo);
    close(store);
    rate
}

/// Balances per account, from the account events.
struct Balances;

impl Projection for Balances {
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> Result<(), String> {
        let e: AccountEvent = serde_json::from_slice(&event.data).map_err(|e| e.to_string())?;
        let key = event.stream.as_bytes();
        let balance = rows.get(key).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
        let balance = match e {
            AccountEvent::Opened => balance,
            AccountEvent::Deposited { amount, .. } => balance + amount,
        };
        rows.put(key, balance.to_le_bytes());
        Ok(())
    }
}

/// `events` events over `aggregates` aggregates, written by the repository
/// one command at a time, round robin (an aggregate's events spread over
/// the whole log), and synced so that the projection sees them all.
fn projection_store(events: u64, aggregates: u64) -> (tempfile::TempDir, Arc<EventStore>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), Durability::Never);
    let repo = Repository::<Account, Json>::new(Arc::clone(&store), Json);
    let names: Vec<String> = (0..aggregates).map(|i| format!("p{i}")).collect();
    for i in 0..events {
        let name = &names[(i % aggregates) as usize];
        let command = if i < aggregates { Command::Open } else { Command::Deposit(((i / aggregates) % 7) as i64 + 1) };
        repo.execute(name, &command).expect("execute");
    }
    store.log().sync().expect("sync");
    (dir, store)
}

/// Events per second of a projection (a new one, `name`) from `source`
/// into a `KvModel`, `run_until_caught_up` over the whole store.
fn projection(store: &Arc<EventStore>, name: &str, source: ProjectionSource, events: u64, aggregates: u64) -> f64 {
    let model = KvModel::open(Arc::clone(store), name, Balances).expect("model");
    let mut runner = ProjectionRunner::new(Arc::clone(store), name, source, model).expect("runner");
    let start = Instant::now();
    let applied = runner.run_until_caught_up().expect("run");
    let rate = applied as f64 / start.elapsed().as_secs_f64();
    assert_eq!(applied, events);
    let reader = runner.model().reader();
    assert_eq!(reader.len() as u64, aggregates.min(events));
    rate
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = |n: u64| if quick { (n / 100).max(1) } else { n };
    let rounds = env("ROUNDS", if quick { 1 } else { 3 }).max(1);
    let mut results = Results::default();
    let mut record = |name: String, values: Vec<f64>, unit: &'static str| results.record(88, name, values, unit);

    // One aggregate of LOAD_EVENTS events.
    let events = env("LOAD_EVENTS", scale(1_000_000)).max(2);
    let batch = env("LOAD_BATCH", 100).clamp(1, u64::from(u32::MAX));
    let every = env("SNAPSHOT_EVERY", 1_000).clamp(1, events);
    let loads = env("LOADS", if quick { 20 } else { 200 }).max(1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path(), Durability::Never);
    let t = Instant::now();
    let snapshots = long_aggregate(&store, events, batch, every);
    println!("(wrote one aggregate of {events} events in {:.1} s)", t.elapsed().as_secs_f64());
    let replays = Repository::<Account, Json>::new(Arc::clone(&store), Json);
    let tail = events % every;
    let (mut from_snapshot, mut replay) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (a, b) = load_round(&snapshots, &replays, loads, events, tail);
        from_snapshot.push(a);
        replay.push(b);
    }
    record(
        format!("load 1 aggregate of {events} events from its snapshot, tail of {tail} (median of {loads})"),
        from_snapshot,
        "us",
    );
    record(format!("load 1 aggregate of {events} events, full replay (no snapshot)"), replay, "us");
    // The longest tail the policy leaves: every - 1 events after the newest snapshot.
    let more = every - 1 - tail;
    if more > 0 {
        snapshots.execute("big", &Command::DepositMany { count: more as u32, amount: 1 }).expect("deposit");
    }
    let events = events + more;
    let mut with_tail = Vec::new();
    for _ in 0..rounds {
        with_tail.push(load_round(&snapshots, &replays, loads, events, every - 1).0);
    }
    record(
        format!("load 1 aggregate of {events} events from its snapshot, tail of {} (median of {loads})", every - 1),
        with_tail,
        "us",
    );
    drop((snapshots, replays));
    close(store);
    drop(dir);

    // Execute over AGGREGATES aggregates; the engines' turns interleaved in each round.
    let aggregates = env("AGGREGATES", scale(100_000)).max(8);
    let commands = env("COMMANDS", scale(100_000)).max(8);
    let durable_commands = env("DURABLE_COMMANDS", scale(5_000)).max(1);
    let workloads = [(Durability::Never, 1), (Durability::Never, 8), (Durability::Always, 1), (Durability::Always, 8)];
    let mut rates = vec![Vec::new(); workloads.len()];
    for _ in 0..rounds {
        for (i, &(durability, threads)) in workloads.iter().enumerate() {
            let n = if durability == Durability::Always { durable_commands * threads } else { commands };
            rates[i].push(executes(durability, threads, aggregates, n));
        }
    }
    for ((durability, threads), values) in workloads.into_iter().zip(rates) {
        let how = if durability == Durability::Always { "durable (Always)" } else { "not durable (Never)" };
        record(
            format!("execute, 1 event per command, {aggregates} aggregates, {how}, {threads} thread(s)"),
            values,
            "commands/s",
        );
    }

    // A projection over PROJECTION_EVENTS events.
    let events = env("PROJECTION_EVENTS", scale(1_000_000)).max(1);
    let aggregates = env("PROJECTION_AGGREGATES", scale(100_000)).max(1);
    let t = Instant::now();
    let (dir, store) = projection_store(events, aggregates);
    println!("(wrote {events} events over {aggregates} aggregates in {:.1} s)", t.elapsed().as_secs_f64());
    let sources = [("category", ProjectionSource::Category("account".into())), ("all", ProjectionSource::All)];
    let mut rates = vec![Vec::new(); sources.len()];
    for round in 0..rounds {
        for (i, (what, source)) in sources.iter().enumerate() {
            let name = format!("balances-{what}-{round}");
            rates[i].push(projection(&store, &name, source.clone(), events, aggregates));
        }
    }
    for ((what, _), values) in sources.iter().zip(rates) {
        let source = if *what == "all" { "$all" } else { "the category" };
        record(
            format!("projection into a KvModel from {source}, {events} events, run_until_caught_up"),
            values,
            "events/s",
        );
    }
    close(store);
    drop(dir);

    results.print_json();
}
