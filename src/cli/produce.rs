//! `annal produce` and `annal consume`: records in and out of a topic.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use annal::inspect::escape_bytes;
use clap::Args;

use annal::ArchivePolicy;
use annal::{LocalDirArchive, LogConfig, Record, RecordRef, TopicStore, TopicStoreConfig};

use super::read::{POLL, drain, follower_after, format_record};
use super::topic::open_existing;
use super::{CliResult, DurabilityArg, Failure, stdout_error};

/// Send every line of stdin to a topic as one record, printing where each went.
///
/// Each line of stdin, without its trailing newline, is the value of one
/// record (bytes, not necessarily UTF-8). With --key, every record has that
/// key; with --key-separator, each line is split at the first SEP into key
/// and value (as kafka-console-producer's `parse.key` and `key.separator`),
/// and a line without SEP is an error. A record with a key goes to the
/// partition the key hashes to (FNV-1a 64-bit modulo the partition count);
/// records without go to the partitions in turn, from a random one. With
/// --partition, every record goes to that partition (records then have no
/// key). With --null-empty, an empty value is sent as a tombstone (a null
/// value, which compaction uses to delete its key); --tombstone KEY sends
/// one tombstone per KEY and reads nothing. For each record,
/// `PARTITION<tab>OFFSET` is printed once it is acknowledged under the chosen
/// durability; after an error, nothing more is printed and the exit status is
/// 1. The topic must exist (`annal topic create`).
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    topic: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Key given to every record (none by default).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["partition", "key_separator", "tombstone"])]
    key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP", conflicts_with_all = ["partition", "tombstone"],
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// Send an empty value as a tombstone (needs --key or --key-separator).
    #[arg(long, conflicts_with = "tombstone")]
    null_empty: bool,
    /// Send a tombstone for KEY instead of reading stdin (repeatable).
    #[arg(long, value_name = "KEY", conflicts_with = "partition")]
    tombstone: Vec<String>,
    /// Send every record to this partition instead of choosing one by key or
    /// in turn.
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// When a send counts as done: `always` waits for fsync, `interval`
    /// fsyncs in the background every 100 ms, `never` leaves it to the OS.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Always)]
    durability: DurabilityArg,
}

/// Print a topic's records, read-only.
///
/// Every partition in turn (or only --partition), from its first record, or
/// from --from (an offset, which needs --partition) or --from-time (the first
/// record of each partition whose timestamp is at least T, in milliseconds
/// since the Unix epoch). Plain output is one record per line: partition, then
/// the columns of `annal read` (offset, timestamp, key, value, headers),
/// separated by tabs and escaped the same way; --json adds a `partition` field
/// to `annal read --json`'s objects.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    pub(crate) topic: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Only this partition.
    #[arg(long, value_name = "P")]
    pub(crate) partition: Option<u32>,
    /// First offset to print (needs --partition).
    #[arg(long, value_name = "OFFSET", requires = "partition", conflicts_with_all = ["from_time", "group"])]
    from: Option<u64>,
    /// Start at the first record with a timestamp of at least T (ms since the Unix epoch).
    #[arg(long, value_name = "T", allow_negative_numbers = true, conflicts_with = "group")]
    from_time: Option<i64>,
    /// Print at most N records in all.
    #[arg(long, value_name = "N")]
    pub(crate) max: Option<u64>,
    /// One JSON object per line instead of tab-separated text.
    #[arg(long)]
    pub(crate) json: bool,
    /// After the records there are, keep printing the ones a writer appends
    /// (as `annal tail` does for one log), until --max records or the end
    /// of the output.
    #[arg(long, short = 'f')]
    follow: bool,
    /// The local-directory archive that `annal archive run` moved segments
    /// to (default: the archive the store recorded in its store.meta).
    /// Without a reachable archive, the local records are printed and the
    /// archived offsets named, with exit status 1.
    #[arg(long, value_name = "ARCHIVE", conflicts_with = "group")]
    archive_dir: Option<PathBuf>,
    /// Consume as consumer group G: from its committed offsets (each
    /// partition's earliest where none) to the end, then commit the offsets
    /// after what was printed (see `annal groups`).
    #[arg(long, value_name = "G", conflicts_with = "follow")]
    pub(crate) group: Option<String>,
    /// With --group: print without committing.
    #[arg(long, requires = "group")]
    pub(crate) no_commit: bool,
}

pub(crate) fn run_produce(args: &ProduceArgs) -> CliResult {
    if args.null_empty && args.key.is_none() && args.key_separator.is_none() {
        return Err(Failure::Error("--null-empty needs --key or --key-separator: a tombstone deletes a key".into()));
    }
    let log_config = LogConfig::default().with_durability(args.durability.to_durability());
    let store = open_existing(&args.dir, TopicStoreConfig::default().with_log_config(log_config))?;
    let topic = store.topic(&args.topic)?;
    if let Some(p) = args.partition {
        // Checked up front, so that empty input still refuses a bad partition.
        topic.start_offset(p)?;
    }
    let mut stdout = io::stdout().lock();
    let mut send = |record: &Record<'_>| -> CliResult {
        let (p, offset) = match args.partition {
            Some(p) => (p, topic.send_to(p, record)?),
            None => topic.send(record)?,
        };
        writeln!(stdout, "{p}\t{offset}").and_then(|()| stdout.flush()).map_err(stdout_error)
    };
    if !args.tombstone.is_empty() {
        for key in &args.tombstone {
            send(&Record::tombstone(key.as_bytes()))?;
        }
    } else {
        let mut input = BufReader::with_capacity(1 << 16, io::stdin());
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let n = input.read_until(b'\n', &mut line).map_err(|e| Failure::Error(format!("reading stdin: {e}")))?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let (key, value) = match (&args.key, &args.key_separator) {
                (Some(k), _) => (Some(k.as_bytes()), &line[..]),
                (None, Some(sep)) => match find(&line, sep.as_bytes()) {
                    Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                    None => {
                        return Err(Failure::Error(format!(
                            "line {number} of stdin has no key separator {sep:?}: {}",
                            escape_bytes(&line)
                        )));
                    }
                },
                (None, None) => (None, &line[..]),
            };
            let record = match key {
                Some(k) if value.is_empty() && args.null_empty => Record::tombstone(k),
                Some(k) => Record::new(value).with_key(k),
                None => Record::new(value),
            };
            send(&record)?;
        }
    }
    drop(topic);
    store.close()?;
    Ok(())
}

/// The position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn run_consume(args: &ConsumeArgs) -> CliResult {
    if let Some(group) = &args.group {
        return super::groups::run_group_consume(args, group);
    }
    let mut config = TopicStoreConfig::default();
    if let Some(dir) = &args.archive_dir {
        if !dir.is_dir() {
            return Err(Failure::Error(format!("archive directory {} does not exist", dir.display())));
        }
        // Reads only: the policy is never applied by a read-only store.
        config = config.with_archive(Arc::new(LocalDirArchive::open(dir)?), ArchivePolicy::default());
    }
    let store = TopicStore::open_read_only(&args.dir, config)?;
    let topic = store.topic(&args.topic)?;
    let partitions = match args.partition {
        Some(p) => {
            // Checked up front, so that an empty topic still refuses a bad partition.
            topic.start_offset(p)?;
            vec![p]
        }
        None => (0..topic.partitions()).collect(),
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut line = Vec::new();
    let mut scratch = Vec::new();
    let mut printed = 0u64;
    // Archived offsets that could not be read: (partition, offsets, why).
    let mut unreachable: Vec<(u32, std::ops::Range<u64>, annal::Error)> = Vec::new();
    let room = |printed: u64| args.max.is_none_or(|max| printed < max);
    // Where each partition's follower starts (--follow): the end of what it holds now.
    let mut ends = Vec::with_capacity(partitions.len());
    let result = 'all: {
        for &p in &partitions {
            let from = match (args.from, args.from_time) {
                (Some(offset), _) => offset,
                (None, Some(t)) => match topic.offset_for_timestamp(p, t) {
                    Ok(Some(offset)) => offset,
                    Ok(None) => {
                        ends.push((p, topic.next_offset(p)?));
                        continue;
                    }
                    Err(e) => break 'all Err(Failure::from(e)),
                },
                (None, None) => topic.start_offset(p)?,
            };
            let mut reader = match topic.read_from(p, from) {
                Ok(r) => r,
                Err(e) => match skip_archived(&topic, p, from, e, &mut unreachable) {
                    Some(r) => r,
                    None => break 'all Err(Failure::from(unreachable.pop().expect("kept").2)),
                },
            };
            loop {
                if !room(printed) {
                    break 'all Ok(());
                }
                match reader.next_record() {
                    Ok(Some(r)) => {
                        format_topic_record(&mut line, &mut scratch, p, &r, args.json);
                        out.write_all(&line).map_err(stdout_error)?;
                        printed += 1;
                    }
                    Ok(None) => break,
                    Err(e) => match skip_archived(&topic, p, reader.next_offset(), e, &mut unreachable) {
                        Some(r) => reader = r,
                        None => break 'all Err(Failure::from(unreachable.pop().expect("kept").2)),
                    },
                }
            }
            ends.push((p, reader.next_offset()));
        }
        Ok(())
    };
    // The good records are out before the error is reported.
    out.flush().map_err(stdout_error)?;
    result?;
    if !unreachable.is_empty() {
        return Err(archived_not_printed(&store, &unreachable));
    }
    if !args.follow || !room(printed) {
        return Ok(());
    }
    // Then what a writer appends, read from the files, as `annal tail` does.
    let mut followers = Vec::with_capacity(ends.len());
    for (p, next) in ends {
        followers.push((p, follower_after(&*topic.partition(p)?, next)?));
    }
    drop(topic);
    store.close()?;
    let mut out = io::stdout().lock();
    let mut batch = Vec::new();
    loop {
        let mut found = 0;
        for (p, follower) in &mut followers {
            batch.clear();
            let result = drain(follower, &mut batch, |batch, r| {
                if room(printed) {
                    format_topic_record(&mut line, &mut scratch, *p, r, args.json);
                    batch.extend_from_slice(&line);
                    printed += 1;
                }
            });
            out.write_all(&batch).and_then(|()| out.flush()).map_err(stdout_error)?;
            found += result?;
            if !room(printed) {
                return Ok(());
            }
        }
        if found == 0 {
            std::thread::sleep(POLL);
        }
    }
}

/// Formats one record of partition `p` as a line of `consume`'s output:
/// `annal read`'s line after the partition and a tab, or its JSON object
/// with a `partition` field first.
fn format_topic_record(line: &mut Vec<u8>, scratch: &mut Vec<u8>, p: u32, r: &RecordRef<'_>, json: bool) {
    format_record(scratch, r, json);
    line.clear();
    if json {
        // `{"offset":...` becomes `{"partition":P,"offset":...`.
        line.extend_from_slice(format!("{{\"partition\":{p},").as_bytes());
        line.extend_from_slice(&scratch[1..]);
    } else {
        line.extend_from_slice(format!("{p}\t").as_bytes());
        line.extend_from_slice(scratch);
    }
}

/// After `error` reading partition `p` at `from`: if it is an archived
/// offset whose archive cannot be reached, notes the archived offsets from
/// `from` on and returns a reader at the first local one; otherwise keeps
/// the error (last in `unreachable`) and returns `None`.
fn skip_archived(
    topic: &annal::Topic,
    p: u32,
    from: u64,
    error: annal::Error,
    unreachable: &mut Vec<(u32, std::ops::Range<u64>, annal::Error)>,
) -> Option<annal::LogReader> {
    let local = topic
        .archived_segments()
        .ok()
        .and_then(|segments| segments.iter().filter(|(q, _)| *q == p).map(|(_, s)| s.next_offset).max());
    let archive_failed = matches!(error.archive_kind(), Some(annal::ArchiveErrorKind::Unreachable));
    match local {
        Some(local) if archive_failed && from < local => match topic.read_from(p, local) {
            Ok(reader) => {
                unreachable.push((p, from..local, error));
                Some(reader)
            }
            Err(e) => {
                unreachable.push((p, from..local, e));
                None
            }
        },
        _ => {
            unreachable.push((p, from..from, error));
            None
        }
    }
}

/// The error after the local records were printed: which archived offsets
/// were not, where the archive is, and how to reach it.
fn archived_not_printed(store: &TopicStore, unreachable: &[(u32, std::ops::Range<u64>, annal::Error)]) -> Failure {
    let ranges: Vec<String> =
        unreachable.iter().map(|(p, r, _)| format!("partition {p} offsets {}..{}", r.start, r.end)).collect();
    let location = match store.archive_location() {
        Ok(Some(location)) => format!("the store's archive is {location}"),
        _ => "the store records no archive".into(),
    };
    let why = &unreachable[0].2;
    Failure::Error(format!(
        "the local records were printed, not the archived ones ({}): {location}, which cannot be read here \
         ({why}); give the archive directory with --archive-dir DIR",
        ranges.join(", ")
    ))
}
