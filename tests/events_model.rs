//! A model-based test of the event store: random appends with random
//! expected states (single and multi-stream), idempotent retries, index
//! flushes, reopens (clean and abandoned) and reads of every kind, checked
//! against an in-memory model after every step.

mod common;

use annal::events::{
    AppendResult, CurrentVersion, Direction, Error, EventStore, EventStoreConfig, ExpectedVersion, NewEvent,
    StreamAppend,
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
    /// Appends `events` events to each stream named, with ids if `ids`.
    Append {
        streams: Vec<(usize, Expect, u8)>,
        ids: bool,
    },
    /// Retries the `n`-th earlier append that had ids (modulo their count).
    Retry(usize),
    Flush,
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
    prop_oneof![Just(Expect::Any), Just(Expect::NoStream), Just(Expect::Exists), (-2i8..2).prop_map(Expect::Exact),]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0..STREAMS, expect(), 1u8..4), 1..3), any::<bool>())
            .prop_map(|(streams, ids)| Op::Append { streams, ids }),
        2 => any::<usize>().prop_map(Op::Retry),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        2 => (0..STREAMS, any::<u8>(), any::<bool>(), 1u8..20)
            .prop_map(|(stream, from, backward, max)| Op::ReadStream { stream, from, backward, max }),
        1 => (any::<u8>(), any::<bool>(), 1u8..20).prop_map(|(from, backward, max)| Op::ReadAll { from, backward, max }),
        2 => (any::<bool>(), 0..3usize, any::<u8>(), any::<bool>(), 1u8..20)
            .prop_map(|(category, which, from, backward, max)| Op::ReadIndexed { category, which, from, backward, max }),
    ]
}

/// Which events of the model a read returns.
type Filter = Box<dyn Fn(&ModelEvent) -> bool>;

/// One event of the model: (stream, version, id, data, type).
type ModelEvent = (usize, u64, Uuid, Vec<u8>, String);

/// The model: each event, in position order.
#[derive(Debug, Default)]
struct Model {
    events: Vec<ModelEvent>,
    /// Appends that had ids: the call and what it returned.
    with_ids: Vec<(Vec<StreamAppend>, Vec<AppendResult>)>,
    next_id: u128,
}

impl Model {
    fn version(&self, stream: usize) -> Option<u64> {
        self.events.iter().rev().find(|e| e.0 == stream).map(|e| e.1)
    }

    fn holds(&self, stream: usize, expected: ExpectedVersion) -> bool {
        let v = self.version(stream);
        match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => v.is_none(),
            ExpectedVersion::StreamExists => v.is_some(),
            ExpectedVersion::Exact(x) => v == Some(x),
        }
    }
}

fn name(stream: usize) -> String {
    format!("c{}-{stream}", stream % 2)
}

fn index_of(name: &str) -> usize {
    name.rsplit('-').next().unwrap().parse().unwrap()
}

/// The event type of the `i`-th event of an append.
fn event_type(i: u8) -> String {
    format!("T{}", i % 3)
}

fn config() -> EventStoreConfig {
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(64 << 10).with_durability(Durability::Never))
        .with_flush_entries(7)
        .with_merge_runs(3)
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
                    let current = model.version(stream);
                    let expected = match expect {
                        Expect::Any => ExpectedVersion::Any,
                        Expect::NoStream => ExpectedVersion::NoStream,
                        Expect::Exists => ExpectedVersion::StreamExists,
                        Expect::Exact(d) => {
                            ExpectedVersion::Exact(current.map_or(0, |v| v as i64 + 1 + i64::from(d)).max(0) as u64)
                        }
                    };
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
                let failing = call.iter().find(|c| !model.holds(index_of(&c.stream), c.expected));
                match (failing, got) {
                    (Some(c), Err(Error::WrongExpectedVersion { stream, actual, .. })) => {
                        let idx = index_of(&stream);
                        assert!(call.iter().any(|x| x.stream == stream));
                        let v = model.version(idx);
                        assert_eq!(actual, v.map_or(CurrentVersion::NoStream, CurrentVersion::Version));
                        let _ = c;
                    }
                    (None, Ok(results)) => {
                        let mut position = model.events.len() as u64;
                        for (c, r) in call.iter().zip(&results) {
                            let idx: usize = index_of(&c.stream);
                            let first = model.version(idx).map_or(0, |v| v + 1);
                            let n = c.events.len() as u64;
                            position += n;
                            assert_eq!(
                                *r,
                                AppendResult {
                                    first_version: first,
                                    next_expected_version: first + n - 1,
                                    position: position - 1
                                }
                            );
                            for (i, e) in c.events.iter().enumerate() {
                                model.events.push((
                                    idx,
                                    first + i as u64,
                                    e.id().unwrap_or_default(),
                                    e.data().to_vec(),
                                    e.event_type().to_owned(),
                                ));
                            }
                        }
                        if ids {
                            model.with_ids.push((call, results));
                        }
                    }
                    (failing, got) => panic!("model says {failing:?} fails; store says {got:?}"),
                }
            }
            Op::Retry(n) => {
                if model.with_ids.is_empty() {
                    continue;
                }
                let (call, results) = &model.with_ids[n % model.with_ids.len()];
                let mut call = call.clone();
                for c in &mut call {
                    c.expected = ExpectedVersion::Any;
                }
                let before = s.head_position();
                assert_eq!(s.append_to_streams(call).unwrap(), *results, "a retry returns the original result");
                assert_eq!(s.head_position(), before, "a retry writes nothing");
            }
            Op::Flush => {
                s.flush_index().unwrap();
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
                let from = u64::from(from % 16);
                let mine: Vec<(usize, &ModelEvent)> =
                    model.events.iter().enumerate().filter(|(_, e)| e.0 == stream).collect();
                let expected: Vec<(u64, u64)> = if backward {
                    mine.iter()
                        .rev()
                        .filter(|(_, e)| e.1 <= from)
                        .take(max.into())
                        .map(|(p, e)| (*p as u64, e.1))
                        .collect()
                } else {
                    mine.iter().filter(|(_, e)| e.1 >= from).take(max.into()).map(|(p, e)| (*p as u64, e.1)).collect()
                };
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let got = s.read_stream(&name(stream), from, direction, max.into()).unwrap();
                assert_eq!(got.iter().map(|e| (e.position, e.version)).collect::<Vec<_>>(), expected);
                for e in &got {
                    let m = &model.events[e.position as usize];
                    assert_eq!((e.stream.as_str(), &e.data), (name(m.0).as_str(), &m.3));
                    if m.2 != Uuid::default() {
                        assert_eq!(e.id, m.2);
                    }
                }
                let version = model.version(stream).map_or(CurrentVersion::NoStream, CurrentVersion::Version);
                assert_eq!(s.stream_version(&name(stream)).unwrap(), version);
            }
            Op::ReadAll { from, backward, max } => {
                let from = u64::from(from % 40);
                let len = model.events.len() as u64;
                let expected: Vec<u64> = if backward {
                    (0..len.min(from + 1)).rev().take(max.into()).collect()
                } else {
                    (from..len).take(max.into()).collect()
                };
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let got = s.read_all(from, direction, max.into()).unwrap();
                assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), expected);
                for e in &got {
                    let m = &model.events[e.position as usize];
                    assert_eq!((e.stream.clone(), e.version, &e.data), (name(m.0), m.1, &m.3));
                }
            }
            Op::ReadIndexed { category, which, from, backward, max } => {
                let from = u64::from(from % 40);
                let (name, matches): (String, Filter) = if category {
                    (format!("c{}", which % 2), Box::new(move |e: &ModelEvent| e.0 % 2 == which % 2))
                } else {
                    let t = event_type(which as u8);
                    (t.clone(), Box::new(move |e: &ModelEvent| e.4 == t))
                };
                let mine = model.events.iter().enumerate().filter(|(_, e)| matches(e)).map(|(p, _)| p as u64);
                let expected: Vec<u64> = if backward {
                    mine.rev().filter(|p| *p <= from).take(max.into()).collect()
                } else {
                    mine.filter(|p| *p >= from).take(max.into()).collect()
                };
                let direction = if backward { Direction::Backward } else { Direction::Forward };
                let got = match category {
                    true => s.read_category(&name, from, direction, max.into()).unwrap(),
                    false => s.read_event_type(&name, from, direction, max.into()).unwrap(),
                };
                assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), expected, "{name}");
            }
        }
    }
    store.take().unwrap().close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_event_store_behaves_as_its_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
