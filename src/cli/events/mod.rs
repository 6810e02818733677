//! `annal events append|read|all|subscribe|streams|meta|delete|scavenge|groups`: the event store
//! (docs/EVENTS.md) from the command line, JSON lines in and out.
//!
//! Every command opens the store through [`EventStore::open`], which takes
//! the store's lock (the event store has no read-only open), and holds it
//! only while it works: `subscribe` closes the store between deliveries and
//! watches the global log's files read-only meanwhile, so appenders come and
//! go. A command that finds the store open elsewhere waits for it a moment.

mod admin;
mod append;
mod group;
pub(crate) mod read;
mod subscribe;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use serde_json::value::RawValue;

use annal::events::meta::EVENTS_META_FILE_NAME;
use annal::events::{self, ContentType, EventStore, EventStoreConfig, RecordedEvent};

use super::{CliResult, Failure};

/// The subcommands, as `annal events SUBCOMMAND --help` names them.
pub(crate) const SUBCOMMANDS: [&str; 9] =
    ["append", "read", "all", "subscribe", "streams", "meta", "delete", "scavenge", "groups"];

/// Append, read and follow the events of an event store.
///
/// An event store is a directory (created by the first `append`) holding
/// streams of events over one global log: each event has a stream and a
/// version in it (0, 1, ...), a global position, an id, a type, data and
/// metadata (each JSON or binary) and a timestamp. Every command prints one
/// JSON object per line. See docs/EVENTS.md.
///
/// A store has one process at a time: each command opens it only while it
/// works (`subscribe` only while it prints), and waits up to 10 s for a store
/// that another process has open, then gives up.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    Append(append::AppendArgs),
    Read(read::ReadArgs),
    All(read::AllArgs),
    Subscribe(subscribe::SubscribeArgs),
    Streams(read::StreamsArgs),
    Meta(admin::MetaArgs),
    Delete(admin::DeleteArgs),
    Scavenge(admin::ScavengeArgs),
    Groups(group::GroupsArgs),
}

pub(crate) fn run_events(args: &EventsArgs) -> CliResult {
    match &args.command {
        EventsCommand::Append(a) => append::run(a),
        EventsCommand::Read(a) => read::run_read(a),
        EventsCommand::All(a) => read::run_all(a),
        EventsCommand::Subscribe(a) => subscribe::run(a),
        EventsCommand::Streams(a) => read::run_streams(a),
        EventsCommand::Meta(a) => admin::run_meta(a),
        EventsCommand::Delete(a) => admin::run_delete(a),
        EventsCommand::Scavenge(a) => admin::run_scavenge(a),
        EventsCommand::Groups(a) => group::run_groups(a),
    }
}

/// How the command line opens a store: the library's defaults (appends
/// durable when they return, 256 MiB segments, events of at most 1 MiB).
fn config() -> EventStoreConfig {
    EventStoreConfig::default()
}

/// How long a command waits for a store that another process has open.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the existing event store in `dir`; refuses (without creating
/// anything) a directory that is not one.
fn open_existing(dir: &Path) -> CliResult<EventStore> {
    require_store(dir)?;
    open(dir)
}

/// Opens (or creates) the event store in `dir`. While another process has
/// it open (another command, which holds it for a moment), waits for it, up
/// to [`LOCK_WAIT`].
fn open(dir: &Path) -> CliResult<EventStore> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match EventStore::open(dir, config()) {
            Err(events::Error::Engine(annal::Error::Locked { .. })) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            result => return result.map_err(|e| store_failure(dir, e)),
        }
    }
}

/// Refuses a directory that holds no event store.
fn require_store(dir: &Path) -> CliResult {
    match not_a_store(dir) {
        Some(reason) => Err(Failure::Error(format!("{} is not an event store: {reason}", dir.display()))),
        None => Ok(()),
    }
}

/// Why `dir` is not an event store, if it is not: what it is instead when
/// it is an annal log or a topic store.
fn not_a_store(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Some("it is a file, not a directory".into()),
        Ok(_) if dir.join(EVENTS_META_FILE_NAME).is_file() => None,
        Ok(_) if dir.join(annal::log::LOCK_FILE_NAME).is_file() => {
            Some(format!("it is an annal log (read it with `annal read {}`)", dir.display()))
        }
        Ok(_) if dir.join(annal::topic::TOPICS_DIR_NAME).is_dir() => {
            Some("it is a topic store (read it with `annal consume`)".into())
        }
        Ok(_) => Some(format!("it has no {EVENTS_META_FILE_NAME}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such directory".into()),
        Err(e) => Some(format!("it cannot be read: {e}")),
    }
}

/// The failure of an operation on the store in `dir`: the store's lock
/// held by another process is said as such.
fn store_failure(dir: &Path, e: events::Error) -> Failure {
    match e {
        events::Error::Engine(annal::Error::Locked { pid, .. }) => {
            let holder = pid.map_or_else(String::new, |pid| format!(" (process {pid})"));
            Failure::Error(format!(
                "the event store at {} is open in another process{holder}, still after {} s: a store has one \
                 process at a time",
                dir.display(),
                LOCK_WAIT.as_secs()
            ))
        }
        e => Failure::from(e),
    }
}

/// Appends one event as a JSON object and a newline to `line`: `stream`,
/// `version`, `position`, `id`, `type`, `timestamp` (ms since the Unix
/// epoch), then `data` (the JSON itself) or `data_b64` (binary data, or JSON
/// data that does not parse), then likewise `metadata` or `metadata_b64`,
/// left out when the metadata is empty.
fn format_event(line: &mut String, e: &RecordedEvent) {
    line.push_str("{\"stream\":");
    line.push_str(&json_string(&e.stream));
    line.push_str(&format!(",\"version\":{},\"position\":{},\"id\":\"{}\",\"type\":", e.version, e.position, e.id));
    line.push_str(&json_string(&e.event_type));
    line.push_str(&format!(",\"timestamp\":{}", e.timestamp_ms));
    push_content(line, "data", &e.data, e.data_type);
    if !e.metadata.is_empty() {
        push_content(line, "metadata", &e.metadata, e.metadata_type);
    }
    line.push_str("}\n");
}

/// Appends `,"name":<the JSON>` for JSON content that parses, else
/// `,"name_b64":"<base64>"`.
fn push_content(line: &mut String, name: &str, bytes: &[u8], content_type: ContentType) {
    let json = match content_type {
        ContentType::Json => serde_json::from_slice::<&RawValue>(bytes).ok(),
        _ => None,
    };
    match json {
        // A line break in JSON is whitespace (one in a string is escaped):
        // dropping it keeps the event on one line and the JSON the same.
        Some(raw) => {
            line.push_str(&format!(",\"{name}\":"));
            line.extend(raw.get().chars().filter(|c| !matches!(c, '\n' | '\r')));
        }
        None => line.push_str(&format!(",\"{name}_b64\":\"{}\"", BASE64.encode(bytes))),
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}
