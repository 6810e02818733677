//! The event-sourcing workloads (`--es`): annal's `annal::es` against
//! cqrs-es 0.5.0 with the same aggregate (loads of one aggregate of
//! 1,000,000 events, with and without a snapshot; `execute` over 100,000
//! aggregates from 1 and 8 threads, durable and not), and a projection over
//! 1,000,000 events into annal's `KvModel` and into SQLite through a
//! `ReadModel`; in one run, the repetitions going round the engines in
//! turn. See README.md, "Event sourcing".

mod account;
mod cqrs_sqlite;
mod sqlite_model;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annal::Durability;
use annal::es::{Json, KvModel, Projection, ProjectionRunner, ProjectionSource, Repository, Rows, SnapshotPolicy};
use annal::events::{EventStore, EventStoreConfig, RecordedEvent};
use clap::ValueEnum;
use cqrs_es::mem_store::MemStore;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateContext, CqrsFramework};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::workload::{Result, thousands};
use account::{Account, Command};
use cqrs_sqlite::SqliteRepo;
use sqlite_model::SqliteBalances;

/// The engines of the event-sourcing workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EsEngine {
    /// annal's `Repository` (aggregates) and `KvModel` (projection).
    Annal,
    /// cqrs-es's `CqrsFramework` over its `MemStore`.
    CqrsMem,
    /// cqrs-es's `CqrsFramework` over its `PersistedEventStore` on SQLite
    /// (sqlite-es's tables and SQL, through rusqlite).
    CqrsSqlite,
    /// annal's `ProjectionRunner` into SQLite through a `ReadModel`.
    SqliteModel,
}

impl EsEngine {
    /// Every engine, annal first (the ratios are to it).
    pub const ALL: [EsEngine; 4] = [EsEngine::Annal, EsEngine::CqrsMem, EsEngine::CqrsSqlite, EsEngine::SqliteModel];

    fn name(self) -> &'static str {
        match self {
            EsEngine::Annal => "annal",
            EsEngine::CqrsMem => "cqrs-es MemStore",
            EsEngine::CqrsSqlite => "cqrs-es on SQLite",
            EsEngine::SqliteModel => "SQLite ReadModel",
        }
    }

    fn settings(self) -> &'static str {
        match self {
            EsEngine::Annal => {
                "annal::es::Repository<Account, Json> over an EventStore (EventStoreConfig::default(), \
                Durability::Always durable or Never); loads with SnapshotPolicy::EveryEvents and without \
                snapshots; the projection is a ProjectionRunner (batches of 512, from the category) into a \
                KvModel, whose commits are events of the same store"
            }
            EsEngine::CqrsMem => {
                "cqrs-es 0.5.0 CqrsFramework over MemStore (in memory, no snapshots, no version check; it \
                prints two lines per command, sent to /dev/null during its runs, their cost included); \
                tokio multi-thread runtime with one worker per thread and one task per thread"
            }
            EsEngine::CqrsSqlite => {
                "cqrs-es 0.5.0 CqrsFramework over PersistedEventStore (new_snapshot_store for the snapshot loads, \
                new_event_store otherwise) with a PersistedEventRepository written here on rusqlite 0.37 \
                (SQLite 3.50.2, bundled) with sqlite-es 0.5.0's tables and SQL (sqlite-es itself does not link \
                next to rusqlite 0.37: see README.md); WAL, synchronous=FULL durable or OFF, one connection per \
                task; tokio as for MemStore"
            }
            EsEngine::SqliteModel => {
                "annal's ProjectionRunner (the same batches and source as annal's row) into SQLite \
                (rusqlite 0.37, WAL, synchronous=FULL durable or OFF): per batch one transaction of one UPSERT \
                per event into balances(account PRIMARY KEY, balance) and the position into a table of \
                checkpoints, which checkpoint() reads back"
            }
        }
    }
}

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EsWorkload {
    /// Loading the long aggregate from its newest snapshot: the median of
    /// a repetition's loads.
    LoadSnapshot {
        /// Events of the aggregate.
        events: u64,
        /// Events after the snapshot.
        tail: u64,
    },
    /// Loading the long aggregate by replaying all its events: one load.
    LoadReplay {
        /// Events of the aggregate.
        events: u64,
    },
    /// `execute`, one event per command.
    Execute {
        /// Each command durable before it returns.
        durable: bool,
        /// Threads (tasks for cqrs-es).
        threads: usize,
    },
    /// A projection catching up over the store.
    Projection {
        /// Each batch's commit durable.
        durable: bool,
    },
}

/// Execute workloads, in table order.
const EXECUTES: [(bool, usize); 4] = [(false, 1), (false, 8), (true, 1), (true, 8)];

impl EsWorkload {
    fn label(self, s: &EsSettings) -> String {
        let durable = |d: bool| if d { "durable" } else { "not durable" };
        match self {
            EsWorkload::LoadSnapshot { events, tail } => format!(
                "load 1 aggregate of {} events from its snapshot (every {}), tail of {tail} (median of {} loads)",
                thousands(events),
                thousands(s.snapshot_every),
                s.loads
            ),
            EsWorkload::LoadReplay { events } => {
                format!("load 1 aggregate of {} events, full replay", thousands(events))
            }
            EsWorkload::Execute { durable: d, threads } => format!(
                "execute, 1 event per command, {} aggregates, {}, {threads} thread{}",
                thousands(s.aggregates),
                durable(d),
                if threads == 1 { "" } else { "s" }
            ),
            EsWorkload::Projection { durable: d } => format!(
                "projection over {} events of {} aggregates, {}",
                thousands(s.projection_events),
                thousands(s.projection_aggregates),
                durable(d)
            ),
        }
    }

    /// The unit, and whether more is better.
    fn unit(self) -> (&'static str, bool) {
        match self {
            EsWorkload::LoadSnapshot { .. } => ("µs", false),
            EsWorkload::LoadReplay { .. } => ("ms", false),
            EsWorkload::Execute { .. } => ("commands/s", true),
            EsWorkload::Projection { .. } => ("events/s", true),
        }
    }

    /// Whether `engine` has this workload.
    fn runs_on(self, engine: EsEngine) -> bool {
        match (self, engine) {
            (EsWorkload::Projection { .. }, e) => matches!(e, EsEngine::Annal | EsEngine::SqliteModel),
            (_, EsEngine::SqliteModel) => false,
            (EsWorkload::LoadSnapshot { .. } | EsWorkload::Execute { durable: true, .. }, EsEngine::CqrsMem) => false,
            _ => true,
        }
    }

    fn order(self) -> u32 {
        match self {
            EsWorkload::LoadSnapshot { tail, .. } => u32::from(tail > 0),
            EsWorkload::LoadReplay { .. } => 2,
            EsWorkload::Execute { durable, threads } => {
                3 + EXECUTES.iter().position(|e| *e == (durable, threads)).unwrap_or(0) as u32
            }
            EsWorkload::Projection { durable } => 10 + u32::from(durable),
        }
    }
}

/// Sizes and choices of the event-sourcing workloads.
#[derive(Debug, Clone, Serialize)]
pub struct EsSettings {
    /// Events of the long aggregate (0 skips the loads).
    pub load_events: u64,
    /// Events per command writing it (untimed).
    pub load_batch: u64,
    /// annal's `EveryEvents` and cqrs-es's snapshot size.
    pub snapshot_every: u64,
    /// Loads from the snapshot per repetition.
    pub loads: u64,
    /// Aggregates of the execute workloads.
    pub aggregates: u64,
    /// Commands of the not-durable execute workloads.
    pub commands: u64,
    /// Commands of the durable execute workloads, all threads together.
    pub durable_commands: u64,
    /// Events the projection goes over (0 skips it).
    pub projection_events: u64,
    /// Aggregates they belong to.
    pub projection_aggregates: u64,
    /// Repetitions.
    pub runs: u32,
    /// Engines, annal first.
    pub engines: Vec<EsEngine>,
}

/// One (engine, workload): every repetition and their median.
#[derive(Debug, Serialize)]
pub struct EsMeasurement {
    /// Which engine.
    pub engine: EsEngine,
    /// The workload.
    pub workload: EsWorkload,
    /// Its label in the table.
    pub label: String,
    /// Unit of the figures.
    pub unit: &'static str,
    /// The median repetition (the lower middle one for an even count).
    pub median: Option<f64>,
    /// (max - min) / median, in percent.
    pub spread_pct: Option<f64>,
    /// `median` divided by annal's for the same workload.
    pub ratio_to_annal: Option<f64>,
    /// Every repetition, in run order.
    pub runs: Vec<f64>,
    /// Why there is no figure, if a repetition failed.
    pub error: Option<String>,
}

/// What the event-sourcing workloads produced, for the JSON file.
#[derive(Debug, Serialize)]
pub struct EsReport {
    /// The sizes.
    pub settings: EsSettings,
    /// Each engine's settings.
    pub engines: Vec<(EsEngine, &'static str)>,
    /// The figures, in table order.
    pub results: Vec<EsMeasurement>,
}

type Raw = Vec<(EsEngine, EsWorkload, Result<f64, String>)>;

fn tempdir(parent: Option<&Path>) -> Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("annal-compare-es-");
    Ok(match parent {
        Some(p) => b.tempdir_in(p)?,
        None => b.tempdir()?,
    })
}

fn annal_config(durable: bool) -> EventStoreConfig {
    let d = if durable { Durability::Always } else { Durability::Never };
    let default = EventStoreConfig::default();
    let log = default.log_config().clone().with_durability(d);
    default.with_log_config(log)
}

fn open_annal(dir: &Path, durable: bool) -> Result<Arc<EventStore>> {
    Ok(Arc::new(EventStore::open(dir, annal_config(durable))?))
}

fn close_annal(store: Arc<EventStore>) -> Result<()> {
    Arc::into_inner(store).ok_or("the store is still shared")?.close()?;
    Ok(())
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().build()?)
}

fn multi_thread(workers: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(workers).build()?)
}

/// Standard output sent to /dev/null while it lives (cqrs-es's MemStore
/// prints a line at each load and commit), then restored.
struct Quiet {
    saved: Option<rustix::fd::OwnedFd>,
}

impl Quiet {
    fn new() -> Quiet {
        let _ = std::io::stdout().flush();
        let saved = rustix::io::dup(std::io::stdout()).ok();
        if saved.is_some()
            && let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null")
        {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
        Quiet { saved }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        if let Some(saved) = &self.saved {
            let _ = rustix::stdio::dup2_stdout(saved);
        }
    }
}

type SqliteStore = PersistedEventStore<SqliteRepo, Account>;

/// The fewest events per command writing MemStore's long aggregate: each
/// of its commits copies the aggregate's whole list of events, so writing
/// 1,000,000 events 100 at a time would take hours.
const MEM_BATCH: u64 = 50_000;

/// The one long aggregate `big`, in each engine.
enum Long {
    Annal {
        store: Arc<EventStore>,
        snapshots: Repository<Account, Json>,
        replays: Repository<Account, Json>,
        _dir: tempfile::TempDir,
    },
    Mem {
        store: MemStore<Account>,
        cqrs: CqrsFramework<Account, MemStore<Account>>,
    },
    Sqlite {
        snapshots: SqliteStore,
        replays: SqliteStore,
        cqrs: CqrsFramework<Account, SqliteStore>,
        _dir: tempfile::TempDir,
    },
}

async fn cqrs_load<ES: cqrs_es::EventStore<Account>>(store: &ES) -> Result<Account> {
    let mut context = store.load_aggregate("big").await.map_err(|e| e.to_string())?;
    Ok(std::mem::take(context.aggregate()))
}

impl Long {
    /// Writes `big`: an `Open`, then `DepositMany` commands up to `events`
    /// events (untimed), each ending at a multiple of the batch (the first
    /// one short by the `Open`): `load_batch` events, MemStore's at least
    /// [`MEM_BATCH`]. sqlite-es's SQL labels a snapshot with the sequence of
    /// its command's last event, also when the snapshot stops at a multiple
    /// of the snapshot size before it (cqrs-es snapshots only up to such
    /// multiples): the loads from it would then miss the events in between.
    /// Commands that end at multiples of the snapshot size when they cross
    /// one (a batch that divides it or is a multiple of it) keep clear of
    /// that.
    fn write(engine: EsEngine, s: &EsSettings, parent: Option<&Path>, rt: &tokio::runtime::Runtime) -> Result<Long> {
        let events = s.load_events;
        let batch = if engine == EsEngine::CqrsMem { s.load_batch.max(MEM_BATCH) } else { s.load_batch };
        let chunks = || {
            let mut chunks = Vec::new();
            let mut written = 1;
            while written < events {
                let count = (batch - written % batch).min(events - written);
                chunks.push(Command::DepositMany { count: count as u32, amount: 1 });
                written += count;
            }
            chunks
        };
        let long = match engine {
            EsEngine::Annal => {
                let dir = tempdir(parent)?;
                let store = open_annal(dir.path(), false)?;
                let snapshots = Repository::new(Arc::clone(&store), Json)
                    .with_snapshots(SnapshotPolicy::EveryEvents(s.snapshot_every));
                let replays = Repository::new(Arc::clone(&store), Json);
                snapshots.execute("big", &Command::Open).map_err(|e| e.to_string())?;
                for c in chunks() {
                    snapshots.execute("big", &c).map_err(|e| e.to_string())?;
                }
                Long::Annal { store, snapshots, replays, _dir: dir }
            }
            EsEngine::CqrsMem => {
                let store = MemStore::<Account>::default();
                let cqrs = CqrsFramework::new(store.clone(), vec![], ());
                let _quiet = Quiet::new();
                rt.block_on(async {
                    cqrs.execute("big", Command::Open).await?;
                    for c in chunks() {
                        cqrs.execute("big", c).await?;
                    }
                    Ok::<(), cqrs_es::AggregateError<account::Refused>>(())
                })
                .map_err(|e| e.to_string())?;
                Long::Mem { store, cqrs }
            }
            EsEngine::CqrsSqlite => {
                let dir = tempdir(parent)?;
                let repo = SqliteRepo::create(dir.path(), false)?;
                let every = s.snapshot_every as usize;
                let cqrs = CqrsFramework::new(PersistedEventStore::new_snapshot_store(repo.clone(), every), vec![], ());
                rt.block_on(async {
                    cqrs.execute("big", Command::Open).await?;
                    for c in chunks() {
                        cqrs.execute("big", c).await?;
                    }
                    Ok::<(), cqrs_es::AggregateError<account::Refused>>(())
                })
                .map_err(|e| e.to_string())?;
                Long::Sqlite {
                    snapshots: PersistedEventStore::new_snapshot_store(repo.clone(), every),
                    replays: PersistedEventStore::new_event_store(repo),
                    cqrs,
                    _dir: dir,
                }
            }
            EsEngine::SqliteModel => return Err("no aggregates in the read model".into()),
        };
        Ok(long)
    }

    /// Adds `count` events to `big` (one command).
    fn add(&self, count: u64, rt: &tokio::runtime::Runtime) -> Result<()> {
        let c = Command::DepositMany { count: count as u32, amount: 1 };
        match self {
            Long::Annal { snapshots, .. } => {
                snapshots.execute("big", &c).map_err(|e| e.to_string())?;
            }
            Long::Mem { cqrs, .. } => {
                let _quiet = Quiet::new();
                rt.block_on(cqrs.execute("big", c)).map_err(|e| e.to_string())?;
            }
            Long::Sqlite { cqrs, .. } => rt.block_on(cqrs.execute("big", c)).map_err(|e| e.to_string())?,
        }
        Ok(())
    }

    /// The median of `loads` loads from the newest snapshot, in µs, each
    /// checked to hold `events` events.
    fn load_snapshot(&self, loads: u64, events: u64, tail: u64, rt: &tokio::runtime::Runtime) -> Result<f64> {
        let mut each = Vec::with_capacity(loads as usize);
        for _ in 0..loads {
            let t = Instant::now();
            let deposits = match self {
                Long::Annal { snapshots, .. } => {
                    let a = snapshots.load("big")?;
                    if a.snapshot.is_none() || a.replayed != tail {
                        return Err(format!("loaded from {:?} with {} events after", a.snapshot, a.replayed).into());
                    }
                    a.state.deposits
                }
                Long::Sqlite { snapshots, .. } => rt.block_on(cqrs_load(snapshots))?.deposits,
                Long::Mem { .. } => return Err("MemStore has no snapshots".into()),
            };
            each.push(t.elapsed().as_secs_f64() * 1e6);
            if deposits + 1 != events {
                return Err(format!("loaded {} events, {events} written", deposits + 1).into());
            }
        }
        each.sort_by(f64::total_cmp);
        Ok(each[(each.len() - 1) / 2])
    }

    /// One full replay, in ms, checked to hold `events` events.
    fn load_replay(&self, events: u64, rt: &tokio::runtime::Runtime) -> Result<f64> {
        let t = Instant::now();
        let deposits = match self {
            Long::Annal { replays, .. } => replays.load("big")?.state.deposits,
            Long::Mem { store, .. } => {
                let _quiet = Quiet::new();
                rt.block_on(cqrs_load(store))?.deposits
            }
            Long::Sqlite { replays, .. } => rt.block_on(cqrs_load(replays))?.deposits,
        };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if deposits + 1 != events {
            return Err(format!("replayed {} events, {events} written", deposits + 1).into());
        }
        Ok(ms)
    }

    fn close(self) -> Result<()> {
        if let Long::Annal { store, snapshots, replays, _dir } = self {
            drop((snapshots, replays));
            close_annal(store)?;
            _dir.close()?;
        }
        rustix::fs::sync();
        Ok(())
    }
}

/// Commands per second of `execute` from `threads` threads (tasks) over
/// `aggregates` aggregates opened beforehand (untimed, not durably, then
/// synced): command i deposits 1 to aggregate i mod `aggregates`, each
/// aggregate kept by one thread. Checked afterwards.
fn execute_run(engine: EsEngine, durable: bool, threads: usize, s: &EsSettings, parent: Option<&Path>) -> Result<f64> {
    let commands = if durable { s.durable_commands } else { s.commands };
    let aggregates = s.aggregates;
    let names: Arc<Vec<String>> = Arc::new((0..aggregates).map(|i| format!("a{i}")).collect());
    let last = names[((commands - 1) % aggregates) as usize].clone();
    let expected_balance = commands.div_ceil(aggregates) as i64;
    let check = |balance: i64, count: Option<u64>| -> Result<()> {
        if balance != expected_balance {
            return Err(format!("{last} has a balance of {balance}, {expected_balance} expected").into());
        }
        if let Some(n) = count
            && n != aggregates + commands
        {
            return Err(format!("{n} events stored, {} written", aggregates + commands).into());
        }
        Ok(())
    };
    // The tasks of cqrs-es: one per thread, each its share of the commands.
    async fn cqrs_tasks<ES: cqrs_es::EventStore<Account> + 'static>(
        cqrs: Arc<CqrsFramework<Account, ES>>,
        names: Arc<Vec<String>>,
        threads: usize,
        commands: u64,
    ) -> Result<()>
    where
        ES::AC: Send,
    {
        let tasks: Vec<_> = (0..threads)
            .map(|w| {
                let (cqrs, names) = (Arc::clone(&cqrs), Arc::clone(&names));
                tokio::spawn(async move {
                    for i in (w as u64..commands).step_by(threads) {
                        let name = &names[(i % names.len() as u64) as usize];
                        cqrs.execute(name, Command::Deposit(1)).await.map_err(|e| e.to_string())?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    match engine {
        EsEngine::Annal => {
            let dir = tempdir(parent)?;
            {
                let store = open_annal(dir.path(), false)?;
                let repo = Repository::<Account, Json>::new(Arc::clone(&store), Json);
                for name in names.iter() {
                    repo.execute(name, &Command::Open).map_err(|e| e.to_string())?;
                }
                drop(repo);
                close_annal(store)?;
            }
            rustix::fs::sync();
            let store = open_annal(dir.path(), durable)?;
            let repo = Repository::<Account, Json>::new(Arc::clone(&store), Json);
            let start = Instant::now();
            std::thread::scope(|scope| -> Result<()> {
                let handles: Vec<_> = (0..threads)
                    .map(|w| {
                        let (repo, names) = (&repo, &names);
                        scope.spawn(move || -> Result<(), String> {
                            for i in (w as u64..commands).step_by(threads) {
                                let name = &names[(i % aggregates) as usize];
                                repo.execute(name, &Command::Deposit(1)).map_err(|e| e.to_string())?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().map_err(|_| "a thread panicked")??;
                }
                Ok(())
            })?;
            let rate = commands as f64 / start.elapsed().as_secs_f64();
            check(repo.load(&last)?.state.balance, Some(store.head_position()))?;
            drop(repo);
            close_annal(store)?;
            dir.close()?;
            Ok(rate)
        }
        EsEngine::CqrsMem => {
            if durable {
                return Err("MemStore is not durable".into());
            }
            let store = MemStore::<Account>::default();
            let cqrs = Arc::new(CqrsFramework::new(store.clone(), vec![], ()));
            let _quiet = Quiet::new();
            current_thread()?.block_on(async {
                for name in names.iter() {
                    cqrs.execute(name, Command::Open).await.map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })?;
            let rt = multi_thread(threads)?;
            let start = Instant::now();
            rt.block_on(cqrs_tasks(Arc::clone(&cqrs), Arc::clone(&names), threads, commands))?;
            let rate = commands as f64 / start.elapsed().as_secs_f64();
            check(current_thread()?.block_on(cqrs_load_id(&store, &last))?.balance, None)?;
            Ok(rate)
        }
        EsEngine::CqrsSqlite => {
            let dir = tempdir(parent)?;
            let repo = SqliteRepo::create(dir.path(), false)?;
            {
                let store: SqliteStore = PersistedEventStore::new_event_store(repo.clone());
                let cqrs = CqrsFramework::new(store, vec![], ());
                current_thread()?.block_on(async {
                    for name in names.iter() {
                        cqrs.execute(name, Command::Open).await.map_err(|e| e.to_string())?;
                    }
                    Ok::<(), String>(())
                })?;
            }
            rustix::fs::sync();
            let timed = repo.reopen(durable);
            let store: SqliteStore = PersistedEventStore::new_event_store(timed.clone());
            let cqrs = Arc::new(CqrsFramework::new(store, vec![], ()));
            let rt = multi_thread(threads)?;
            let start = Instant::now();
            rt.block_on(cqrs_tasks(Arc::clone(&cqrs), Arc::clone(&names), threads, commands))?;
            let rate = commands as f64 / start.elapsed().as_secs_f64();
            let loads: SqliteStore = PersistedEventStore::new_event_store(timed.clone());
            check(current_thread()?.block_on(cqrs_load_id(&loads, &last))?.balance, Some(timed.count()?))?;
            drop((cqrs, loads, timed, repo));
            dir.close()?;
            Ok(rate)
        }
        EsEngine::SqliteModel => Err("no aggregates in the read model".into()),
    }
}

async fn cqrs_load_id<ES: cqrs_es::EventStore<Account>>(store: &ES, id: &str) -> Result<Account> {
    let mut context = store.load_aggregate(id).await.map_err(|e| e.to_string())?;
    Ok(std::mem::take(context.aggregate()))
}

/// Balances per account in annal's `KvModel`: the same arithmetic as the
/// SQLite read model's.
struct Balances;

impl Projection for Balances {
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> std::result::Result<(), String> {
        let delta = sqlite_model::delta(event)?;
        let key = event.stream.as_bytes();
        let balance = rows.get(key).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
        rows.put(key, (balance + delta).to_le_bytes());
        Ok(())
    }
}

/// The projection's store: `events` events over `aggregates` aggregates
/// written by annal's repository one command at a time, round robin,
/// closed (so synced); the sum of the deposits.
fn projection_store(s: &EsSettings, parent: Option<&Path>) -> Result<(tempfile::TempDir, i64)> {
    let dir = tempdir(parent)?;
    let store = open_annal(dir.path(), false)?;
    let repo = Repository::<Account, Json>::new(Arc::clone(&store), Json);
    let (events, aggregates) = (s.projection_events, s.projection_aggregates);
    let names: Vec<String> = (0..aggregates).map(|i| format!("p{i}")).collect();
    let mut sum = 0;
    for i in 0..events {
        let command = if i < aggregates {
            Command::Open
        } else {
            let amount = ((i / aggregates) % 7) as i64 + 1;
            sum += amount;
            Command::Deposit(amount)
        };
        repo.execute(&names[(i % aggregates) as usize], &command).map_err(|e| e.to_string())?;
    }
    drop(repo);
    close_annal(store)?;
    rustix::fs::sync();
    Ok((dir, sum))
}

/// Events per second of a new projection `name` from the category
/// `account` into `engine`'s model; checked: every aggregate has a row,
/// and the balances add up to `sum`.
fn projection_run(
    engine: EsEngine,
    store: &Arc<EventStore>,
    name: &str,
    durable: bool,
    s: &EsSettings,
    sum: i64,
    parent: Option<&Path>,
) -> Result<f64> {
    let source = ProjectionSource::Category("account".into());
    let expected = (s.projection_aggregates.min(s.projection_events), sum);
    let (rate, applied, totals) = match engine {
        EsEngine::Annal => {
            let model = KvModel::open(Arc::clone(store), name, Balances)?;
            let mut runner = ProjectionRunner::new(Arc::clone(store), name, source, model)?;
            let start = Instant::now();
            let applied = runner.run_until_caught_up()?;
            let rate = applied as f64 / start.elapsed().as_secs_f64();
            let (mut rows, mut total) = (0, 0);
            runner.model().reader().for_each(|_, v| {
                rows += 1;
                total += i64::from_le_bytes(v.try_into().expect("8 bytes"));
            });
            (rate, applied, (rows, total))
        }
        EsEngine::SqliteModel => {
            let dir = tempdir(parent)?;
            let model = SqliteBalances::create(dir.path(), name, durable)?;
            let mut runner = ProjectionRunner::new(Arc::clone(store), name, source, model)?;
            let start = Instant::now();
            let applied = runner.run_until_caught_up()?;
            let rate = applied as f64 / start.elapsed().as_secs_f64();
            let totals = runner.model().totals()?;
            drop(runner);
            dir.close()?;
            (rate, applied, totals)
        }
        _ => return Err("not a read model".into()),
    };
    if applied != s.projection_events || totals != expected {
        return Err(format!(
            "{applied} events applied, (rows, sum of balances) {totals:?}; {} and {expected:?} expected",
            s.projection_events
        )
        .into());
    }
    Ok(rate)
}

/// An error with its sources.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Runs every event-sourcing workload on every engine of `s`.
pub fn measure(s: &EsSettings, parent: Option<&Path>, bar: &ProgressBar) -> EsReport {
    let mut raw: Raw = Vec::new();
    let has = |e: EsEngine| s.engines.contains(&e);
    let note = |raw: &mut Raw, engine: EsEngine, w: EsWorkload, r: Result<f64>| {
        let (unit, _) = w.unit();
        let what = match &r {
            Ok(v) if unit.ends_with("/s") => format!("{} {unit}", thousands(v.round() as u64)),
            Ok(v) => format!("{v:.1} {unit}"),
            Err(e) => format!("FAILED: {}", chain(&**e)),
        };
        bar.println(format!("{:<18} {:<100} {what}", engine.name(), w.label(s)));
        bar.inc(1);
        raw.push((engine, w, r.map_err(|e| chain(&*e))));
    };

    // One long aggregate per engine, loaded in turn.
    if s.load_events > 0 {
        let rt = current_thread();
        let engines: Vec<EsEngine> =
            [EsEngine::Annal, EsEngine::CqrsMem, EsEngine::CqrsSqlite].into_iter().filter(|e| has(*e)).collect();
        let mut longs: Vec<(EsEngine, Result<Long, String>)> = Vec::new();
        for &engine in &engines {
            bar.set_message(format!("{}: writing 1 aggregate of {} events", engine.name(), thousands(s.load_events)));
            let long = rt
                .as_ref()
                .map_err(|e| e.to_string())
                .and_then(|rt| Long::write(engine, s, parent, rt).map_err(|e| chain(&*e)));
            longs.push((engine, long));
        }
        let every = s.snapshot_every;
        let tail = s.load_events % every;
        let snapshot = EsWorkload::LoadSnapshot { events: s.load_events, tail };
        let replay = EsWorkload::LoadReplay { events: s.load_events };
        let load = |long: &Result<Long, String>, f: &dyn Fn(&Long, &tokio::runtime::Runtime) -> Result<f64>| {
            let long = long.as_ref().map_err(|e| e.clone())?;
            let rt = rt.as_ref().map_err(|e| e.to_string())?;
            f(long, rt)
        };
        for _ in 0..s.runs {
            for (engine, long) in &longs {
                bar.set_message(format!("{}: loads", engine.name()));
                if snapshot.runs_on(*engine) {
                    let r = load(long, &|l, rt| l.load_snapshot(s.loads, s.load_events, tail, rt));
                    note(&mut raw, *engine, snapshot, r);
                }
                note(&mut raw, *engine, replay, load(long, &|l, rt| l.load_replay(s.load_events, rt)));
            }
        }
        // The longest tail the snapshot policies leave: every - 1 events.
        let more = every - 1 - tail;
        let with_tail = EsWorkload::LoadSnapshot { events: s.load_events + more, tail: every - 1 };
        if more > 0 {
            for (engine, long) in &mut longs {
                if !with_tail.runs_on(*engine) {
                    continue;
                }
                let added = match long {
                    Ok(l) => {
                        rt.as_ref().map_err(|e| e.to_string()).and_then(|rt| l.add(more, rt).map_err(|e| chain(&*e)))
                    }
                    Err(_) => Ok(()),
                };
                if let Err(e) = added {
                    *long = Err(e);
                }
            }
            for _ in 0..s.runs {
                for (engine, long) in &longs {
                    if with_tail.runs_on(*engine) {
                        bar.set_message(format!("{}: loads with a tail", engine.name()));
                        let r = load(long, &|l, rt| l.load_snapshot(s.loads, s.load_events + more, every - 1, rt));
                        note(&mut raw, *engine, with_tail, r);
                    }
                }
            }
        }
        for (engine, long) in longs {
            if let Ok(l) = long
                && let Err(e) = l.close()
            {
                bar.println(format!("warning: closing {}'s long aggregate: {e}", engine.name()));
            }
        }
    }

    // Execute, each repetition of each engine in a fresh store.
    if s.aggregates > 0 {
        for _ in 0..s.runs {
            for (durable, threads) in EXECUTES {
                let w = EsWorkload::Execute { durable, threads };
                if (if durable { s.durable_commands } else { s.commands }) == 0 {
                    continue;
                }
                for &engine in &s.engines {
                    if w.runs_on(engine) {
                        bar.set_message(format!("{}: {}", engine.name(), w.label(s)));
                        note(&mut raw, engine, w, execute_run(engine, durable, threads, s, parent));
                    }
                }
            }
        }
    }

    // The projection: one store of events, a new projection each time.
    if s.projection_events > 0 && (has(EsEngine::Annal) || has(EsEngine::SqliteModel)) {
        bar.set_message(format!("writing {} events for the projection", thousands(s.projection_events)));
        match projection_store(s, parent) {
            Ok((dir, sum)) => {
                for run in 0..s.runs {
                    for durable in [false, true] {
                        let w = EsWorkload::Projection { durable };
                        let store = open_annal(dir.path(), durable);
                        for &engine in &s.engines {
                            if !w.runs_on(engine) {
                                continue;
                            }
                            bar.set_message(format!("{}: {}", engine.name(), w.label(s)));
                            let name = format!("balances-{run}-{durable}");
                            let r = match &store {
                                Ok(store) => projection_run(engine, store, &name, durable, s, sum, parent),
                                Err(e) => Err(chain(&**e).into()),
                            };
                            note(&mut raw, engine, w, r);
                        }
                        if let Ok(store) = store
                            && let Err(e) = close_annal(store)
                        {
                            bar.println(format!("warning: closing the projection's store: {e}"));
                        }
                        rustix::fs::sync();
                    }
                }
                if let Err(e) = dir.close() {
                    bar.println(format!("warning: removing the projection's store: {e}"));
                }
            }
            Err(e) => {
                let e = chain(&*e);
                for durable in [false, true] {
                    let w = EsWorkload::Projection { durable };
                    for &engine in s.engines.iter().filter(|&&en| w.runs_on(en)) {
                        note(&mut raw, engine, w, Err(e.clone().into()));
                    }
                }
            }
        }
    }

    EsReport {
        settings: s.clone(),
        engines: s.engines.iter().map(|&e| (e, e.settings())).collect(),
        results: summarise(raw, s),
    }
}

/// Groups the repetitions of each (engine, workload), in table order.
fn summarise(raw: Raw, s: &EsSettings) -> Vec<EsMeasurement> {
    let mut out: Vec<EsMeasurement> = Vec::new();
    for (engine, workload, r) in raw {
        let i = match out.iter().position(|m| m.engine == engine && m.workload == workload) {
            Some(i) => i,
            None => {
                out.push(EsMeasurement {
                    engine,
                    workload,
                    label: workload.label(s),
                    unit: workload.unit().0,
                    median: None,
                    spread_pct: None,
                    ratio_to_annal: None,
                    runs: Vec::new(),
                    error: None,
                });
                out.len() - 1
            }
        };
        match r {
            Ok(v) => out[i].runs.push(v),
            Err(e) => {
                out[i].error.get_or_insert(e);
            }
        }
    }
    for m in &mut out {
        if m.error.is_none()
            && let Some((median, spread)) = crate::run::median_and_spread(&m.runs)
        {
            (m.median, m.spread_pct) = (Some(median), spread);
        }
    }
    let annal: Vec<(EsWorkload, f64)> =
        out.iter().filter(|m| m.engine == EsEngine::Annal).filter_map(|m| m.median.map(|v| (m.workload, v))).collect();
    for m in &mut out {
        m.ratio_to_annal = match (m.median, annal.iter().find(|(w, _)| *w == m.workload)) {
            (Some(v), Some((_, a))) if *a > 0.0 => Some(v / a),
            _ => None,
        };
    }
    out.sort_by_key(|m| (m.workload.order(), s.engines.iter().position(|e| *e == m.engine)));
    out
}

fn figure(v: f64, unit: &str) -> String {
    match unit {
        "µs" | "ms" => format!("{v:.1} {unit}"),
        _ => thousands(v.round() as u64),
    }
}

/// The markdown table and its notes.
pub fn markdown(r: &EsReport) -> String {
    use std::fmt::Write as _;
    let mut out =
        String::from("| workload | engine | median | spread | x annal | every run |\n|---|---|---:|---:|---:|---|\n");
    for m in &r.results {
        let (cells, runs) = match (&m.error, m.median) {
            (Some(_), _) | (None, None) => {
                (["FAILED (see notes)".to_string(), String::new(), String::new()], String::new())
            }
            (None, Some(v)) => (
                [
                    if m.unit.ends_with("/s") {
                        format!("{} {}", figure(v, m.unit), m.unit)
                    } else {
                        figure(v, m.unit)
                    },
                    m.spread_pct.map_or_else(String::new, |p| format!("{p:.0}%")),
                    m.ratio_to_annal.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
                ],
                m.runs.iter().map(|v| figure(*v, m.unit)).collect::<Vec<_>>().join(", "),
            ),
        };
        let _ = writeln!(out, "| {} | {} | {} | {runs} |", m.label, m.engine.name(), cells.join(" | "));
    }
    let s = &r.settings;
    let _ = write!(
        out,
        "\nNotes:\n\n\
         - Median of {} repetitions, going round the engines in turn; spread = (max - min) / median. \"x annal\" \
         is the engine's figure divided by annal's: above 1 is faster for commands/s and events/s, slower for µs \
         and ms.\n\
         - The aggregate: an account (Open, Deposit), the same type under both frameworks' Aggregate traits, its \
         events the same JSON (`{{\"Deposited\":{{\"amount\":1,\"currency\":\"USD\"}}}}`).\n\
         - Loads: one aggregate written by commands of {} events each (untimed; MemStore's of {}, as each of \
         its commits copies the aggregate's whole list of events), snapshots every {} events \
         (annal: SnapshotPolicy::EveryEvents, cqrs-es: new_snapshot_store); the loads from a snapshot are the \
         median of {} per repetition, a full replay is one load. Then {} more events, the longest tail the \
         policies leave, and the snapshot loads again.\n\
         - Execute: {} aggregates opened beforehand (untimed, then synced), then command i deposits to aggregate \
         i mod {}, each aggregate kept by one thread (cqrs-es: one tokio task per worker thread); {} commands \
         not durable, {} durable (all threads together); every run in a fresh store, checked afterwards.\n\
         - Projection: {} events of {} accounts written by annal's repository one command at a time, round \
         robin; each repetition a new projection from the category `account`, batches of 512, \
         run_until_caught_up; every row and the sum of the balances checked. Durable: annal's store opened with \
         Durability::Always (each KvModel commit is an fsynced append), SQLite synchronous=FULL.\n",
        s.runs,
        thousands(s.load_batch),
        thousands(s.load_batch.max(MEM_BATCH)),
        thousands(s.snapshot_every),
        s.loads,
        thousands(s.snapshot_every.saturating_sub(1).saturating_sub(s.load_events % s.snapshot_every.max(1))),
        thousands(s.aggregates),
        thousands(s.aggregates),
        thousands(s.commands),
        thousands(s.durable_commands),
        thousands(s.projection_events),
        thousands(s.projection_aggregates),
    );
    for (e, how) in &r.engines {
        let _ = writeln!(out, "- **{}**: {how}.", e.name());
    }
    for m in &r.results {
        if let Some(e) = &m.error {
            let _ = writeln!(out, "- FAILED: {}, {}: {e}", m.engine.name(), m.label);
        }
    }
    out
}

/// Progress steps of `s`.
pub fn steps(s: &EsSettings) -> u64 {
    let count = |w: EsWorkload| s.engines.iter().filter(|&&e| w.runs_on(e)).count() as u64;
    let mut n = 0;
    if s.load_events > 0 {
        let snapshot = EsWorkload::LoadSnapshot { events: 0, tail: 0 };
        let every = s.snapshot_every.max(1);
        let tail = if every - 1 > s.load_events % every { count(snapshot) } else { 0 };
        n += count(snapshot) + count(EsWorkload::LoadReplay { events: 0 }) + tail;
    }
    if s.aggregates > 0 {
        for (durable, threads) in EXECUTES {
            if (if durable { s.durable_commands } else { s.commands }) > 0 {
                n += count(EsWorkload::Execute { durable, threads });
            }
        }
    }
    if s.projection_events > 0 {
        n += 2 * count(EsWorkload::Projection { durable: false });
    }
    n * u64::from(s.runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EsSettings {
        EsSettings {
            load_events: 10,
            load_batch: 3,
            snapshot_every: 4,
            loads: 1,
            aggregates: 8,
            commands: 8,
            durable_commands: 8,
            projection_events: 16,
            projection_aggregates: 8,
            runs: 3,
            engines: EsEngine::ALL.to_vec(),
        }
    }

    #[test]
    fn median_spread_ratio_and_order() {
        let s = settings();
        let exec = EsWorkload::Execute { durable: false, threads: 1 };
        let replay = EsWorkload::LoadReplay { events: 10 };
        let raw: Raw = vec![
            (EsEngine::CqrsMem, exec, Ok(50.0)),
            (EsEngine::Annal, exec, Ok(300.0)),
            (EsEngine::Annal, exec, Ok(100.0)),
            (EsEngine::Annal, exec, Ok(200.0)),
            (EsEngine::CqrsSqlite, replay, Err("boom".into())),
            (EsEngine::Annal, replay, Ok(2.0)),
        ];
        let out = summarise(raw, &s);
        let order: Vec<(EsEngine, EsWorkload)> = out.iter().map(|m| (m.engine, m.workload)).collect();
        assert_eq!(
            order,
            [
                (EsEngine::Annal, replay),
                (EsEngine::CqrsSqlite, replay),
                (EsEngine::Annal, exec),
                (EsEngine::CqrsMem, exec)
            ]
        );
        assert_eq!(out[2].median, Some(200.0));
        assert_eq!(out[2].spread_pct, Some(100.0));
        assert_eq!(out[3].ratio_to_annal, Some(0.25));
        assert_eq!(out[1].error.as_deref(), Some("boom"));
    }

    #[test]
    fn which_engine_runs_what() {
        let snap = EsWorkload::LoadSnapshot { events: 1, tail: 0 };
        assert!(!snap.runs_on(EsEngine::CqrsMem) && snap.runs_on(EsEngine::CqrsSqlite));
        assert!(!EsWorkload::Execute { durable: true, threads: 1 }.runs_on(EsEngine::CqrsMem));
        assert!(!EsWorkload::Projection { durable: true }.runs_on(EsEngine::CqrsSqlite));
        assert!(!EsWorkload::LoadReplay { events: 1 }.runs_on(EsEngine::SqliteModel));
        // Per run: 2 snapshot loads and 2 with a tail, 3 replays, 3 + 3 + 2 + 2 executes, 2 + 2 projections.
        assert_eq!(steps(&settings()), 3 * (4 + 3 + 10 + 4));
    }
}
