//! Crash simulation of consumer-group commits: a store whose groups commit
//! offsets across three partitions (each commit the same offset on all of
//! them, so that a mix of two commits shows), reset them backward, commit
//! for a second group and delete it, with the process dying at every
//! persistence call and the power lost five ways (`powerloss::SWEEP_MODES`).
//! The store is reopened with the real file system and its groups must hold:
//!
//! - group `g`'s three offsets are one commit's (all equal, or all absent if
//!   no commit was acknowledged): the last acknowledged one, or the one in
//!   flight at the crash; never an older one, whichever way the sequence
//!   went (commits forward, a reset back, commits forward again);
//! - no committed offset is past its partition's end;
//! - group `h` is absent once its deletion was acknowledged, present with
//!   its offset once its commit was and its deletion had not started, and
//!   either while one of them was in flight.
//!
//! `ANNAL_SIM_CRASH_AT=<k> cargo test --release --test crash_sim_consumer --
//! --nocapture` replays one crash point (`ANNAL_SIM_TRACE=1` prints its calls).

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annal::consumer::{ConsumerGroups, GroupsConfig, OffsetCommit};
use annal::io::Io;
use annal::{Durability, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig};
use common::fast_tempdir;
use powerloss::{PowerLossIo, SplitMix};

const STORE: &str = "store";
const PARTITIONS: u32 = 3;

fn store_config(io: Option<&Arc<PowerLossIo>>) -> TopicStoreConfig {
    let mut log = LogConfig::default().with_durability(Durability::Always);
    if let Some(io) = io {
        log = log.with_io(Arc::clone(io) as Arc<dyn Io>);
    }
    TopicStoreConfig::default().with_log_config(log)
}

/// What the workload was told.
#[derive(Debug, Default)]
struct Book {
    /// `g`'s last acknowledged commit, and the one in flight.
    g_acked: Option<u64>,
    g_in_flight: Option<u64>,
    /// `h`: its commit acknowledged; its deletion started; acknowledged.
    h_committed: bool,
    h_delete_started: bool,
    h_deleted: bool,
    /// The workload reached its end.
    finished: bool,
}

/// The commits of `g`, in order: forward, a reset back to 2, forward again.
const G_COMMITS: [(u64, bool); 8] =
    [(1, false), (2, false), (3, false), (4, false), (5, false), (2, true), (3, false), (4, false)];

fn run_workload(root: &Path, io: &Arc<PowerLossIo>) -> Book {
    let mut book = Book::default();
    let _ = workload(root, io, &mut book);
    book
}

fn workload(root: &Path, io: &Arc<PowerLossIo>, book: &mut Book) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(TopicStore::open(root.join(STORE), store_config(Some(io)))?);
    let topic = store.create_topic("orders", TopicConfig::default().with_partitions(PARTITIONS))?;
    for p in 0..PARTITIONS {
        for i in 0..5u8 {
            topic.send_to(p, &Record::new(&[i]))?;
        }
    }
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default())?;
    for (offset, reset) in G_COMMITS {
        let offsets: Vec<OffsetCommit> = (0..PARTITIONS).map(|p| OffsetCommit::new("orders", p, offset)).collect();
        book.g_in_flight = Some(offset);
        if reset {
            groups.reset_offsets("g", &offsets)?
        } else {
            groups.commit("g", &offsets)?
        }
        book.g_acked = Some(offset);
        book.g_in_flight = None;
        topic.send_to((offset % 3) as u32, &Record::new(b"more"))?;
    }
    groups.commit("h", &[OffsetCommit::new("orders", 0, 1)])?;
    book.h_committed = true;
    book.h_delete_started = true;
    groups.delete_group("h")?;
    book.h_deleted = true;
    drop(groups);
    drop(topic);
    Arc::try_unwrap(store).map_err(|_| "the store is shared")?.close()?;
    book.finished = true;
    Ok(())
}

fn check(book: &Book, dir: &Path) -> Result<(), String> {
    let store = Arc::new(TopicStore::open(dir, store_config(None)).map_err(|e| format!("open: {e}"))?);
    let Ok(topic) = store.topic("orders") else {
        // The crash came before the topic existed: nothing was committed.
        return match book.g_acked {
            None => Ok(()),
            Some(_) => Err("the topic is gone after acknowledged commits".into()),
        };
    };
    let groups = ConsumerGroups::open(Arc::clone(&store), GroupsConfig::default())
        .map_err(|e| format!("opening the groups: {e}"))?;
    let mut g = Vec::new();
    for p in 0..PARTITIONS {
        let c = groups.committed("g", "orders", p).map_err(|e| e.to_string())?.map(|c| c.offset);
        let end = topic.partition(p).map_err(|e| e.to_string())?.next_offset();
        if c.is_some_and(|c| c > end) {
            return Err(format!("g's offset {c:?} of partition {p} is past its end {end}"));
        }
        g.push(c);
    }
    if g.iter().any(|c| *c != g[0]) {
        return Err(format!("g's offsets mix commits: {g:?}"));
    }
    let allowed = [book.g_acked, book.g_in_flight];
    let possible = if book.g_in_flight.is_some() { &allowed[..] } else { &allowed[..1] };
    if !possible.contains(&g[0]) {
        return Err(format!(
            "g's offsets are {:?}; acknowledged {:?}, in flight {:?}",
            g[0], book.g_acked, book.g_in_flight
        ));
    }
    let h = groups.committed("h", "orders", 0).map_err(|e| e.to_string())?.map(|c| c.offset);
    let h_ok = match (book.h_committed, book.h_delete_started, book.h_deleted) {
        (_, _, true) => h.is_none(),
        (true, true, false) => h.is_none() || h == Some(1),
        (true, false, false) => h == Some(1),
        // Its commit may have been in flight.
        (false, _, _) => h.is_none() || h == Some(1),
    };
    if !h_ok {
        return Err(format!("h's offset is {h:?} with {book:?}"));
    }
    drop(groups);
    drop(topic);
    Arc::try_unwrap(store).map_err(|_| "the store is shared".to_owned())?.close().map_err(|e| format!("close: {e}"))
}

#[test]
fn a_crash_at_any_call_keeps_one_whole_commit() {
    let started = Instant::now();
    let only_k = powerloss::env_u64("ANNAL_SIM_CRASH_AT");
    let traced = std::env::var_os("ANNAL_SIM_TRACE").is_some();
    // Count the calls of an uninterrupted run.
    let tmp = fast_tempdir();
    let io = Arc::new(PowerLossIo::new(&tmp.path().join("disk"), None));
    let book = run_workload(&tmp.path().join("disk"), &io);
    assert!(book.finished, "the workload runs through without a crash: {book:?}");
    let calls = io.calls();
    let (mut points, mut variants, mut in_flight) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for k in 1..=calls + 1 {
        if only_k.is_some_and(|only| only != k) {
            continue;
        }
        let tmp = fast_tempdir();
        let root = tmp.path().join("disk");
        let io = Arc::new(PowerLossIo::new(&root, Some(k)));
        let book = run_workload(&root, &io);
        points += 1;
        in_flight += u64::from(book.g_in_flight.is_some());
        if traced {
            eprintln!("crash_at {k}: {book:?}\n  {}", io.trace().join("\n  "));
        }
        for (v, mode) in powerloss::SWEEP_MODES.into_iter().enumerate() {
            let mut rng = SplitMix::new(k.wrapping_mul(0x9E37_79B9) ^ v as u64);
            let target = tmp.path().join(format!("after-{v}"));
            let report = io.power_loss_into(&target, mode, &mut rng);
            variants += 1;
            if let Err(e) = check(&book, &target.join(STORE)) {
                failures.push(format!(
                    "crash_sim_consumer FAILURE: crash_at {k} (call: {}), {mode}: {e}\n    power loss: {report}\n    \
                     replay: ANNAL_SIM_CRASH_AT={k} cargo test --release --test crash_sim_consumer -- --nocapture",
                    io.describe_call(k).unwrap_or_else(|| "none: after the workload".into())
                ));
            }
            let _ = std::fs::remove_dir_all(&target);
        }
    }
    let summary = format!(
        "crash_sim_consumer: {points} crash points ({calls} calls), {variants} power-loss variants, {in_flight} with a commit of g in flight; {} failures, {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    assert!(failures.is_empty(), "{summary}\n\n{}", failures.join("\n\n"));
    if only_k.is_none() {
        powerloss::assert_fired(&summary, &[("crash points", points, 50), ("commits of g in flight", in_flight, 8)]);
    }
}
