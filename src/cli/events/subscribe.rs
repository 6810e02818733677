//! `annal events subscribe`: a subscription of the library
//! ([`annal::events::EventStore::subscribe`]) that lives across processes.
//!
//! An open store keeps every other process out, so a subscription that kept
//! the store open would only ever see its own process's appends. This one
//! holds the store only while it prints: it opens the store, delivers what
//! the subscription has up to the head, remembers where it stopped, and
//! closes the store; then it watches the global log's files read-only, as
//! `annal tail` does (`src/cli/follow.rs`), until a record past that head
//! appears, and opens the store again to deliver from there. The events
//! themselves always come from the library, so they are those its reads
//! return (streams' metadata and deletions honoured, catch-up from the
//! indexes).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use clap::Args;

use annal::events::{self, StartFrom, SubscriptionTarget};
use annal::{Log, LogConfig};

use super::{format_event, open_existing, store_failure};
use crate::cli::follow::Follower;
use crate::cli::read::{POLL, follower_after};
use crate::cli::{CliResult, stdout_error};

/// Print the events there are, then the ones appended later, until interrupted.
///
/// Every event (`$all`), or those of one stream (--stream), of the streams of
/// one category (--category) or of one type (--type), in global order, each
/// once, from the first event, from global position --from, or with
/// --from-end only those appended after the command started. The lines are
/// those of `annal events read`; stdout is flushed whenever what there is has
/// been printed, so a pipe sees every event as soon as it is there. Ends with
/// Ctrl-C (or when stdout is closed).
///
/// It does not keep appenders out: it opens the store only to print what is
/// new, and between times watches the global log's files (every 100 ms) as
/// `annal tail` does. Like the other commands it needs the store to itself
/// while it prints, so it fails if another process keeps the store open for
/// more than 10 s (an application that embeds it). DIR must be an event
/// store.
///
/// With --group G, it is a member of the persistent subscription G (see
/// `annal events groups` and docs/EVENTS.md, "Persistent subscriptions"):
/// it prints the events the group gives it (those of the group's target
/// from its checkpoint on, shared with the group's other members), each
/// acknowledged once printed and flushed, and writes the group's checkpoint
/// whenever it closes the store; with --max N it stops after N events. A
/// group that does not exist is an error, unless --create makes it: over
/// $all, --stream S or --category C, from the first event, --from P or
/// --from-end, round robin or --pinned (each stream to one member, its
/// events in order), with --max-retries N (default 10). For an existing
/// group, those flags must agree with it.
#[derive(Debug, Args)]
pub(crate) struct SubscribeArgs {
    /// The event store directory.
    pub(super) dir: PathBuf,
    /// First global position to print (default: the first event).
    #[arg(long, value_name = "P", conflicts_with = "from_end")]
    pub(super) from: Option<u64>,
    /// Print only the events appended after the command started.
    #[arg(long)]
    pub(super) from_end: bool,
    /// Only the events of stream S.
    #[arg(long, value_name = "S", conflicts_with_all = ["category", "event_type"])]
    pub(super) stream: Option<String>,
    /// Only the events of the streams of category C.
    #[arg(long, value_name = "C", conflicts_with = "event_type")]
    pub(super) category: Option<String>,
    /// Only the events of type T.
    #[arg(long = "type", value_name = "T", conflicts_with = "group")]
    pub(super) event_type: Option<String>,
    /// Consume as a member of the persistent subscription G.
    #[arg(long, value_name = "G")]
    pub(super) group: Option<String>,
    /// With --group: create the group if it does not exist.
    #[arg(long, requires = "group")]
    pub(super) create: bool,
    /// With --group: the group pins each stream to one member.
    #[arg(long, requires = "group")]
    pub(super) pinned: bool,
    /// With --group: stop after N events.
    #[arg(long, value_name = "N", requires = "group")]
    pub(super) max: Option<u64>,
    /// With --group: the group parks an event after N retries.
    #[arg(long, value_name = "N", requires = "group")]
    pub(super) max_retries: Option<u32>,
    /// With --group: the member's name (default: annal-PID).
    #[arg(long, value_name = "NAME", requires = "group")]
    pub(super) member: Option<String>,
}

pub(crate) fn run(args: &SubscribeArgs) -> CliResult {
    if let Some(group) = &args.group {
        return super::group::run_subscribe(args, group);
    }
    super::require_store(&args.dir)?;
    let target = match (&args.stream, &args.category, &args.event_type) {
        (Some(s), _, _) => SubscriptionTarget::Stream(s.clone()),
        (None, Some(c), _) => SubscriptionTarget::Category(c.clone()),
        (None, None, Some(t)) => SubscriptionTarget::EventType(t.clone()),
        (None, None, None) => SubscriptionTarget::All,
    };
    let mut start = match (args.from_end, args.from) {
        (true, _) => StartFrom::End,
        (false, Some(p)) => StartFrom::Position(p),
        (false, None) => StartFrom::Beginning,
    };
    // Watches the log from its end now: what is before it, the first
    // opening of the store delivers.
    let mut watch = {
        let log = Log::open_read_only(args.dir.join(events::LOG_DIR_NAME), LogConfig::default())?;
        follower_after(&log, log.next_offset())?
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut line = String::new();
    loop {
        let store = open_existing(&args.dir)?;
        let fail = |e| store_failure(&args.dir, e);
        let head = store.head_position();
        let delivered = (|| -> CliResult<u64> {
            let mut subscription = store.subscribe(target.clone(), start).map_err(fail)?;
            // No one appends while the store is open here: this delivers
            // every event before the head, and looks at nothing past it.
            while let Some(e) = subscription.next_timeout(Duration::ZERO).map_err(fail)? {
                line.clear();
                format_event(&mut line, &e);
                out.write_all(line.as_bytes()).map_err(stdout_error)?;
            }
            Ok(subscription.checkpoint())
        })();
        store.close().map_err(fail)?;
        out.flush().map_err(stdout_error)?;
        // Every event before the head was looked at: go on from there (or
        // from a --from past it).
        start = StartFrom::Position(delivered?.max(head));
        wait_past(&mut watch, head)?;
    }
}

/// Waits until the global log holds a record at or past `head`, reading
/// what appenders add as it appears.
pub(super) fn wait_past(watch: &mut Follower, head: u64) -> CliResult {
    loop {
        let mut past = false;
        while let Some(frame) = watch.next_frame()? {
            past |= frame.next_offset() > head;
        }
        if past {
            return Ok(());
        }
        thread::sleep(POLL);
    }
}
