//! `annal groups list|describe|reset|delete`: a store's consumer groups, as
//! `kafka-consumer-groups.sh` shows and changes them; and `annal consume
//! --group`, a consumer that starts at a group's committed offsets and
//! commits what it printed.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use annal::consumer::{ConsumerGroups, GroupsConfig, OffsetCommit, ResetScope, ResetTarget};
use annal::{TopicStore, TopicStoreConfig};

use super::events::read::parse_time;
use super::produce::ConsumeArgs;
use super::read::format_record;
use super::topic::open_existing;
use super::{CliResult, Failure, now_ms, print, stdout_error};

impl From<annal::consumer::Error> for Failure {
    fn from(e: annal::consumer::Error) -> Failure {
        match e {
            annal::consumer::Error::Engine(e) => Failure::from(e),
            e => Failure::Error(e.to_string()),
        }
    }
}

/// List, describe, reset or delete consumer groups (their committed offsets
/// live in the store's `__consumer_offsets` topic).
#[derive(Debug, Args)]
pub(crate) struct GroupsArgs {
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    List(ListArgs),
    Describe(DescribeArgs),
    Reset(ResetArgs),
    Delete(DeleteArgs),
}

/// The groups with committed offsets, one name per line.
#[derive(Debug, Args)]
struct ListArgs {
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// A group's offsets and lag: per partition of the topics it committed
/// offsets for, the committed offset, the end offset, the lag in records and
/// in time (the age of the oldest record not consumed), and the member (none
/// from the command line: a group's members live in the process that runs
/// them).
#[derive(Debug, Args)]
struct DescribeArgs {
    /// The group.
    group: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// One JSON object per partition instead of a table.
    #[arg(long)]
    json: bool,
}

/// Resets a group's committed offsets. Prints the plan (a dry run) unless
/// --execute is given; a group with live members cannot be reset (from the
/// command line it never has any: the store is locked by one process).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args([
    "to_earliest", "to_latest", "to_current", "to_offset", "shift_by", "to_datetime", "by_duration", "from_file"
])))]
struct ResetArgs {
    /// The group.
    group: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// To each partition's first offset.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's end.
    #[arg(long)]
    to_latest: bool,
    /// To the committed offsets (the end where none).
    #[arg(long)]
    to_current: bool,
    /// To this offset (clamped to each partition's range).
    #[arg(long, value_name = "N")]
    to_offset: Option<u64>,
    /// Moves each committed offset by N (back if negative); a partition
    /// without one is an error.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// To the first record at or after this time: milliseconds since the
    /// Unix epoch or RFC 3339 (2024-05-01T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to_datetime: Option<i64>,
    /// To the first record at or after this long ago: an ISO 8601 duration
    /// (PT30M, P1DT2H, PT0.5S), as Kafka's tool takes it.
    #[arg(long, value_name = "DURATION", value_parser = parse_iso_duration)]
    by_duration: Option<Duration>,
    /// To the offsets of a CSV file of topic,partition,offset lines.
    #[arg(long, value_name = "CSV")]
    from_file: Option<PathBuf>,
    /// Only these topics: T (every partition) or T:P,P,... (default: every
    /// topic the group committed offsets for).
    #[arg(long, value_name = "T[:P,...]")]
    topic: Vec<String>,
    /// Write the new offsets (without it, only the plan is printed).
    #[arg(long)]
    execute: bool,
}

/// Deletes a group's committed offsets.
#[derive(Debug, Args)]
struct DeleteArgs {
    /// The group.
    group: String,
    /// The store directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// The store in `dir` and its groups.
fn open_groups(dir: &Path) -> CliResult<(Arc<TopicStore>, ConsumerGroups)> {
    let store = Arc::new(open_existing(dir, TopicStoreConfig::default())?);
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default())?;
    Ok((store, groups))
}

/// Closes the store after its groups.
fn close(store: Arc<TopicStore>, groups: ConsumerGroups) -> CliResult {
    drop(groups);
    match Arc::try_unwrap(store) {
        Ok(store) => Ok(store.close()?),
        Err(_) => Err(Failure::Error("the store is still in use".into())),
    }
}

pub(crate) fn run_groups(args: &GroupsArgs) -> CliResult {
    match &args.command {
        GroupsCommand::List(a) => {
            let (store, groups) = open_groups(&a.dir)?;
            let text: String = groups.groups().iter().map(|g| format!("{g}\n")).collect();
            print(&text)?;
            close(store, groups)
        }
        GroupsCommand::Describe(a) => describe(a),
        GroupsCommand::Reset(a) => reset(a),
        GroupsCommand::Delete(a) => {
            let (store, groups) = open_groups(&a.dir)?;
            let n = groups.delete_group(&a.group)?;
            print(&format!("deleted group {} ({n} committed offset(s))\n", a.group))?;
            close(store, groups)
        }
    }
}

fn describe(a: &DescribeArgs) -> CliResult {
    let (store, groups) = open_groups(&a.dir)?;
    if !groups.groups().contains(&a.group) {
        return Err(annal::consumer::Error::UnknownGroup { group: a.group.clone() }.into());
    }
    let lag = groups.lag(&a.group)?;
    let mut text = String::new();
    if a.json {
        for p in &lag.partitions {
            let row = serde_json::json!({
                "group": a.group,
                "topic": p.partition.topic,
                "partition": p.partition.partition,
                "committed": p.committed,
                "start": p.start,
                "end": p.end,
                "lag": p.records,
                "lag_ms": p.age_ms,
                "member": p.member,
            });
            text.push_str(&format!("{row}\n"));
        }
    } else {
        let rows: Vec<[String; 7]> = lag
            .partitions
            .iter()
            .map(|p| {
                [
                    p.partition.topic.clone(),
                    p.partition.partition.to_string(),
                    p.committed.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    p.end.to_string(),
                    p.records.to_string(),
                    p.age_ms.to_string(),
                    p.member.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        let header = ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "LAG-MS", "MEMBER"];
        text = table(&header, &rows);
        text.push_str(&format!(
            "total lag {} record(s), max {} record(s), oldest unconsumed {} ms old\n",
            lag.total_records, lag.max_records, lag.max_age_ms
        ));
    }
    print(&text)?;
    close(store, groups)
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s: String = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}  ")).collect();
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn reset(a: &ResetArgs) -> CliResult {
    let target = if a.to_earliest {
        ResetTarget::Earliest
    } else if a.to_latest {
        ResetTarget::Latest
    } else if a.to_current {
        ResetTarget::Current
    } else if let Some(o) = a.to_offset {
        ResetTarget::Offset(o)
    } else if let Some(n) = a.shift_by {
        ResetTarget::ShiftBy(n)
    } else if let Some(t) = a.to_datetime {
        ResetTarget::Datetime(t)
    } else if let Some(d) = a.by_duration {
        ResetTarget::Ago(d)
    } else {
        let path = a.from_file.as_ref().expect("clap requires a target");
        let text =
            std::fs::read_to_string(path).map_err(|e| Failure::Error(format!("reading {}: {e}", path.display())))?;
        ResetTarget::parse_csv(&text)?
    };
    let scope = if a.topic.is_empty() { ResetScope::AllTopics } else { ResetScope::parse_topics(&a.topic)? };
    let (store, groups) = open_groups(&a.dir)?;
    let plan = groups.plan_reset_at(&a.group, &target, &scope, now_ms())?;
    let rows: Vec<[String; 4]> = plan
        .rows
        .iter()
        .map(|r| {
            [
                r.partition.topic.clone(),
                r.partition.partition.to_string(),
                r.current.map_or_else(|| "-".to_owned(), |c| c.to_string()),
                r.new_offset.to_string(),
            ]
        })
        .collect();
    let mut text = table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows);
    if a.execute {
        groups.execute_reset(&plan)?;
        text.push_str(&format!("reset {} partition(s) of group {}\n", plan.rows.len(), a.group));
    } else {
        text.push_str("dry run: nothing written (add --execute to reset)\n");
    }
    print(&text)?;
    close(store, groups)
}

/// An ISO 8601 duration of days, hours, minutes and seconds: `P1D`,
/// `PT30M`, `P1DT2H3M4.5S`.
pub(crate) fn parse_iso_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected an ISO 8601 duration such as PT30M or P1DT2H, got {s:?}");
    let rest = s.strip_prefix(['P', 'p']).ok_or_else(bad)?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut number = String::new();
        let mut last_unit = 0usize;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let at = units.iter().position(|(u, _)| u.eq_ignore_ascii_case(&c)).ok_or_else(bad)?;
            if at < last_unit || number.is_empty() {
                return Err(bad());
            }
            secs += number.parse::<f64>().map_err(|_| bad())? * units[at].1;
            number.clear();
            last_unit = at + 1;
            any = true;
        }
        if number.is_empty() { Ok(()) } else { Err(bad()) }
    };
    take(days, &[('D', 86_400.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        take(t, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !any || !secs.is_finite() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// `annal consume TOPIC --group G`: prints each partition's records from the
/// group's committed offset (the earliest where none) to its end, then
/// commits the offsets after what it printed (unless --no-commit), as one
/// atomic commit.
pub(crate) fn run_group_consume(args: &ConsumeArgs, group: &str) -> CliResult {
    let (store, groups) = open_groups(&args.dir)?;
    let topic = store.topic(&args.topic)?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) => {
            topic.start_offset(p)?;
            vec![p]
        }
        None => (0..topic.partitions()).collect(),
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let (mut line, mut scratch) = (Vec::new(), Vec::new());
    let mut printed = 0u64;
    let mut commits = Vec::new();
    for p in partitions {
        let log = topic.partition(p)?;
        let committed = groups.committed(group, &args.topic, p)?.map(|c| c.offset);
        let from = committed.unwrap_or(0).clamp(log.start_offset(), log.next_offset());
        // Only what a crash cannot take back: the group's offsets never pass it.
        let mut reader =
            if groups.durable_reads() { log.read_from(from)?.durable_only() } else { log.read_from(from)? };
        let mut next = from;
        while args.max.is_none_or(|max| printed < max) {
            let Some(r) = reader.next_record()? else { break };
            format_record(&mut scratch, &r, args.json);
            line.clear();
            if args.json {
                line.extend_from_slice(format!("{{\"partition\":{p},").as_bytes());
                line.extend_from_slice(&scratch[1..]);
            } else {
                line.extend_from_slice(format!("{p}\t").as_bytes());
                line.extend_from_slice(&scratch);
            }
            out.write_all(&line).map_err(stdout_error)?;
            printed += 1;
            next = r.offset() + 1;
        }
        if committed.is_none_or(|c| next > c) {
            commits.push(OffsetCommit::new(args.topic.clone(), p, next));
        }
    }
    out.flush().map_err(stdout_error)?;
    drop(out);
    if !args.no_commit && !commits.is_empty() {
        groups.commit(group, &commits)?;
    }
    drop(topic);
    close(store, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations() {
        assert_eq!(parse_iso_duration("PT30M").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_iso_duration("P1DT2H3M4.5S").unwrap(), Duration::from_secs_f64(93_784.5));
        assert_eq!(parse_iso_duration("P2D").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "P", "PT", "30M", "PT30", "PTM", "PT1S2M", "P1H", "PT-1S"] {
            assert!(parse_iso_duration(bad).is_err(), "{bad:?}");
        }
    }
}
