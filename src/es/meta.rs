//! The metadata the application layer writes with an event: a JSON object
//! with the members docs/EVENTS.md names, `$correlationId`, `$causationId`
//! (event or command ids, as strings) and `$schemaVersion` (the event's
//! schema version, absent for 1). Written and read here without a JSON
//! library, so that the layer works with any codec.

use uuid::Uuid;

/// The ids a command carries into the events it causes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct CommandMeta {
    /// The id shared by everything one business transaction causes
    /// (`$correlationId` of each event).
    pub correlation_id: Option<Uuid>,
    /// The id of the event or command that caused this one
    /// (`$causationId` of each event).
    pub causation_id: Option<Uuid>,
    /// The command's own id, if it has one. The events a command with an
    /// id writes get ids derived from it, so that executing the command
    /// again (a retry after a crash, a process manager's redelivery) finds
    /// them and writes nothing ([`crate::es::Executed::already_done`]).
    pub command_id: Option<Uuid>,
}

impl CommandMeta {
    /// No ids.
    pub fn new() -> CommandMeta {
        CommandMeta::default()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> CommandMeta {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> CommandMeta {
        self.causation_id = Some(id);
        self
    }

    /// Sets the command's id (see [`CommandMeta::command_id`]).
    pub fn with_command_id(mut self, id: Uuid) -> CommandMeta {
        self.command_id = Some(id);
        self
    }

    /// The metadata of an event that `event` caused: the same correlation
    /// id (or the event's id if it had none) and the event as cause.
    pub fn caused_by(event_id: Uuid, correlation_id: Option<Uuid>) -> CommandMeta {
        CommandMeta {
            correlation_id: Some(correlation_id.unwrap_or(event_id)),
            causation_id: Some(event_id),
            command_id: None,
        }
    }

    /// The id of the `index`th event a command with id `command_id` writes.
    pub fn event_id(command_id: Uuid, index: usize) -> Uuid {
        Uuid::new_v5(&command_id, &(index as u64).to_le_bytes())
    }
}

/// What the application layer reads from an event's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventMeta {
    /// `$correlationId`, if it is a UUID.
    pub correlation_id: Option<Uuid>,
    /// `$causationId`, if it is a UUID.
    pub causation_id: Option<Uuid>,
    /// `$schemaVersion` (1 when absent).
    pub schema_version: u32,
}

impl EventMeta {
    /// Reads the members of a JSON metadata object. Metadata that is not a
    /// JSON object (binary, empty, or damaged) has none of them: schema
    /// version 1.
    pub fn parse(metadata: &[u8]) -> EventMeta {
        let mut meta = EventMeta { schema_version: 1, ..EventMeta::default() };
        if metadata.is_empty() {
            return meta;
        }
        let _ = members(metadata, |key, value| match key {
            b"$correlationId" => meta.correlation_id = uuid_of(value),
            b"$causationId" => meta.causation_id = uuid_of(value),
            b"$schemaVersion" => {
                if let Some(v) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    meta.schema_version = v;
                }
            }
            _ => {}
        });
        meta
    }
}

/// The JSON metadata of an event written by the application layer (empty
/// when it has nothing to say).
pub(crate) fn encode(meta: &CommandMeta, schema_version: u32) -> Vec<u8> {
    let mut parts = Vec::new();
    if let Some(id) = meta.correlation_id {
        parts.push(format!("\"$correlationId\":\"{id}\""));
    }
    if let Some(id) = meta.causation_id {
        parts.push(format!("\"$causationId\":\"{id}\""));
    }
    if schema_version != 1 {
        parts.push(format!("\"$schemaVersion\":{schema_version}"));
    }
    if parts.is_empty() {
        return Vec::new();
    }
    format!("{{{}}}", parts.join(",")).into_bytes()
}

fn uuid_of(value: &[u8]) -> Option<Uuid> {
    let s = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    Uuid::try_parse_ascii(s).ok()
}

/// Calls `visit` with the raw key (without quotes, escapes left as they
/// are) and the raw value of each member of the JSON object `json`; `None`
/// if `json` is not one.
fn members(json: &[u8], mut visit: impl FnMut(&[u8], &[u8])) -> Option<()> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(json, i + 1);
    if json.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        let key_end = skip_string(json, i)?;
        let key = &json[i + 1..key_end - 1];
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(json, i + 1);
        let end = skip_value(json, start, 0)?;
        visit(key, &json[start..end]);
        i = skip_ws(json, end);
        match json.get(i) {
            Some(b',') => i = skip_ws(json, i + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index after the string starting at `i`.
fn skip_string(json: &[u8], i: usize) -> Option<usize> {
    if json.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match json.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The index after the value starting at `i` (nesting bounded).
fn skip_value(json: &[u8], i: usize, depth: u32) -> Option<usize> {
    if depth > 64 {
        return None;
    }
    match json.get(i)? {
        b'"' => skip_string(json, i),
        open @ (b'{' | b'[') => {
            let close = if *open == b'{' { b'}' } else { b']' };
            let mut j = skip_ws(json, i + 1);
            if json.get(j) == Some(&close) {
                return Some(j + 1);
            }
            loop {
                if close == b'}' {
                    j = skip_ws(json, skip_string(json, j)?);
                    if json.get(j) != Some(&b':') {
                        return None;
                    }
                    j = skip_ws(json, j + 1);
                }
                j = skip_ws(json, skip_value(json, j, depth + 1)?);
                match json.get(j)? {
                    b',' => j = skip_ws(json, j + 1),
                    c if *c == close => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = json.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_written_reads_back() {
        let c = Uuid::from_u128(1);
        let k = Uuid::from_u128(2);
        let meta = CommandMeta::new().with_correlation_id(c).with_causation_id(k);
        let bytes = encode(&meta, 3);
        assert_eq!(
            EventMeta::parse(&bytes),
            EventMeta { correlation_id: Some(c), causation_id: Some(k), schema_version: 3 }
        );
        assert!(encode(&CommandMeta::new(), 1).is_empty());
        assert_eq!(EventMeta::parse(b"").schema_version, 1);
    }

    #[test]
    fn only_top_level_members_count() {
        let json = br#" { "x" : {"$schemaVersion": 9, "a": [1, {"b": "}"}]}, "s": "\"$schemaVersion\":7",
            "$schemaVersion" : 4 } "#;
        assert_eq!(EventMeta::parse(json).schema_version, 4);
        for bad in [&b"[1]"[..], b"{", b"{\"a\":}", b"{\"a\" 1}", b"\x00\xff", b"{\"$schemaVersion\":\"2\"}"] {
            assert_eq!(EventMeta::parse(bad).schema_version, 1, "{bad:?}");
        }
    }
}
