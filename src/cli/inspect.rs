//! `annal verify`, `annal dump` and `annal stats`: read-only inspection of a
//! log, or of every partition of a topic or a whole store.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use annal::inspect::{self, Severity, VerifyReport, format_timestamp};
use annal::segment::log_file_name;
use annal::topic::store_meta::STORE_META_FILE_NAME;
use annal::topic::{TOPIC_META_FILE_NAME, TOPICS_DIR_NAME, meta, partition_dir_name, validate_topic_name};
use annal::{Log, LogConfig, OwnedRecord, SegmentInfo, Topic, TopicStore, TopicStoreConfig};

use super::topic::{limit, require_store};
use super::{CliResult, Failure, print, stdout_error};

/// Check every checksum of every segment and index file, read-only.
///
/// Checks each segment's header, its footer if sealed (every segment but the
/// last must be), every record's checksum and offset (offsets must be dense
/// within and across segments, except for the gaps compaction leaves inside a
/// compacted segment's range), and each sealed segment's .index and
/// .timeindex files against its data.
///
/// Also checks the files recovery trusts: the start-offset file (retention's
/// record of the first offset) and the archive manifest (the segments in the
/// archive tier: the manifest is checked, the archived objects are not read).
///
/// Prints one line per problem (severity, file, log offset, byte position,
/// message), then a one-line summary.
///
/// Exit status, in the spirit of fsck's:
///   0   nothing wrong;
///   1   only damage that opening the log repairs, printed as warnings: index
///       files that are missing or fail their checks (rebuilt from the data)
///       and a torn tail at the end of the last segment (a write cut short by
///       a crash, after the durable checkpoint: nothing acknowledged as
///       durable is in it; a writer's recovery cuts it);
///   2   damage to data: a checksum or check fails in a segment, the
///       start-offset file or the archive manifest (opening the log fails, or
///       reading stops there);
///   8   verify could not check: DIR is not an annal log, or a file cannot be
///       read;
///   16  wrong arguments.
///
/// DIR may also be an event store (it has an events.meta): its global log is
/// verified as above (lines prefixed `log: `), then events.meta, the index
/// manifest and every block of every index run (damage there is a warning:
/// the next open rebuilds the index from the log), and that every record of
/// the log is an event (one that is not is corruption).
///
/// DIR may also be a store (it has a topics directory) or a topic directory
/// (it has a topic.meta): then each topic's topic.meta is checked, and every
/// partition it lists is verified as above. Each line is prefixed with
/// `TOPIC PARTITION: ` (`TOPIC -: ` for the topic.meta), each partition ends
/// with a summary line, and a last line sums up. A damaged or missing
/// topic.meta, or a missing partition directory, is corruption; with the
/// topic.meta unreadable, the partition directories present are still checked.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The log, topic or store directory.
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
/// which is described. For an event store (a directory with an events.meta),
/// its global log is dumped.
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
///
/// DIR may also be an event store (it has an events.meta): its events, the
/// position after the last, its index runs per index and their size, then
/// its global log's stats as above.
///
/// DIR may also be a store (it has a topics directory) or a topic directory
/// (it has a topic.meta), opened read-only without taking the store's lock.
/// For each topic: a `topic NAME:` line with its partitions, cleanup policy
/// and retention; a `NAME PARTITION:` line per partition with its start and
/// next offsets, segments, bytes of record data and archived segments (if
/// any); and a `NAME total:` line. For a store, a last `store:` line sums up.
/// A topic that cannot be opened is printed as `NAME -: error: ...`, the
/// others are still reported, and the exit status is 1, or 2 if it is
/// corruption (a damaged or missing topic.meta, a missing partition).
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The log, topic or store directory.
    dir: PathBuf,
}

/// What a directory given to `verify` or `stats` holds.
enum Target {
    Log,
    /// An event store: it has an events.meta.
    Events,
    /// A store's root: it has a topics directory.
    Store,
    /// One topic's directory: it has a topic.meta.
    Topic,
}

impl Target {
    fn of(dir: &Path) -> Target {
        if annal::events::is_event_store(dir) {
            Target::Events
        } else if dir.join(TOPICS_DIR_NAME).is_dir() {
            Target::Store
        } else if dir.join(TOPIC_META_FILE_NAME).is_file() {
            Target::Topic
        } else {
            Target::Log
        }
    }
}

fn verify_any(args: &VerifyArgs) -> CliResult {
    let topics = match Target::of(&args.dir) {
        Target::Log => return verify_log(args),
        Target::Events => return verify_events(args),
        Target::Store => {
            let topics_dir = args.dir.join(TOPICS_DIR_NAME);
            topic_names(&topics_dir)?.into_iter().map(|n| (topics_dir.join(&n), n)).collect()
        }
        Target::Topic => vec![(args.dir.clone(), resolve_topic(&args.dir)?.1)],
    };
    let mut tally = Tally::default();
    if matches!(Target::of(&args.dir), Target::Store) {
        // The store's own metadata: where its archive is.
        let mut text = String::new();
        match annal::topic::store_meta::read(&args.dir) {
            Ok(meta) if args.verbose => {
                let archive = meta.archive_location.unwrap_or_else(|| "none recorded".into());
                text.push_str(&format!("{STORE_META_FILE_NAME}: ok: archive {archive}\n"));
            }
            Ok(_) => {}
            Err(e) => tally.fail(&mut text, STORE_META_FILE_NAME, store_failure(e)),
        }
        print(&text)?;
    }
    for (dir, name) in &topics {
        print(&verify_topic(name, dir, args.verbose, &mut tally))?;
    }
    let t = &tally;
    let summary = format!(
        "{} topic(s), {} partition(s), {} records, {} bytes checked",
        t.topics, t.partitions, t.records, t.bytes
    );
    let subject = format!("{} ", args.dir.display());
    print(&format!("{}\n", verdict(t.corrupt, t.warnings, t.errors, &subject, &summary)))?;
    verify_outcome(&args.dir, t.corrupt, t.warnings, t.errors)
}

/// `verify`'s exit status for damage that opening the log repairs.
const VERIFY_REPAIRABLE: u8 = 1;
/// `verify`'s exit status when it could not check (as fsck's "operational error").
const VERIFY_COULD_NOT_CHECK: u8 = 8;
/// `verify`'s exit status for wrong arguments (as fsck's "usage error").
pub(crate) const VERIFY_USAGE_ERROR: u8 = 16;

/// `annal verify`: see [`VerifyArgs`] for its exit statuses.
pub(crate) fn run_verify(args: &VerifyArgs) -> CliResult {
    verify_any(args).map_err(|f| match f {
        Failure::Error(m) => Failure::Status(VERIFY_COULD_NOT_CHECK, format!("error: {m}")),
        other => other,
    })
}

/// The outcome of a verification that found `corrupt` problems of data,
/// `warnings` problems that opening repairs, and could not check `errors`
/// topics or partitions.
fn verify_outcome(dir: &Path, corrupt: usize, warnings: usize, errors: usize) -> CliResult {
    if corrupt > 0 {
        return Err(Failure::Corruption(format!(
            "{}: {corrupt} corruption problem(s) found (listed on stdout)",
            dir.display()
        )));
    }
    if errors > 0 {
        return Err(Failure::Error(format!(
            "{}: {errors} topic(s) or partition(s) could not be checked (listed on stdout)",
            dir.display()
        )));
    }
    if warnings > 0 {
        return Err(Failure::Status(
            VERIFY_REPAIRABLE,
            format!("{}: {warnings} problem(s) that opening repairs (listed on stdout)", dir.display()),
        ));
    }
    Ok(())
}

/// Verifies an event store: its global log as a log (each line prefixed
/// `log: `), then its own files (events.meta, the index manifest and every
/// block of every index run) and that every record of the log is an event.
fn verify_events(args: &VerifyArgs) -> CliResult {
    let log_dir = args.dir.join(annal::events::LOG_DIR_NAME);
    let report = inspect::verify(&log_dir)?;
    let (mut corrupt, mut warnings, log_summary) = summarize(&report);
    let mut text = report_lines(&report, args.verbose, "log: ");
    let check = annal::events::check_store(&args.dir)?;
    for (path, why, repair) in &check.problems {
        let label = match repair {
            annal::events::Repair::ByOpening => {
                warnings += 1;
                "warning (the next open rebuilds it)"
            }
            annal::events::Repair::No => {
                corrupt += 1;
                "error"
            }
        };
        text.push_str(&format!("{label}: {}: {why}\n", path.display()));
    }
    let [streams, ids, categories, types] = check.runs;
    let indexed = check.indexed_to.map_or_else(|| "no index runs yet".to_owned(), |to| format!("indexed to {to}"));
    let summary = format!(
        "{} events; index {indexed}, runs: {streams} stream, {ids} event-id, {categories} category, {types} type, \
         {} entries checked; log: {log_summary}",
        check.events, check.index_entries
    );
    let subject = format!("{} ", args.dir.display());
    text.push_str(&format!("{}\n", verdict(corrupt, warnings, 0, &subject, &summary)));
    print(&text)?;
    verify_outcome(&args.dir, corrupt, warnings, 0)
}

fn verify_log(args: &VerifyArgs) -> CliResult {
    let report = inspect::verify(&args.dir)?;
    let (corrupt, warnings, summary) = summarize(&report);
    let mut text = report_lines(&report, args.verbose, "");
    let subject = format!("{} ", report.dir.display());
    text.push_str(&format!("{}\n", verdict(corrupt, warnings, 0, &subject, &summary)));
    print(&text)?;
    verify_outcome(&report.dir, corrupt, warnings, 0)
}

/// One line per problem of `report` (and, if `verbose`, per note and ignored
/// file), each starting with `prefix`.
fn report_lines(report: &VerifyReport, verbose: bool, prefix: &str) -> String {
    let mut text = String::new();
    for p in &report.problems {
        let label = if p.severity.is_warning() { "warning" } else { "error" };
        text.push_str(&format!("{prefix}{label}: {p}\n"));
    }
    if verbose {
        for note in &report.notes {
            text.push_str(&format!("{prefix}note: {note}\n"));
        }
        for path in &report.ignored {
            text.push_str(&format!("{prefix}ignored: {}\n", path.display()));
        }
    }
    text
}

/// The corruption problems and warnings of `report`, and what it checked.
fn summarize(report: &VerifyReport) -> (usize, usize, String) {
    let corrupt = report.problems_of(Severity::Corruption).count();
    let warnings = report.problems.len() - corrupt;
    let range = match (report.first_offset, report.next_offset) {
        (Some(first), Some(next)) => format!(", offsets {first}..{next}"),
        _ => String::new(),
    };
    let archived = match report.archived_segments {
        0 => String::new(),
        n => format!(", and {n} archived segments ({} records, not read)", report.archived_records),
    };
    let summary = format!(
        "{} local segments ({} sealed), {} records{range}, {} bytes checked{archived}",
        report.segments, report.sealed_segments, report.records, report.bytes_checked
    );
    (corrupt, warnings, summary)
}

/// The summary line of a verification of `subject` (empty, or ending in a
/// space) that found `corrupt` corruption problems, `warnings` warnings and
/// `errors` things it could not check.
fn verdict(corrupt: usize, warnings: usize, errors: usize, subject: &str, summary: &str) -> String {
    let errs = if errors > 0 { format!(", {errors} error(s)") } else { String::new() };
    if corrupt > 0 {
        format!("CORRUPT: {subject}{corrupt} corruption problem(s), {warnings} warning(s){errs}; {summary}")
    } else if errors > 0 {
        format!("FAILED: {subject}{errors} error(s), {warnings} warning(s); {summary}")
    } else if warnings > 0 {
        format!("ok with {warnings} warning(s): {subject}{summary}")
    } else {
        format!("ok: {subject}{summary}")
    }
}

/// What a `verify` of topics checked and found.
#[derive(Default)]
struct Tally {
    topics: usize,
    partitions: usize,
    records: u64,
    bytes: u64,
    corrupt: usize,
    warnings: usize,
    /// Topics or partitions that could not be checked for another reason (I/O).
    errors: usize,
}

impl Tally {
    /// Counts `failure` and appends its `PREFIX: error: ...` line to `text`.
    fn fail(&mut self, text: &mut String, prefix: &str, failure: Failure) {
        match failure {
            Failure::Corruption(_) => self.corrupt += 1,
            _ => self.errors += 1,
        }
        text.push_str(&format!("{prefix}: error: {failure}\n"));
    }
}

/// Checks the topic.meta of topic `name` in `dir` and verifies each partition
/// it lists (or, if it cannot be read, each partition directory present);
/// returns the lines to print.
fn verify_topic(name: &str, dir: &Path, verbose: bool, tally: &mut Tally) -> String {
    let mut text = String::new();
    tally.topics += 1;
    let partitions = match meta::read(dir) {
        Ok(m) => (0..m.partitions).collect(),
        Err(e) => {
            tally.fail(&mut text, &format!("{name} -"), store_failure(e));
            partitions_present(dir)
        }
    };
    for p in partitions {
        let prefix = format!("{name} {p}");
        let pdir = dir.join(partition_dir_name(p));
        if !pdir.is_dir() {
            let why = format!("corruption: {}: the partition directory is missing", pdir.display());
            tally.fail(&mut text, &prefix, Failure::Corruption(format!("{why} ({TOPIC_META_FILE_NAME} lists it)")));
            continue;
        }
        let report = match inspect::verify(&pdir) {
            Ok(report) => report,
            Err(e) => {
                tally.fail(&mut text, &prefix, store_failure(e));
                continue;
            }
        };
        let (corrupt, warnings, summary) = summarize(&report);
        text.push_str(&report_lines(&report, verbose, &format!("{prefix}: ")));
        text.push_str(&format!("{prefix}: {}\n", verdict(corrupt, warnings, 0, "", &summary)));
        tally.partitions += 1;
        tally.records += report.records;
        tally.bytes += report.bytes_checked;
        tally.corrupt += corrupt;
        tally.warnings += warnings;
    }
    text
}

/// `e` met inside a store: a topic directory without its topic.meta, or a
/// partition directory that holds no log, is damage to the store.
fn store_failure(e: annal::Error) -> Failure {
    match e {
        annal::Error::NotALog { .. } => Failure::Corruption(format!("corruption: {e}")),
        e => Failure::from(e),
    }
}

/// The partitions whose directories (five digits) are in topic directory
/// `dir`, sorted; none if it cannot be listed (its topic.meta error says why).
fn partitions_present(dir: &Path) -> Vec<u32> {
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    let mut found: Vec<u32> = entries
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok().filter(|&p| partition_dir_name(p) == n)))
        .collect();
    found.sort_unstable();
    found
}

/// The topics in a store's topics directory, sorted: as the store sees them,
/// the directories with a valid topic name (so not the hidden ones a creation
/// or deletion leaves).
fn topic_names(topics_dir: &Path) -> CliResult<Vec<String>> {
    let list_error = |e: io::Error| Failure::Error(format!("list {}: {e}", topics_dir.display()));
    let mut names = Vec::new();
    for entry in fs::read_dir(topics_dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        if let Some(name) = entry.file_name().to_str()
            && validate_topic_name(name).is_ok()
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Topic directory `dir` as an absolute path without symbolic links, and the
/// topic's name (its last component).
fn resolve_topic(dir: &Path) -> CliResult<(PathBuf, String)> {
    let resolved = fs::canonicalize(dir).map_err(|e| Failure::Error(format!("resolve {}: {e}", dir.display())))?;
    match resolved.file_name().and_then(|n| n.to_str()).map(str::to_owned) {
        Some(name) => Ok((resolved, name)),
        None => Err(Failure::Error(format!("{} has no usable topic name", dir.display()))),
    }
}

pub(crate) fn run_dump(args: &DumpArgs) -> CliResult {
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    // An event store's records are in its global log.
    let dir = match Target::of(&args.dir) {
        Target::Events => args.dir.join(annal::events::LOG_DIR_NAME),
        _ => args.dir.clone(),
    };
    inspect::dump(&dir, args.segment, &mut out)?;
    out.flush().map_err(stdout_error)
}

pub(crate) fn run_stats(args: &StatsArgs) -> CliResult {
    match Target::of(&args.dir) {
        Target::Log => log_stats(args),
        Target::Events => events_stats(args),
        Target::Store => topics_stats(&args.dir, None),
        Target::Topic => {
            let (resolved, name) = resolve_topic(&args.dir)?;
            // <root>/topics/<name>: the store is two levels up.
            let root = resolved.parent().filter(|t| t.ends_with(TOPICS_DIR_NAME)).and_then(Path::parent);
            let outside = || Failure::Error(format!("{} is a topic directory outside a store", args.dir.display()));
            let root = root.ok_or_else(outside)?;
            require_store(root).map_err(|_| outside())?;
            topics_stats(root, Some(name))
        }
    }
}

/// Prints the stats of the topics of the store in `root` (only topic `only`
/// if given, else every topic and a store total), opened read-only.
fn topics_stats(root: &Path, only: Option<String>) -> CliResult {
    let store = TopicStore::open_read_only(root, TopicStoreConfig::default())?;
    let names = only.clone().map_or_else(|| store.topics(), |name| vec![name]);
    let mut total = TopicTotals::default();
    let (mut failed, mut corrupt) = (0, false);
    for name in &names {
        match store.topic(name).and_then(|t| topic_stats(&t, &mut total)) {
            Ok(text) => print(&text)?,
            Err(e) => {
                let failure = store_failure(e);
                print(&format!("{name} -: error: {failure}\n"))?;
                failed += 1;
                corrupt |= matches!(failure, Failure::Corruption(_));
            }
        }
    }
    if only.is_none() {
        let opened = names.len() - failed;
        let mut line = format!("store: {opened} topic(s), {}", total.describe());
        if failed > 0 {
            line.push_str(&format!("; {failed} topic(s) could not be opened"));
        }
        print(&format!("{line}\n"))?;
    }
    let message = format!("{}: {failed} topic(s) could not be opened (listed on stdout)", root.display());
    match (failed, corrupt) {
        (0, _) => Ok(()),
        (_, false) => Err(Failure::Error(message)),
        (_, true) => Err(Failure::Corruption(message)),
    }
}

/// Partitions, segments, bytes of record data and archived segments, summed.
#[derive(Default)]
struct TopicTotals {
    partitions: u32,
    records: u64,
    segments: usize,
    data_bytes: u64,
    archived: usize,
}

impl TopicTotals {
    fn add(&mut self, other: &TopicTotals) {
        self.partitions += other.partitions;
        self.records += other.records;
        self.segments += other.segments;
        self.data_bytes += other.data_bytes;
        self.archived += other.archived;
    }

    fn describe(&self) -> String {
        format!(
            "{} partition(s), {} record(s), {} segment(s){}, {} data bytes",
            self.partitions,
            self.records,
            self.segments,
            archived(self.archived),
            self.data_bytes
        )
    }
}

/// ` (N archived)`, after a count of segments that includes archived ones,
/// or nothing if `n` is 0.
fn archived(n: usize) -> String {
    if n > 0 { format!(" ({n} archived)") } else { String::new() }
}

/// The stats lines of `topic`; adds its figures to `total`.
fn topic_stats(topic: &Topic, total: &mut TopicTotals) -> annal::Result<String> {
    let name = topic.name();
    let meta = topic.meta()?;
    let retention = meta.retention();
    let mut text = format!(
        "topic {name}: {} partition(s), cleanup policy {}, retention ms {}, retention bytes {}\n",
        meta.partitions,
        meta.cleanup_policy,
        limit(retention.max_age().map(|d| d.as_millis()), ""),
        limit(retention.max_bytes(), "")
    );
    let mut sum = TopicTotals::default();
    for p in 0..meta.partitions {
        let i = topic.partition_info(p)?;
        let n = i.archived_segments;
        text.push_str(&format!(
            "{name} {p}: start offset {}, next offset {}, {} record(s), {} segment(s){}, {} data bytes\n",
            i.start_offset,
            i.next_offset,
            i.records,
            i.segments,
            archived(n),
            i.data_bytes
        ));
        sum.add(&TopicTotals {
            partitions: 1,
            records: i.records,
            segments: i.segments,
            data_bytes: i.data_bytes,
            archived: n,
        });
    }
    text.push_str(&format!("{name} total: {}\n", sum.describe()));
    total.add(&sum);
    Ok(text)
}

/// Prints an event store's events and indexes, then its global log's stats.
fn events_stats(args: &StatsArgs) -> CliResult {
    let check = annal::events::check_store(&args.dir)?;
    let [streams, ids, categories, types] = check.runs;
    let indexed = check.indexed_to.map_or_else(|| "no index runs yet".to_owned(), |to| format!("indexed to {to}"));
    print(&format!(
        "event store: {}\nevents: {} (positions below {})\nindex: {indexed}; runs: {streams} stream, {ids} event-id, \
         {categories} category, {types} type; {} entries, {} bytes\n",
        args.dir.display(),
        check.events,
        check.head,
        check.index_entries,
        check.index_bytes
    ))?;
    log_stats(&StatsArgs { dir: args.dir.join(annal::events::LOG_DIR_NAME) })
}

fn log_stats(args: &StatsArgs) -> CliResult {
    let log = Log::open_read_only(&args.dir, LogConfig::default())?;
    let segments = log.segments();
    let sealed = segments.iter().filter(|s| s.sealed).count();
    let data_bytes: u64 = segments.iter().map(|s| s.data_bytes).sum();
    // Archived segments have no local file.
    let archived: std::collections::HashSet<u64> = log.archived_segments().iter().map(|a| a.base_offset).collect();
    let mut file_bytes = 0;
    for s in segments.iter().filter(|s| !archived.contains(&s.base_offset)) {
        let path = args.dir.join(log_file_name(s.base_offset));
        file_bytes +=
            std::fs::metadata(&path).map_err(|e| Failure::Error(format!("stat {}: {e}", path.display())))?.len();
    }
    let start = log.start_offset();
    let next = log.next_offset();
    let mut text = format!("log: {}\n", args.dir.display());
    let archived_note = match archived.len() {
        0 => String::new(),
        n => format!(", {n} of them archived"),
    };
    text.push_str(&format!(
        "segments: {} ({sealed} sealed{archived_note}, {} unsealed)\n",
        segments.len(),
        segments.len() - sealed
    ));
    text.push_str(&format!(
        "records: {}\n",
        log.record_count().map_or_else(|e| format!("unknown ({e})"), |n| n.to_string())
    ));
    text.push_str(&format!("data bytes: {data_bytes}\n"));
    text.push_str(&format!("segment file bytes: {file_bytes} (local files)\n"));
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
