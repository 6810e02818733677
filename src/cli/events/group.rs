//! `annal events subscribe DIR --group G` and `annal events groups`:
//! persistent subscriptions ([`annal::consumer::persistent`]) from the
//! command line.
//!
//! A member needs the store open (it writes the group's checkpoint and
//! parked events), and an open store keeps other processes out. So, like the
//! plain `subscribe`, the command holds the store only while it prints: it
//! opens the store, connects as a member, prints and acknowledges what the
//! group has for it, closes the member (which writes the checkpoint) and the
//! store, then watches the global log's files read-only until something is
//! appended, and opens the store again. Each event is printed, and stdout
//! flushed, before it is acknowledged: a crash prints some events again, and
//! loses none (at least once).

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use std::path::PathBuf;

use annal::consumer::persistent::{
    self, Delivery, GroupInfo, GroupSettings, GroupTarget, PersistentSubscriptions, Strategy,
};
use annal::events::{self, EventStore, StartFrom};
use annal::{Log, LogConfig};

use super::subscribe::{SubscribeArgs, wait_past};
use super::{format_event, json_string, open_existing, require_store, store_failure};
use crate::cli::read::follower_after;
use crate::cli::{CliResult, Failure, print, stdout_error};

/// Deliveries printed between two flushes and acknowledgements.
const BATCH: usize = 256;

/// List the persistent subscriptions of an event store.
///
/// One row per group: its name, target ($all, a stream, or $ce-CATEGORY),
/// strategy (round-robin or pinned), checkpoint (every event of the target
/// below this global position is done with: acknowledged, skipped or
/// parked), lag (events of the store after the checkpoint, of any stream)
/// and parked events. With --json, one object per line: {"group", "target",
/// "target_kind", "strategy", "start", "checkpoint", "lag", "parked",
/// "max_retries", "message_timeout_ms", "checkpoint_interval",
/// "buffer_size"}. DIR must be an event store.
#[derive(Debug, Args)]
pub(crate) struct GroupsArgs {
    /// The event store directory.
    dir: PathBuf,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run_groups(args: &GroupsArgs) -> CliResult {
    let store = Arc::new(open_existing(&args.dir)?);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let listed = subs.list();
    drop(subs);
    close_store(&args.dir, store)?;
    let groups = listed.map_err(|e| group_failure(&args.dir, e))?;
    let mut text = String::new();
    if args.json {
        for g in &groups {
            text.push_str(&group_json(g));
            text.push('\n');
        }
    } else {
        let rows: Vec<[String; 6]> = groups
            .iter()
            .map(|g| {
                [
                    g.name.clone(),
                    g.settings.target().to_string(),
                    g.settings.strategy().to_string(),
                    g.checkpoint.to_string(),
                    g.lag.to_string(),
                    g.parked.to_string(),
                ]
            })
            .collect();
        let header = ["GROUP", "TARGET", "STRATEGY", "CHECKPOINT", "LAG", "PARKED"].map(str::to_owned);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            text.push_str(cells.join("  ").trim_end());
            text.push('\n');
        }
    }
    print(&text)
}

fn group_json(g: &GroupInfo) -> String {
    let s = &g.settings;
    let kind = match s.target() {
        GroupTarget::All => "all",
        GroupTarget::Stream(_) => "stream",
        GroupTarget::Category(_) => "category",
    };
    let start = match s.start() {
        StartFrom::Beginning => "\"beginning\"".to_owned(),
        StartFrom::End => "\"end\"".to_owned(),
        StartFrom::Position(p) => p.to_string(),
    };
    format!(
        "{{\"group\":{},\"target\":{},\"target_kind\":\"{kind}\",\"strategy\":\"{}\",\"start\":{start},\
         \"checkpoint\":{},\"lag\":{},\"parked\":{},\"max_retries\":{},\"message_timeout_ms\":{},\
         \"checkpoint_interval\":{},\"buffer_size\":{}}}",
        json_string(&g.name),
        json_string(&s.target().to_string()),
        s.strategy(),
        g.checkpoint,
        g.lag,
        g.parked,
        s.max_retries(),
        s.message_timeout().as_millis(),
        s.checkpoint_interval(),
        s.buffer_size(),
    )
}

/// `annal events subscribe DIR --group G ...`.
pub(crate) fn run_subscribe(args: &SubscribeArgs, group: &str) -> CliResult {
    require_store(&args.dir)?;
    let target = match (&args.stream, &args.category) {
        (Some(s), _) => Some(GroupTarget::Stream(s.clone())),
        (None, Some(c)) => Some(GroupTarget::Category(c.clone())),
        (None, None) => None,
    };
    let member_name = args.member.clone().unwrap_or_else(|| format!("annal-{}", std::process::id()));
    let mut watch = {
        let log = Log::open_read_only(args.dir.join(events::LOG_DIR_NAME), LogConfig::default())?;
        follower_after(&log, log.next_offset())?
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut printed = 0u64;
    let mut first = true;
    loop {
        let store = Arc::new(open_existing(&args.dir)?);
        let subs = PersistentSubscriptions::new(Arc::clone(&store));
        let done = (|| -> CliResult<bool> {
            if std::mem::take(&mut first) {
                prepare(&subs, args, group, target.as_ref())?;
            }
            let member = subs.connect(group, &member_name).map_err(|e| group_failure(&args.dir, e))?;
            let delivered = deliver(&member, &mut out, &mut printed, args.max);
            // Writes the checkpoint; what was printed and not acknowledged
            // (a failed write to stdout) goes back to the group.
            let closed = member.close().map_err(|e| group_failure(&args.dir, e));
            delivered.and(closed)?;
            Ok(args.max.is_some_and(|max| printed >= max))
        })();
        let head = store.head_position();
        drop(subs);
        close_store(&args.dir, store)?;
        if done? {
            return Ok(());
        }
        // Everything up to the head was delivered: wait for more.
        wait_past(&mut watch, head)?;
    }
}

/// Creates the group (with --create) or checks that it exists, and that
/// the flags describing it agree with what it is.
fn prepare(
    subs: &PersistentSubscriptions,
    args: &SubscribeArgs,
    group: &str,
    target: Option<&GroupTarget>,
) -> CliResult {
    let dir = &args.dir;
    let info = match subs.info(group) {
        Ok(info) => info,
        Err(persistent::Error::UnknownGroup { .. }) if args.create => {
            let start = match (args.from_end, args.from) {
                (true, _) => StartFrom::End,
                (false, Some(p)) => StartFrom::Position(p),
                (false, None) => StartFrom::Beginning,
            };
            let mut settings = GroupSettings::new(target.cloned().unwrap_or(GroupTarget::All)).with_start(start);
            if args.pinned {
                settings = settings.with_strategy(Strategy::Pinned);
            }
            if let Some(n) = args.max_retries {
                settings = settings.with_max_retries(n);
            }
            return match subs.create(group, settings) {
                // Created by another process meanwhile: checked below.
                Ok(()) | Err(persistent::Error::GroupExists { .. }) => prepare_existing(subs, args, group, target),
                Err(e) => Err(group_failure(dir, e)),
            };
        }
        Err(persistent::Error::UnknownGroup { .. }) => {
            return Err(Failure::Error(format!(
                "{}: no persistent subscription named {group:?} (create it with --create)",
                dir.display()
            )));
        }
        Err(e) => return Err(group_failure(dir, e)),
    };
    check_agrees(args, &info, target)
}

fn prepare_existing(
    subs: &PersistentSubscriptions,
    args: &SubscribeArgs,
    group: &str,
    target: Option<&GroupTarget>,
) -> CliResult {
    let info = subs.info(group).map_err(|e| group_failure(&args.dir, e))?;
    check_agrees(args, &info, target)
}

/// Refuses flags that describe another group than `info`'s.
fn check_agrees(args: &SubscribeArgs, info: &GroupInfo, target: Option<&GroupTarget>) -> CliResult {
    let s = &info.settings;
    let differs = |what: &str, asked: String, is: String| {
        Failure::Error(format!(
            "{}: persistent subscription {:?} has {what} {is}, not {asked} (a group's settings are fixed here; \
             create another group)",
            args.dir.display(),
            info.name
        ))
    };
    if let Some(t) = target.filter(|&t| t != s.target()) {
        return Err(differs("target", t.to_string(), s.target().to_string()));
    }
    if args.pinned && s.strategy() != Strategy::Pinned {
        return Err(differs("strategy", Strategy::Pinned.to_string(), s.strategy().to_string()));
    }
    if let Some(n) = args.max_retries.filter(|&n| n != s.max_retries()) {
        return Err(differs("max retries", n.to_string(), s.max_retries().to_string()));
    }
    Ok(())
}

/// Prints and acknowledges what the group has for `member` now, in batches
/// (each printed and flushed before it is acknowledged), up to `max` printed
/// in all.
fn deliver(
    member: &persistent::Member,
    out: &mut BufWriter<io::StdoutLock<'_>>,
    printed: &mut u64,
    max: Option<u64>,
) -> CliResult {
    let fail = |e| Failure::from(e);
    let mut line = String::new();
    loop {
        let mut batch: Vec<Delivery> = Vec::new();
        while batch.len() < BATCH && max.is_none_or(|max| *printed < max) {
            let Some(d) = member.next(Duration::ZERO).map_err(fail)? else { break };
            line.clear();
            format_event(&mut line, d.event());
            out.write_all(line.as_bytes()).map_err(stdout_error)?;
            *printed += 1;
            batch.push(d);
        }
        if batch.is_empty() {
            return Ok(());
        }
        out.flush().map_err(stdout_error)?;
        for d in &batch {
            member.ack(d).map_err(fail)?;
        }
    }
}

fn close_store(dir: &Path, store: Arc<EventStore>) -> CliResult {
    let store = Arc::try_unwrap(store).map_err(|_| Failure::Error("the event store is still in use".into()))?;
    store.close().map_err(|e| store_failure(dir, e))
}

/// The failure of a persistent subscription operation on the store in `dir`.
fn group_failure(dir: &Path, e: persistent::Error) -> Failure {
    match e {
        persistent::Error::Store(e) => store_failure(dir, e),
        e => Failure::from(e),
    }
}
