//! `annal append`: stdin lines become records.

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use clap::Args;

use annal::{Log, LogConfig, Record};

use super::{CliResult, DurabilityArg, Failure, stdout_error};

/// Append every line of stdin as one record, printing each record's offset.
///
/// Opens the log in DIR, creating the directory and the log if they do not
/// exist. Each line of stdin, without its trailing newline, is the value of one
/// record (bytes, not necessarily UTF-8; an empty line is an empty value). The
/// offset of each record is printed on its own line as soon as the append
/// returns, that is once the record is acknowledged under the chosen
/// durability. At the end of stdin the log is closed (its last segment sealed).
///
/// The lines of one batch (--batch) are one atomic append: stored whole or
/// not at all, also after a crash. After an error (a full disk, say) nothing
/// more is printed, the exit code is 1, and every offset printed before it
/// is stored: the failed batch left nothing behind.
#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The log directory (created if missing).
    dir: PathBuf,
    /// Key given to every record (none by default).
    #[arg(long)]
    key: Option<String>,
    /// Append up to K lines per batch (one lock, one fsync), taking only lines
    /// already read from stdin: interactive input is never held back.
    #[arg(long, default_value_t = 1, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Print one JSON object per acknowledged batch,
    /// `{"first_offset": F, "next_offset": N}` (its records have the offsets
    /// F..N), instead of one offset per line.
    #[arg(long)]
    json: bool,
    /// When an append counts as done: `always` waits for fsync, `interval`
    /// fsyncs in the background every 100 ms, `never` leaves it to the OS.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Always)]
    durability: DurabilityArg,
    /// Size of segment files in bytes, used when a new segment is created
    /// (default: the library default, 1 GiB).
    #[arg(long, value_name = "N")]
    segment_bytes: Option<u64>,
}

pub(crate) fn run(args: &AppendArgs) -> CliResult {
    let mut config = LogConfig::default().with_durability(args.durability.to_durability());
    if let Some(n) = args.segment_bytes {
        config = config.with_segment_bytes(n);
    }
    let log = Log::open(&args.dir, config)?;
    let key = args.key.as_deref().map(str::as_bytes);
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let mut input = BufReader::with_capacity(1 << 16, io::stdin());
    let mut stdout = io::stdout().lock();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut printed = String::new();
    loop {
        // The first line of a batch may block; the others are taken only if
        // they are already complete in the buffer.
        let mut line = spare.pop().unwrap_or_default();
        if !read_line(&mut input, &mut line)? {
            break;
        }
        lines.push(line);
        while lines.len() < batch && input.buffer().contains(&b'\n') {
            let mut line = spare.pop().unwrap_or_default();
            read_line(&mut input, &mut line)?;
            lines.push(line);
        }
        let records: Vec<Record<'_>> = lines
            .iter()
            .map(|v| {
                let r = Record::new(v);
                match key {
                    Some(k) => r.with_key(k),
                    None => r,
                }
            })
            .collect();
        let offsets = log.append_batch(&records)?;
        drop(records);
        printed.clear();
        if args.json {
            let line = serde_json::json!({ "first_offset": offsets.start, "next_offset": offsets.end });
            printed.push_str(&line.to_string());
            printed.push('\n');
        } else {
            for offset in offsets {
                printed.push_str(&offset.to_string());
                printed.push('\n');
            }
        }
        stdout.write_all(printed.as_bytes()).and_then(|()| stdout.flush()).map_err(stdout_error)?;
        spare.append(&mut lines);
    }
    log.close()?;
    Ok(())
}

/// Reads one line into `line` without its newline; `false` at the end of input.
fn read_line(input: &mut BufReader<io::Stdin>, line: &mut Vec<u8>) -> CliResult<bool> {
    line.clear();
    let n = input.read_until(b'\n', line).map_err(|e| Failure::Error(format!("reading stdin: {e}")))?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(true)
}
