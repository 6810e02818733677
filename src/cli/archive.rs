//! `annal archive run|list`: the archive tier of a store, in a local directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::topic::{open_existing, require_store};
use super::{CliResult, finish_pass, now_ms, print, progress_bar};
use annal::ArchivePolicy;
use annal::{LocalDirArchive, TopicStore, TopicStoreConfig};

/// Move sealed segments to an archive directory, or list archived segments.
#[derive(Debug, Args)]
pub(crate) struct ArchiveArgs {
    #[command(subcommand)]
    command: ArchiveCommand,
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    Run(RunArgs),
    List(ListArgs),
}

/// Archive sealed segments of every topic (or one) to a local-directory archive.
///
/// Each segment is uploaded, verified (size and CRC-32 read back), recorded
/// in its partition's archive manifest, and only then deleted locally. With
/// --max-local-age-ms or --max-local-bytes, those limits apply to every
/// topic; without, each topic's own archive policy (`topic create
/// --archive-max-local-age-ms/--archive-max-local-bytes`) applies, and every
/// sealed segment of a topic without one is archived (never the active one).
/// One line per partition, then a summary; a partition that fails keeps its
/// segments local, is printed as `TOPIC PARTITION: error: ...`, and the exit
/// status is 1. A progress bar is drawn when stdout is a terminal.
#[derive(Debug, Args)]
struct RunArgs {
    /// The store directory.
    #[arg(long)]
    dir: PathBuf,
    /// The archive directory (created if needed).
    #[arg(long)]
    archive_dir: PathBuf,
    /// Only this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Archive segments whose newest record is older than this many milliseconds.
    #[arg(long)]
    max_local_age_ms: Option<u64>,
    /// Archive the oldest segments while a partition holds more than this many bytes locally.
    #[arg(long)]
    max_local_bytes: Option<u64>,
}

/// List the archived segments of every partition: `TOPIC PARTITION BASE NEXT SIZE KEY`.
#[derive(Debug, Args)]
struct ListArgs {
    /// The store directory.
    #[arg(long)]
    dir: PathBuf,
}

pub(crate) fn run_archive(args: &ArchiveArgs) -> CliResult {
    match &args.command {
        ArchiveCommand::Run(args) => run(args),
        ArchiveCommand::List(args) => list(args),
    }
}

fn run(args: &RunArgs) -> CliResult {
    let mut limits = ArchivePolicy::default();
    if let Some(ms) = args.max_local_age_ms {
        limits = limits.with_max_local_age(Duration::from_millis(ms));
    }
    if let Some(b) = args.max_local_bytes {
        limits = limits.with_max_local_bytes(b);
    }
    let over = (!limits.is_none()).then_some(limits);
    let archive = Arc::new(LocalDirArchive::open(&args.archive_dir)?);
    let config = TopicStoreConfig::default().with_archive(archive, ArchivePolicy::everything_sealed());
    let store = open_existing(&args.dir, config)?;
    let now = now_ms();
    let topic = args.topic.as_deref();
    let backlog = store.archival_backlog_at(now, topic, over.as_ref())?;
    let bar = progress_bar(
        backlog.iter().map(|s| s.data_bytes).sum(),
        "archive [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    );
    let report = store.run_archival_at(now, topic, over.as_ref(), &mut |_, _, s| bar.inc(s.data_bytes))?;
    bar.finish_and_clear();
    let summary =
        format!("archive: {} segment(s), {} bytes archived", report.segments_archived(), report.bytes_archived());
    let line =
        |o: &annal::ArchiveOutcome| format!("archived {} segment(s), {} bytes", o.segments_archived, o.bytes_archived);
    finish_pass(store, "archival", &report, line, &summary)
}

fn list(args: &ListArgs) -> CliResult {
    require_store(&args.dir)?;
    let store = TopicStore::open_read_only(&args.dir, TopicStoreConfig::default())?;
    let mut text = String::from("topic\tpartition\tbase\tnext\tsize\tkey\n");
    for name in store.topics() {
        for (p, a) in store.topic(&name)?.archived_segments()? {
            text.push_str(&format!("{name}\t{p}\t{}\t{}\t{}\t{}\n", a.base_offset, a.next_offset, a.size, a.key));
        }
    }
    print(&text)
}
