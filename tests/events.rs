//! The event store (docs/EVENTS.md): appends with expected states, durable
//! idempotency, multi-stream atomic appends, reads of streams and of `$all`,
//! and indexes that survive flushes, merges, reopens and damage.

mod common;

use std::sync::Arc;

use annal::events::{
    AppendResult, CurrentVersion, Direction, Error, EventStore, EventStoreConfig, ExpectedVersion, NewEvent,
    StreamAppend,
};
use annal::{Durability, LogConfig};
use uuid::Uuid;

fn cfg() -> EventStoreConfig {
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(1 << 20).with_durability(Durability::Never))
}

/// Small index limits, so that a few hundred events flush and merge.
fn small_index() -> EventStoreConfig {
    cfg().with_flush_entries(50).with_merge_runs(3)
}

fn ev(n: u64) -> NewEvent {
    NewEvent::json("Happened", format!("{{\"n\":{n}}}"))
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn versions(events: &[annal::events::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

#[test]
fn expected_states_hold_as_kurrentdb_defines_them() {
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    let wrong = |r: Result<AppendResult, Error>| match r {
        Err(Error::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected a wrong expected version, got {other:?}"),
    };
    assert_eq!(wrong(store.append("a", ExpectedVersion::StreamExists, vec![ev(0)])), CurrentVersion::NoStream);
    assert_eq!(wrong(store.append("a", ExpectedVersion::Exact(0), vec![ev(0)])), CurrentVersion::NoStream);
    let r = store.append("a", ExpectedVersion::NoStream, vec![ev(0), ev(1)]).unwrap();
    assert_eq!(r, AppendResult { first_version: 0, next_expected_version: 1, position: 1 });
    assert_eq!(wrong(store.append("a", ExpectedVersion::NoStream, vec![ev(2)])), CurrentVersion::Version(1));
    assert_eq!(wrong(store.append("a", ExpectedVersion::Exact(0), vec![ev(2)])), CurrentVersion::Version(1));
    let r = store.append("a", ExpectedVersion::Exact(1), vec![ev(2)]).unwrap();
    assert_eq!(r, AppendResult { first_version: 2, next_expected_version: 2, position: 2 });
    store.append("a", ExpectedVersion::StreamExists, vec![ev(3)]).unwrap();
    let r = store.append("b", ExpectedVersion::Any, vec![ev(0)]).unwrap();
    assert_eq!((r.first_version, r.position), (0, 4));
    store.append("b", ExpectedVersion::Any, vec![ev(1)]).unwrap();
    // A refused append wrote nothing.
    assert_eq!(store.head_position(), 6);
    assert_eq!(versions(&store.read_stream("a", 0, Direction::Forward, 100).unwrap()), [0, 1, 2, 3]);
    assert_eq!(store.stream_version("b").unwrap(), CurrentVersion::Version(1));
    assert_eq!(store.stream_version("c").unwrap(), CurrentVersion::NoStream);
    let err = store.append("a", ExpectedVersion::Exact(7), vec![ev(9)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wrong expected version for stream \"a\": expected version 7, the stream is at version 3"
    );
    store.close().unwrap();
}

#[test]
fn events_read_back_whole_forward_backward_and_in_all() {
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    let e = NewEvent::json("OrderPlaced", r#"{"total":3}"#)
        .with_id(id(1))
        .with_json_metadata(r#"{"$correlationId":"c-1"}"#);
    store.append("order-1", ExpectedVersion::NoStream, vec![e]).unwrap();
    store.append("order-2", ExpectedVersion::NoStream, vec![NewEvent::binary("Blob", vec![0u8, 1, 255])]).unwrap();
    for n in 1..10 {
        store.append("order-1", ExpectedVersion::Exact(n - 1), vec![ev(n)]).unwrap();
    }
    let first = &store.read_stream("order-1", 0, Direction::Forward, 1).unwrap()[0];
    assert_eq!((first.stream.as_str(), first.version, first.position, first.id), ("order-1", 0, 0, id(1)));
    assert_eq!((first.event_type.as_str(), first.data.as_slice()), ("OrderPlaced", &br#"{"total":3}"#[..]));
    assert_eq!(first.metadata, br#"{"$correlationId":"c-1"}"#);
    assert_eq!(
        (first.data_type, first.metadata_type),
        (annal::events::ContentType::Json, annal::events::ContentType::Json)
    );
    assert!(first.timestamp_ms > 1_700_000_000_000);
    let blob = &store.read_stream("order-2", 0, Direction::Forward, 10).unwrap()[0];
    assert_eq!((blob.data.as_slice(), blob.data_type), (&[0u8, 1, 255][..], annal::events::ContentType::Binary));
    assert_eq!(blob.id.get_version_num(), 7, "an id annal draws is a version-7 UUID");

    assert_eq!(versions(&store.read_stream("order-1", 3, Direction::Forward, 4).unwrap()), [3, 4, 5, 6]);
    assert_eq!(versions(&store.read_stream("order-1", u64::MAX, Direction::Backward, 3).unwrap()), [9, 8, 7]);
    assert_eq!(versions(&store.read_stream("order-1", 2, Direction::Backward, 10).unwrap()), [2, 1, 0]);
    assert!(store.read_stream("order-1", 10, Direction::Forward, 10).unwrap().is_empty());
    assert!(store.read_stream("nobody", 0, Direction::Forward, 10).unwrap().is_empty());

    let all: Vec<u64> = store.read_all(0, Direction::Forward, 100).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(all, (0..11).collect::<Vec<_>>());
    let back: Vec<u64> = store.read_all(u64::MAX, Direction::Backward, 3).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(back, [10, 9, 8]);
    let back: Vec<u64> = store.read_all(1, Direction::Backward, 5).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(back, [1, 0]);
    assert_eq!(store.read_all(1, Direction::Forward, 1).unwrap()[0].stream, "order-2");
    store.close().unwrap();
}

#[test]
fn invalid_input_is_refused_with_what_and_where_and_writes_nothing() {
    let dir = common::fast_tempdir();
    let log =
        LogConfig::default().with_durability(Durability::Never).with_max_record_bytes(4096).with_segment_bytes(8192);
    let config = cfg().with_log_config(log);
    let store = EventStore::open(dir.path(), config).unwrap();
    assert!(matches!(store.append("", ExpectedVersion::Any, vec![ev(0)]), Err(Error::InvalidStreamId { .. })));
    let long = "s".repeat(1025);
    assert!(matches!(store.append(&long, ExpectedVersion::Any, vec![ev(0)]), Err(Error::InvalidStreamId { .. })));
    assert!(matches!(store.append("s", ExpectedVersion::Any, vec![]), Err(Error::InvalidEvent { .. })));
    match store.append("s", ExpectedVersion::Any, vec![ev(0), NewEvent::json("", "{}")]) {
        Err(Error::InvalidEvent { stream, index, .. }) => assert_eq!((stream.as_str(), index), ("s", 1)),
        other => panic!("{other:?}"),
    }
    match store.append("s", ExpectedVersion::Any, vec![ev(0), NewEvent::binary("Big", vec![0u8; 5000])]) {
        Err(Error::EventTooLarge { index, max, .. }) => assert_eq!((index, max), (1, 4096)),
        other => panic!("{other:?}"),
    }
    let twice = vec![
        StreamAppend::new("s", ExpectedVersion::Any, vec![ev(0)]),
        StreamAppend::new("s", ExpectedVersion::Any, vec![ev(1)]),
    ];
    assert!(matches!(store.append_to_streams(twice), Err(Error::InvalidStreamId { .. })));
    // Many events that fit one by one but not as one batch.
    let many: Vec<NewEvent> = (0..10).map(|_| NewEvent::binary("Mid", vec![0u8; 1000])).collect();
    assert!(matches!(store.append("s", ExpectedVersion::Any, many), Err(Error::AppendTooLarge { .. })));
    assert_eq!(store.head_position(), 0, "nothing was written");
    store.close().unwrap();
}

#[test]
fn a_retried_append_returns_the_original_result_even_after_a_restart() {
    let dir = common::fast_tempdir();
    let batch = || vec![ev(0).with_id(id(10)), ev(1).with_id(id(11))];
    let original = {
        let store = EventStore::open(dir.path(), cfg()).unwrap();
        store.append("other", ExpectedVersion::Any, vec![ev(0)]).unwrap();
        let original = store.append("s", ExpectedVersion::NoStream, batch()).unwrap();
        // The same append again, whatever the expected state: written once.
        for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any, ExpectedVersion::Exact(5)] {
            assert_eq!(store.append("s", expected, batch()).unwrap(), original);
        }
        assert_eq!(store.head_position(), 3);
        store.append("s", ExpectedVersion::Exact(1), vec![ev(2).with_id(id(12))]).unwrap();
        // Abandoned without a flush: the retry is found from the log replayed at open.
        store.abandon();
        original
    };
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(store.append("s", ExpectedVersion::NoStream, batch()).unwrap(), original);
    store.flush_index().unwrap();
    assert_eq!(store.append("s", ExpectedVersion::Any, batch()).unwrap(), original, "found in the index runs");
    assert_eq!(store.head_position(), 4);
    // The same ids in another stream are other events.
    let r = store.append("t", ExpectedVersion::NoStream, batch()).unwrap();
    assert_eq!((r.first_version, r.position), (0, 5));
    // Ids that only partly match an earlier append are refused.
    for partial in [
        vec![ev(0).with_id(id(10)), ev(9).with_id(id(99))],
        vec![ev(9).with_id(id(99)), ev(0).with_id(id(11))],
        vec![ev(0).with_id(id(11)), ev(0).with_id(id(10))],
        vec![ev(0).with_id(id(10)), ev(0).with_id(id(12))],
    ] {
        match store.append("s", ExpectedVersion::Any, partial) {
            Err(Error::IdempotencyConflict { stream, .. }) => assert_eq!(stream, "s"),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(store.head_position(), 6);
    // The ids are found in their streams, by version and position.
    assert_eq!(store.find_event("s", id(11)).unwrap(), Some((1, 2)));
    assert_eq!(store.find_event("s", id(12)).unwrap(), Some((2, 3)));
    assert_eq!(store.find_event("t", id(10)).unwrap(), Some((0, 4)));
    assert_eq!(store.find_event("other", id(10)).unwrap(), None, "another stream's id");
    assert_eq!(store.find_event("s", id(99)).unwrap(), None);
    assert_eq!(store.find_event("nothing", id(10)).unwrap(), None);
    store.close().unwrap();
}

#[test]
fn a_multi_stream_append_is_all_or_nothing() {
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    store.append("a", ExpectedVersion::NoStream, vec![ev(0)]).unwrap();
    let both = |expected_b| {
        vec![
            StreamAppend::new("a", ExpectedVersion::Exact(0), vec![ev(1), ev(2)]),
            StreamAppend::new("b", expected_b, vec![ev(0)]),
        ]
    };
    match store.append_to_streams(both(ExpectedVersion::StreamExists)) {
        Err(Error::WrongExpectedVersion { stream, .. }) => assert_eq!(stream, "b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.head_position(), 1, "neither stream was written");
    let results = store.append_to_streams(both(ExpectedVersion::NoStream)).unwrap();
    assert_eq!(
        results,
        [
            AppendResult { first_version: 1, next_expected_version: 2, position: 2 },
            AppendResult { first_version: 0, next_expected_version: 0, position: 3 }
        ]
    );
    assert_eq!(versions(&store.read_stream("a", 0, Direction::Forward, 10).unwrap()), [0, 1, 2]);
    assert_eq!(versions(&store.read_stream("b", 0, Direction::Forward, 10).unwrap()), [0]);
    // A multi-stream retry with ids returns every stream's original result.
    let with_ids = || {
        vec![
            StreamAppend::new("c", ExpectedVersion::NoStream, vec![ev(0).with_id(id(1))]),
            StreamAppend::new("d", ExpectedVersion::NoStream, vec![ev(0).with_id(id(2))]),
        ]
    };
    let first = store.append_to_streams(with_ids()).unwrap();
    assert_eq!(store.append_to_streams(with_ids()).unwrap(), first);
    let mixed = vec![
        StreamAppend::new("c", ExpectedVersion::Any, vec![ev(0).with_id(id(1))]),
        StreamAppend::new("e", ExpectedVersion::Any, vec![ev(0).with_id(id(3))]),
    ];
    assert!(matches!(store.append_to_streams(mixed), Err(Error::IdempotencyConflict { .. })));
    assert_eq!(store.head_position(), 6);
    store.close().unwrap();
}

/// Flushes and merges of the index, reopens that replay the log, and reads
/// that mix runs and memtables all give the same answers as a model.
#[test]
fn the_index_survives_flushes_merges_and_reopens() {
    let dir = common::fast_tempdir();
    let mut model: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    let mut position = 0;
    for round in 0..4 {
        let store = EventStore::open(dir.path(), small_index()).unwrap();
        for i in 0..300u64 {
            let stream = format!("s-{}", (i * 7 + round) % 13);
            let versions = model.entry(stream.clone()).or_default();
            let expected = match versions.len() {
                0 => ExpectedVersion::NoStream,
                n => ExpectedVersion::Exact(n as u64 - 1),
            };
            let n = 1 + i % 3;
            let events: Vec<NewEvent> = (0..n).map(ev).collect();
            let r = store.append(&stream, expected, events).unwrap();
            assert_eq!(r.first_version, versions.len() as u64);
            for _ in 0..n {
                versions.push(position);
                position += 1;
            }
        }
        let stats = store.index_stats();
        // About 12 flushes of 50 events per round: merged 3 at a time by size
        // tier, so fewer than 3 runs per tier, and a few tiers.
        for runs in [stats.stream_runs, stats.id_runs, stats.category_runs, stats.event_type_runs] {
            assert!((1..=8).contains(&runs), "{stats:?}");
        }
        for (stream, positions) in &model {
            let events = store.read_stream(stream, 0, Direction::Forward, usize::MAX).unwrap();
            assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), *positions, "{stream}");
            let back = store.read_stream(stream, u64::MAX, Direction::Backward, 5).unwrap();
            let expected: Vec<u64> = positions.iter().rev().take(5).copied().collect();
            assert_eq!(back.iter().map(|e| e.position).collect::<Vec<_>>(), expected, "{stream} backward");
            let mid = positions.len() as u64 / 2;
            let from_mid = store.read_stream(stream, mid, Direction::Forward, 7).unwrap();
            assert_eq!(versions(&from_mid), (mid..(mid + 7).min(positions.len() as u64)).collect::<Vec<_>>());
        }
        if round % 2 == 0 {
            store.close().unwrap();
        } else {
            store.abandon();
        }
        let reopened = EventStore::open(dir.path(), small_index()).unwrap();
        assert!(reopened.index_recovery().rebuilt.is_none());
        assert!(reopened.index_recovery().replayed < 100, "{:?}", reopened.index_recovery());
        drop(reopened);
    }
}

#[test]
fn a_damaged_or_lost_index_is_rebuilt_from_the_log() {
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    for i in 0..200u64 {
        store.append(&format!("s-{}", i % 5), ExpectedVersion::Any, vec![ev(i)]).unwrap();
    }
    store.close().unwrap();
    let index = dir.path().join("index");
    let run = std::fs::read_dir(&index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "run"))
        .expect("a run");
    let mut bytes = std::fs::read(&run).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&run, bytes).unwrap();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    let why = store.index_recovery().rebuilt.clone().expect("rebuilt");
    assert!(why.contains(&run.display().to_string()), "{why}");
    assert_eq!(store.index_recovery().replayed, 200);
    assert_eq!(store.read_stream("s-3", 0, Direction::Forward, 1000).unwrap().len(), 40);
    assert_eq!(store.stream_version("s-4").unwrap(), CurrentVersion::Version(39));
    store.close().unwrap();

    // events.meta lost: a new hash key, and indexes built again under it.
    std::fs::remove_file(dir.path().join("events.meta")).unwrap();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    assert_eq!(store.index_recovery().replayed, 200);
    assert_eq!(store.read_stream("s-3", 0, Direction::Forward, 1000).unwrap().len(), 40);
    store.close().unwrap();

    // An index covering more than the log holds (the log lost its tail).
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    assert!(store.index_recovery().rebuilt.as_deref().is_some_and(|w| w.contains("the global log ends at 0")));
    assert_eq!(store.stream_version("s-3").unwrap(), CurrentVersion::NoStream);
    store.close().unwrap();
}

/// Threads append to overlapping streams with exact expected versions: each
/// version of each stream has exactly one winner, and no event is lost or
/// written twice.
#[test]
fn concurrent_appenders_get_exactly_one_winner_per_version() {
    let dir = common::fast_tempdir();
    let store = Arc::new(EventStore::open(dir.path(), small_index()).unwrap());
    let threads = 4;
    let per_thread = 200;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut wins = 0u64;
                let mut conflicts = 0u64;
                let mut i = 0;
                while wins < per_thread {
                    let stream = format!("s-{}", i % 3);
                    i += 1;
                    let expected = match store.stream_version(&stream).unwrap() {
                        CurrentVersion::NoStream => ExpectedVersion::NoStream,
                        CurrentVersion::Version(v) => ExpectedVersion::Exact(v),
                    };
                    match store.append(&stream, expected, vec![NewEvent::json("T", format!("{{\"t\":{t}}}"))]) {
                        Ok(_) => wins += 1,
                        Err(Error::WrongExpectedVersion { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                conflicts
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: usize =
        (0..3).map(|s| store.read_stream(&format!("s-{s}"), 0, Direction::Forward, usize::MAX).unwrap().len()).sum();
    assert_eq!(total as u64, threads * per_thread);
    for s in 0..3 {
        let events = store.read_stream(&format!("s-{s}"), 0, Direction::Forward, usize::MAX).unwrap();
        assert_eq!(versions(&events), (0..events.len() as u64).collect::<Vec<_>>(), "dense versions");
        assert!(events.windows(2).all(|w| w[0].position < w[1].position), "versions grow with positions");
    }
    assert_eq!(store.head_position(), threads * per_thread);
    Arc::into_inner(store).unwrap().close().unwrap();
}

#[test]
fn under_always_an_append_is_durable_when_it_returns() {
    let dir = common::fast_tempdir();
    let config = EventStoreConfig::default().with_log_config(LogConfig::default().with_durability(Durability::Always));
    let store = EventStore::open(dir.path(), config).unwrap();
    store.append("s", ExpectedVersion::NoStream, vec![ev(0), ev(1)]).unwrap();
    assert_eq!(store.log().durable_offset(), 2);
    store.close().unwrap();
}

/// The events a subscription should deliver, from the store itself.
fn positions(events: &[annal::events::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// Reads `n` events from `sub`, failing if none comes for a long time (a
/// condition, not a duration: on a loaded machine it just waits longer).
fn take(sub: &mut annal::events::Subscription<'_>, n: usize) -> Vec<annal::events::RecordedEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match sub.next_timeout(std::time::Duration::from_secs(60)).unwrap() {
            Some(e) => out.push(e),
            None => panic!("no event for 60 s after {} of {n}", out.len()),
        }
    }
    out
}

/// Subscriptions of every kind catch up, then go live while another thread
/// appends: every matching event once, in order, none missed at the switch.
#[test]
fn subscriptions_catch_up_then_go_live_with_no_gap_and_no_duplicate() {
    use annal::events::{StartFrom, SubscriptionTarget};
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    let append = |i: u64| {
        let stream = format!("{}-{}", if i.is_multiple_of(3) { "cart" } else { "order" }, i % 5);
        let kind = if i.is_multiple_of(2) { "Even" } else { "Odd" };
        store.append(&stream, ExpectedVersion::Any, vec![NewEvent::json(kind, format!("{{\"i\":{i}}}"))]).unwrap();
    };
    for i in 0..300 {
        append(i);
    }
    let total = 900u64;
    let targets = [
        SubscriptionTarget::All,
        SubscriptionTarget::Stream("order-4".into()),
        SubscriptionTarget::Category("cart".into()),
        SubscriptionTarget::EventType("Odd".into()),
    ];
    std::thread::scope(|s| {
        let mut subs: Vec<_> =
            targets.iter().map(|t| store.subscribe(t.clone(), StartFrom::Beginning).unwrap()).collect();
        // Read part of the past before the appender starts.
        for sub in &mut subs {
            take(sub, 10);
        }
        let writer = s.spawn(|| {
            for i in 300..total {
                append(i);
            }
        });
        let expected_count = |t: &SubscriptionTarget| -> usize {
            (0..total)
                .filter(|i| match t {
                    SubscriptionTarget::All => true,
                    SubscriptionTarget::Stream(_) => i % 3 != 0 && i % 5 == 4,
                    SubscriptionTarget::Category(_) => i % 3 == 0,
                    SubscriptionTarget::EventType(_) => i % 2 == 1,
                })
                .count()
        };
        let mut got = Vec::new();
        for (t, sub) in targets.iter().zip(&mut subs) {
            got.push(take(sub, expected_count(t) - 10));
        }
        writer.join().unwrap();
        let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
        for (t, events) in targets.iter().zip(&got) {
            let want: Vec<u64> = all
                .iter()
                .filter(|e| match t {
                    SubscriptionTarget::All => true,
                    SubscriptionTarget::Stream(s) => e.stream == *s,
                    SubscriptionTarget::Category(c) => e.stream.starts_with(&format!("{c}-")),
                    SubscriptionTarget::EventType(k) => e.event_type == *k,
                })
                .map(|e| e.position)
                .skip(10)
                .collect();
            assert_eq!(positions(events), want, "{t:?}");
        }
        for (sub, events) in subs.iter_mut().zip(&got) {
            assert!(sub.next_timeout(std::time::Duration::ZERO).unwrap().is_none(), "nothing more");
            assert_eq!(sub.checkpoint(), events.last().unwrap().position + 1);
        }
    });
    store.close().unwrap();
}

#[test]
fn a_subscription_starts_at_the_end_or_at_a_checkpoint() {
    use annal::events::{StartFrom, SubscriptionTarget};
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    for i in 0..10 {
        store.append(&format!("s-{}", i % 2), ExpectedVersion::Any, vec![ev(i)]).unwrap();
    }
    let mut at_end = store.subscribe(SubscriptionTarget::All, StartFrom::End).unwrap();
    assert!(at_end.next_timeout(std::time::Duration::ZERO).unwrap().is_none());
    store.append("s-0", ExpectedVersion::Any, vec![ev(10)]).unwrap();
    assert_eq!(positions(&take(&mut at_end, 1)), [10]);

    let mut stream = store.subscribe(SubscriptionTarget::Stream("s-1".into()), StartFrom::Beginning).unwrap();
    assert_eq!(positions(&take(&mut stream, 2)), [1, 3]);
    let checkpoint = stream.checkpoint();
    assert_eq!(checkpoint, 4);
    let mut resumed =
        store.subscribe(SubscriptionTarget::Stream("s-1".into()), StartFrom::Position(checkpoint)).unwrap();
    assert_eq!(versions(&take(&mut resumed, 3)), [2, 3, 4]);
    assert_eq!(positions(&take(&mut stream, 3)), [5, 7, 9]);
    store.close().unwrap();
}

#[test]
fn a_durable_only_subscription_waits_for_the_sync() {
    use annal::events::{StartFrom, SubscriptionTarget};
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    store.append("s", ExpectedVersion::Any, vec![ev(0), ev(1)]).unwrap();
    let mut sub =
        store.subscribe(SubscriptionTarget::Category("s".into()), StartFrom::Beginning).unwrap().durable_only();
    assert!(sub.next_timeout(std::time::Duration::ZERO).unwrap().is_none(), "not durable yet under Never");
    store.log().sync().unwrap();
    assert_eq!(positions(&take(&mut sub, 2)), [0, 1]);
    store.close().unwrap();
}

/// Metadata (maximum count, truncate-before, maximum age) hides events from
/// every read: the stream's, `$all`, its category, its types, and
/// subscriptions; and it survives a reopen.
#[test]
fn stream_metadata_hides_events_from_every_read() {
    use annal::events::{StartFrom, StreamMetadata, SubscriptionTarget};
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    for i in 0..10 {
        store.append("keep-1", ExpectedVersion::Any, vec![ev(i)]).unwrap();
        store.append("other-1", ExpectedVersion::Any, vec![ev(i)]).unwrap();
    }
    let meta = StreamMetadata::default().with_max_count(3);
    let r = store.set_stream_metadata("keep-1", meta).unwrap();
    assert_eq!(r.position, 20, "the metadata event is in the global log");
    assert_eq!(store.stream_metadata("keep-1").unwrap(), meta);
    assert_eq!(store.stream_metadata("other-1").unwrap(), StreamMetadata::default());
    let check = |store: &EventStore, want: &[u64]| {
        assert_eq!(versions(&store.read_stream("keep-1", 0, Direction::Forward, 100).unwrap()), want);
        let mut back = want.to_vec();
        back.reverse();
        assert_eq!(versions(&store.read_stream("keep-1", u64::MAX, Direction::Backward, 100).unwrap()), back);
        let of_stream = |events: Vec<annal::events::RecordedEvent>| -> Vec<u64> {
            events.into_iter().filter(|e| e.stream == "keep-1").map(|e| e.version).collect()
        };
        assert_eq!(of_stream(store.read_all(0, Direction::Forward, 1000).unwrap()), want, "$all");
        assert_eq!(of_stream(store.read_category("keep", 0, Direction::Forward, 1000).unwrap()), want, "category");
        assert_eq!(of_stream(store.read_event_type("Happened", 0, Direction::Forward, 1000).unwrap()), want, "type");
        let mut sub = store.subscribe(SubscriptionTarget::Category("keep".into()), StartFrom::Beginning).unwrap();
        assert_eq!(versions(&take(&mut sub, want.len())), want, "subscription");
        assert!(sub.next_timeout(std::time::Duration::ZERO).unwrap().is_none());
        assert_eq!(store.read_stream("other-1", 0, Direction::Forward, 100).unwrap().len(), 10);
    };
    check(&store, &[7, 8, 9]);
    store.set_stream_metadata("keep-1", StreamMetadata::default().with_truncate_before(5)).unwrap();
    check(&store, &[5, 6, 7, 8, 9]);
    store.close().unwrap();
    let store = EventStore::open(dir.path(), small_index()).unwrap();
    check(&store, &[5, 6, 7, 8, 9]);
    // Maximum age: wait until the clock is past the events' timestamps.
    let newest = store.read_all(u64::MAX, Direction::Backward, 1).unwrap()[0].timestamp_ms;
    store
        .set_stream_metadata("keep-1", StreamMetadata::default().with_max_age(std::time::Duration::from_millis(1)))
        .unwrap();
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 <= newest + 1 {
        std::thread::yield_now();
    }
    check(&store, &[]);
    store.append("keep-1", ExpectedVersion::Exact(9), vec![ev(10)]).unwrap();
    assert_eq!(
        versions(&store.read_stream("keep-1", 0, Direction::Forward, 100).unwrap()),
        [10],
        "a new event is young"
    );
    store.close().unwrap();
}

#[test]
fn a_soft_deleted_stream_reads_as_not_found_and_continues_its_versions() {
    use annal::events::DeleteMode;
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    store.append("order-1", ExpectedVersion::NoStream, vec![ev(0), ev(1), ev(2)]).unwrap();
    store.append("order-2", ExpectedVersion::NoStream, vec![ev(0)]).unwrap();
    match store.delete_stream("order-1", ExpectedVersion::Exact(1), DeleteMode::Soft) {
        Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, CurrentVersion::Version(2)),
        other => panic!("{other:?}"),
    }
    store.delete_stream("order-1", ExpectedVersion::Exact(2), DeleteMode::Soft).unwrap();
    assert!(store.read_stream("order-1", 0, Direction::Forward, 10).unwrap().is_empty());
    assert_eq!(store.stream_version("order-1").unwrap(), CurrentVersion::NoStream);
    let in_all: Vec<String> =
        store.read_all(0, Direction::Forward, 100).unwrap().into_iter().map(|e| e.stream).collect();
    assert_eq!(in_all, ["order-2", "$$order-1"], "its events are gone from $all; the deletion is there");
    assert_eq!(versions(&store.read_category("order", 0, Direction::Forward, 10).unwrap()), [0]);
    // Appending again continues the versions.
    let r = store.append("order-1", ExpectedVersion::NoStream, vec![ev(3)]).unwrap();
    assert_eq!((r.first_version, r.next_expected_version), (3, 3));
    assert_eq!(versions(&store.read_stream("order-1", 0, Direction::Forward, 10).unwrap()), [3]);
    assert_eq!(store.stream_version("order-1").unwrap(), CurrentVersion::Version(3));
    store.close().unwrap();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(versions(&store.read_stream("order-1", 0, Direction::Forward, 10).unwrap()), [3]);
    store.close().unwrap();
}

#[test]
fn a_hard_deleted_stream_is_gone_for_ever() {
    use annal::events::{DeleteMode, TOMBSTONE_EVENT_TYPE};
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    store.append("acct-1", ExpectedVersion::NoStream, vec![ev(0), ev(1)]).unwrap();
    store.append("acct-2", ExpectedVersion::NoStream, vec![ev(0)]).unwrap();
    let r = store.delete_stream("acct-1", ExpectedVersion::StreamExists, DeleteMode::Hard).unwrap();
    assert_eq!(r.position, 3);
    for _ in 0..2 {
        let deleted = |r: Result<_, Error>| matches!(r, Err(Error::StreamDeleted { ref stream }) if stream == "acct-1");
        assert!(deleted(store.read_stream("acct-1", 0, Direction::Forward, 10).map(|_| ())));
        assert!(deleted(store.stream_version("acct-1").map(|_| ())));
        assert!(deleted(store.append("acct-1", ExpectedVersion::Any, vec![ev(2)]).map(|_| ())));
        assert!(deleted(store.delete_stream("acct-1", ExpectedVersion::Any, DeleteMode::Soft).map(|_| ())));
        assert!(deleted(store.delete_stream("acct-1", ExpectedVersion::Any, DeleteMode::Hard).map(|_| ())));
        // In $all: only its tombstone.
        let all = store.read_all(0, Direction::Forward, 100).unwrap();
        let seen: Vec<(&str, &str)> = all.iter().map(|e| (e.stream.as_str(), e.event_type.as_str())).collect();
        assert_eq!(seen, [("acct-2", "Happened"), ("acct-1", TOMBSTONE_EVENT_TYPE)]);
        assert_eq!(versions(&store.read_category("acct", 0, Direction::Forward, 10).unwrap()), [0, u64::MAX]);
        assert_eq!(store.head_position(), 4);
        store.flush_index().unwrap();
    }
    store.close().unwrap();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    assert!(matches!(store.append("acct-1", ExpectedVersion::Any, vec![ev(2)]), Err(Error::StreamDeleted { .. })));
    assert!(matches!(store.append("$$acct-2", ExpectedVersion::Any, vec![ev(0)]), Err(Error::InvalidStreamId { .. })));
    store.close().unwrap();
}

/// Scavenging removes exactly the events no read returns (and superseded
/// metadata events): every read gives the same answer before and after, the
/// global log shrinks, and so it stays across a reopen.
#[test]
fn scavenging_removes_only_what_no_read_returns() {
    use annal::events::{DeleteMode, StreamMetadata};
    let dir = common::fast_tempdir();
    let config = EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(16 << 10).with_durability(Durability::Never));
    let store = EventStore::open(dir.path(), config.clone()).unwrap();
    let big = |i: u64| NewEvent::binary("Big", vec![i as u8; 200]);
    for i in 0..300u64 {
        let stream = ["gone-1", "soft-1", "capped-1", "kept-1"][(i % 4) as usize];
        store.append(stream, ExpectedVersion::Any, vec![big(i)]).unwrap();
    }
    store.delete_stream("gone-1", ExpectedVersion::Any, DeleteMode::Hard).unwrap();
    store.delete_stream("soft-1", ExpectedVersion::Any, DeleteMode::Soft).unwrap();
    store.set_stream_metadata("capped-1", StreamMetadata::default().with_max_count(50)).unwrap();
    store.set_stream_metadata("capped-1", StreamMetadata::default().with_max_count(5)).unwrap();
    store.append("soft-1", ExpectedVersion::NoStream, vec![big(0)]).unwrap();
    store.log().roll().unwrap();
    let reads = |store: &EventStore| {
        let all = store.read_all(0, Direction::Forward, usize::MAX).unwrap();
        let streams: Vec<Vec<u64>> = ["soft-1", "capped-1", "kept-1"]
            .iter()
            .map(|s| positions(&store.read_stream(s, 0, Direction::Forward, usize::MAX).unwrap()))
            .collect();
        let category = positions(&store.read_category("capped", u64::MAX, Direction::Backward, usize::MAX).unwrap());
        let of_type = positions(&store.read_event_type("Big", u64::MAX, Direction::Backward, usize::MAX).unwrap());
        (positions(&all), streams, category, of_type, store.stream_metadata("capped-1").unwrap())
    };
    let before = reads(&store);
    let disk = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir.join("log")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
    };
    let mut progress = 0;
    let outcome = store.scavenge_with_progress(&mut |_| progress += 1).unwrap();
    assert_eq!(progress, outcome.segments_examined);
    assert_eq!(progress, store.log().segments().len() - 1, "every sealed segment");
    // 75 of gone-1, 75 of soft-1 (its last event, which a scavenge keeps for
    // its version, is the one appended after the delete), 70 of capped-1, and
    // the first metadata event.
    assert_eq!(outcome.events_removed, 75 + 75 + 70 + 1, "{outcome:?}");
    assert_eq!(reads(&store), before, "every read gives what it gave before");
    assert!(matches!(store.read_stream("gone-1", 0, Direction::Forward, 1), Err(Error::StreamDeleted { .. })));
    let second = store.scavenge().unwrap();
    assert_eq!(second.events_removed, 0, "nothing more to remove");
    store.close().unwrap();
    let size = disk(dir.path());
    let store = EventStore::open(dir.path(), config).unwrap();
    assert_eq!(reads(&store), before);
    assert_eq!(store.stream_version("soft-1").unwrap(), CurrentVersion::Version(75));
    // Appends go on after the gaps.
    let r = store.append("kept-1", ExpectedVersion::Exact(74), vec![ev(0)]).unwrap();
    assert_eq!(r.first_version, 75);
    store.close().unwrap();
    assert!(size < 300 * 200, "the global log shrank to {size} bytes");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The stream as of a time: the events appended at or before it, found
/// through the global log's time index (waits on the clock, not a duration).
#[test]
fn a_stream_reads_as_of_a_time() {
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    let mut times = Vec::new();
    for phase in 0..3u64 {
        for i in 0..4 {
            store.append("acct-1", ExpectedVersion::Any, vec![ev(phase * 10 + i)]).unwrap();
            store.append("acct-2", ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
        let last = store.read_all(u64::MAX, Direction::Backward, 1).unwrap()[0].timestamp_ms;
        times.push(last);
        while now_ms() <= last {
            std::thread::yield_now();
        }
    }
    assert_eq!(versions(&store.read_stream_as_of("acct-1", 0, times[0], 100).unwrap()), [0, 1, 2, 3]);
    assert_eq!(versions(&store.read_stream_as_of("acct-1", 2, times[1], 100).unwrap()), [2, 3, 4, 5, 6, 7]);
    assert_eq!(versions(&store.read_stream_as_of("acct-1", 0, times[2], 5).unwrap()), [0, 1, 2, 3, 4]);
    assert!(store.read_stream_as_of("acct-1", 0, times[0] - 10_000, 100).unwrap().is_empty());
    assert_eq!(store.read_stream_as_of("acct-1", 0, i64::MAX, 100).unwrap().len(), 12);
    let mut seen = Vec::new();
    let n = store
        .read_stream_as_of_with("acct-1", 1, times[1], 100, |e| {
            seen.push((e.version, e.data.to_vec()));
            Ok::<(), annal::events::Error>(())
        })
        .unwrap();
    let want: Vec<(u64, Vec<u8>)> =
        store.read_stream_as_of("acct-1", 1, times[1], 100).unwrap().into_iter().map(|e| (e.version, e.data)).collect();
    assert_eq!((n, seen), (7, want));
    store.close().unwrap();
}

/// A visitor's own error ends the read at once and comes back as it was.
#[test]
fn a_visitor_reads_a_stream_in_place_and_its_error_ends_the_read() {
    #[derive(Debug)]
    enum AppError {
        Store(annal::events::Error),
        Refused(u64),
    }
    impl From<annal::events::Error> for AppError {
        fn from(e: annal::events::Error) -> AppError {
            AppError::Store(e)
        }
    }
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    for i in 0..10 {
        store.append("acct-1", ExpectedVersion::Any, vec![ev(i)]).unwrap();
        store.append("acct-2", ExpectedVersion::Any, vec![ev(100 + i)]).unwrap();
    }
    for direction in [Direction::Forward, Direction::Backward] {
        let from = if direction == Direction::Forward { 0 } else { u64::MAX };
        let mut seen = Vec::new();
        let got = store.read_stream_with("acct-1", from, direction, 100, |e| {
            if e.version == 4 {
                return Err(AppError::Refused(e.version));
            }
            seen.push(e.version);
            Ok(())
        });
        assert!(matches!(got, Err(AppError::Refused(4))), "{got:?}");
        let want: Vec<u64> = match direction {
            Direction::Forward => (0..4).collect(),
            Direction::Backward => (5..10).rev().collect(),
        };
        assert_eq!(seen, want, "{direction:?}");
    }
    let got = store.read_stream_with("", 0, Direction::Forward, 1, |_| Ok::<(), AppError>(()));
    assert!(matches!(got, Err(AppError::Store(annal::events::Error::InvalidStreamId { .. }))), "{got:?}");
    store.close().unwrap();
}

#[test]
fn the_durable_position_follows_the_syncs() {
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    store.append("s", ExpectedVersion::Any, vec![ev(0), ev(1)]).unwrap();
    assert_eq!((store.head_position(), store.durable_position()), (2, 0), "Never: not durable yet");
    store.log().sync().unwrap();
    assert_eq!(store.durable_position(), 2);
    store.close().unwrap();
}

#[test]
fn a_subscription_filters_by_stream_or_type_prefix() {
    use annal::events::{StartFrom, SubscriptionFilter, SubscriptionTarget};
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    for (stream, kind) in
        [("order-1", "OrderPlaced"), ("order-10", "OrderPaid"), ("cart-1", "CartOpened"), ("order-2", "OrderPlaced")]
    {
        store.append(stream, ExpectedVersion::Any, vec![NewEvent::json(kind, "{}")]).unwrap();
    }
    let by_stream = store
        .subscribe(SubscriptionTarget::All, StartFrom::Beginning)
        .unwrap()
        .with_filter(SubscriptionFilter::StreamPrefix("order-1".into()));
    let mut by_stream = by_stream;
    assert_eq!(positions(&take(&mut by_stream, 2)), [0, 1]);
    assert!(by_stream.next_timeout(std::time::Duration::ZERO).unwrap().is_none());
    let mut by_type = store
        .subscribe(SubscriptionTarget::Category("order".into()), StartFrom::Beginning)
        .unwrap()
        .with_filter(SubscriptionFilter::EventTypePrefix("OrderPl".into()));
    assert_eq!(positions(&take(&mut by_type, 2)), [0, 3]);
    store.close().unwrap();
}

#[test]
fn the_store_says_its_durability_and_a_subscription_its_next_position() {
    use annal::events::{StartFrom, SubscriptionTarget};
    use std::time::Duration;
    let dir = common::fast_tempdir();
    let always = EventStoreConfig::default().with_log_config(LogConfig::default().with_durability(Durability::Always));
    let store = EventStore::open(dir.path(), always).unwrap();
    assert_eq!(store.durability(), Durability::Always);
    // Events of another category after the last matching one: the
    // checkpoint stays after what was delivered, the next position moves on.
    store.append("a-1", ExpectedVersion::Any, vec![ev(0)]).unwrap();
    store.append("b-1", ExpectedVersion::Any, vec![ev(1), ev(2)]).unwrap();
    let mut sub = store.subscribe(SubscriptionTarget::Category("a".into()), StartFrom::Beginning).unwrap();
    assert_eq!(sub.next_position(), 0);
    assert_eq!(sub.next_timeout(Duration::ZERO).unwrap().map(|e| e.position), Some(0));
    assert!(sub.next_timeout(Duration::ZERO).unwrap().is_none());
    assert_eq!((sub.checkpoint(), sub.next_position()), (1, 3));
    // Resuming from the next position does not look at b-1's events again.
    let mut resumed =
        store.subscribe(SubscriptionTarget::Category("a".into()), StartFrom::Position(sub.next_position())).unwrap();
    let p = store.append("a-1", ExpectedVersion::Any, vec![ev(3)]).unwrap().position;
    assert_eq!(resumed.next_timeout(Duration::ZERO).unwrap().map(|e| e.position), Some(p));
    store.close().unwrap();
}

#[test]
fn a_wait_for_a_position_ends_with_the_event_its_durability_or_an_interruption() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;
    let dir = common::fast_tempdir();
    let store = EventStore::open(dir.path(), cfg()).unwrap();
    assert_eq!(store.durability(), Durability::Never);
    let never = || false;
    assert!(!store.wait_for_position(0, false, Duration::ZERO, &never));
    store.append("a", ExpectedVersion::Any, vec![ev(0)]).unwrap();
    assert!(store.wait_for_position(0, false, Duration::ZERO, &never));
    assert!(!store.wait_for_position(0, true, Duration::ZERO, &never), "not durable before a sync");
    let long = Duration::from_secs(60);
    // An interruption: the waiting thread checks its condition when it
    // starts (counted), then sleeps until woken.
    let (stop, checks) = (AtomicBool::new(false), AtomicUsize::new(0));
    let interrupted = || {
        checks.fetch_add(1, Ordering::SeqCst);
        stop.load(Ordering::SeqCst)
    };
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = std::time::Instant::now();
            (store.wait_for_position(5, false, long, &interrupted), started.elapsed())
        });
        common::await_workers(&checks, 1);
        stop.store(true, Ordering::SeqCst);
        store.wake_waiters();
        let (found, took) = waiting.join().unwrap();
        assert!(!found && took < long / 2, "interrupted ({took:?})");
    });
    // A sync makes the event durable: a durable wait ends.
    checks.store(0, Ordering::SeqCst);
    let counted = || checks.fetch_add(1, Ordering::SeqCst) == usize::MAX;
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| store.wait_for_position(0, true, long, &counted));
        common::await_workers(&checks, 1);
        store.log().sync().unwrap();
        assert!(waiting.join().unwrap());
    });
    store.close().unwrap();
}
