//! `annal topic create|list|describe|delete` and `annal retention run`: a
//! store's topics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use annal::ArchivePolicy;
use annal::inspect::format_timestamp;
use annal::topic::{MAX_PARTITIONS, meta::DEFAULT_TOPIC_SEGMENT_BYTES};
use annal::{CleanupPolicy, Retention, TopicConfig, TopicStore, TopicStoreConfig};

use super::{CliResult, finish_pass, now_ms, print, progress_bar};

/// Create, list, describe or delete the topics of a store.
///
/// A store is a directory of topics (given with --dir); a topic is a set of
/// partitions, each an annal log. See `annal produce` and `annal consume`.
#[derive(Debug, Args)]
pub(crate) struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    Create(CreateArgs),
    List(ListArgs),
    Describe(DescribeArgs),
    Delete(DeleteArgs),
}

/// The cleanup policy, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// Delete whole old segments by the retention limits.
    Delete,
    /// Keep the latest record of each key (see `annal compact`).
    Compact,
}

/// Create a topic (and the store directory if it does not exist).
///
/// Prints `created topic NAME with N partition(s)`. Fails if the topic exists
/// or the name is invalid (1 to 200 ASCII letters, digits, '.', '_' and '-',
/// not starting with '.').
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The topic name.
    name: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Number of partitions.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PARTITIONS)))]
    partitions: u32,
    /// What happens to old records.
    #[arg(long, value_enum, default_value_t = PolicyArg::Delete)]
    cleanup_policy: PolicyArg,
    /// Delete sealed segments whose newest record is older than MS milliseconds
    /// (default: no age limit).
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while a partition holds more than B
    /// bytes of record data (default: no size limit).
    #[arg(long, value_name = "B")]
    retention_bytes: Option<u64>,
    /// Size of each partition's segment files.
    #[arg(long, value_name = "B", default_value_t = DEFAULT_TOPIC_SEGMENT_BYTES)]
    segment_bytes: u64,
    /// How long compaction keeps tombstones, in milliseconds (default: one day).
    #[arg(long, value_name = "MS")]
    tombstone_retention_ms: Option<u64>,
    /// The topic's own archive policy: archive sealed segments whose newest
    /// record is older than MS milliseconds (default: the policy `archive
    /// run` is given).
    #[arg(long, value_name = "MS")]
    archive_max_local_age_ms: Option<u64>,
    /// The topic's own archive policy: archive the oldest sealed segments
    /// while a partition holds more than B bytes locally.
    #[arg(long, value_name = "B")]
    archive_max_local_bytes: Option<u64>,
    /// The topic's own archive policy: never archive its segments.
    #[arg(long, conflicts_with_all = ["archive_max_local_age_ms", "archive_max_local_bytes"])]
    no_archive: bool,
}

/// List the topics of a store, one name per line, sorted (read-only).
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Print a topic's configuration and each partition's offsets (read-only).
///
/// `key: value` lines for the configuration, then one line per partition:
/// partition, start offset, next offset, records, segments and bytes of
/// record data, separated by tabs, under a header line.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// The topic name.
    name: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Delete a topic and every record in it.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The topic name.
    name: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Apply the topics' retention policies.
#[derive(Debug, Args)]
pub(crate) struct RetentionArgs {
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    Run(RetentionRunArgs),
}

/// Apply every topic's retention policy once and print what it deleted.
///
/// One line per partition: `TOPIC PARTITION: deleted S segment(s), B bytes;
/// start offset O`, then a summary line. A partition that fails is printed as
/// `TOPIC PARTITION: error: ...`, the others are still processed, and the
/// exit status is 1 (2 if the failure is corruption).
#[derive(Debug, Args)]
pub(crate) struct RetentionRunArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Compact the topics whose cleanup policy is compact, once.
///
/// Keeps the latest record of each key in every partition's sealed segments
/// (and records without a key), drops the others, and drops tombstones older
/// than the topic's tombstone retention; offsets do not change. The active
/// segment is left alone. One line per partition, then a summary; a partition
/// that fails is printed as `TOPIC PARTITION: error: ...`, the others are
/// still compacted, and the exit status is 1 (2 if the failure is corruption).
/// A progress bar is drawn when stdout is a terminal.
#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only this topic (its cleanup policy must be compact).
    #[arg(long)]
    topic: Option<String>,
}

pub(crate) fn run_topic(args: &TopicArgs) -> CliResult {
    match &args.command {
        TopicCommand::Create(a) => create(a),
        TopicCommand::List(a) => list(a),
        TopicCommand::Describe(a) => describe(a),
        TopicCommand::Delete(a) => delete(a),
    }
}

/// Opens the store in `dir` for writing, refusing (rather than creating) a
/// directory that holds no store.
pub(crate) fn open_existing(dir: &Path, config: TopicStoreConfig) -> CliResult<TopicStore> {
    require_store(dir)?;
    Ok(TopicStore::open(dir, config)?)
}

/// Refuses a directory that holds no store.
pub(crate) fn require_store(dir: &Path) -> CliResult {
    match annal::topic::not_a_store(dir) {
        Some(reason) => Err(annal::Error::NotAStore { path: dir.to_owned(), reason }.into()),
        None => Ok(()),
    }
}

fn create(args: &CreateArgs) -> CliResult {
    let mut retention = Retention::default();
    if let Some(ms) = args.retention_ms {
        retention = retention.with_max_age(Duration::from_millis(ms));
    }
    if let Some(b) = args.retention_bytes {
        retention = retention.with_max_bytes(b);
    }
    let mut config = TopicConfig::default()
        .with_partitions(args.partitions)
        .with_cleanup_policy(match args.cleanup_policy {
            PolicyArg::Delete => CleanupPolicy::Delete,
            PolicyArg::Compact => CleanupPolicy::Compact,
        })
        .with_retention(retention)
        .with_segment_bytes(args.segment_bytes);
    if let Some(ms) = args.tombstone_retention_ms {
        config = config.with_tombstone_retention(Duration::from_millis(ms));
    }
    let mut archive = ArchivePolicy::default();
    if let Some(ms) = args.archive_max_local_age_ms {
        archive = archive.with_max_local_age(Duration::from_millis(ms));
    }
    if let Some(b) = args.archive_max_local_bytes {
        archive = archive.with_max_local_bytes(b);
    }
    if args.no_archive || !archive.is_none() {
        config = config.with_archive(archive);
    }
    let store = TopicStore::open(&args.dir, TopicStoreConfig::default())?;
    let topic = store.create_topic(&args.name, config)?;
    let n = topic.partitions();
    drop(topic);
    store.close()?;
    print(&format!("created topic {} with {n} partition(s)\n", args.name))
}

fn list(args: &ListArgs) -> CliResult {
    let store = TopicStore::open_read_only(&args.dir, TopicStoreConfig::default())?;
    let text: String = store.topics().iter().map(|t| format!("{t}\n")).collect();
    print(&text)
}

/// `value` followed by `unit`, or `none`.
pub(crate) fn limit(value: Option<impl std::fmt::Display>, unit: &str) -> String {
    value.map_or_else(|| "none".to_owned(), |v| format!("{v}{unit}"))
}

fn describe(args: &DescribeArgs) -> CliResult {
    let store = TopicStore::open_read_only(&args.dir, TopicStoreConfig::default())?;
    let topic = store.topic(&args.name)?;
    let meta = topic.meta()?;
    let retention = meta.retention();
    let mut text = format!("topic: {}\n", topic.name());
    text.push_str(&format!("partitions: {}\n", meta.partitions));
    text.push_str(&format!("cleanup policy: {}\n", meta.cleanup_policy));
    text.push_str(&format!("retention ms: {}\n", limit(retention.max_age().map(|d| d.as_millis()), "")));
    text.push_str(&format!("retention bytes: {}\n", limit(retention.max_bytes(), "")));
    text.push_str(&format!("segment bytes: {}\n", meta.segment_bytes));
    text.push_str(&format!("tombstone retention ms: {}\n", meta.tombstone_retention_ms));
    let archive = match meta.archive_policy {
        None => "the store's".to_owned(),
        Some(p) if p.is_none() => "never".to_owned(),
        Some(p) => format!(
            "max local age ms {}, max local bytes {}",
            limit(p.max_local_age().map(|d| d.as_millis()), ""),
            limit(p.max_local_bytes(), "")
        ),
    };
    text.push_str(&format!("archive policy: {archive}\n"));
    text.push_str(&format!("created: {} ({})\n", meta.created_ms, format_timestamp(meta.created_ms)));
    // Segments and bytes count archived segments too; `archived` says how many are.
    text.push_str("partition\tstart\tnext\trecords\tsegments\tbytes\tarchived\n");
    for p in 0..meta.partitions {
        let i = topic.partition_info(p)?;
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            i.partition, i.start_offset, i.next_offset, i.records, i.segments, i.data_bytes, i.archived_segments
        ));
    }
    print(&text)
}

fn delete(args: &DeleteArgs) -> CliResult {
    let store = open_existing(&args.dir, TopicStoreConfig::default())?;
    let deletion = store.delete_topic(&args.name)?;
    store.close()?;
    let archived = match (deletion.archived_deleted, deletion.archived_left) {
        (0, 0) => String::new(),
        (n, 0) => format!(", and its {n} archived segment(s) from the archive"),
        (n, left) => format!(
            "; {n} archived segment(s) deleted from the archive, {left} left (the archive could not be reached: \
             the next open of the store that reaches it deletes them)"
        ),
    };
    print(&format!("deleted topic {}{archived}\n", args.name))
}

pub(crate) fn run_retention(args: &RetentionArgs) -> CliResult {
    let RetentionCommand::Run(args) = &args.command;
    let store = open_existing(&args.dir, TopicStoreConfig::default())?;
    let report = store.run_retention()?;
    let summary =
        format!("retention: {} segment(s), {} bytes deleted", report.segments_deleted(), report.bytes_deleted());
    finish_pass(
        store,
        "retention",
        &report,
        |o| {
            let archived = match o.archived_deleted {
                0 => String::new(),
                n => format!(" ({n} archived: their objects deleted from the archive)"),
            };
            format!(
                "deleted {} segment(s){archived}, {} bytes; start offset {}",
                o.segments_deleted, o.bytes_deleted, o.start_offset
            )
        },
        &summary,
    )
}

pub(crate) fn run_compact(args: &CompactArgs) -> CliResult {
    let store = open_existing(&args.dir, TopicStoreConfig::default())?;
    let topic = args.topic.as_deref();
    let backlog = store.compaction_backlog(topic)?;
    let bar = progress_bar(
        2 * backlog.iter().map(|s| s.data_bytes).sum::<u64>(),
        "compact [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    );
    let now = now_ms();
    let report = store.run_compaction_at(now, topic, &mut |_, _, s| bar.inc(s.data_bytes))?;
    bar.finish_and_clear();
    let summary =
        format!("compaction: {} record(s), {} bytes removed", report.records_removed(), report.bytes_removed());
    let line = |o: &annal::CompactionOutcome| {
        format!(
            "{} key(s); rewrote {} of {} segment(s); removed {} record(s) ({} tombstone(s)), {} bytes",
            o.keys, o.segments_rewritten, o.segments_examined, o.records_removed, o.tombstones_removed, o.bytes_removed
        )
    };
    finish_pass(store, "compaction", &report, line, &summary)
}
