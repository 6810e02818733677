//! `annal events read`, `all` and `streams`: a stream's events, the store's
//! in global order, and its streams.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::Args;

use annal::events::{Direction, EventStore, RecordedEvent};

use super::{format_event, open_existing, store_failure};
use crate::cli::{CliResult, print, stdout_error};

/// Events asked of the store at a time.
const PAGE: usize = 1024;

/// Print a stream's events, one JSON object per line.
///
/// In version order from --from (default: the first event), or with
/// --backward from --from down (default: the last event). Each line is
/// `{"stream", "version", "position", "id", "type", "timestamp", "data",
/// "metadata"}`: `position` is the event's global position, `timestamp` in
/// milliseconds since the Unix epoch, `data` the JSON itself, or `data_b64`
/// (base64) for binary data, and likewise `metadata` or `metadata_b64`, left
/// out when the event has none. A stream with no event prints nothing.
///
/// DIR must be an event store: this command creates nothing. It opens the
/// store as its writer does: it waits up to 10 s for a store another process
/// has open.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// The event store directory.
    dir: PathBuf,
    /// The stream.
    stream: String,
    /// First version to print (forward: it and up; backward: it and down).
    #[arg(long, value_name = "V")]
    from: Option<u64>,
    /// Print at most N events.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// From the last event (or --from) down to the first.
    #[arg(long)]
    backward: bool,
    /// Only the events appended at or before TIME (the stream as it was
    /// then): milliseconds since the Unix epoch, or an RFC 3339 time such as
    /// 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.250+02:00.
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_negative_numbers = true)]
    as_of: Option<i64>,
}

/// Print the store's events in global order, one JSON object per line.
///
/// All of them (`$all`), or the events of the streams of one category
/// (--category: the part of a stream id before its first `-`) or of one type
/// (--type), read from their indexes. In position order from --from (default:
/// the first event), or with --backward from --from down (default: the last
/// event). The lines are those of `annal events read`.
///
/// DIR must be an event store: this command creates nothing. It opens the
/// store as its writer does: it waits up to 10 s for a store another process
/// has open.
#[derive(Debug, Args)]
pub(crate) struct AllArgs {
    /// The event store directory.
    dir: PathBuf,
    /// First global position to print (forward: it and up; backward: it and down).
    #[arg(long, value_name = "P")]
    from: Option<u64>,
    /// Print at most N events.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// From the last event (or --from) down to the first.
    #[arg(long)]
    backward: bool,
    /// Only the events of the streams of category C.
    #[arg(long, value_name = "C", conflicts_with = "event_type")]
    category: Option<String>,
    /// Only the events of type T.
    #[arg(long = "type", value_name = "T")]
    event_type: Option<String>,
}

/// List the store's streams, one JSON object per line, sorted by id.
///
/// Each line is `{"stream", "events", "last_version", "last_position"}`:
/// the number of events reads of the stream show, and the version and global
/// position of the last of them (the version is what `annal events append
/// --expected` names to append after it). The event store keeps no list of
/// its streams: this reads every event of the store (with --category, only
/// the category's, from its index), and lists the streams it met, the
/// store's metadata streams (`$$STREAM`) among them.
///
/// DIR must be an event store: this command creates nothing. It opens the
/// store as its writer does: it waits up to 10 s for a store another process
/// has open.
#[derive(Debug, Args)]
pub(crate) struct StreamsArgs {
    /// The event store directory.
    dir: PathBuf,
    /// Only the streams of category C.
    #[arg(long, value_name = "C")]
    category: Option<String>,
}

fn direction(backward: bool) -> Direction {
    if backward { Direction::Backward } else { Direction::Forward }
}

pub(crate) fn run_read(args: &ReadArgs) -> CliResult {
    let store = open_existing(&args.dir)?;
    let result = read_stream(&store, args);
    store.close().map_err(|e| store_failure(&args.dir, e))?;
    result
}

fn read_stream(store: &EventStore, args: &ReadArgs) -> CliResult {
    let backward = args.backward;
    // The next version to read from, none at the end (`u64::MAX` backward: the last).
    let mut from = Some(args.from.unwrap_or(if backward { u64::MAX } else { 0 }));
    let shows = |e: &RecordedEvent| args.as_of.is_none_or(|t| e.timestamp_ms <= t);
    print_pages(args.max, |want| {
        let Some(at) = from else { return Ok(None) };
        let page = match (args.as_of, backward) {
            // Forward as of a time: the time index says where to stop.
            (Some(t), false) => store.read_stream_as_of(&args.stream, at, t, want),
            _ => store.read_stream(&args.stream, at, direction(backward), want),
        }
        .map_err(|e| store_failure(&args.dir, e))?;
        from = match (page.last(), backward) {
            (None, _) => return Ok(None),
            (Some(e), false) => e.version.checked_add(1),
            (Some(e), true) => e.version.checked_sub(1),
        };
        // A page of events --as-of hides is empty, and the read goes on.
        Ok(Some(page.into_iter().filter(shows).collect()))
    })
}

/// Prints pages of events until there are no more or `max` events are out;
/// `next(want)` gives the next page of at most `want` events, or `None` at
/// the end.
fn print_pages(max: Option<u64>, mut next: impl FnMut(usize) -> CliResult<Option<Vec<RecordedEvent>>>) -> CliResult {
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut left = max.unwrap_or(u64::MAX);
    let mut line = String::new();
    let result = loop {
        if left == 0 {
            break Ok(());
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(PAGE);
        let page = match next(want) {
            Ok(Some(page)) => page,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        for e in page.iter().take(want) {
            line.clear();
            format_event(&mut line, e);
            out.write_all(line.as_bytes()).map_err(stdout_error)?;
            left -= 1;
        }
    };
    // The events read are out before an error is reported.
    out.flush().map_err(stdout_error)?;
    result
}

pub(crate) fn run_all(args: &AllArgs) -> CliResult {
    let store = open_existing(&args.dir)?;
    let fail = |e| store_failure(&args.dir, e);
    let backward = args.backward;
    // The next position to read from, none at the end (`u64::MAX` backward: the last).
    let mut from = Some(args.from.unwrap_or(if backward { u64::MAX } else { 0 }));
    let result = print_pages(args.max, |want| {
        let Some(at) = from else { return Ok(None) };
        let page = match (&args.category, &args.event_type) {
            (Some(c), _) => store.read_category(c, at, direction(backward), want),
            (None, Some(t)) => store.read_event_type(t, at, direction(backward), want),
            (None, None) => store.read_all(at, direction(backward), want),
        }
        .map_err(fail)?;
        from = match (page.last(), backward) {
            (None, _) => return Ok(None),
            (Some(e), false) => e.position.checked_add(1),
            (Some(e), true) => e.position.checked_sub(1),
        };
        Ok(Some(page))
    });
    store.close().map_err(fail)?;
    result
}

pub(crate) fn run_streams(args: &StreamsArgs) -> CliResult {
    let store = open_existing(&args.dir)?;
    let fail = |e| store_failure(&args.dir, e);
    // Per stream: events, last version, last position.
    let mut streams: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut from = 0;
    let result = loop {
        let page = match &args.category {
            Some(c) => store.read_category(c, from, Direction::Forward, PAGE),
            None => store.read_all(from, Direction::Forward, PAGE),
        };
        let page = match page {
            Ok(page) => page,
            Err(e) => break Err(fail(e)),
        };
        let Some(last) = page.last() else { break Ok(()) };
        from = last.position + 1;
        for e in page {
            let entry = streams.entry(e.stream).or_default();
            *entry = (entry.0 + 1, e.version, e.position);
        }
    };
    store.close().map_err(fail)?;
    result?;
    let mut text = String::new();
    for (stream, (events, last_version, last_position)) in &streams {
        text.push_str(&format!(
            "{{\"stream\":{},\"events\":{events},\"last_version\":{last_version},\"last_position\":{last_position}}}\n",
            super::json_string(stream)
        ));
    }
    print(&text)
}

/// A time for --as-of: milliseconds since the Unix epoch, or RFC 3339
/// (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`; fractions of a
/// millisecond are dropped).
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    rfc3339_ms(s).ok_or_else(|| {
        "expected milliseconds since the Unix epoch or an RFC 3339 time such as 2024-05-01T12:00:00Z".to_owned()
    })
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, options: &[u8]| b.get(at).is_some_and(|c| options.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = fraction[..digits].chars().chain("00".chars()).take(3).collect();
        millis = first3.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hh, mm) = (rfc_pair(*h1, *h2)?, rfc_pair(*m1, *m2)?);
            if hh > 23 || mm > 59 {
                return None;
            }
            let minutes = hh * 60 + mm;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a civil date (H. Hinnant's algorithm, the
    // inverse of `annal::inspect::format_timestamp`'s).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn rfc_pair(a: u8, b: u8) -> Option<i64> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_milliseconds_or_rfc_3339() {
        assert_eq!(parse_time("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20.123Z"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T23:13:20.1234+01:00"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14 21:13:20-01:00"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("1969-12-31T23:59:59.9Z"), Ok(-100));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        for bad in
            ["", "yesterday", "2023-11-14", "2023-02-29T00:00:00Z", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z"]
        {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
