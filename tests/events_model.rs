//! A model-based test of the event store: random appends with random
//! expected states (single and multi-stream), idempotent retries, stream
//! metadata, soft and hard deletes, index flushes, reopens (clean and
//! abandoned) and reads of every kind, checked against an in-memory model
//! after every step.

mod common;

use std::collections::BTreeMap;

use annal::events::{
    AppendResult, CurrentVersion, DeleteMode, Direction, Error, EventStore, EventStoreConfig, ExpectedVersion,
    NewEvent, RecordedEvent, StreamAppend, StreamMetadata, TOMBSTONE_VERSION,
};
use annal::{Durability, LogConfig};
use proptest::prelude::*;
use uuid::Uuid;

const STREAMS: usize = 4;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    Exists,
    /// The current version plus this (-1: the right one when the stream exists).
    Exact(i8),
}

#[derive(Debug, Clone)]
enum Op {
    /// Appends `n` events to each stream named, with ids if `ids`.
    Append {
        streams: Vec<(usize, Expect, u8)>,
        ids: bool,
    },
    /// Retries the `n`-th earlier append that had ids (modulo their count).
    Retry(usize),
    /// Sets a stream's metadata.
    SetMetadata {
        stream: usize,
        max_count: Option<u8>,
        truncate_before: Option<u8>,
    },
    Delete {
        stream: usize,
        expect: Expect,
        hard: bool,
    },
    Flush,
    /// Rolls the global log and scavenges its sealed segments.
    Scavenge,
    Reopen {
        clean: bool,
    },
    ReadStream {
        stream: usize,
        from: u8,
        backward: bool,
        max: u8,
    },
    ReadAll {
        from: u8,
        backward: bool,
        max: u8,
    },
    /// Reads a category (stream `n` is `c{n % 2}-{n}`) or an event type.
    ReadIndexed {
        category: bool,
        which: usize,
        from: u8,
        backward: bool,
        max: u8,
    },
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![Just(Expect::Any), Just(Expect::NoStream), Just(Expect::Exists), (-2i8..2).prop_map(Expect::Exact)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (prop::collection::vec((0..STREAMS, expect(), 1u8..4), 1..3), any::<bool>())
            .prop_map(|(streams, ids)| Op::Append { streams, ids }),
        2 => any::<usize>().prop_map(Op::Retry),
        1 => (0..STREAMS, prop::option::of(0u8..4), prop::option::of(0u8..6))
            .prop_map(|(stream, max_count, truncate_before)| Op::SetMetadata { stream, max_count, truncate_before }),
        1 => (0..STREAMS, expect(), prop::bool::weighted(0.3)).prop_map(|(stream, expect, hard)| Op::Delete { stream, expect, hard }),
        1 => Just(Op::Flush),
        1 => Just(Op::Scavenge),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        2 => (0..STREAMS, any::<u8>(), any::<bool>(), 1u8..20)
            .prop_map(|(stream, from, backward, max)| Op::ReadStream { stream, from, backward, max }),
        1 => (any::<u8>(), any::<bool>(), 1u8..20).prop_map(|(from, backward, max)| Op::ReadAll { from, backward, max }),
        2 => (any::<bool>(), 0..3usize, any::<u8>(), any::<bool>(), 1u8..20)
            .prop_map(|(category, which, from, backward, max)| Op::ReadIndexed { category, which, from, backward, max }),
    ]
}

/// One event of the model, at the position of its index in `Model::events`.
#[derive(Debug, Clone)]
struct ModelEvent {
    stream: String,
    version: u64,
    /// The caller's id, if it gave one.
    id: Option<Uuid>,
    data: Vec<u8>,
    event_type: String,
}

/// The model: every event (the store's own metadata events and tombstones
/// included), in position order, and each stream's metadata.
#[derive(Debug, Default)]
struct Model {
    events: Vec<ModelEvent>,
    metadata: BTreeMap<String, StreamMetadata>,
    /// Appends that had ids: the call and what it returned.
    with_ids: Vec<(Vec<StreamAppend>, Vec<AppendResult>)>,
    /// Positions a scavenge may have removed (hidden when it ran).
    scavenged: std::collections::BTreeSet<usize>,
    next_id: u128,
}

impl Model {
    /// The version of the stream's last event (a tombstone aside).
    fn last(&self, stream: &str) -> Option<u64> {
        self.events.iter().rev().find(|e| e.stream == stream && e.version != TOMBSTONE_VERSION).map(|e| e.version)
    }

    fn deleted(&self, stream: &str) -> bool {
        self.events.iter().any(|e| e.stream == stream && e.version == TOMBSTONE_VERSION)
    }

    fn meta(&self, stream: &str) -> StreamMetadata {
        self.metadata.get(stream).copied().unwrap_or_default()
    }

    fn current(&self, stream: &str) -> CurrentVersion {
        let tb = self.meta(stream).truncate_before().unwrap_or(0);
        match self.last(stream) {
            Some(v) if !self.deleted(stream) && v >= tb => CurrentVersion::Version(v),
            _ => CurrentVersion::NoStream,
        }
    }

    /// What the store says of `expected` on `stream`: `Ok`, or the error.
    fn check(&self, stream: &str, expected: ExpectedVersion) -> Result<(), CurrentVersion> {
        let current = self.current(stream);
        let holds = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == CurrentVersion::NoStream,
            ExpectedVersion::StreamExists => current != CurrentVersion::NoStream,
            ExpectedVersion::Exact(x) => current == CurrentVersion::Version(x),
        };
        if holds { Ok(()) } else { Err(current) }
    }

    /// Whether reads show the event at `position`.
    fn shows(&self, position: usize) -> bool {
        // Scavenging made hiding permanent.
        if self.scavenged.contains(&position) {
            return false;
        }
        let e = &self.events[position];
        if e.version == TOMBSTONE_VERSION {
            return true;
        }
        if self.deleted(&e.stream) {
            return false;
        }
        if e.stream.starts_with("$$") {
            // A metadata stream shows the metadata in force: its last event.
            return self.last(&e.stream) == Some(e.version);
        }
        let meta = self.meta(&e.stream);
        let by_count = match (meta.max_count(), self.last(&e.stream)) {
            (Some(n), Some(last)) => (last + 1).saturating_sub(n),
            _ => 0,
        };
        e.version >= meta.truncate_before().unwrap_or(0).max(by_count)
    }

    fn push(&mut self, stream: &str, version: u64, id: Option<Uuid>, data: Vec<u8>, event_type: &str) {
        let event_type = event_type.to_owned();
        self.events.push(ModelEvent { stream: stream.to_owned(), version, id, data, event_type });
    }
}

fn name(stream: usize) -> String {
    format!("c{}-{stream}", stream % 2)
}

/// The event type of the `i`-th event of an append.
fn event_type(i: u8) -> String {
    format!("T{}", i % 3)
}

fn expected_of(model: &Model, stream: &str, expect: &Expect) -> ExpectedVersion {
    match expect {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::Exists => ExpectedVersion::StreamExists,
        Expect::Exact(d) => {
            let base = match model.current(stream) {
                CurrentVersion::Version(v) => v as i64,
                CurrentVersion::NoStream => -1,
            };
            ExpectedVersion::Exact((base + 1 + i64::from(*d)).max(0) as u64)
        }
    }
}

fn config() -> EventStoreConfig {
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(64 << 10).with_durability(Durability::Never))
        .with_flush_entries(7)
        .with_merge_runs(3)
}

/// Checks events read against the model.
fn same_events(got: &[RecordedEvent], model: &Model, want: &[usize], what: &str) {
    let positions: Vec<u64> = got.iter().map(|e| e.position).collect();
    let want_positions: Vec<u64> = want.iter().map(|&p| p as u64).collect();
    assert_eq!(positions, want_positions, "{what}");
    for e in got {
        let m = &model.events[e.position as usize];
        assert_eq!(
            (e.stream.as_str(), e.version, e.event_type.as_str()),
            (m.stream.as_str(), m.version, m.event_type.as_str())
        );
        assert_eq!(e.data, m.data, "{what}");
        if let Some(id) = m.id {
            assert_eq!(e.id, id);
        }
    }
}

fn run(ops: Vec<Op>) {
    let dir = common::fast_tempdir();
    let mut store = Some(EventStore::open(dir.path(), config()).unwrap());
    let mut model = Model::default();
    for op in ops {
        let s = store.as_ref().unwrap();
        match op {
            Op::Append { streams, ids } => {
                let mut call = Vec::new();
                for (stream, expect, n) in streams {
                    let expected = expected_of(&model, &name(stream), &expect);
                    let events = (0..n)
                        .map(|i| {
                            let data = format!("{{\"op\":{},\"i\":{i}}}", model.events.len()).into_bytes();
                            let e = NewEvent::json(event_type(i), data);
                            if ids {
                                model.next_id += 1;
                                e.with_id(Uuid::from_u128(model.next_id))
                            } else {
                                e
                            }
                        })
                        .collect();
                    call.push(StreamAppend::new(name(stream), expected, events));
                }
                let duplicate = (1..call.len()).any(|i| call[..i].iter().any(|c| c.stream == call[i].stream));
                let got = s.append_to_streams(call.clone());
                if duplicate {
                    assert!(matches!(got, Err(Error::InvalidStreamId { .. })), "{got:?}");
                    continue;
                }
                // The first stream (in the call's order) that refuses it.
                let refusal = call.iter().find_map(|c| match model.deleted(&c.stream) {
                    true => Some((c.stream.clone(), None)),
                    false => model.check(&c.stream, c.expected).err().map(|a| (c.stream.clone(), Some(a))),
                });
                match (refusal, got) {
                    (Some((s1, None)), Err(Error::StreamDeleted { stream })) => assert_eq!(stream, s1),
                    (Some((s1, Some(actual))), Err(Error::WrongExpectedVersion { stream, actual: got, .. })) => {
                        assert_eq!((stream, got), (s1, actual));
                    }
                    (None, Ok(results)) => {
                        let mut position = model.events.len() as u64;
                        for (c, r) in call.iter().zip(&results) {
                            let first = model.last(&c.stream).map_or(0, |v| v + 1);
                            let n = c.events.len() as u64;
                            position += n;
                            let want = AppendResult {
                                first_version: first,
                                next_expected_version: first + n - 1,
                                position: position - 1,
                            };
                            assert_eq!(*r, want);
                            for (i, e) in c.events.iter().enumerate() {
                                model.push(&c.stream, first + i as u64, e.id(), e.data().to_vec(), e.event_type());
                            }
                        }
                        if ids {
                            model.with_ids.push((call, results));
                        }
                    }
                    (refusal, got) => panic!("model: refused by {refusal:?}; store: {got:?}"),
                }
            }
            Op::Retry(n) => {
                if model.with_ids.is_empty() {
                    continue;
                }
                let (call, results) = &model.with_ids[n % model.with_ids.len()];
                // A retry of events a scavenge removed is not a retry any more
                // (their idempotency ended with them), and one of a deleted
                // stream's is refused once they are gone.
                let first_positions = results.iter().zip(call).flat_map(|(r, c)| {
                    let n = c.events.len() as u64;
                    (r.position + 1 - n..=r.position).map(|p| p as usize)
                });
                if first_positions.clone().any(|p| model.scavenged.contains(&p)) {
                    continue;
                }
                let mut call = call.clone();
                for c in &mut call {
                    c.expected = ExpectedVersion::Any;
                }
                let before = s.head_position();
                assert_eq!(s.append_to_streams(call).unwrap(), *results, "a retry returns the original result");
                assert_eq!(s.head_position(), before, "a retry writes nothing");
            }
            Op::SetMetadata { stream, max_count, truncate_before } => {
                let stream = name(stream);
                let mut meta = StreamMetadata::default();
                if let Some(n) = max_count {
                    meta = meta.with_max_count(n.into());
                }
                if let Some(v) = truncate_before {
                    meta = meta.with_truncate_before(v.into());
                }
                let got = s.set_stream_metadata(&stream, meta);
                if model.deleted(&stream) {
                    assert!(matches!(got, Err(Error::StreamDeleted { .. })), "{got:?}");
                    continue;
                }
                let r = got.unwrap();
                let meta_stream = format!("$${stream}");
                let version = model.last(&meta_stream).map_or(0, |v| v + 1);
                assert_eq!((r.first_version, r.position), (version, model.events.len() as u64));
                model.push(&meta_stream, version, None, meta_data(s, r.position), "$metadata");
                model.metadata.insert(stream, meta);
            }
            Op::Delete { stream, expect, hard } => {
                let stream = name(stream);
                let expected = expected_of(&model, &stream, &expect);
                let mode = if hard { DeleteMode::Hard } else { DeleteMode::Soft };
                let got = s.delete_stream(&stream, expected, mode);
                if model.deleted(&stream) {
                    assert!(matches!(got, Err(Error::StreamDeleted { .. })), "{got:?}");
                    continue;
                }
                if let Err(actual) = model.check(&stream, expected) {
                    match got {
                        Err(Error::WrongExpectedVersion { actual: a, .. }) => assert_eq!(a, actual),
                        other => panic!("expected a wrong expected version, got {other:?}"),
                    }
                    continue;
                }
                let r = got.unwrap();
                assert_eq!(r.position, model.events.len() as u64);
                if hard {
                    model.push(&stream, TOMBSTONE_VERSION, None, Vec::new(), "$streamDeleted");
                } else {
                    let next = model.last(&stream).map_or(0, |v| v + 1);
                    let meta = model.meta(&stream).with_truncate_before(next);
                    let meta_stream = format!("$${stream}");
                    let version = model.last(&meta_stream).map_or(0, |v| v + 1);
                    model.push(&meta_stream, version, None, meta_data(s, r.position), "$metadata");
                    model.metadata.insert(stream, meta);
                }
            }
            Op::Flush => {
                s.flush_index().unwrap();
            }
            Op::Scavenge => {
                s.log().roll().unwrap();
                let sealed = s.head_position() as usize;
                let _ = s.scavenge().unwrap();
                // Hidden events go, but a (not hard-deleted) stream's last event stays.
                let last_of = |p: usize| {
                    let e = &model.events[p];
                    !model.deleted(&e.stream) && model.last(&e.stream) == Some(e.version)
                };
                let hidden: Vec<usize> =
                    (0..sealed.min(model.events.len())).filter(|&p| !model.shows(p) && !last_of(p)).collect();
                model.scavenged.extend(hidden);
            }
            Op::Reopen { clean } => {
                let s = store.take().unwrap();
                if clean {
                    s.close().unwrap();
                } else {
                    s.abandon();
                }
                let reopened = EventStore::open(dir.path(), config()).unwrap();
                assert!(reopened.index_recovery().rebuilt.is_none(), "{:?}", reopened.index_recovery());
                store = Some(reopened);
            }
            Op::ReadStream { stream, from, backward, max } => {
                let stream = name(stream);
                let from = u64::from(from % 16);
                let got = s.read_stream(
                    &stream,
                    from,
                    if backward { Direction::Backward } else { Direction::Forward },
                    max.into(),
                );
                if model.deleted(&stream) {
                    assert!(matches!(got, Err(Error::StreamDeleted { .. })), "{got:?}");
                    assert!(matches!(s.stream_version(&stream), Err(Error::StreamDeleted { .. })));
                    continue;
                }
                let mine = (0..model.events.len()).filter(|&p| model.events[p].stream == stream && model.shows(p));
                let want: Vec<usize> = if backward {
                    mine.rev().filter(|&p| model.events[p].version <= from).take(max.into()).collect()
                } else {
                    mine.filter(|&p| model.events[p].version >= from).take(max.into()).collect()
                };
                let got = got.unwrap();
                same_events(&got, &model, &want, &stream);
                assert_eq!(s.stream_version(&stream).unwrap(), model.current(&stream));
                // The visitor sees the same events, in the same order.
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let mut viewed = Vec::new();
                let n = s
                    .read_stream_with(&stream, from, direction, max.into(), |e| {
                        viewed.push(e.to_recorded());
                        Ok::<(), Error>(())
                    })
                    .unwrap();
                assert_eq!((n, &viewed), (got.len(), &got));
            }
            Op::ReadAll { from, backward, max } => {
                let from = (from % 48) as usize;
                let visible = (0..model.events.len()).filter(|&p| model.shows(p));
                let want: Vec<usize> = if backward {
                    visible.rev().filter(|&p| p <= from).take(max.into()).collect()
                } else {
                    visible.filter(|&p| p >= from).take(max.into()).collect()
                };
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                same_events(&s.read_all(from as u64, direction, max.into()).unwrap(), &model, &want, "$all");
            }
            Op::ReadIndexed { category, which, from, backward, max } => {
                let from = (from % 48) as usize;
                let name = if category { format!("c{}", which % 2) } else { event_type(which as u8) };
                let matches = |e: &ModelEvent| match category {
                    true => e.stream.split_once('-').map_or(e.stream.as_str(), |(c, _)| c) == name,
                    false => e.event_type == name,
                };
                let mine = (0..model.events.len()).filter(|&p| matches(&model.events[p]) && model.shows(p));
                let want: Vec<usize> = if backward {
                    mine.rev().filter(|&p| p <= from).take(max.into()).collect()
                } else {
                    mine.filter(|&p| p >= from).take(max.into()).collect()
                };
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let got = match category {
                    true => s.read_category(&name, from as u64, direction, max.into()).unwrap(),
                    false => s.read_event_type(&name, from as u64, direction, max.into()).unwrap(),
                };
                same_events(&got, &model, &want, &name);
            }
        }
    }
    store.take().unwrap().close().unwrap();
}

/// The data of the metadata event the store wrote at `position`.
fn meta_data(store: &EventStore, position: u64) -> Vec<u8> {
    store.read_all(position, Direction::Forward, 1).unwrap()[0].data.clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_event_store_behaves_as_its_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
