//! `annal verify`, `annal dump` and `annal stats`: read-only inspection.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;

use annal::inspect::{self, Severity, format_timestamp};
use annal::segment::log_file_name;
use annal::{Log, LogConfig, OwnedRecord, SegmentInfo};

use super::{CliResult, Failure, print, stdout_error};

/// Check every checksum of every segment and index file, read-only.
///
/// Checks each segment's header, its footer if sealed (every segment but the
/// last must be), every record's checksum and offset (offsets must be dense
/// within and across segments, except for the gaps compaction leaves inside a
/// compacted segment's range), and each sealed segment's .index and
/// .timeindex files against its data.
///
/// Prints one line per problem (severity, file, log offset, byte position,
/// message), then a one-line summary. Exit status: 0 if the log is intact,
/// including when there are only warnings, which are printed as such: index
/// files that are missing or invalid (the log rebuilds them from the data when
/// it opens the segment) and a torn tail at the end of the last segment (a
/// write cut short by a crash, which a writer's recovery cuts). 2 if any data
/// is corrupt. 1 if DIR is not an annal log or a file cannot be read.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The log directory.
    dir: PathBuf,
    /// Also list files that are not part of the log and informational notes.
    #[arg(long, short)]
    verbose: bool,
}

/// Print segment headers, checkpoints, footers, index entries and every record.
///
/// Human-readable and read-only; meant for looking at a damaged log. For each
/// record: offset, byte position, frame length, timestamp, key, value size and
/// header names. A segment's records are listed up to the first invalid one,
/// which is described.
#[derive(Debug, Args)]
pub(crate) struct DumpArgs {
    /// The log directory.
    dir: PathBuf,
    /// Only the segment with this base offset (the number in its file name).
    #[arg(long, value_name = "BASE")]
    segment: Option<u64>,
}

/// Print segments, records, bytes, offsets, timestamps and the recovery state.
///
/// Opens the log read-only (never changes a file) and reports what a writer
/// opening it would find, such as a torn tail it would cut.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The log directory.
    dir: PathBuf,
}

pub(crate) fn run_verify(args: &VerifyArgs) -> CliResult {
    let report = inspect::verify(&args.dir)?;
    let mut text = String::new();
    for p in &report.problems {
        let label = if p.severity.is_warning() { "warning" } else { "error" };
        text.push_str(&format!("{label}: {p}\n"));
    }
    if args.verbose {
        for note in &report.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        for path in &report.ignored {
            text.push_str(&format!("ignored: {}\n", path.display()));
        }
    }
    let corrupt = report.problems_of(Severity::Corruption).count();
    let warnings = report.problems.len() - corrupt;
    let range = match (report.first_offset, report.next_offset) {
        (Some(first), Some(next)) => format!(", offsets {first}..{next}"),
        _ => String::new(),
    };
    let summary = format!(
        "{} segments ({} sealed), {} records{range}, {} bytes checked",
        report.segments, report.sealed_segments, report.records, report.bytes_checked
    );
    if corrupt > 0 {
        text.push_str(&format!(
            "CORRUPT: {} {corrupt} corruption problem(s), {warnings} warning(s); {summary}\n",
            report.dir.display()
        ));
    } else if warnings > 0 {
        text.push_str(&format!("ok with {warnings} warning(s): {} {summary}\n", report.dir.display()));
    } else {
        text.push_str(&format!("ok: {} {summary}\n", report.dir.display()));
    }
    print(&text)?;
    if corrupt > 0 {
        return Err(Failure::Corruption(format!(
            "{}: {corrupt} corruption problem(s) found (listed on stdout)",
            report.dir.display()
        )));
    }
    Ok(())
}

pub(crate) fn run_dump(args: &DumpArgs) -> CliResult {
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    inspect::dump(&args.dir, args.segment, &mut out)?;
    out.flush().map_err(stdout_error)
}

pub(crate) fn run_stats(args: &StatsArgs) -> CliResult {
    let log = Log::open_read_only(&args.dir, LogConfig::default())?;
    let segments = log.segments();
    let sealed = segments.iter().filter(|s| s.sealed).count();
    let data_bytes: u64 = segments.iter().map(|s| s.data_bytes).sum();
    let mut file_bytes = 0;
    for s in &segments {
        let path = args.dir.join(log_file_name(s.base_offset));
        file_bytes +=
            std::fs::metadata(&path).map_err(|e| Failure::Error(format!("stat {}: {e}", path.display())))?.len();
    }
    let start = log.start_offset();
    let next = log.next_offset();
    let mut text = format!("log: {}\n", args.dir.display());
    text.push_str(&format!("segments: {} ({sealed} sealed, {} unsealed)\n", segments.len(), segments.len() - sealed));
    text.push_str(&format!("records: {}\n", readable_records(&log, &segments, start)));
    text.push_str(&format!("data bytes: {data_bytes}\n"));
    text.push_str(&format!("segment file bytes: {file_bytes}\n"));
    if next > start {
        // A damaged first or last record does not stop the report: `verify` says more.
        // The offset too if it is not the one above (compaction removed that record).
        let show = |r: annal::Result<Option<OwnedRecord>>, at: u64| match r {
            Ok(Some(r)) if r.offset == at => format!("{} ({})", r.timestamp, format_timestamp(r.timestamp)),
            Ok(Some(r)) => format!("{} ({}), at offset {}", r.timestamp, format_timestamp(r.timestamp), r.offset),
            Ok(None) => "- (no record: compaction removed them all)".to_owned(),
            Err(e) => format!("unreadable: {e}"),
        };
        let first = log.read_from(start).and_then(|mut r| r.next_record().map(|r| r.map(|r| r.to_owned())));
        let max_ts = segments.iter().map(|s| s.max_timestamp).max().unwrap_or(i64::MIN);
        text.push_str(&format!("first offset: {start}\n"));
        text.push_str(&format!("last offset: {}\n", next - 1));
        text.push_str(&format!("first timestamp: {}\n", show(first, start)));
        text.push_str(&format!("last timestamp: {}\n", show(last_record(&log, &segments, start), next - 1)));
        text.push_str(&format!("max timestamp: {max_ts} ({})\n", format_timestamp(max_ts)));
    } else {
        text.push_str(&format!("first offset: - (empty; next offset {next})\n"));
    }
    let report = log.recovery_report();
    let recovery = match report.scanned_segment {
        None => "clean: every segment is sealed (the log was closed)".to_owned(),
        Some(base) if report.truncated_bytes > 0 => format!(
            "not closed cleanly: last segment {} holds {} records, then a torn tail of {} bytes that a writer would cut",
            log_file_name(base),
            report.records_scanned,
            report.truncated_bytes
        ),
        Some(base) => format!(
            "open or not closed cleanly: last segment {} is unsealed and holds {} records",
            log_file_name(base),
            report.records_scanned
        ),
    };
    text.push_str(&format!("recovery: {recovery}\n"));
    // A read-only open accepts a last segment whose valid records end in damaged
    // durable data; a reader at the end of the log is the one that reports it.
    let tail_damage = match log.read_from(next) {
        Ok(mut reader) => reader.next_record().err(),
        Err(e) => Some(e),
    };
    if let Some(e) = &tail_damage {
        text.push_str(&format!("damage: {e}\n"));
    }
    print(&text)?;
    match tail_damage {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Records readable from `start` on: every record of the segments at or after
/// it; in the segment holding it, those from `start` on (counted by reading
/// that one segment if compaction left gaps in it).
fn readable_records(log: &Log, segments: &[SegmentInfo], start: u64) -> String {
    let mut n = 0;
    for s in segments.iter().filter(|s| s.next_offset > start) {
        if s.base_offset >= start {
            n += s.records;
        } else if s.records == s.next_offset - s.base_offset {
            n += s.next_offset - start;
        } else {
            let counted = log.read_from(start).and_then(|mut r| {
                let mut k = 0;
                while let Some(rec) = r.next_record()? {
                    if rec.offset() >= s.next_offset {
                        break;
                    }
                    k += 1;
                }
                Ok(k)
            });
            match counted {
                Ok(k) => n += k,
                Err(e) => return format!("unknown ({e})"),
            }
        }
    }
    n.to_string()
}

/// The last readable record: the one at the last offset, or (if compaction
/// removed it) the last one of the last segment that holds any.
fn last_record(log: &Log, segments: &[SegmentInfo], start: u64) -> annal::Result<Option<OwnedRecord>> {
    let next = log.next_offset();
    match log.get(next - 1) {
        Ok(r) => return Ok(Some(r)),
        Err(annal::Error::Compacted { .. }) => {}
        Err(e) => return Err(e),
    }
    let Some(s) = segments.iter().rev().find(|s| s.records > 0 && s.next_offset > start) else {
        return Ok(None);
    };
    let mut last = None;
    for r in log.read_from(s.base_offset.max(start))? {
        let r = r?;
        if r.offset >= s.next_offset {
            break;
        }
        last = Some(r);
    }
    Ok(last)
}
