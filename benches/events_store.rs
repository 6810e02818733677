//! The event store's workloads (docs/BENCHMARKS.md, "Event store"): appends
//! in batches and one at a time, with and without fsync, from 1 and 8
//! writers; reads of a stream of 100 events; a subscription catching up; and
//! rebuilding the indexes from the global log. Each workload runs `ROUNDS`
//! times (default 3) in a fresh directory; the median and the spread are
//! printed, with one JSON line per workload at the end.
//!
//! `cargo bench --bench events_store` (sizes: `EVENTS` events for the batch
//! workloads, default 1,000,000; `STREAMS` streams they go to, default
//! 100,000; `READ_STREAMS` streams of 100 events in the read store, default
//! 20,000, among `ALL_STREAMS` streams in all (the others of one event),
//! default 1,000,000; `TMPDIR` for the directory).

#[path = "support/rounds.rs"]
mod rounds;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rounds::{Results, env};

use annal::Durability;
use annal::events::{
    Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent, StartFrom, SubscriptionTarget,
};

fn config(durability: Durability) -> EventStoreConfig {
    let default = EventStoreConfig::default();
    let log = default.log_config().clone().with_durability(durability);
    default.with_log_config(log)
}

fn event() -> NewEvent {
    NewEvent::json("OrderPlaced", &br#"{"total":30,"currency":"EUR","lines":3}"#[..])
}

fn stream_names(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("order-{i}")).collect()
}

/// Appends `events` events in calls of `batch` to `streams` streams round
/// robin, from `writers` threads; events per second.
fn appends(durability: Durability, events: u64, batch: u64, streams: u64, writers: u64) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(EventStore::open(dir.path(), config(durability)).expect("open"));
    let names = Arc::new(stream_names(streams));
    let calls = events / batch / writers;
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let (store, names) = (Arc::clone(&store), Arc::clone(&names));
            s.spawn(move || {
                for i in 0..calls {
                    let stream = &names[((i * writers + w) % names.len() as u64) as usize];
                    let batch: Vec<NewEvent> = (0..batch).map(|_| event()).collect();
                    store.append(stream, ExpectedVersion::Any, batch).expect("append");
                }
            });
        }
    });
    let rate = (calls * writers * batch) as f64 / start.elapsed().as_secs_f64();
    Arc::into_inner(store).expect("the only handle").close().expect("close");
    rate
}

/// A store of `streams` streams of 100 events each, written round robin (a
/// stream's events spread over the whole log), and `singles` streams of one
/// event spread between the rounds, flushed.
fn store_of_streams(streams: u64, singles: u64) -> (tempfile::TempDir, EventStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = EventStore::open(dir.path(), config(Durability::Never)).expect("open");
    let names = stream_names(streams);
    let mut single = 0;
    for round in 0..100 {
        for name in &names {
            store.append(name, ExpectedVersion::Any, vec![event()]).expect("append");
        }
        while single < singles * (round + 1) / 100 {
            store.append(&format!("cart-{single}"), ExpectedVersion::NoStream, vec![event()]).expect("append");
            single += 1;
        }
    }
    store.flush_index().expect("flush");
    (dir, store)
}

/// Latencies of reading whole streams of 100 events: p50 and p99, in µs;
/// copied out (`read_stream`) or visited in place (`read_stream_with`).
fn stream_reads(store: &EventStore, streams: u64, reads: u64, in_place: bool) -> (f64, f64) {
    let mut lat = Vec::with_capacity(reads as usize);
    for i in 0..reads {
        let name = format!("order-{}", (i * 7919) % streams);
        let t = Instant::now();
        let n = if in_place {
            let mut bytes = 0;
            let n = store
                .read_stream_with(&name, 0, Direction::Forward, 100, |e| {
                    bytes += e.data.len();
                    Ok::<(), annal::events::Error>(())
                })
                .expect("read");
            std::hint::black_box(bytes);
            n
        } else {
            store.read_stream(&name, 0, Direction::Forward, 100).expect("read").len()
        };
        lat.push(t.elapsed());
        assert_eq!(n, 100);
    }
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// A subscription to `target` from the beginning, catching up over the
/// store; events per second.
fn catch_up(store: &EventStore, target: SubscriptionTarget, expected: u64) -> f64 {
    let mut sub = store.subscribe(target, StartFrom::Beginning).expect("subscribe");
    let start = Instant::now();
    let mut n = 0;
    while n < expected {
        sub.next_timeout(Duration::from_secs(10)).expect("next").expect("an event");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Reopens the store in `dir` without its index: seconds to rebuild it.
fn rebuild(dir: &std::path::Path) -> f64 {
    std::fs::remove_dir_all(dir.join(annal::events::INDEX_DIR_NAME)).expect("remove the index");
    let start = Instant::now();
    let store = EventStore::open(dir, config(Durability::Never)).expect("open");
    let took = start.elapsed().as_secs_f64();
    store.close().expect("close");
    took
}

fn main() {
    let rounds = env("ROUNDS", 3);
    let events = env("EVENTS", 1_000_000);
    let streams = env("STREAMS", 100_000);
    let mut results = Results::default();
    let mut record = |name: String, values: Vec<f64>, unit: &'static str| results.record(58, name, values, unit);
    let run = |f: &dyn Fn() -> f64| (0..rounds).map(|_| f()).collect::<Vec<_>>();

    record(
        format!("append, batches of 10 to {streams} streams, no fsync"),
        run(&|| appends(Durability::Never, events, 10, streams, 1)),
        "events/s",
    );
    record(
        format!("append, 1 event per call to {streams} streams, no fsync"),
        run(&|| appends(Durability::Never, events / 5, 1, streams, 1)),
        "events/s",
    );
    for writers in [1, 8] {
        record(
            format!("append, 1 event per call, durable (Always), {writers} writer(s)"),
            run(&|| appends(Durability::Always, 5_000 * writers, 1, streams, writers)),
            "events/s",
        );
    }
    record(
        "append, batches of 10, durable (Always), 8 writers".to_owned(),
        run(&|| appends(Durability::Always, 200_000, 10, streams, 8)),
        "events/s",
    );

    let read_streams = env("READ_STREAMS", 20_000);
    let all_streams = env("ALL_STREAMS", 1_000_000).max(read_streams);
    let (dir, store) = store_of_streams(read_streams, all_streams - read_streams);
    for in_place in [false, true] {
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (a, b) = stream_reads(&store, read_streams, 20_000, in_place);
            p50.push(a);
            p99.push(b);
        }
        let how = if in_place { "read_stream_with" } else { "read_stream" };
        record(format!("read a stream of 100 events, {all_streams} streams, {how}, p50"), p50, "us");
        record(format!("read a stream of 100 events, {all_streams} streams, {how}, p99"), p99, "us");
    }
    let total = read_streams * 100 + (all_streams - read_streams);
    record(
        format!("subscription to $all catching up over {total} events"),
        run(&|| catch_up(&store, SubscriptionTarget::All, total)),
        "events/s",
    );
    record(
        format!("subscription to a category catching up ({} events)", read_streams * 100),
        run(&|| catch_up(&store, SubscriptionTarget::Category("order".into()), read_streams * 100)),
        "events/s",
    );
    store.close().expect("close");
    record(format!("rebuild the indexes of {total} events"), run(&|| rebuild(dir.path())), "s");

    results.print_json();
}
