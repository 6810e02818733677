//! `annal read` and `annal tail`: print records.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;

use annal::inspect::escape_bytes;
use annal::segment::DATA_START;
use annal::{Log, LogConfig, RecordRef};

use super::follow::Follower;
use super::{CliResult, Failure, stdout_error};

/// How often `tail` looks for changes.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Print records, read-only: no file is changed, not even a torn tail.
///
/// Plain output is one record per line: offset, timestamp (ms since the Unix
/// epoch), key and value separated by tabs, then one `name=value` column per
/// header if the record has any. Text is shown as is, except that `\`, tab,
/// newline, carriage return, other control characters and the invisible
/// characters that break lines or reorder text are escaped (`\\`, `\t`,
/// `\n`, `\r`, `\u{..}`) and bytes that are not UTF-8 are shown as `\xNN`;
/// a missing key and a null value (tombstone) are shown as `\N`.
///
/// With --json, one JSON object per line: `offset`, `timestamp`, `key` and
/// `value` as strings (null for a missing key or a tombstone); a key or value
/// that is not valid UTF-8 is given as `key_b64` / `value_b64` (standard
/// base64) instead; `headers` (a list of `{"name", "value" or "value_b64"}`)
/// if the record has any.
///
/// If a damaged record is met, the records before it are printed, then the
/// error (file, offset, byte position) on stderr, and the exit status is 2.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// The log directory.
    dir: PathBuf,
    /// First offset to print (default: the first record of the log).
    #[arg(long, value_name = "OFFSET")]
    from: Option<u64>,
    /// Print at most N records.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// One JSON object per line instead of tab-separated text.
    #[arg(long)]
    json: bool,
}

/// Print records, then keep printing new ones as another process appends them.
///
/// Starts like `annal read` (from --from, default the first record), then
/// looks for new records every 100 ms and prints them as they appear, across
/// segment rolls, until interrupted (Ctrl-C). Read-only: it never changes a
/// file and does not keep a writer out. Every record's CRC and offset are
/// checked; a partly written record at the end of the log is waited for, and
/// damaged data (before the durable checkpoint, or in a sealed segment) ends
/// the command with the error and exit status 2. Output format as for
/// `annal read`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The log directory.
    dir: PathBuf,
    /// First offset to print (default: the first record of the log).
    #[arg(long, value_name = "OFFSET")]
    from: Option<u64>,
    /// One JSON object per line instead of tab-separated text.
    #[arg(long)]
    json: bool,
}

fn open(dir: &Path) -> annal::Result<Log> {
    Log::open_read_only(dir, LogConfig::default())
}

pub(crate) fn run_read(args: &ReadArgs) -> CliResult {
    let log = open(&args.dir)?;
    let from = args.from.unwrap_or_else(|| log.start_offset());
    let mut reader = log.read_from(from)?;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut line = Vec::new();
    let mut printed = 0u64;
    let result = loop {
        if args.max.is_some_and(|max| printed >= max) {
            break Ok(());
        }
        match reader.next_record() {
            Ok(Some(r)) => {
                format_record(&mut line, &r, args.json);
                out.write_all(&line).map_err(stdout_error)?;
                printed += 1;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::from(e)),
        }
    };
    // The good records are out before the error is reported.
    out.flush().map_err(stdout_error)?;
    result
}

pub(crate) fn run_tail(args: &TailArgs) -> CliResult {
    let log = open(&args.dir)?;
    let from = args.from.unwrap_or_else(|| log.start_offset());
    let mut out = io::stdout().lock();
    let mut line = Vec::new();
    let mut batch = Vec::new();
    // What the log holds now, through the library's reader.
    let mut reader = log.read_from(from)?;
    let caught_up = loop {
        match reader.next_record() {
            Ok(Some(r)) => {
                format_record(&mut line, &r, args.json);
                batch.extend_from_slice(&line);
                if batch.len() >= 1 << 16 {
                    out.write_all(&batch).map_err(stdout_error)?;
                    batch.clear();
                }
            }
            Ok(None) => break Ok(reader.next_offset()),
            Err(e) => break Err(Failure::from(e)),
        }
    };
    out.write_all(&batch).and_then(|()| out.flush()).map_err(stdout_error)?;
    let next = caught_up?;
    // Then what other processes append, read from the files (see `follow`).
    let mut follower = follower_after(&log, next)?;
    drop(reader);
    drop(log);
    loop {
        batch.clear();
        let result = drain(&mut follower, &mut batch, |batch, r| {
            format_record(&mut line, r, args.json);
            batch.extend_from_slice(&line);
        });
        out.write_all(&batch).and_then(|()| out.flush()).map_err(stdout_error)?;
        if result? == 0 {
            thread::sleep(POLL);
        }
    }
}

/// A follower of `log`'s directory whose next record is `next`, the offset
/// a reader of `log` stopped at, at the end of what the log held.
pub(crate) fn follower_after(log: &Log, next: u64) -> CliResult<Follower> {
    let (base, pos) = match log.segments().last() {
        Some(s) if s.next_offset == next => (s.base_offset, DATA_START as u64 + s.data_bytes),
        Some(s) => {
            return Err(Failure::Error(format!(
                "the reader stopped at offset {next}, but the last segment ends at {}",
                s.next_offset
            )));
        }
        None => (next, DATA_START as u64),
    };
    Ok(Follower::new(log.dir(), base, pos, next))
}

/// Hands every record the follower finds now to `emit`, which formats it
/// into `out`, until there is no more or `out` holds 64 KiB; returns how many
/// there were. Stops at the first failure, after the good records.
pub(crate) fn drain(
    follower: &mut Follower,
    out: &mut Vec<u8>,
    mut emit: impl FnMut(&mut Vec<u8>, &RecordRef<'_>),
) -> CliResult<u64> {
    let mut count = 0;
    while out.len() < 1 << 16
        && let Some(frame) = follower.next_frame()?
    {
        for r in frame.records() {
            emit(out, &r);
            count += 1;
        }
    }
    Ok(count)
}

/// Formats one record as a line (with its newline) into `line`.
pub(crate) fn format_record(line: &mut Vec<u8>, r: &RecordRef<'_>, json: bool) {
    line.clear();
    if json {
        format_json(line, r);
    } else {
        format_plain(line, r);
    }
    line.push(b'\n');
}

fn format_plain(line: &mut Vec<u8>, r: &RecordRef<'_>) {
    let field = |b: Option<&[u8]>| b.map_or_else(|| "\\N".to_owned(), escape_bytes);
    let mut s = format!("{}\t{}\t{}\t{}", r.offset(), r.timestamp(), field(r.key()), field(r.value()));
    for h in r.headers() {
        s.push('\t');
        s.push_str(&escape_bytes(h.name.as_bytes()));
        s.push('=');
        s.push_str(&escape_bytes(h.value));
    }
    line.extend_from_slice(s.as_bytes());
}

fn format_json(line: &mut Vec<u8>, r: &RecordRef<'_>) {
    let mut s = format!("{{\"offset\":{},\"timestamp\":{}", r.offset(), r.timestamp());
    json_bytes(&mut s, "key", r.key());
    json_bytes(&mut s, "value", r.value());
    let mut headers = r.headers().peekable();
    if headers.peek().is_some() {
        s.push_str(",\"headers\":[");
        for (i, h) in headers.enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"name\":");
            s.push_str(&json_string(h.name));
            json_bytes(&mut s, "value", Some(h.value));
            s.push('}');
        }
        s.push(']');
    }
    s.push('}');
    line.extend_from_slice(s.as_bytes());
}

/// Appends `,"name":<string or null>`, or `,"name_b64":"..."` for bytes that are not UTF-8.
fn json_bytes(s: &mut String, name: &str, bytes: Option<&[u8]>) {
    match bytes.map(std::str::from_utf8) {
        None => {
            s.push_str(&format!(",\"{name}\":null"));
        }
        Some(Ok(text)) => {
            s.push_str(&format!(",\"{name}\":"));
            s.push_str(&json_string(text));
        }
        Some(Err(_)) => {
            let b64 = BASE64.encode(bytes.expect("some"));
            s.push_str(&format!(",\"{name}_b64\":\"{b64}\""));
        }
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}
