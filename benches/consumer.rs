//! Consumer groups' workloads (docs/BENCHMARKS.md, "Consumer groups"):
//! offset commits per second (one partition per commit and 100, durable and
//! not), consume-and-commit throughput for 1 and 8 members over 16
//! partitions, the time a rebalance of 100 members takes, and persistent
//! subscriptions' throughput with the round-robin and pinned strategies.
//! Each workload runs `ROUNDS` times (default 3) in a fresh directory; the
//! median and the spread are printed, then one JSON line per workload.
//!
//! `cargo bench --bench consumer` (`TMPDIR` for the directories).

#[path = "support/rounds.rs"]
mod rounds;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rounds::{Results, env};

use annal::consumer::persistent::{GroupSettings, GroupTarget, PersistentSubscriptions, Strategy};
use annal::consumer::{
    Consumer, ConsumerConfig, ConsumerGroups, GroupsConfig, MemberConfig, OffsetCommit, OffsetReset,
};
use annal::events::{EventStore, EventStoreConfig, ExpectedVersion, NewEvent};
use annal::{Durability, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig};

fn store(durability: Durability, partitions: u32) -> (tempfile::TempDir, Arc<TopicStore>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = TopicStoreConfig::default().with_log_config(LogConfig::default().with_durability(durability));
    let store = Arc::new(TopicStore::open(dir.path(), config).expect("open"));
    store.create_topic("orders", TopicConfig::default().with_partitions(partitions)).expect("topic");
    (dir, store)
}

/// Commits per second of `per_commit` partitions each (one record each in
/// 100 partitions, offsets moving forward).
fn commits(durability: Durability, per_commit: u32, calls: u64) -> f64 {
    let (_dir, store) = store(durability, 100);
    let topic = store.topic("orders").expect("topic");
    let batch = vec![Record::new(b"x"); calls as usize];
    for p in 0..100 {
        topic.partition(p).expect("partition").append_batch(&batch).expect("append");
    }
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).expect("groups");
    let start = Instant::now();
    for i in 1..=calls {
        let offsets: Vec<OffsetCommit> =
            (0..per_commit).map(|k| OffsetCommit::new("orders", (i as u32 + k) % 100, i)).collect();
        groups.commit("billing", &offsets).expect("commit");
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

/// Records per second consumed and committed (after each poll) by `members`
/// consumers of one group, each in its own thread, over 16 partitions
/// holding `records` records in all; under `Always`, each commit is an
/// fsync and the consumers read only durable records.
fn consume(durability: Durability, members: usize, records: u64) -> f64 {
    let (_dir, store) = store(durability, 16);
    let topic = store.topic("orders").expect("topic");
    let value = [7u8; 100];
    let batch = vec![Record::new(&value); (records / 16) as usize];
    for p in 0..16 {
        topic.partition(p).expect("partition").append_batch(&batch).expect("append");
    }
    let records = records / 16 * 16;
    let groups = Arc::new(ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).expect("groups"));
    let consumed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..members {
            let (groups, consumed) = (Arc::clone(&groups), Arc::clone(&consumed));
            scope.spawn(move || {
                let config = ConsumerConfig::new("g", ["orders"])
                    .with_offset_reset(OffsetReset::Earliest)
                    .with_auto_commit(None);
                let mut c = Consumer::new(groups, config).expect("consumer");
                while consumed.load(Ordering::Relaxed) < records {
                    let n = c.poll(500, Duration::from_millis(5)).expect("poll").len() as u64;
                    if n > 0 {
                        c.commit().expect("commit");
                        consumed.fetch_add(n, Ordering::Relaxed);
                    }
                }
                c.close().expect("close");
            });
        }
    });
    records as f64 / start.elapsed().as_secs_f64()
}

/// Milliseconds from a 101st member joining a group of 100 over 200
/// partitions to every partition having its owner again (every member
/// heartbeating and releasing in turn, as their polls would).
fn rebalance(members: usize) -> f64 {
    let (_dir, store) = store(Durability::Never, 200);
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).expect("groups");
    let config = MemberConfig::new(["orders"]);
    let mut ids: Vec<String> = (0..members).map(|_| groups.join("g", &config).expect("join")).collect();
    let settle = |ids: &[String]| loop {
        let mut owned = 0;
        let mut moved = false;
        for id in ids {
            let beat = groups.heartbeat("g", id).expect("heartbeat");
            if !beat.revoke.is_empty() {
                groups.release("g", id, &beat.revoke).expect("release");
                moved = true;
            }
            owned += beat.owned.len() - beat.revoke.len();
        }
        if owned == 200 && !moved {
            break;
        }
    };
    settle(&ids);
    let start = Instant::now();
    ids.push(groups.join("g", &config).expect("join"));
    settle(&ids);
    start.elapsed().as_secs_f64() * 1e3
}

/// Events per second delivered and acknowledged by 4 members of a
/// persistent subscription over a category of 100 streams.
fn persistent(strategy: Strategy, events: u64) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = EventStoreConfig::default().log_config().clone().with_durability(Durability::Never);
    let store = Arc::new(EventStore::open(dir.path(), EventStoreConfig::default().with_log_config(log)).expect("open"));
    for i in 0..events {
        let event = NewEvent::json("OrderPlaced", r#"{"total":30}"#);
        store.append(&format!("order-{}", i % 100), ExpectedVersion::Any, vec![event]).expect("append");
    }
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = GroupSettings::new(GroupTarget::Category("order".into())).with_strategy(strategy);
    subs.create("billing", settings).expect("create");
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for m in 0..4 {
            let member = subs.connect("billing", &format!("m{m}")).expect("connect");
            let acked = Arc::clone(&acked);
            scope.spawn(move || {
                while acked.load(Ordering::Relaxed) < events {
                    if let Some(d) = member.next(Duration::from_millis(5)).expect("next") {
                        member.ack(&d).expect("ack");
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
                member.close().expect("close");
            });
        }
    });
    events as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rounds = env("ROUNDS", 3);
    let mut results = Results::default();
    let mut record = |name: String, values: Vec<f64>, unit: &'static str| results.record(62, name, values, unit);
    let run = |f: &dyn Fn() -> f64| (0..rounds).map(|_| f()).collect::<Vec<_>>();
    for (durability, name, calls) in
        [(Durability::Never, "not durable", 20_000), (Durability::Always, "durable", 2_000)]
    {
        for per in [1, 100] {
            record(
                format!("offset commits, {per} partition(s) each, {name}"),
                run(&|| commits(durability, per, calls)),
                "commits/s",
            );
        }
    }
    for (durability, name) in [(Durability::Never, "not durable"), (Durability::Always, "durable")] {
        for members in [1, 8] {
            record(
                format!("consume and commit, {members} member(s), 16 partitions, {name}"),
                run(&|| consume(durability, members, 400_000)),
                "records/s",
            );
        }
    }
    record("rebalance: a 101st member joins 100 (200 partitions)".into(), run(&|| rebalance(100)), "ms");
    for (strategy, name) in [(Strategy::RoundRobin, "round robin"), (Strategy::Pinned, "pinned")] {
        record(
            format!("persistent subscription, 4 members, {name}"),
            run(&|| persistent(strategy, 100_000)),
            "events/s",
        );
    }
    results.print_json();
}
