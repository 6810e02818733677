//! `annal events append`: the lines of stdin as one atomic append.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use serde_json::value::RawValue;
use uuid::Uuid;

use annal::events::{self, EventStore, ExpectedVersion, NewEvent};

use super::store_failure;
use crate::cli::{CliResult, Failure, print};

/// Append the lines of stdin to a stream, as one atomic append.
///
/// Creates the store (the directory DIR) if it does not exist. Each line of
/// stdin is one event, and all of them are one append: written together or
/// not at all, also across a crash. A line is a JSON object:
///
///   {"type": "OrderPlaced", "data": <any JSON>, "metadata": {...}, "id": "<UUID>"}
///
/// `type` and `data` are required (or `data_b64`, base64 of binary data,
/// instead of `data`); `metadata` (a JSON object, or `metadata_b64`) and `id`
/// are optional: without an id, annal draws one. The members `stream`,
/// `version`, `position` and `timestamp`, which the store assigns, are
/// ignored, so that the lines `annal events read` prints can be appended to
/// another store (a retry is then idempotent: events whose ids are already
/// in the stream, all of them as one earlier append, write nothing and print
/// that append's result). Any other member is an error.
///
/// With --type T, each line is instead the data of one event of type T: a
/// line that is valid JSON (an object, an array, a string in quotes, a
/// number, true, false or null) is stored as JSON data, any other line (plain
/// text, bytes that are not UTF-8, an empty line) as binary data, its bytes
/// as they are without the newline.
///
/// Prints one JSON object: `{"stream", "first_version",
/// "next_expected_version", "position"}` (the versions of the first and last
/// event written, and the global position of the last). Stdin is read to its
/// end before anything is written: a malformed line (the message names it and
/// says why), an invalid stream id or event type, an event larger than 1 MiB
/// or a stream not at --expected write nothing. A wrong expected version
/// exits with status 3 and names the stream's actual version. While another
/// process has the store open, waits for it, up to 10 s.
#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The event store directory (created if missing).
    dir: PathBuf,
    /// The stream (1 to 1024 bytes of UTF-8; its category is the part
    /// before the first `-`).
    stream: String,
    /// What the stream must be at: `any`, `no-stream` (no event yet),
    /// `exists` (at least one event) or N (its last event has version N).
    #[arg(long, value_name = "any|no-stream|exists|N", default_value = "any", value_parser = parse_expected)]
    expected: ExpectedVersion,
    /// Every line is the data of one event of type T (JSON data if the line
    /// is valid JSON, binary otherwise) instead of a JSON object.
    #[arg(long = "type", value_name = "T")]
    event_type: Option<String>,
}

pub(super) fn parse_expected(s: &str) -> Result<ExpectedVersion, String> {
    match s {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n => n
            .parse()
            .map(ExpectedVersion::Exact)
            .map_err(|_| "expected any, no-stream, exists or a version number".into()),
    }
}

pub(crate) fn run(args: &AppendArgs) -> CliResult {
    if let Some(reason) = events::stream_id_problem(&args.stream) {
        return Err(Failure::Error(format!("invalid stream id {:?}: {reason}", args.stream)));
    }
    if let Some(reason) = args.event_type.as_deref().and_then(events::event_type_problem) {
        return Err(Failure::Error(format!("invalid --type: {reason}")));
    }
    let mut input = Vec::new();
    io::stdin().lock().read_to_end(&mut input).map_err(|e| Failure::Error(format!("reading stdin: {e}")))?;
    let events = parse_lines(&input, args.event_type.as_deref())?;
    let count = events.len();
    let store = open_for_append(&args.dir)?;
    let result = match store.append(&args.stream, args.expected, events) {
        Ok(r) => r,
        Err(e) => {
            let failure = append_failure(&args.dir, e, count);
            // Nothing was written; the store is left as it was found.
            store.close().map_err(|e| store_failure(&args.dir, e))?;
            return Err(failure);
        }
    };
    store.close().map_err(|e| store_failure(&args.dir, e))?;
    print(&format!(
        "{{\"stream\":{},\"first_version\":{},\"next_expected_version\":{},\"position\":{}}}\n",
        super::json_string(&args.stream),
        result.first_version,
        result.next_expected_version,
        result.position
    ))
}

/// Opens the store in `dir`, creating it if `dir` does not exist or is an
/// empty directory; refuses a directory that holds something else.
fn open_for_append(dir: &Path) -> CliResult<EventStore> {
    let holds_something = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    };
    // A store that lost its events.meta still has its log: opening it repairs it.
    if holds_something
        && !dir.join(events::LOG_DIR_NAME).is_dir()
        && let Some(reason) = super::not_a_store(dir)
    {
        return Err(Failure::Error(format!(
            "{} is not an event store: {reason}; a new store needs a new or empty directory",
            dir.display()
        )));
    }
    super::open(dir)
}

/// The failure of an append of `count` events (one per line of stdin), the
/// events named by their lines.
fn append_failure(dir: &Path, e: events::Error, count: usize) -> Failure {
    let line = |index: usize| index + 1;
    match e {
        events::Error::InvalidEvent { index, reason, .. } => {
            Failure::Error(format!("line {} of stdin: {reason}; nothing was appended", line(index)))
        }
        events::Error::EventTooLarge { index, size, max, .. } => Failure::Error(format!(
            "line {} of stdin: the event takes {size} bytes, more than the largest allowed ({max}); nothing was appended",
            line(index)
        )),
        events::Error::AppendTooLarge { size, max } => Failure::Error(format!(
            "the {count} events of stdin take {size} bytes, more than one append can ({max}, a segment of the \
             global log); nothing was appended: split them"
        )),
        e @ events::Error::WrongExpectedVersion { .. } => {
            Failure::WrongExpectedVersion(format!("{e}; nothing was appended"))
        }
        e => store_failure(dir, e),
    }
}

/// The events of the lines of `input`: JSON objects, or with `data_type`
/// each line the data of one event of that type.
fn parse_lines(input: &[u8], data_type: Option<&str>) -> CliResult<Vec<NewEvent>> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    if input.is_empty() {
        return Err(Failure::Error("stdin holds no event: nothing was appended".into()));
    }
    let mut events = Vec::new();
    for (i, line) in input.split(|&b| b == b'\n').enumerate() {
        let event = match data_type {
            Some(t) => Ok(data_line(t, line)),
            None => event_line(line),
        };
        events
            .push(event.map_err(|why| Failure::Error(format!("line {} of stdin {why}; nothing was appended", i + 1)))?);
    }
    Ok(events)
}

/// A line of --type T: JSON data if it parses, else binary.
fn data_line(event_type: &str, line: &[u8]) -> NewEvent {
    match serde_json::from_slice::<&RawValue>(line) {
        Ok(_) => NewEvent::json(event_type, line),
        Err(_) => NewEvent::binary(event_type, line),
    }
}

/// The members of an event line (and those of `annal events read`'s lines
/// that the store assigns, ignored).
const MEMBERS: &str = "type, data or data_b64, metadata or metadata_b64, id";
const ASSIGNED: [&str; 4] = ["stream", "version", "position", "timestamp"];

/// A JSON object line as an event; the error completes "line N of stdin ...".
fn event_line(line: &[u8]) -> Result<NewEvent, String> {
    if line.is_empty() {
        return Err(format!("is empty (an event has {MEMBERS})"));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| "is not UTF-8 (a line is a JSON object; see --type)".to_owned())?;
    let raw = serde_json::from_str::<&RawValue>(text).map_err(|e| format!("is not JSON: {}", json_error(&e)))?;
    let members: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| format!("is not a JSON object but {} (or see --type)", kind(raw.get())))?;
    if let Some(other) = members.keys().find(|k| !is_member(k) && !ASSIGNED.contains(&k.as_str())) {
        return Err(format!("has an unknown member {other:?} (an event has {MEMBERS})"));
    }
    let string = |name: &str| -> Result<Option<String>, String> {
        match members.get(name) {
            None => Ok(None),
            Some(v) if v.get() == "null" => Ok(None),
            Some(v) => {
                serde_json::from_str(v.get()).map(Some).map_err(|_| format!("has a {name:?} that is not a string"))
            }
        }
    };
    let base64 = |name: &str| -> Result<Option<Vec<u8>>, String> {
        let Some(s) = string(name)? else { return Ok(None) };
        BASE64.decode(s).map(Some).map_err(|e| format!("has a {name:?} that is not base64: {e}"))
    };
    let event_type = string("type")?.ok_or_else(|| format!("has no \"type\" (an event has {MEMBERS})"))?;
    if let Some(reason) = events::event_type_problem(&event_type) {
        return Err(format!("has an invalid \"type\": {reason}"));
    }
    let mut event = match (members.get("data"), base64("data_b64")?) {
        (Some(_), Some(_)) => return Err("has both \"data\" and \"data_b64\"".into()),
        (Some(json), None) => NewEvent::json(event_type, json.get()),
        (None, Some(bytes)) => NewEvent::binary(event_type, bytes),
        (None, None) => return Err("has no \"data\" (any JSON) or \"data_b64\" (base64 of binary data)".into()),
    };
    match (members.get("metadata").filter(|m| m.get() != "null"), base64("metadata_b64")?) {
        (Some(_), Some(_)) => return Err("has both \"metadata\" and \"metadata_b64\"".into()),
        (Some(json), None) if json.get().starts_with('{') => event = event.with_json_metadata(json.get()),
        (Some(json), None) => return Err(format!("has a \"metadata\" that is {}, not an object", kind(json.get()))),
        (None, Some(bytes)) => event = event.with_binary_metadata(bytes),
        (None, None) => {}
    }
    if let Some(id) = string("id")? {
        let id = Uuid::parse_str(&id).map_err(|e| format!("has an \"id\" that is not a UUID: {e}"))?;
        event = event.with_id(id);
    }
    Ok(event)
}

fn is_member(name: &str) -> bool {
    matches!(name, "type" | "data" | "data_b64" | "metadata" | "metadata_b64" | "id")
}

/// What a JSON value is, from its first character.
fn kind(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A JSON syntax error without serde_json's "at line 1": the column is
/// the line's.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let what = text.split(" at line ").next().unwrap_or(&text);
    format!("{what} at column {}", e.column())
}
