//! The markdown table (stdout) and the JSON file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engines::{EngineInfo, EngineKind, FsyncSupport};
use crate::run::{Measurement, Outcome};
use crate::workload::{Size, Workload, thousands};

/// Workloads in table order.
const WORKLOADS: [Workload; 4] = [Workload::BatchNoSync, Workload::EachNoSync, Workload::Scan, Workload::BatchFsync];

/// Fills in every measured figure's ratio to the raw baseline's figure for
/// the same workload and value size.
pub fn add_ratios(results: &mut [Measurement]) {
    let raw: Vec<(Workload, usize, f64)> = results
        .iter()
        .filter(|m| m.engine == EngineKind::Raw)
        .filter_map(|m| match &m.outcome {
            Outcome::Measured(t) => Some((m.workload, m.value_bytes, t.records_per_sec)),
            _ => None,
        })
        .collect();
    for m in results.iter_mut() {
        if let Outcome::Measured(t) = &mut m.outcome {
            t.ratio_to_raw = raw
                .iter()
                .find(|(w, size, _)| *w == m.workload && *size == m.value_bytes)
                .map(|(_, _, rate)| t.records_per_sec / rate);
        }
    }
}

/// (max - min) / median of the repetitions' rates, in percent; empty for a
/// single repetition.
fn spread(runs: &[f64], median: f64) -> String {
    if runs.len() < 2 || median <= 0.0 {
        return String::new();
    }
    let max = runs.iter().copied().fold(f64::MIN, f64::max);
    let min = runs.iter().copied().fold(f64::MAX, f64::min);
    format!("{:.0}%", (max - min) / median * 100.0)
}

fn ms(secs: f64) -> String {
    format!("{:.1} ms", secs * 1e3)
}

/// The markdown table of `results`, rows grouped by value size, then
/// workload, then engine (in `engines` order), followed by notes.
pub fn markdown(results: &[Measurement], engines: &[EngineKind], sizes: &[usize], batch: usize, runs: u32) -> String {
    let mut out = String::new();
    out.push_str("| records | workload | engine | records/s | MB/s (payload) | x raw | spread | close / reopen |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
    for &size in sizes {
        for workload in WORKLOADS {
            for &engine in engines {
                let Some(m) =
                    results.iter().find(|m| m.engine == engine && m.workload == workload && m.value_bytes == size)
                else {
                    continue;
                };
                let name = engine.info().name;
                let records = format!("{} x {}", thousands(m.records), Size(size));
                let label = workload.label(batch);
                let cells = match &m.outcome {
                    Outcome::Measured(t) => [
                        thousands(t.records_per_sec.round() as u64),
                        format!("{:.1}", t.mb_per_sec),
                        t.ratio_to_raw.map_or_else(|| "-".to_string(), |r| format!("{r:.2}")),
                        spread(&t.runs_records_per_sec, t.records_per_sec),
                        t.close_secs.or(t.reopen_secs).map_or_else(String::new, ms),
                    ],
                    Outcome::NotApplicable { .. } => [
                        "n/a (see notes)".to_string(),
                        "n/a".to_string(),
                        "n/a".to_string(),
                        String::new(),
                        String::new(),
                    ],
                    Outcome::Failed { .. } => {
                        ["FAILED (see notes)".to_string(), String::new(), String::new(), String::new(), String::new()]
                    }
                };
                let _ = writeln!(out, "| {records} | {label} | {name} | {} |", cells.join(" | "));
            }
        }
    }
    out.push('\n');
    out.push_str(&notes(results, engines, batch, runs));
    out
}

fn notes(results: &[Measurement], engines: &[EngineKind], batch: usize, runs: u32) -> String {
    let mut out = format!(
        "Notes:\n\n\
         - Every figure is the median of {runs} repetitions (the repetitions go round all engines in turn); \
         \"spread\" is (fastest - slowest) / median of the repetitions' records/s, and the JSON file has \
         every repetition.\n\
         - records/s and MB/s count values only (MB = 10^6 bytes); \"x raw\" is the ratio to the raw \
         baseline's records/s in the same row group. Append figures time the engine calls only (the store is \
         opened before; its close, timed apart, is in the last column); scan figures time reading every \
         record after a reopen (timed apart, in the last column), with the data in the page cache.\n\
         - Every scan compares every value byte for byte with what was appended (the same cost for every \
         engine), and checks the count; every append run, timed or not, is verified by such a scan \
         afterwards (untimed). Each run uses a fresh temporary directory, removed afterwards, followed by an \
         untimed sync(2).\n"
    );
    for &engine in engines {
        let EngineInfo { name, version, no_fsync, fsync_per_batch, scan, close } = engine.info();
        let fsync = match fsync_per_batch {
            FsyncSupport::Supported(how) => how.to_string(),
            FsyncSupport::Unsupported(why) => format!("n/a: {why}"),
        };
        let _ = writeln!(
            out,
            "- **{name}** ({version}). No fsync: {no_fsync}. Fsync per batch: {fsync}. Scan: {scan}. Close: {close}."
        );
    }
    for m in results {
        match &m.outcome {
            Outcome::Measured(t) if t.flush_secs > 0.0005 => {
                let without = (t.secs - t.flush_secs).max(f64::MIN_POSITIVE);
                let _ = writeln!(
                    out,
                    "- {}, {} x {}, {}: the final flush took {} of the {} timed; without it, {} records/s.",
                    m.engine.info().name,
                    thousands(m.records),
                    Size(m.value_bytes),
                    m.workload.label(batch),
                    ms(t.flush_secs),
                    ms(t.secs),
                    thousands((m.records as f64 / without).round() as u64)
                );
            }
            Outcome::Failed { error } => {
                let _ = writeln!(
                    out,
                    "- FAILED: {}, {} x {}, {}: {error}",
                    m.engine.info().name,
                    thousands(m.records),
                    Size(m.value_bytes),
                    m.workload.label(batch)
                );
            }
            _ => {}
        }
    }
    out
}

/// The machine, as far as this process can tell.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu: Option<String>,
    /// Available parallelism.
    pub cpus: Option<usize>,
    /// `MemTotal` from /proc/meminfo, in kB.
    pub memory_kb: Option<u64>,
    /// /proc/sys/kernel/osrelease.
    pub kernel: Option<String>,
}

impl Machine {
    /// Reads what Linux tells about this machine; missing pieces are `None`.
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        Machine {
            cpu: field(&cpuinfo, "model name"),
            cpus: std::thread::available_parallelism().ok().map(usize::from),
            memory_kb: field(&meminfo, "MemTotal").and_then(|v| v.trim_end_matches("kB").trim().parse().ok()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        }
    }
}

/// The UTC date of `unix_secs` as YYYY-MM-DD: the date part of annal's own
/// timestamp format.
pub fn utc_date(unix_secs: u64) -> String {
    let ms = i64::try_from(unix_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut stamp = annal::inspect::format_timestamp(ms);
    stamp.truncate("YYYY-MM-DD".len());
    stamp
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
    }
}
