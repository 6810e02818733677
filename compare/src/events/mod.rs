//! The event-store workloads: annal's `EventStore` against the events table
//! of PostgreSQL (Marten, esrs and eventually's layout) and of SQLite, in
//! one run, the repetitions going round the engines in turn. See README.md,
//! "Event store".

use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use clap::ValueEnum;
use indicatif::ProgressBar;
use serde::Serialize;
use uuid::Uuid;

use crate::workload::{Result, thousands};

mod annal_store;
mod pg;
mod sqlite;

use annal_store::AnnalStore;
use pg::{PgServer, PgStore};
use sqlite::SqliteStore;

/// The data of every event: the JSON of annal's own event bench.
pub const READ_EVENT_DATA: &str = r#"{"total":30,"currency":"EUR","lines":3}"#;

/// Events per stream in the read store.
const STREAM_EVENTS: u64 = 100;

/// A store of events, emptied when opened.
pub trait Store: Sync {
    /// A connection (a writer or reader of its own).
    fn session(&self) -> Result<Box<dyn Session + Send + '_>>;
    /// Writes `per_stream` events to each of `streams` streams `order-<i>`,
    /// round robin (a stream's events spread over the whole store), and one
    /// event to each of `singles` streams `cart-<i>`, spread evenly between
    /// the rounds, quickly and untimed.
    fn fill(&mut self, streams: u64, per_stream: u64, singles: u64) -> Result<()>;
    /// Events stored.
    fn count(&self) -> Result<u64>;
    /// Rebuilds the store's indexes from its events: seconds, if the engine
    /// has such a thing.
    fn rebuild_index(&mut self) -> Result<Option<f64>> {
        Ok(None)
    }
    /// Closes the store.
    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// One connection to a store.
pub trait Session {
    /// Appends `n` events with `data` to `stream`, whose last version must
    /// be `expected` (`None`: the stream has no event).
    fn append(&mut self, stream: &str, expected: Option<u64>, n: usize, data: &str) -> Result<()>;
    /// Reads the (first) 100 events of `stream`, checking their versions;
    /// the count read.
    fn read_stream(&mut self, stream: &str) -> Result<usize>;
    /// Reads every event in global order; the count read (`total` is what
    /// the store holds).
    fn catch_up(&mut self, total: u64) -> Result<u64>;
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// The first event id of a new session: unique across sessions.
fn next_id_seed() -> u128 {
    u128::from(SESSIONS.fetch_add(1, Ordering::Relaxed)) << 64
}

/// The next event id of a session (the SQL tables have no index on it).
fn event_id(state: &mut u128) -> Uuid {
    *state += 1;
    Uuid::from_u128(*state)
}

/// The engines of the event-store workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvEngine {
    /// annal's `EventStore`.
    Annal,
    /// SQLite through rusqlite, WAL mode.
    Sqlite,
    /// PostgreSQL, a server started for the run.
    Postgres,
}

impl EvEngine {
    /// Every engine, annal first (the ratios are to it).
    pub const ALL: [EvEngine; 3] = [EvEngine::Annal, EvEngine::Sqlite, EvEngine::Postgres];

    fn name(self) -> &'static str {
        match self {
            EvEngine::Annal => "annal",
            EvEngine::Sqlite => "SQLite",
            EvEngine::Postgres => "PostgreSQL",
        }
    }

    fn settings(self) -> &'static str {
        match self {
            EvEngine::Annal => {
                "EventStore, EventStoreConfig::default() with Durability::Always (durable) or Never; \
                append(stream, Exact(v) or NoStream, events); ids drawn by annal; stream reads with \
                read_stream_with (each event borrowed from the log, as the SQL rows are read)"
            }
            EvEngine::Sqlite => {
                "SQLite 3.50.2 (rusqlite 0.37, bundled), WAL, synchronous=FULL (durable) or OFF, \
                busy_timeout 60 s; append: BEGIN IMMEDIATE, SELECT max(version), INSERT per event, COMMIT"
            }
            EvEngine::Postgres => {
                "postgres crate 0.19.12 over loopback TCP, one connection per writer; \
                synchronous_commit=on (durable) or off; append: BEGIN, SELECT max(version), one multi-row \
                INSERT (a unique violation is a conflict), COMMIT; shared_buffers=1GB"
            }
        }
    }
}

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvWorkload {
    /// Appends with an expected version, `per_call` events per call.
    Append {
        /// Events per call.
        per_call: usize,
        /// Each call durable before it returns.
        durable: bool,
        /// Writer threads (connections).
        writers: usize,
    },
    /// Reading one stream of 100 events: median latency.
    ReadP50,
    /// Reading one stream of 100 events: 99th percentile latency.
    ReadP99,
    /// Reading every event in global order (a subscription to `$all`
    /// catching up; keyset pages of 1,000 rows in SQL).
    CatchUp,
    /// Rebuilding annal's indexes from its global log (open without them).
    Rebuild,
}

/// The append workloads, in table order.
const APPENDS: [(usize, bool, usize); 6] =
    [(1, true, 1), (1, true, 8), (10, true, 1), (10, true, 8), (1, false, 1), (10, false, 1)];

impl EvWorkload {
    fn label(self, s: &EvSettings) -> String {
        match self {
            EvWorkload::Append { per_call, durable, writers } => format!(
                "append {per_call} per call to {} streams, {}, {writers} writer{}",
                thousands(s.streams),
                if durable { "durable" } else { "not durable" },
                if writers == 1 { "" } else { "s" }
            ),
            EvWorkload::ReadP50 => {
                format!("read a stream of 100 events ({} streams), p50", thousands(s.store_streams()))
            }
            EvWorkload::ReadP99 => {
                format!("read a stream of 100 events ({} streams), p99", thousands(s.store_streams()))
            }
            EvWorkload::CatchUp => {
                format!("catch up over all {} events", thousands(s.store_events()))
            }
            EvWorkload::Rebuild => {
                format!("rebuild the indexes of {} events", thousands(s.store_events()))
            }
        }
    }

    /// The unit, and whether more is better.
    fn unit(self) -> (&'static str, bool) {
        match self {
            EvWorkload::Append { .. } | EvWorkload::CatchUp => ("events/s", true),
            EvWorkload::ReadP50 | EvWorkload::ReadP99 => ("µs", false),
            EvWorkload::Rebuild => ("s", false),
        }
    }
}

/// Sizes and choices of the event-store workloads.
#[derive(Debug, Clone, Serialize)]
pub struct EvSettings {
    /// Streams the appends go to, round robin.
    pub streams: u64,
    /// Calls of the not-durable append workloads.
    pub calls: u64,
    /// Calls of the durable append workloads (all writers together).
    pub durable_calls: u64,
    /// Streams of 100 events in the read store.
    pub read_streams: u64,
    /// Streams of one event added to the read store (spread between the
    /// rounds of the streams of 100).
    pub single_streams: u64,
    /// Stream reads per repetition.
    pub reads: u64,
    /// Repetitions.
    pub runs: u32,
    /// Engines, annal first.
    pub engines: Vec<EvEngine>,
}

impl EvSettings {
    /// Streams in the read store.
    pub fn store_streams(&self) -> u64 {
        self.read_streams + self.single_streams
    }

    /// Events in the read store.
    pub fn store_events(&self) -> u64 {
        self.read_streams * STREAM_EVENTS + self.single_streams
    }
}

/// One (engine, workload): every repetition and their median.
#[derive(Debug, Serialize)]
pub struct EvMeasurement {
    /// Which engine.
    pub engine: EvEngine,
    /// The workload.
    pub workload: EvWorkload,
    /// Its label in the table.
    pub label: String,
    /// Events written or read per repetition (appends, catch-up, rebuild);
    /// stream reads per repetition (reads).
    pub count: u64,
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

/// What the event-store workloads produced, for the JSON file.
#[derive(Debug, Serialize)]
pub struct EvReport {
    /// The sizes.
    pub settings: EvSettings,
    /// `SELECT version()` of the server, if it started.
    pub postgres_version: Option<String>,
    /// Each engine's settings.
    pub engines: Vec<(EvEngine, &'static str)>,
    /// The figures, in table order.
    pub results: Vec<EvMeasurement>,
}

/// A store and the temporary directory it lives in (removed after it).
struct Opened<'a> {
    store: Option<Box<dyn Store + 'a>>,
    dir: Option<tempfile::TempDir>,
}

impl<'a> Opened<'a> {
    fn open(engine: EvEngine, pg: &'a Result<PgServer, String>, parent: Option<&Path>, durable: bool) -> Result<Self> {
        let tempdir = || -> Result<tempfile::TempDir> {
            let mut b = tempfile::Builder::new();
            b.prefix("annal-compare-ev-");
            Ok(match parent {
                Some(p) => b.tempdir_in(p)?,
                None => b.tempdir()?,
            })
        };
        Ok(match engine {
            EvEngine::Annal => {
                let dir = tempdir()?;
                let store = AnnalStore::create(dir.path(), durable)?;
                Opened { store: Some(Box::new(store)), dir: Some(dir) }
            }
            EvEngine::Sqlite => {
                let dir = tempdir()?;
                let store = SqliteStore::create(dir.path(), durable)?;
                Opened { store: Some(Box::new(store)), dir: Some(dir) }
            }
            EvEngine::Postgres => {
                let server = pg.as_ref().map_err(|e| format!("PostgreSQL did not start: {e}"))?;
                Opened { store: Some(Box::new(PgStore::open(server, durable)?)), dir: None }
            }
        })
    }

    fn store(&self) -> &(dyn Store + 'a) {
        self.store.as_deref().expect("open until closed")
    }

    fn store_mut(&mut self) -> &mut (dyn Store + 'a) {
        self.store.as_deref_mut().expect("open until closed")
    }

    /// Closes the store, removes its directory, and syncs (untimed).
    fn close(mut self) -> Result<()> {
        let closed = self.store.take().map_or(Ok(()), |s| s.close());
        let removed = self.dir.take().map_or(Ok(()), |d| d.close());
        rustix::fs::sync();
        closed?;
        Ok(removed?)
    }
}

/// Appends `calls` calls of `per_call` events from `writers` threads to
/// `names` round robin (call i to stream i mod streams, by writer i mod
/// writers); events per second.
fn append_run(store: &dyn Store, names: &[String], per_call: usize, writers: usize, calls: u64) -> Result<f64> {
    let streams = names.len() as u64;
    if calls > streams && !streams.is_multiple_of(writers as u64) {
        return Err("the stream count must be a multiple of the writer count (each stream has one writer)".into());
    }
    let sessions = (0..writers).map(|_| store.session()).collect::<Result<Vec<_>>>()?;
    let barrier = Barrier::new(writers + 1);
    let secs = thread::scope(|s| -> Result<f64> {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(w, mut session)| {
                let barrier = &barrier;
                s.spawn(move || -> Result<()> {
                    barrier.wait();
                    for i in (w as u64..calls).step_by(writers) {
                        let round = i / streams;
                        let expected = if round == 0 { None } else { Some(round * per_call as u64 - 1) };
                        session.append(&names[(i % streams) as usize], expected, per_call, READ_EVENT_DATA)?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut first_error = None;
        for h in handles {
            if let Err(e) = h.join().map_err(|_| "a writer thread panicked")? {
                first_error.get_or_insert(e);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        first_error.map_or(Ok(secs), Err)
    })?;
    let count = store.count()?;
    let expected = calls * per_call as u64;
    if count != expected {
        return Err(format!("{count} events stored, {expected} appended").into());
    }
    Ok(expected as f64 / secs)
}

/// p50 and p99 of `reads` stream reads, in µs, after as many untimed reads
/// of the same streams (every engine's caches warm, as in a running
/// service: annal's maps, SQLite's page cache, PostgreSQL's buffers).
fn read_run(store: &dyn Store, streams: u64, reads: u64) -> Result<(f64, f64)> {
    let mut session = store.session()?;
    for i in 0..reads {
        session.read_stream(&format!("order-{}", (i * 7919) % streams))?;
    }
    let mut lat = Vec::with_capacity(reads as usize);
    for i in 0..reads {
        let name = format!("order-{}", (i * 7919) % streams);
        let t = Instant::now();
        let n = session.read_stream(&name)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if n != STREAM_EVENTS as usize {
            return Err(format!("{name}: {n} events read, {STREAM_EVENTS} expected").into());
        }
    }
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

/// Events per second of a catch-up over the whole store.
fn catch_up_run(store: &dyn Store, total: u64) -> Result<f64> {
    let mut session = store.session()?;
    let start = Instant::now();
    let n = session.catch_up(total)?;
    let secs = start.elapsed().as_secs_f64();
    if n != total {
        return Err(format!("{n} events read, {total} stored").into());
    }
    Ok(n as f64 / secs)
}

/// An error with its sources ("db error: ..." for PostgreSQL's).
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

type Raw = Vec<(EvEngine, EvWorkload, u64, Result<f64, String>)>;

/// Runs every event-store workload on every engine of `s`.
pub fn measure(s: &EvSettings, parent: Option<&Path>, bar: &ProgressBar) -> EvReport {
    let pg: Result<PgServer, String> = if s.engines.contains(&EvEngine::Postgres) {
        bar.set_message("starting PostgreSQL");
        PgServer::start(parent).map_err(|e| e.to_string())
    } else {
        Err("not selected".into())
    };
    let postgres_version = pg.as_ref().ok().map(|p| p.version.clone());
    let names: Vec<String> = (0..s.streams).map(|i| format!("order-{i}")).collect();
    let mut raw: Raw = Vec::new();
    let note = |raw: &mut Raw, engine: EvEngine, w: EvWorkload, count: u64, r: Result<f64>| {
        let (unit, _) = w.unit();
        let what = match &r {
            Ok(v) if unit == "events/s" => format!("{} {unit}", thousands(v.round() as u64)),
            Ok(v) => format!("{v:.2} {unit}"),
            Err(e) => format!("FAILED: {}", chain(&**e)),
        };
        bar.println(format!("{:<10} {:<72} {what}", engine.name(), w.label(s)));
        bar.inc(1);
        raw.push((engine, w, count, r.map_err(|e| chain(&*e))));
    };

    for _ in 0..s.runs {
        for (per_call, durable, writers) in APPENDS {
            let w = EvWorkload::Append { per_call, durable, writers };
            let calls = if durable { s.durable_calls } else { s.calls };
            if calls == 0 {
                continue;
            }
            for &engine in &s.engines {
                bar.set_message(format!("{}: {}", engine.name(), w.label(s)));
                let r = Opened::open(engine, &pg, parent, durable).and_then(|opened| {
                    let rate = append_run(opened.store(), &names, per_call, writers, calls);
                    let closed = opened.close();
                    let rate = rate?;
                    closed?;
                    Ok(rate)
                });
                note(&mut raw, engine, w, calls * per_call as u64, r);
            }
        }
    }

    if s.read_streams > 0 {
        let total = s.store_events();
        let mut stores: Vec<(EvEngine, Result<Opened<'_>, String>)> = Vec::new();
        for &engine in &s.engines {
            bar.set_message(format!("{}: writing {} events for the reads", engine.name(), thousands(total)));
            let opened = Opened::open(engine, &pg, parent, false).and_then(|mut o| {
                o.store_mut().fill(s.read_streams, STREAM_EVENTS, s.single_streams)?;
                Ok(o)
            });
            stores.push((engine, opened.map_err(|e| e.to_string())));
        }
        for _ in 0..s.runs {
            for (engine, opened) in &mut stores {
                let engine = *engine;
                bar.set_message(format!("{}: reads", engine.name()));
                let (p50, p99, catch_up) = match opened {
                    Ok(o) => {
                        let (p50, p99) = match read_run(o.store(), s.read_streams, s.reads) {
                            Ok((a, b)) => (Ok(a), Ok(b)),
                            Err(e) => (Err(chain(&*e).into()), Err(e)),
                        };
                        bar.set_message(format!("{}: catching up", engine.name()));
                        (p50, p99, catch_up_run(o.store(), total))
                    }
                    Err(e) => (Err(e.clone().into()), Err(e.clone().into()), Err(e.clone().into())),
                };
                note(&mut raw, engine, EvWorkload::ReadP50, s.reads, p50);
                note(&mut raw, engine, EvWorkload::ReadP99, s.reads, p99);
                note(&mut raw, engine, EvWorkload::CatchUp, total, catch_up);
                if let Ok(o) = opened {
                    bar.set_message(format!("{}: rebuilding the index", engine.name()));
                    match o.store_mut().rebuild_index() {
                        Ok(Some(secs)) => note(&mut raw, engine, EvWorkload::Rebuild, total, Ok(secs)),
                        Ok(None) => {}
                        Err(e) => note(&mut raw, engine, EvWorkload::Rebuild, total, Err(e)),
                    }
                }
            }
        }
        for (_, opened) in stores {
            if let Ok(o) = opened
                && let Err(e) = o.close()
            {
                bar.println(format!("warning: closing a read store: {e}"));
            }
        }
    }
    drop(pg);

    EvReport {
        settings: s.clone(),
        postgres_version,
        engines: s.engines.iter().map(|&e| (e, e.settings())).collect(),
        results: summarise(raw, s),
    }
}

/// Groups the repetitions of each (engine, workload), in first-seen order.
fn summarise(raw: Raw, s: &EvSettings) -> Vec<EvMeasurement> {
    let mut out: Vec<EvMeasurement> = Vec::new();
    for (engine, workload, count, r) in raw {
        let i = match out.iter().position(|m| m.engine == engine && m.workload == workload) {
            Some(i) => i,
            None => {
                out.push(EvMeasurement {
                    engine,
                    workload,
                    label: workload.label(s),
                    count,
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
    let annal: Vec<(EvWorkload, f64)> =
        out.iter().filter(|m| m.engine == EvEngine::Annal).filter_map(|m| m.median.map(|v| (m.workload, v))).collect();
    for m in &mut out {
        m.ratio_to_annal = match (m.median, annal.iter().find(|(w, _)| *w == m.workload)) {
            (Some(v), Some((_, a))) if *a > 0.0 => Some(v / a),
            _ => None,
        };
    }
    // Table order: workload by workload, engines in the order given.
    let order = |m: &EvMeasurement| {
        let w = match m.workload {
            EvWorkload::Append { per_call, durable, writers } => {
                APPENDS.iter().position(|a| *a == (per_call, durable, writers)).unwrap_or(0)
            }
            EvWorkload::ReadP50 => 10,
            EvWorkload::ReadP99 => 11,
            EvWorkload::CatchUp => 12,
            EvWorkload::Rebuild => 13,
        };
        (w, s.engines.iter().position(|e| *e == m.engine))
    };
    out.sort_by_key(order);
    out
}

fn figure(v: f64, unit: &str) -> String {
    match unit {
        "events/s" => thousands(v.round() as u64),
        "µs" => format!("{v:.1} µs"),
        _ => format!("{v:.2} s"),
    }
}

/// The markdown table and its notes.
pub fn markdown(r: &EvReport) -> String {
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
                    if m.unit == "events/s" { format!("{} events/s", figure(v, m.unit)) } else { figure(v, m.unit) },
                    m.spread_pct.map_or_else(String::new, |p| format!("{p:.0}%")),
                    m.ratio_to_annal.map_or_else(|| "-".into(), |x| format!("{x:.2}")),
                ],
                m.runs.iter().map(|v| figure(*v, m.unit)).collect::<Vec<_>>().join(", "),
            ),
        };
        let _ = writeln!(out, "| {} | {} | {} | {runs} |", m.label, m.engine.name(), cells.join(" | "));
    }
    let _ = write!(
        out,
        "\nNotes:\n\n\
         - Median of {} repetitions, going round the engines in turn; spread = (max - min) / median. \"x annal\" \
         is the engine's figure divided by annal's: above 1 is faster for events/s, slower for µs and s.\n\
         - Appends: each repetition in a fresh store (PostgreSQL: the table dropped and created, then \
         CHECKPOINT), call i to stream `order-(i mod {})` with the expected version the caller knows (NoStream \
         for a stream's first call, else Exact(last)); with 8 writers each stream has one writer. {} calls not \
         durable, {} durable (all writers together). The event count is checked after each run (untimed). Each \
         event: type `OrderPlaced`, data `{}` (JSON; JSONB in PostgreSQL, TEXT in SQLite), no metadata.\n\
         - Reads: one store per engine of {} streams of 100 events written round robin (a stream's events \
         spread over the whole store) and {} streams of 1 event spread between the rounds, untimed; {} reads \
         of whole streams per repetition, checking versions, after as many untimed ones. Catch-up: annal subscribes to `$all` from the beginning; SQL reads `WHERE global_seq > $last ORDER BY \
         global_seq LIMIT 1000` pages. Rebuild: annal closed, its index directory removed, open timed.\n",
        r.settings.runs,
        thousands(r.settings.streams),
        thousands(r.settings.calls),
        thousands(r.settings.durable_calls),
        READ_EVENT_DATA,
        thousands(r.settings.read_streams),
        thousands(r.settings.single_streams),
        thousands(r.settings.reads),
    );
    if let Some(v) = &r.postgres_version {
        let _ = writeln!(out, "- PostgreSQL: {v}; {}.", pg::SERVER_SETTINGS);
    }
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
pub fn steps(s: &EvSettings) -> u64 {
    let appends = APPENDS.iter().filter(|a| if a.1 { s.durable_calls > 0 } else { s.calls > 0 }).count() as u64;
    let reads = if s.read_streams > 0 { 3 } else { 0 };
    let rebuild = u64::from(s.read_streams > 0 && s.engines.contains(&EvEngine::Annal));
    u64::from(s.runs) * (s.engines.len() as u64 * (appends + reads) + rebuild)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EvSettings {
        EvSettings {
            streams: 8,
            calls: 8,
            durable_calls: 8,
            read_streams: 1,
            single_streams: 1,
            reads: 1,
            runs: 3,
            engines: vec![EvEngine::Annal, EvEngine::Sqlite, EvEngine::Postgres],
        }
    }

    #[test]
    fn median_spread_ratio_and_order() {
        let s = settings();
        let append = EvWorkload::Append { per_call: 1, durable: true, writers: 1 };
        let raw: Raw = vec![
            (EvEngine::Postgres, EvWorkload::ReadP50, 1, Ok(300.0)),
            (EvEngine::Annal, EvWorkload::ReadP50, 1, Ok(100.0)),
            (EvEngine::Sqlite, append, 8, Ok(50.0)),
            (EvEngine::Annal, append, 8, Ok(300.0)),
            (EvEngine::Annal, append, 8, Ok(100.0)),
            (EvEngine::Annal, append, 8, Ok(200.0)),
            (EvEngine::Sqlite, append, 8, Err("boom".into())),
        ];
        let out = summarise(raw, &s);
        let order: Vec<(EvEngine, EvWorkload)> = out.iter().map(|m| (m.engine, m.workload)).collect();
        assert_eq!(
            order,
            [
                (EvEngine::Annal, append),
                (EvEngine::Sqlite, append),
                (EvEngine::Annal, EvWorkload::ReadP50),
                (EvEngine::Postgres, EvWorkload::ReadP50)
            ]
        );
        assert_eq!(out[0].median, Some(200.0));
        assert_eq!(out[0].spread_pct, Some(100.0));
        assert_eq!(out[0].runs, [300.0, 100.0, 200.0]);
        assert_eq!(out[1].median, None, "a failed repetition fails the measurement");
        assert_eq!(out[1].error.as_deref(), Some("boom"));
        assert_eq!(out[3].ratio_to_annal, Some(3.0));
    }
}
