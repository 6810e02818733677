//! Upcasting (docs/EVENT-SOURCING.md, "Upcasting"): events written at an
//! older schema version are brought to the current one when they are read,
//! by a chain of upcasters, each from one (event type, schema version) to
//! the next: rename a type, add a field with a default, split an event in
//! several. The stored events are never rewritten.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::codec::Codec;
use super::error::{Error, Result};
use super::meta::EventMeta;
use crate::events::{EventView, RecordedEvent};

/// An event as an upcaster sees it: its type, schema version and the
/// codec's bytes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The event's type.
    pub event_type: String,
    /// Its schema version.
    pub schema_version: u32,
    /// Its bytes (the codec's encoding of the whole event).
    pub data: Vec<u8>,
}

/// An upcaster: from one event to the events it is now (usually one, none
/// to drop it, several to split it), each at a schema version and type that
/// the chain continues from, or at the current one.
pub type UpcastFn = dyn Fn(RawEvent) -> std::result::Result<Vec<RawEvent>, String> + Send + Sync;

/// The longest chain of upcasters applied to one event (a guard against an
/// upcaster that produces its own input again).
const MAX_CHAIN: usize = 64;

struct Upcaster {
    name: String,
    f: Arc<UpcastFn>,
}

/// The upcasters of an application, keyed by (event type, schema version).
///
/// Each has a name, which is part of the fingerprint of the aggregates'
/// snapshots: registering, removing or renaming an upcaster invalidates the
/// snapshots written before (they were built from events upcast otherwise),
/// so a changed upcaster is registered under a new name.
#[derive(Default, Clone)]
pub struct Upcasters {
    by_type: HashMap<String, BTreeMap<u32, Arc<Upcaster>>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upcasters").field("upcasters", &self.keys()).finish()
    }
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Upcasters {
        Upcasters::default()
    }

    /// Registers `f` as the upcaster of events of type `event_type` at
    /// schema version `from_version`, under the name `name`. It replaces
    /// one registered for the same key.
    #[must_use]
    pub fn register(
        mut self,
        event_type: &str,
        from_version: u32,
        name: &str,
        f: impl Fn(RawEvent) -> std::result::Result<Vec<RawEvent>, String> + Send + Sync + 'static,
    ) -> Upcasters {
        let upcaster = Arc::new(Upcaster { name: name.to_owned(), f: Arc::new(f) });
        self.by_type.entry(event_type.to_owned()).or_default().insert(from_version, upcaster);
        self
    }

    /// Registers an upcaster of JSON events (codec [`crate::es::Json`]),
    /// given the event's content (the value inside serde's
    /// `{"Type": content}`, null for a unit variant) and returning the
    /// events it is now as (type, content) pairs. An event that keeps its
    /// type goes to schema version `from_version + 1`; one whose type
    /// changes starts at version 1 of its new type (and goes on from there
    /// if that type has upcasters).
    ///
    /// ```
    /// use annal::es::{RawEvent, Upcasters};
    ///
    /// // Deposits of schema version 1 had no currency: they were in dollars.
    /// let upcasters = Upcasters::new().register_json("Deposited", 1, "deposited-currency", |mut v| {
    ///     v["currency"] = "USD".into();
    ///     Ok(vec![("Deposited".to_owned(), v)])
    /// });
    /// let v1 = RawEvent { event_type: "Deposited".into(), schema_version: 1, data: br#"{"Deposited":{"amount":5}}"#.to_vec() };
    /// let now = upcasters.upcast(v1).unwrap();
    /// assert_eq!(now[0].schema_version, 2);
    /// assert_eq!(now[0].data, br#"{"Deposited":{"amount":5,"currency":"USD"}}"#);
    /// assert_eq!(upcasters.current_version("Deposited"), 2);
    /// ```
    #[cfg(feature = "json")]
    #[must_use]
    pub fn register_json(
        self,
        event_type: &str,
        from_version: u32,
        name: &str,
        f: impl Fn(serde_json::Value) -> std::result::Result<Vec<(String, serde_json::Value)>, String>
        + Send
        + Sync
        + 'static,
    ) -> Upcasters {
        self.register(event_type, from_version, name, move |raw: RawEvent| {
            let value: serde_json::Value = serde_json::from_slice(&raw.data).map_err(|e| e.to_string())?;
            let content = match value {
                serde_json::Value::Object(mut m) if m.len() == 1 => {
                    let (_, v) = m.iter_mut().next().expect("one member");
                    v.take()
                }
                serde_json::Value::String(_) => serde_json::Value::Null,
                other => return Err(format!("not an externally tagged event: {other}")),
            };
            f(content)?
                .into_iter()
                .map(|(event_type, content)| {
                    let schema_version = if event_type == raw.event_type { from_version + 1 } else { 1 };
                    let mut m = serde_json::Map::new();
                    m.insert(event_type.clone(), content);
                    let data = serde_json::to_vec(&serde_json::Value::Object(m)).map_err(|e| e.to_string())?;
                    Ok(RawEvent { event_type, schema_version, data })
                })
                .collect()
        })
    }

    /// The upcasters' (event type, from version, name), sorted.
    fn keys(&self) -> Vec<(&str, u32, &str)> {
        let mut keys: Vec<_> = self
            .by_type
            .iter()
            .flat_map(|(t, m)| m.iter().map(move |(v, u)| (t.as_str(), *v, u.name.as_str())))
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Whether no upcaster is registered.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// The schema version events of `event_type` are written at: one past
    /// the highest version an upcaster of that type starts from (1 if none).
    pub fn current_version(&self, event_type: &str) -> u32 {
        self.by_type.get(event_type).and_then(|m| m.keys().next_back()).map_or(1, |v| v + 1)
    }

    /// Whether an event of `event_type` at `schema_version` is upcast.
    pub fn applies_to(&self, event_type: &str, schema_version: u32) -> bool {
        self.by_type.get(event_type).is_some_and(|m| m.contains_key(&schema_version))
    }

    /// `event` brought to the current schema versions: the upcasters applied
    /// until none applies to any of the events produced.
    pub fn upcast(&self, event: RawEvent) -> std::result::Result<Vec<RawEvent>, String> {
        let mut out = Vec::with_capacity(1);
        let mut todo = vec![(event, 0usize)];
        while let Some((e, depth)) = todo.pop() {
            let Some(u) = self.by_type.get(&e.event_type).and_then(|m| m.get(&e.schema_version)) else {
                out.push(e);
                continue;
            };
            if depth >= MAX_CHAIN {
                return Err(format!(
                    "more than {MAX_CHAIN} upcasters in a row from {} v{}",
                    e.event_type, e.schema_version
                ));
            }
            let produced = (u.f)(e).map_err(|reason| format!("upcaster {:?}: {reason}", u.name))?;
            // Depth-first, in order: pushed in reverse so the first is next.
            todo.extend(produced.into_iter().rev().map(|p| (p, depth + 1)));
        }
        Ok(out)
    }

    /// Feeds the registered keys and names to `hasher`, in a fixed order (a
    /// part of the snapshots' fingerprint).
    pub(crate) fn fingerprint(&self, hasher: &mut impl Hasher) {
        let keys = self.keys();
        hasher.write_usize(keys.len());
        for (t, v, name) in keys {
            hasher.write(t.as_bytes());
            hasher.write_u8(0xff);
            hasher.write_u32(v);
            hasher.write(name.as_bytes());
            hasher.write_u8(0xff);
        }
    }

    /// The stored event `event` at the current schema versions: itself if
    /// no upcaster applies, else the events the upcasters make of it, each
    /// with the stored event's stream, version, position, id and timestamp,
    /// and metadata giving its new schema version (with the stored
    /// metadata's `$correlationId` and `$causationId`; other members are
    /// not carried over). How projection and process-manager runners
    /// ([`crate::es::ProjectionRunner::with_upcasters`]) and subscribers
    /// read old events at the current schema.
    pub fn upcast_recorded(&self, event: RecordedEvent) -> Result<Vec<RecordedEvent>> {
        if !self.by_type.contains_key(&event.event_type) {
            return Ok(vec![event]);
        }
        let meta = EventMeta::parse(&event.metadata);
        if !self.applies_to(&event.event_type, meta.schema_version) {
            return Ok(vec![event]);
        }
        let raw = RawEvent {
            event_type: event.event_type.clone(),
            schema_version: meta.schema_version,
            data: event.data.clone(),
        };
        let upcast = self.upcast(raw).map_err(|reason| Error::Upcast {
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            schema_version: meta.schema_version,
            reason,
        })?;
        let ids = super::meta::CommandMeta {
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            command_id: None,
        };
        Ok(upcast
            .into_iter()
            .map(|raw| {
                let metadata = super::meta::encode(&ids, raw.schema_version);
                RecordedEvent {
                    event_type: raw.event_type,
                    data: raw.data,
                    metadata_type: if metadata.is_empty() {
                        event.metadata_type
                    } else {
                        crate::events::ContentType::Json
                    },
                    metadata,
                    ..event.clone()
                }
            })
            .collect())
    }

    /// Decodes the stored event `view` into events of type `E` with `codec`,
    /// upcast first if its schema version is an older one, and gives each to
    /// `visit`: how the repository, projections and subscriptions read the
    /// application's events alike.
    pub fn decode<E: DeserializeOwned, C: Codec>(
        &self,
        codec: &C,
        view: &EventView<'_>,
        mut visit: impl FnMut(E),
    ) -> Result<()> {
        let decode_error = |event_type: &str, reason: String| Error::Decode {
            stream: view.stream.to_owned(),
            version: view.version,
            event_type: event_type.to_owned(),
            reason,
        };
        // The metadata is looked at only if an upcaster may apply.
        let schema_version = match self.by_type.get(view.event_type) {
            Some(_) => EventMeta::parse(view.metadata).schema_version,
            None => 1,
        };
        if !self.applies_to(view.event_type, schema_version) {
            let e = codec.decode(view.data).map_err(|reason| decode_error(view.event_type, reason))?;
            visit(e);
            return Ok(());
        }
        let raw = RawEvent { event_type: view.event_type.to_owned(), schema_version, data: view.data.to_vec() };
        let upcast = self.upcast(raw).map_err(|reason| Error::Upcast {
            stream: view.stream.to_owned(),
            version: view.version,
            event_type: view.event_type.to_owned(),
            schema_version,
            reason,
        })?;
        for e in upcast {
            visit(codec.decode(&e.data).map_err(|reason| decode_error(&e.event_type, reason))?);
        }
        Ok(())
    }
}
