//! Runs the workloads on one engine and times them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;

use crate::engines::{
    Annal, CommitLogEngine, Engine, EngineInfo, EngineKind, Fjall, FsyncSupport, RawMmap, Redb, Sqlite,
};
use crate::workload::{Check, Fsync, Result, Size, Values, Workload, thousands};

/// The outcome of one (engine, workload, value size).
#[derive(Debug, Serialize)]
pub struct Measurement {
    /// Which engine.
    pub engine: EngineKind,
    /// The workload.
    pub workload: Workload,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Records appended (or scanned).
    pub records: u64,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Measured figures, or why there are none.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The run completed and was verified.
    Measured(Timing),
    /// The engine cannot do this workload.
    NotApplicable {
        /// Why.
        reason: String,
    },
    /// The run failed: an engine error, or a scan that did not read back
    /// what was appended.
    Failed {
        /// The error.
        error: String,
    },
}

/// Times of one measured run, in seconds, and the rates they give.
#[derive(Debug, Serialize)]
pub struct Timing {
    /// The timed work: all appends including `flush_secs`, or the scan.
    pub secs: f64,
    /// Part of `secs` spent moving data still held in process memory to the
    /// OS after the last append (0 for engines that hold none back).
    pub flush_secs: f64,
    /// Close after the appends (not in `secs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_secs: Option<f64>,
    /// Reopen before the scan (not in `secs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reopen_secs: Option<f64>,
    /// Records per second over `secs`.
    pub records_per_sec: f64,
    /// Payload (value) megabytes, 10^6 bytes, per second over `secs`.
    pub mb_per_sec: f64,
    /// `records_per_sec` divided by the raw baseline's for the same
    /// workload and value size, when the baseline ran.
    pub ratio_to_raw: Option<f64>,
    /// Records per second of every repetition, in run order; the figures
    /// above are those of the median repetition.
    pub runs_records_per_sec: Vec<f64>,
}

impl Timing {
    fn new(values: Values<'_>, secs: Duration, flush: Duration) -> Timing {
        let s = secs.as_secs_f64().max(f64::MIN_POSITIVE);
        Timing {
            secs: s,
            flush_secs: flush.as_secs_f64(),
            close_secs: None,
            reopen_secs: None,
            records_per_sec: values.len() as f64 / s,
            mb_per_sec: values.payload_bytes() as f64 / s / 1e6,
            ratio_to_raw: None,
            runs_records_per_sec: Vec::new(),
        }
    }
}

/// Fixed settings of a run.
pub struct Settings<'a> {
    /// Records per batch.
    pub batch: usize,
    /// Records for the fsync-per-batch workload.
    pub fsync_records: usize,
    /// Where to create the temporary directories.
    pub parent: Option<&'a Path>,
    /// Progress, on stderr.
    pub bar: &'a ProgressBar,
}

/// The median (the lower middle one for an even count) of `runs`, and their
/// spread, (max - min) / median in percent (none for a single run or a
/// median of zero); `None` if there is no run.
pub fn median_and_spread(runs: &[f64]) -> Option<(f64, Option<f64>)> {
    if runs.is_empty() {
        return None;
    }
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[(sorted.len() - 1) / 2];
    let spread = (sorted.len() > 1 && median > 0.0).then(|| (sorted[sorted.len() - 1] - sorted[0]) / median * 100.0);
    Some((median, spread))
}

/// Merges the repetitions of each (engine, workload, value size) into one
/// measurement: the median repetition by records/s (the lower of the two
/// middle ones for an even count), with every repetition's rate kept. A
/// failure in any repetition makes the whole measurement a failure.
pub fn median_of_runs(runs: Vec<Measurement>) -> Vec<Measurement> {
    let mut groups: Vec<Vec<Measurement>> = Vec::new();
    for m in runs {
        match groups.iter_mut().find(|g| {
            let first = &g[0];
            first.engine == m.engine && first.workload == m.workload && first.value_bytes == m.value_bytes
        }) {
            Some(group) => group.push(m),
            None => groups.push(vec![m]),
        }
    }
    groups.into_iter().filter_map(merge).collect()
}

fn merge(mut group: Vec<Measurement>) -> Option<Measurement> {
    if let Some(i) = group.iter().position(|m| !matches!(m.outcome, Outcome::Measured(_))) {
        return Some(group.swap_remove(i));
    }
    let rate = |m: &Measurement| match &m.outcome {
        Outcome::Measured(t) => t.records_per_sec,
        _ => 0.0,
    };
    let in_run_order: Vec<f64> = group.iter().map(rate).collect();
    group.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    let mut median = group.swap_remove((group.len() - 1) / 2);
    if let Outcome::Measured(t) = &mut median.outcome {
        t.runs_records_per_sec = in_run_order;
    }
    Some(median)
}

/// Runs every workload on `kind` with `values`, returning one measurement
/// per workload.
pub fn run_engine(kind: EngineKind, values: Values<'_>, settings: &Settings<'_>) -> Vec<Measurement> {
    match kind {
        EngineKind::Raw => run::<RawMmap>(kind, values, settings),
        EngineKind::Annal => run::<Annal>(kind, values, settings),
        EngineKind::Commitlog => run::<CommitLogEngine>(kind, values, settings),
        EngineKind::Fjall => run::<Fjall>(kind, values, settings),
        EngineKind::Redb => run::<Redb>(kind, values, settings),
        EngineKind::Sqlite => run::<Sqlite>(kind, values, settings),
    }
}

/// How the appends of a run are made.
#[derive(Clone, Copy)]
enum Appends {
    Batches(usize),
    Each,
}

fn run<E: Engine>(kind: EngineKind, values: Values<'_>, settings: &Settings<'_>) -> Vec<Measurement> {
    let info = E::INFO;
    let measurement = |workload, values: Values<'_>, outcome| Measurement {
        engine: kind,
        workload,
        value_bytes: values.size(),
        records: values.len() as u64,
        outcome,
    };
    let mut out = Vec::with_capacity(4);

    // Batched appends, then a scan of what they wrote.
    step(settings, info, Workload::BatchNoSync, values);
    let (appended, scanned) = match in_temp_dir(settings.parent, |dir| {
        let append = append_run::<E>(dir, Fsync::None, values, Appends::Batches(settings.batch))?;
        let scan = scan_run::<E>(dir, values)?;
        Ok((append, scan))
    }) {
        Ok((append, scan)) => (Outcome::Measured(append), Outcome::Measured(scan)),
        Err(e) => (failed(&e), Outcome::Failed { error: "the batched append run before it failed".into() }),
    };
    out.push(measurement(Workload::BatchNoSync, values, appended));
    report(settings, info, out.last());
    step(settings, info, Workload::Scan, values);
    out.push(measurement(Workload::Scan, values, scanned));
    report(settings, info, out.last());

    // One record per call.
    step(settings, info, Workload::EachNoSync, values);
    let outcome = in_temp_dir(settings.parent, |dir| {
        let append = append_run::<E>(dir, Fsync::None, values, Appends::Each)?;
        scan_run::<E>(dir, values)?; // verification only: untimed
        Ok(append)
    });
    out.push(measurement(Workload::EachNoSync, values, outcome.map_or_else(|e| failed(&e), Outcome::Measured)));
    report(settings, info, out.last());

    // Batches, each fsynced.
    let few = values.take(settings.fsync_records);
    step(settings, info, Workload::BatchFsync, few);
    let outcome = match info.fsync_per_batch {
        FsyncSupport::Unsupported(reason) => Outcome::NotApplicable { reason: reason.to_string() },
        FsyncSupport::Supported(_) => in_temp_dir(settings.parent, |dir| {
            let append = append_run::<E>(dir, Fsync::PerBatch, few, Appends::Batches(settings.batch))?;
            scan_run::<E>(dir, few)?; // verification only: untimed
            Ok(append)
        })
        .map_or_else(|e| failed(&e), Outcome::Measured),
    };
    out.push(measurement(Workload::BatchFsync, few, outcome));
    report(settings, info, out.last());
    out
}

fn failed(e: &crate::workload::Error) -> Outcome {
    Outcome::Failed { error: e.to_string() }
}

/// Shows what runs next on the progress bar.
fn step(settings: &Settings<'_>, info: EngineInfo, workload: Workload, values: Values<'_>) {
    settings.bar.set_message(format!(
        "{}: {} x {}, {}",
        info.name,
        thousands(values.len() as u64),
        Size(values.size()),
        workload.label(settings.batch)
    ));
}

/// Prints a finished measurement above the progress bar and advances it.
fn report(settings: &Settings<'_>, info: EngineInfo, m: Option<&Measurement>) {
    if let Some(m) = m {
        let what = match &m.outcome {
            Outcome::Measured(t) => format!("{} records/s", thousands(t.records_per_sec.round() as u64)),
            Outcome::NotApplicable { .. } => "n/a".to_string(),
            Outcome::Failed { error } => format!("FAILED: {error}"),
        };
        let size = Size(m.value_bytes).to_string();
        settings.bar.println(format!("{:<10} {size:>6} {:<44} {what}", info.name, m.workload.label(settings.batch)));
    }
    settings.bar.inc(1);
}

/// Runs `f` in a fresh temporary directory, removes the directory, then
/// asks the kernel to write back dirty data so that the next run starts on a
/// quiet disk (untimed).
fn in_temp_dir<T>(parent: Option<&Path>, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("annal-compare-");
    let dir = match parent {
        Some(parent) => builder.tempdir_in(parent)?,
        None => builder.tempdir()?,
    };
    let path: PathBuf = dir.path().to_path_buf();
    let result = f(&path);
    let removed = dir.close();
    rustix::fs::sync();
    let value = result?;
    removed?;
    Ok(value)
}

/// Creates a store, times the appends (and the flush to the OS), then the
/// close.
fn append_run<E: Engine>(dir: &Path, sync: Fsync, values: Values<'_>, appends: Appends) -> Result<Timing> {
    let mut engine = E::create(dir, sync, values)?;
    let start = Instant::now();
    match appends {
        Appends::Batches(batch) => engine.append_batches(values, batch)?,
        Appends::Each => engine.append_each(values)?,
    }
    let flush_start = Instant::now();
    engine.flush()?;
    let end = Instant::now();
    engine.close()?;
    let close = end.elapsed();
    let mut timing = Timing::new(values, end - start, end - flush_start);
    timing.close_secs = Some(close.as_secs_f64());
    Ok(timing)
}

/// Reopens a store (timed apart) and times a scan of every record, checking
/// each against `values`.
fn scan_run<E: Engine>(dir: &Path, values: Values<'_>) -> Result<Timing> {
    let start = Instant::now();
    let mut engine = E::reopen(dir)?;
    let reopen = start.elapsed();
    let mut check = Check::new(values);
    let start = Instant::now();
    engine.scan(&mut check)?;
    let scan = start.elapsed();
    check.finish()?;
    engine.close()?;
    let mut timing = Timing::new(values, scan, Duration::ZERO);
    timing.reopen_secs = Some(reopen.as_secs_f64());
    Ok(timing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(engine: EngineKind, rate: f64) -> Measurement {
        Measurement {
            engine,
            workload: Workload::Scan,
            value_bytes: 100,
            records: 10,
            outcome: Outcome::Measured(Timing {
                secs: 10.0 / rate,
                flush_secs: 0.0,
                close_secs: None,
                reopen_secs: Some(rate),
                records_per_sec: rate,
                mb_per_sec: 0.0,
                ratio_to_raw: None,
                runs_records_per_sec: Vec::new(),
            }),
        }
    }

    #[test]
    fn median_keeps_the_middle_run_and_every_rate() {
        let runs = vec![
            measured(EngineKind::Raw, 3.0),
            measured(EngineKind::Annal, 1.0),
            measured(EngineKind::Raw, 1.0),
            measured(EngineKind::Annal, 2.0),
            measured(EngineKind::Raw, 2.0),
        ];
        let merged = median_of_runs(runs);
        assert_eq!(merged.len(), 2);
        let Outcome::Measured(raw) = &merged[0].outcome else { panic!("raw was measured") };
        assert_eq!((raw.records_per_sec, raw.reopen_secs), (2.0, Some(2.0)));
        assert_eq!(raw.runs_records_per_sec, [3.0, 1.0, 2.0]);
        let Outcome::Measured(annal) = &merged[1].outcome else { panic!("annal was measured") };
        assert_eq!(annal.records_per_sec, 1.0, "lower middle of an even count");
    }

    #[test]
    fn one_failed_run_fails_the_measurement() {
        let mut failed = measured(EngineKind::Raw, 1.0);
        failed.outcome = Outcome::Failed { error: "boom".into() };
        let merged = median_of_runs(vec![measured(EngineKind::Raw, 2.0), failed]);
        assert!(matches!(&merged[0].outcome, Outcome::Failed { error } if error == "boom"));
    }
}
