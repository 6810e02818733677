//! Codecs: how an aggregate's events and snapshots become bytes in the event
//! store, through serde. [`Json`] (feature `json`, on by default) writes JSON
//! documents that `annal events read` prints; [`Postcard`] (feature
//! `postcard`) writes postcard's compact binary encoding.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::events::ContentType;

/// A serde format for events and snapshots.
///
/// An event is encoded whole, as serde represents it (an enum of events in
/// serde's externally tagged form: `{"Deposited":{"amount":5}}` in JSON);
/// its type in the event store is [`crate::es::DomainEvent::event_type`].
pub trait Codec: Clone + Send + Sync + 'static {
    /// The codec's number in a snapshot's header (docs/FORMAT.md,
    /// "Snapshot"): 1 for JSON, 2 for postcard. A snapshot written by another
    /// codec is not used.
    const ID: u8;
    /// What the event store records the bytes as.
    const CONTENT_TYPE: ContentType;

    /// The bytes of `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> std::result::Result<Vec<u8>, String>;

    /// The value of `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> std::result::Result<T, String>;
}

/// JSON through serde_json.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

#[cfg(feature = "json")]
impl Codec for Json {
    const ID: u8 = 1;
    const CONTENT_TYPE: ContentType = ContentType::Json;

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> std::result::Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> std::result::Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Postcard's compact binary encoding. Postcard is not self-describing:
/// fields are read in the order they are declared, so a change of an
/// event's shape needs an upcaster over the bytes
/// ([`crate::es::Upcasters::register`]).
#[cfg(feature = "postcard")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

#[cfg(feature = "postcard")]
impl Codec for Postcard {
    const ID: u8 = 2;
    const CONTENT_TYPE: ContentType = ContentType::Binary;

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> std::result::Result<Vec<u8>, String> {
        postcard::to_allocvec(value).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> std::result::Result<T, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}
