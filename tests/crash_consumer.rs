//! SIGKILL of a consume-and-commit loop: a child process sends records to a
//! topic of three partitions, polls them as the only member of a consumer
//! group and commits its positions after each poll, reporting each commit as
//! it starts and once it returned; the parent kills it at a random moment,
//! reopens the store and checks the group's committed offsets:
//!
//! - they are one commit's, whole (the three partitions of the same commit):
//!   the last one acknowledged, or the one in flight at the kill;
//! - none is past its partition's end;
//! - the next child resumes from them (its first poll starts there), so
//!   offsets never move backward from one child to the next.
//!
//! The child is this test binary itself, re-executed to run only the ignored
//! `child_consumer` test. `Durability::Always`, so that the consumer reads
//! only durable records and a commit is durable when it returns.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal::consumer::{Consumer, ConsumerConfig, ConsumerGroups, GroupsConfig, OffsetReset, TopicPartition};
use annal::{Durability, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig};
use common::Rng;
use common::child::Child;

const ENV_DIR: &str = "ANNAL_CONSUMER_CRASH_DIR";
const MARK: &str = "annal-consumer-child:";
const PARTITIONS: u32 = 3;

fn config() -> TopicStoreConfig {
    TopicStoreConfig::default().with_log_config(LogConfig::default().with_durability(Durability::Always))
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

type Offsets = [u64; PARTITIONS as usize];

fn show(o: &Offsets) -> String {
    o.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn parse(s: &str) -> Offsets {
    let v: Vec<u64> = s.split(',').map(|x| x.parse().unwrap()).collect();
    v.try_into().unwrap()
}

/// The child: sends, polls, commits, forever (until killed, or after 5,000
/// commits), printing `FIRST` with where its first poll started, `BEGIN`
/// before and `ACK` after each commit.
#[test]
#[ignore = "run by the SIGKILL test as its child process"]
fn child_consumer() {
    let Ok(dir) = std::env::var(ENV_DIR) else { return };
    let store = Arc::new(TopicStore::open(&dir, config()).unwrap());
    let topic = match store.topic("orders") {
        Ok(t) => t,
        Err(_) => store.create_topic("orders", TopicConfig::default().with_partitions(PARTITIONS)).unwrap(),
    };
    let groups = Arc::new(ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).unwrap());
    let config = ConsumerConfig::new("g", ["orders"]).with_auto_commit(None).with_offset_reset(OffsetReset::Earliest);
    let mut consumer = Consumer::new(Arc::clone(&groups), config).unwrap();
    let mut first = true;
    for i in 0..5_000u64 {
        for j in 0..3u64 {
            topic.send_to(((i + j) % u64::from(PARTITIONS)) as u32, &Record::new(&i.to_le_bytes())).unwrap();
        }
        let polled = consumer.poll(7, Duration::from_millis(100)).unwrap();
        if first {
            // Where this child started: the positions before its first records.
            let mut start: Offsets = [0; PARTITIONS as usize];
            for p in 0..PARTITIONS {
                let tp = TopicPartition::new("orders", p);
                let pos = consumer.position(&tp).unwrap();
                let read = polled.iter().filter(|r| r.partition == p).count() as u64;
                start[p as usize] = pos - read;
            }
            report(&format!("FIRST {}", show(&start)));
            first = false;
        }
        let mut at: Offsets = [0; PARTITIONS as usize];
        for p in 0..PARTITIONS {
            at[p as usize] = consumer.position(&TopicPartition::new("orders", p)).unwrap();
        }
        report(&format!("BEGIN {}", show(&at)));
        consumer.commit().unwrap();
        report(&format!("ACK {}", show(&at)));
    }
}

#[derive(Debug, Default)]
struct ChildRun {
    first: Option<Offsets>,
    acked: Option<Offsets>,
    in_flight: Option<Offsets>,
    acks: u64,
}

fn parse_line(line: &str, run: &mut ChildRun) {
    // The test harness prints `test child_consumer ... ` before the child's first line.
    let Some(at) = line.find(MARK) else { return };
    let rest = &line[at + MARK.len()..];
    let (what, offsets) = rest.split_once(' ').unwrap();
    let o = parse(offsets);
    match what {
        "FIRST" => run.first = Some(o),
        "BEGIN" => run.in_flight = Some(o),
        "ACK" => {
            assert_eq!(run.in_flight, Some(o));
            run.acked = Some(o);
            run.in_flight = None;
            run.acks += 1;
        }
        _ => panic!("unknown line {line:?}"),
    }
}

fn run_child(dir: &Path, acks: u64, delay_us: u64) -> ChildRun {
    let stderr_path = dir.with_extension("stderr");
    let child = Child::spawn("child_consumer", &[(ENV_DIR, dir.to_str().unwrap())], &stderr_path);
    let mut run = ChildRun::default();
    while run.acks < acks {
        match child.line(Duration::from_secs(60)) {
            Ok(line) => parse_line(&line, &mut run),
            Err(e) => child.fail(&format!("the child stopped reporting ({e}) after {} commits", run.acks)),
        }
    }
    std::thread::sleep(Duration::from_micros(delay_us));
    let ended = child.kill();
    for line in &ended.lines {
        parse_line(line, &mut run);
    }
    let status = ended.status;
    assert_eq!(status.signal(), Some(9), "the child must die by SIGKILL, not {status:?}; stderr:\n{}", ended.stderr);
    run
}

fn committed(dir: &Path) -> (Option<Offsets>, Offsets) {
    let store = Arc::new(TopicStore::open(dir, config()).unwrap());
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default()).unwrap();
    let topic = store.topic("orders").unwrap();
    let mut got = Vec::new();
    let mut ends: Offsets = [0; PARTITIONS as usize];
    for p in 0..PARTITIONS {
        got.push(groups.committed("g", "orders", p).unwrap().map(|c| c.offset));
        ends[p as usize] = topic.next_offset(p).unwrap();
    }
    drop((groups, topic));
    Arc::try_unwrap(store).unwrap().close().unwrap();
    let all: Option<Vec<u64>> = got.iter().copied().collect();
    assert!(all.is_some() || got.iter().all(Option::is_none), "offsets of some partitions only: {got:?}");
    (all.map(|v| v.try_into().unwrap()), ends)
}

#[test]
fn sigkill_while_consuming_and_committing() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut rng = Rng::new(41);
    let mut last: Option<Offsets> = None;
    let (mut kills, mut in_flight_kept, mut in_flight_lost, mut acks) = (0u64, 0u64, 0u64, 0u64);
    for round in 0..20 {
        let run = run_child(&dir, rng.range(1, 40), rng.range(0, 2000));
        kills += 1;
        acks += run.acks;
        // The child started where the previous one's commits left the group.
        assert_eq!(run.first, Some(last.unwrap_or([0; PARTITIONS as usize])), "round {round}: {run:?}");
        let (got, ends) = committed(&dir);
        let got_offsets = got.unwrap_or([0; PARTITIONS as usize]);
        for p in 0..PARTITIONS as usize {
            assert!(
                got_offsets[p] <= ends[p],
                "round {round}: partition {p} committed {} past its end {}",
                got_offsets[p],
                ends[p]
            );
        }
        match (got, run.acked, run.in_flight) {
            (g, _, Some(f)) if g == Some(f) => in_flight_kept += 1,
            (g, a, f) if g == a => in_flight_lost += u64::from(f.is_some()),
            (g, a, f) => panic!("round {round}: committed {g:?}; acknowledged {a:?}, in flight {f:?}"),
        }
        if let (Some(prev), Some(now)) = (last, got) {
            assert!(
                prev.iter().zip(&now).all(|(a, b)| a <= b),
                "round {round}: offsets went back from {prev:?} to {now:?}"
            );
        }
        last = got.or(last);
    }
    eprintln!(
        "crash_consumer: {kills} kills, {acks} commits acknowledged, {} with a commit in flight (kept {in_flight_kept}, lost {in_flight_lost}), {:.1} s",
        in_flight_kept + in_flight_lost,
        started.elapsed().as_secs_f64()
    );
}
