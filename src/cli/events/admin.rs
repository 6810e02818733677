//! `annal events meta|delete|scavenge`: a stream's metadata, deleting a
//! stream, and reclaiming the space of the events no read returns.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use annal::events::{DeleteMode, ExpectedVersion, StreamMetadata};

use super::append::parse_expected;
use super::{json_string, open_existing, store_failure};
use crate::cli::{CliResult, Failure, print, progress_bar};

/// Print a stream's metadata, or set it.
///
/// Without flags, prints the stream's metadata as one JSON object:
/// {"stream", "max_age_ms", "max_count", "truncate_before"} (null where not
/// set). With any flag, sets the metadata to exactly what the flags say
/// (what they leave out is not set any more) and prints it with the global
/// "position" of the metadata event. Every read honours it: the stream's,
/// `all`, categories, types and `subscribe`.
#[derive(Debug, Args)]
pub(crate) struct MetaArgs {
    /// The event store directory.
    dir: PathBuf,
    /// The stream.
    stream: String,
    /// Events older than this many milliseconds are not read.
    #[arg(long, value_name = "MS")]
    max_age_ms: Option<u64>,
    /// Only the stream's last N events are read.
    #[arg(long, value_name = "N")]
    max_count: Option<u64>,
    /// Events below version V are not read.
    #[arg(long, value_name = "V")]
    truncate_before: Option<u64>,
}

/// Delete a stream (soft by default).
///
/// Soft: the stream reads as not found, and appending to it again continues
/// its versions. --hard: a tombstone; the stream can never be read or
/// written again. Prints {"stream", "deleted": "soft"|"hard", "position"}.
/// A stream not at --expected exits with status 3 and nothing is written.
/// The events' space is reclaimed by `annal events scavenge`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The event store directory.
    dir: PathBuf,
    /// The stream.
    stream: String,
    /// Write a tombstone: the stream is gone for ever.
    #[arg(long)]
    hard: bool,
    /// What the stream must be at: any, no-stream, exists, or the version of
    /// its last event.
    #[arg(long, value_name = "any|no-stream|exists|N", default_value = "any", value_parser = parse_expected)]
    expected: ExpectedVersion,
}

/// Reclaim the space of the events no read returns.
///
/// Rewrites the sealed segments of the global log without the events of
/// hard-deleted streams, those below a stream's truncate-before version (soft
/// deletes included), past its maximum count or age, and superseded metadata
/// events; a stream's last event stays. Shows a progress bar on a terminal,
/// then prints {"segments_examined", "segments_rewritten", "events_removed",
/// "bytes_removed"}.
#[derive(Debug, Args)]
pub(crate) struct ScavengeArgs {
    /// The event store directory.
    dir: PathBuf,
}

pub(crate) fn run_meta(args: &MetaArgs) -> CliResult {
    let store = open_existing(&args.dir)?;
    let set = args.max_age_ms.is_some() || args.max_count.is_some() || args.truncate_before.is_some();
    let (metadata, position) = if set {
        let mut m = StreamMetadata::default();
        if let Some(ms) = args.max_age_ms {
            m = m.with_max_age(Duration::from_millis(ms));
        }
        if let Some(n) = args.max_count {
            m = m.with_max_count(n);
        }
        if let Some(v) = args.truncate_before {
            m = m.with_truncate_before(v);
        }
        let written = store.set_stream_metadata(&args.stream, m).map_err(|e| store_failure(&args.dir, e))?;
        (m, Some(written.position))
    } else {
        (store.stream_metadata(&args.stream).map_err(|e| store_failure(&args.dir, e))?, None)
    };
    store.close().map_err(|e| store_failure(&args.dir, e))?;
    let field = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
    let max_age = metadata.max_age().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let position = position.map_or_else(String::new, |p| format!(",\"position\":{p}"));
    print(&format!(
        "{{\"stream\":{},\"max_age_ms\":{},\"max_count\":{},\"truncate_before\":{}{position}}}\n",
        json_string(&args.stream),
        field(max_age),
        field(metadata.max_count()),
        field(metadata.truncate_before()),
    ))
}

pub(crate) fn run_delete(args: &DeleteArgs) -> CliResult {
    let store = open_existing(&args.dir)?;
    let mode = if args.hard { DeleteMode::Hard } else { DeleteMode::Soft };
    let written = store.delete_stream(&args.stream, args.expected, mode).map_err(|e| match e {
        e @ annal::events::Error::WrongExpectedVersion { .. } => {
            Failure::WrongExpectedVersion(format!("{e}; nothing was deleted"))
        }
        e => store_failure(&args.dir, e),
    })?;
    store.close().map_err(|e| store_failure(&args.dir, e))?;
    print(&format!(
        "{{\"stream\":{},\"deleted\":\"{}\",\"position\":{}}}\n",
        json_string(&args.stream),
        if args.hard { "hard" } else { "soft" },
        written.position
    ))
}

pub(crate) fn run_scavenge(args: &ScavengeArgs) -> CliResult {
    let store = open_existing(&args.dir)?;
    let backlog = store.scavenge_backlog();
    let bar = progress_bar(backlog.len() as u64, "scavenge [{bar:40}] {pos}/{len} segments (eta {eta})");
    let outcome = store.scavenge_with_progress(&mut |_| bar.inc(1)).map_err(|e| store_failure(&args.dir, e));
    bar.finish_and_clear();
    let outcome = outcome?;
    store.close().map_err(|e| store_failure(&args.dir, e))?;
    print(&format!(
        "{{\"segments_examined\":{},\"segments_rewritten\":{},\"events_removed\":{},\"bytes_removed\":{}}}\n",
        outcome.segments_examined, outcome.segments_rewritten, outcome.events_removed, outcome.bytes_removed
    ))
}
