//! `annal-compare`: runs the same append and scan workloads, in one process,
//! on annal, the `commitlog` crate, fjall, redb, SQLite and a raw
//! memory-mapped baseline, and prints a markdown table (stdout) and a JSON
//! file of the results. See README.md.

#![deny(unsafe_code)]

mod engines;
mod es;
mod events;
mod group_commit;
mod report;
mod run;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use engines::{EngineInfo, EngineKind};
use run::{Measurement, Outcome, Settings};
use workload::{Pool, Result, Size, thousands};

/// Runs the same append and scan workloads on annal and other embedded
/// engines, side by side, and prints a markdown table.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Records of 100 bytes (0 skips this size).
    #[arg(long, default_value_t = 1_000_000)]
    records_100: usize,
    /// Records of 1 KiB (0 skips this size).
    #[arg(long = "records-1k", default_value_t = 200_000)]
    records_1k: usize,
    /// Records appended, for each size, in the fsync-per-batch workload
    /// (at most the size's record count).
    #[arg(long, default_value_t = 20_000)]
    fsync_records: usize,
    /// Records per batch in the batched workloads.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Engines to run, comma-separated (the raw baseline is needed for the
    /// ratios).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = EngineKind::ALL)]
    engines: Vec<EngineKind>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "compare-results.json")]
    json: PathBuf,
    /// Divide every record count by 10.
    #[arg(long)]
    quick: bool,
    /// Repetitions of every measurement (the table shows the median); the
    /// repetitions go round all engines in turn.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Directory in which to create the temporary stores (default: the
    /// system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Writer counts of the group-commit workload (one fsynced 100-byte
    /// record per call, annal against the ideal group commit); empty skips it.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8])]
    group_commit_writers: Vec<usize>,
    /// Records per group-commit run, all writers together (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    group_commit_records: usize,
    /// Run only the group-commit workload.
    #[arg(long)]
    only_group_commit: bool,
    /// Also run the event-store workloads (annal's EventStore, SQLite and
    /// PostgreSQL; see README.md, "Event store").
    #[arg(long)]
    events: bool,
    /// Run only the event-store workloads.
    #[arg(long)]
    only_events: bool,
    /// Engines of the event-store workloads, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = events::EvEngine::ALL)]
    event_engines: Vec<events::EvEngine>,
    /// Streams the event appends go to, round robin.
    #[arg(long, default_value_t = 100_000)]
    event_streams: u64,
    /// Calls of each not-durable event-append workload (0 skips them).
    #[arg(long, default_value_t = 100_000)]
    event_calls: u64,
    /// Calls of each durable event-append workload, all writers together
    /// (0 skips them).
    #[arg(long, default_value_t = 4_000)]
    event_durable_calls: u64,
    /// Streams of 100 events in the store the stream reads and the
    /// catch-up read (0 skips them).
    #[arg(long, default_value_t = 20_000)]
    event_read_streams: u64,
    /// Streams of 1 event added to the read store, so that it holds this
    /// many streams in all.
    #[arg(long, default_value_t = 1_000_000)]
    event_store_streams: u64,
    /// Stream reads per repetition.
    #[arg(long, default_value_t = 20_000)]
    event_reads: u64,
    /// Also run the event-sourcing workloads (annal::es against cqrs-es,
    /// and a projection into SQLite; see README.md, "Event sourcing").
    #[arg(long)]
    es: bool,
    /// Run only the event-sourcing workloads.
    #[arg(long)]
    only_es: bool,
    /// Engines of the event-sourcing workloads, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = es::EsEngine::ALL)]
    es_engines: Vec<es::EsEngine>,
    /// Events of the one aggregate the loads read (0 skips them).
    #[arg(long, default_value_t = 1_000_000)]
    es_load_events: u64,
    /// Events per command writing that aggregate (untimed; cqrs-es's
    /// MemStore at least 50,000). It must divide the snapshot size or be a
    /// multiple of it (see README.md).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    es_load_batch: u64,
    /// A snapshot every this many events (annal's EveryEvents, cqrs-es's
    /// snapshot size).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    es_snapshot_every: u64,
    /// Loads from the snapshot per repetition (their median is the
    /// repetition's figure).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    es_loads: u64,
    /// Aggregates of the execute workloads (0 skips them).
    #[arg(long, default_value_t = 100_000)]
    es_aggregates: u64,
    /// Commands of each not-durable execute workload.
    #[arg(long, default_value_t = 100_000)]
    es_commands: u64,
    /// Commands of each durable execute workload, all threads together.
    #[arg(long, default_value_t = 8_000)]
    es_durable_commands: u64,
    /// Events the projection goes over (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    es_projection_events: u64,
    /// Aggregates those events belong to.
    #[arg(long, default_value_t = 100_000)]
    es_projection_aggregates: u64,
}

/// The JSON file.
#[derive(Serialize)]
struct Output<'a> {
    tool: &'static str,
    date_utc: String,
    unix_time: u64,
    command: String,
    machine: report::Machine,
    settings: JsonSettings,
    engines: Vec<EngineInfo>,
    results: &'a [Measurement],
    group_commit: &'a [group_commit::GcMeasurement],
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<&'a events::EvReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    es: Option<&'a es::EsReport>,
}

#[derive(Serialize)]
struct JsonSettings {
    records_100: usize,
    records_1k: usize,
    fsync_records: usize,
    batch: usize,
    runs: u32,
    quick: bool,
    temp_dir: PathBuf,
    release_build: bool,
}

fn main() -> ExitCode {
    match compare(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: some runs failed (see the notes under the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs everything; `Ok(false)` when some run failed.
fn compare(args: Args) -> Result<bool> {
    let scale = |n: usize| if args.quick { n / 10 } else { n };
    let sizes: Vec<(usize, usize)> =
        [(100, scale(args.records_100)), (1024, scale(args.records_1k))].into_iter().filter(|&(_, n)| n > 0).collect();
    let fsync_records = scale(args.fsync_records);
    let batch = args.batch as usize;
    let mut engines = args.engines.clone();
    engines.sort_by_key(|e| EngineKind::ALL.iter().position(|a| a == e));
    engines.dedup();
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; run with `cargo run --release` for meaningful figures");
    }

    let sizes = if args.only_group_commit || args.only_events || args.only_es { Vec::new() } else { sizes };
    let gc_records = if args.only_events || args.only_es { 0 } else { scale(args.group_commit_records) };
    let mut ev_engines = args.event_engines.clone();
    ev_engines.sort_by_key(|e| events::EvEngine::ALL.iter().position(|a| a == e));
    ev_engines.dedup();
    let ev_settings = ((args.events || args.only_events) && !args.only_es).then(|| {
        let scale = |n: u64| if args.quick { n / 10 } else { n };
        events::EvSettings {
            streams: scale(args.event_streams).max(8),
            calls: scale(args.event_calls),
            durable_calls: scale(args.event_durable_calls),
            read_streams: scale(args.event_read_streams),
            single_streams: scale(args.event_store_streams).saturating_sub(scale(args.event_read_streams)),
            reads: scale(args.event_reads).max(1),
            runs: args.runs,
            engines: ev_engines.clone(),
        }
    });
    let mut es_engines = args.es_engines.clone();
    es_engines.sort_by_key(|e| es::EsEngine::ALL.iter().position(|a| a == e));
    es_engines.dedup();
    let es_settings = (args.es || args.only_es).then(|| {
        let scale = |n: u64| if args.quick { n / 10 } else { n };
        es::EsSettings {
            load_events: scale(args.es_load_events),
            load_batch: args.es_load_batch,
            snapshot_every: args.es_snapshot_every,
            loads: args.es_loads,
            aggregates: scale(args.es_aggregates),
            commands: scale(args.es_commands).max(1),
            durable_commands: scale(args.es_durable_commands).max(1),
            projection_events: scale(args.es_projection_events),
            projection_aggregates: scale(args.es_projection_aggregates).max(1),
            runs: args.runs,
            engines: es_engines,
        }
    });
    let gc_writers: Vec<usize> = if gc_records == 0 {
        Vec::new()
    } else {
        args.group_commit_writers.iter().copied().filter(|&w| w > 0).collect()
    };
    let steps = sizes.len() * args.runs as usize * engines.len() * 4
        + gc_writers.len() * args.runs as usize * 2
        + ev_settings.as_ref().map_or(0, |s| events::steps(s) as usize)
        + es_settings.as_ref().map_or(0, |s| es::steps(s) as usize);
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}")?);
    let settings = Settings { batch, fsync_records, parent: args.dir.as_deref(), bar: &bar };

    let mut runs = Vec::new();
    for (i, &(size, count)) in sizes.iter().enumerate() {
        bar.set_message(format!("preparing {} values of {}", thousands(count as u64), Size(size)));
        let pool = Pool::random(count, size, 0x616e_6e61_6c00 + i as u64);
        for _ in 0..args.runs {
            for &engine in &engines {
                runs.extend(run::run_engine(engine, pool.values(), &settings));
            }
        }
    }
    let gc = if gc_writers.is_empty() {
        Vec::new()
    } else {
        bar.set_message(format!("preparing {} values of 100 B", thousands(gc_records as u64)));
        let pool = Pool::random(gc_records, 100, 0x6763_0000);
        group_commit::measure(pool.values(), &gc_writers, args.runs, args.dir.as_deref(), &bar)?
    };
    let ev = ev_settings.as_ref().map(|s| events::measure(s, args.dir.as_deref(), &bar));
    let es = es_settings.as_ref().map(|s| es::measure(s, args.dir.as_deref(), &bar));
    bar.finish_and_clear();
    let mut results = run::median_of_runs(runs);
    report::add_ratios(&mut results);

    let size_list: Vec<usize> = sizes.iter().map(|&(size, _)| size).collect();
    if !size_list.is_empty() {
        print!("{}", report::markdown(&results, &engines, &size_list, batch, args.runs));
    }
    if !gc.is_empty() {
        println!();
        print!("{}", group_commit::markdown(&gc, args.runs));
    }
    if let Some(ev) = &ev {
        if !size_list.is_empty() || !gc.is_empty() {
            println!();
        }
        print!("{}", events::markdown(ev));
    }
    if let Some(es) = &es {
        if !size_list.is_empty() || !gc.is_empty() || ev.is_some() {
            println!();
        }
        print!("{}", es::markdown(es));
    }

    let unix_time = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let output = Output {
        tool: concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")),
        date_utc: report::utc_date(unix_time),
        unix_time,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: report::Machine::probe(),
        settings: JsonSettings {
            records_100: scale(args.records_100),
            records_1k: scale(args.records_1k),
            fsync_records,
            batch,
            runs: args.runs,
            quick: args.quick,
            temp_dir: args.dir.clone().unwrap_or_else(std::env::temp_dir),
            release_build: !cfg!(debug_assertions),
        },
        engines: engines.iter().map(|e| e.info()).collect(),
        results: &results,
        group_commit: &gc,
        events: ev.as_ref(),
        es: es.as_ref(),
    };
    let json = serde_json::to_string_pretty(&output)?;
    std::fs::write(&args.json, json + "\n").map_err(|e| format!("writing {}: {e}", args.json.display()))?;
    eprintln!("results written to {}", args.json.display());

    let ev_failed = ev.as_ref().is_some_and(|r| r.results.iter().any(|m| m.error.is_some()))
        || es.as_ref().is_some_and(|r| r.results.iter().any(|m| m.error.is_some()));
    Ok(!ev_failed && !results.iter().any(|m| matches!(m.outcome, Outcome::Failed { .. })))
}
