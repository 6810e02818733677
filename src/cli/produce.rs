//! `annal produce` and `annal consume`: records in and out of a topic.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use annal::log::ArchivePolicy;
use annal::{LocalDirArchive, LogConfig, Record, Store, StoreConfig};

use super::read::format_record;
use super::topic::open_existing;
use super::{CliResult, DurabilityArg, Failure, stdout_error};

/// Send every line of stdin to a topic as one record, printing where each went.
///
/// Each line of stdin, without its trailing newline, is the value of one
/// record (bytes, not necessarily UTF-8). With --key, every record has that key
/// and goes to the partition the key hashes to (FNV-1a 64-bit modulo the
/// partition count); without, records go to the partitions in turn. With
/// --partition, every record goes to that partition. For each record,
/// `PARTITION<tab>OFFSET` is printed once it is acknowledged under the chosen
/// durability. The topic must exist (`annal topic create`).
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    topic: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Key given to every record (none by default).
    #[arg(long)]
    key: Option<String>,
    /// Send every record to this partition instead of choosing one.
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
    topic: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only this partition.
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// First offset to print (needs --partition).
    #[arg(long, value_name = "OFFSET", requires = "partition", conflicts_with = "from_time")]
    from: Option<u64>,
    /// Start at the first record with a timestamp of at least T (ms since the Unix epoch).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    from_time: Option<i64>,
    /// Print at most N records in all.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// One JSON object per line instead of tab-separated text.
    #[arg(long)]
    json: bool,
    /// The local-directory archive that `annal archive run` moved segments
    /// to: needed to read archived offsets.
    #[arg(long, value_name = "ARCHIVE")]
    archive_dir: Option<PathBuf>,
}

pub(crate) fn run_produce(args: &ProduceArgs) -> CliResult {
    let log_config = LogConfig::default().durability(args.durability.to_durability());
    let store = open_existing(&args.dir, StoreConfig::default().log_config(log_config))?;
    let topic = store.topic(&args.topic)?;
    if let Some(p) = args.partition {
        // Checked up front, so that empty input still refuses a bad partition.
        topic.start_offset(p)?;
    }
    let key = args.key.as_deref().map(str::as_bytes);
    let mut input = BufReader::with_capacity(1 << 16, io::stdin());
    let mut stdout = io::stdout().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).map_err(|e| Failure::Error(format!("reading stdin: {e}")))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let mut record = Record::new(&line);
        if let Some(k) = key {
            record = record.with_key(k);
        }
        let (p, offset) = match args.partition {
            Some(p) => (p, topic.send_to(p, &record)?),
            None => topic.send(&record)?,
        };
        writeln!(stdout, "{p}\t{offset}").and_then(|()| stdout.flush()).map_err(stdout_error)?;
    }
    drop(topic);
    store.close()?;
    Ok(())
}

pub(crate) fn run_consume(args: &ConsumeArgs) -> CliResult {
    let mut config = StoreConfig::default();
    if let Some(dir) = &args.archive_dir {
        if !dir.is_dir() {
            return Err(Failure::Error(format!("archive directory {} does not exist", dir.display())));
        }
        // Reads only: the policy is never applied by a read-only store.
        config = config.archive(Arc::new(LocalDirArchive::open(dir)?), ArchivePolicy::default());
    }
    let store = Store::open_read_only(&args.dir, config)?;
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
    let mut record_line = Vec::new();
    let mut printed = 0u64;
    let result = 'all: {
        for p in partitions {
            let from = match (args.from, args.from_time) {
                (Some(offset), _) => offset,
                (None, Some(t)) => match topic.offset_for_timestamp(p, t) {
                    Ok(Some(offset)) => offset,
                    Ok(None) => continue,
                    Err(e) => break 'all Err(Failure::from(e)),
                },
                (None, None) => topic.start_offset(p)?,
            };
            let mut reader = match topic.read_from(p, from) {
                Ok(r) => r,
                Err(e) => break 'all Err(Failure::from(e)),
            };
            loop {
                if args.max.is_some_and(|max| printed >= max) {
                    break 'all Ok(());
                }
                match reader.next_record() {
                    Ok(Some(r)) => {
                        format_record(&mut record_line, &r, args.json);
                        line.clear();
                        if args.json {
                            // `{"offset":...` becomes `{"partition":P,"offset":...`.
                            line.extend_from_slice(format!("{{\"partition\":{p},").as_bytes());
                            line.extend_from_slice(&record_line[1..]);
                        } else {
                            line.extend_from_slice(format!("{p}\t").as_bytes());
                            line.extend_from_slice(&record_line);
                        }
                        out.write_all(&line).map_err(stdout_error)?;
                        printed += 1;
                    }
                    Ok(None) => break,
                    Err(e) => break 'all Err(Failure::from(e)),
                }
            }
        }
        Ok(())
    };
    // The good records are out before the error is reported.
    out.flush().map_err(stdout_error)?;
    result
}
