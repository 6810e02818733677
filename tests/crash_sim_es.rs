//! Crash simulation of the application layer of event sourcing: accounts
//! changed through the repository (with snapshots), a balance projection
//! kept in a `KvModel`, and a process manager that reacts to each deposit by
//! emitting an event and schedules a timeout per account, fired later, all
//! interleaved, with the process dying at every persistence call and the
//! power lost five ways (`powerloss::SWEEP_MODES`). The store is reopened
//! with the real file system and must hold:
//!
//! - the projection's rows are exactly the balances a replay of the account
//!   events below its checkpoint gives (each event applied once: the
//!   deposits' amounts are distinct powers of two, so a duplicate or a
//!   missing one shows), and its checkpoint is at or past the last one a
//!   batch acknowledged;
//! - the process manager emitted one `Noted` event per deposit below its
//!   checkpoint, naming it, no more and no less, each account's state counts
//!   them, and its checkpoint is at or past the last one acknowledged;
//! - each account's timeout fired at most once (one `TimedOut` event), and
//!   exactly once if its firing was acknowledged;
//! - every aggregate loads (from a snapshot or not) as a replay does.
//!
//! `ANNAL_SIM_CRASH_AT=<k> cargo test --release --test crash_sim_es --
//! --nocapture` replays one crash point (`ANNAL_SIM_TRACE=1` prints its calls).

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal::events::EventStore;
use annal::io::Io;
use common::bank::AccountCommand as Cmd;
use common::es_workload::{ACCOUNTS, Acked, DAY_MS, balances, check, config, notary, repo};
use common::fast_tempdir;
use powerloss::{PowerLossIo, SplitMix};

const STORE: &str = "store";

/// What the workload was told.
#[derive(Debug, Default)]
struct Book {
    acked: Acked,
    finished: bool,
}

fn run_workload(root: &Path, io: &Arc<PowerLossIo>) -> Book {
    let mut book = Book::default();
    let _ = workload(root, io, &mut book);
    book
}

fn workload(root: &Path, io: &Arc<PowerLossIo>, book: &mut Book) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(EventStore::open(root.join(STORE), config(Some(Arc::clone(io) as Arc<dyn Io>)))?);
    let accounts = repo(&store);
    let mut projection = balances(&store)?;
    let mut pm = notary(&store)?;
    let t0 = 1_000 * DAY_MS;
    let mut amount = 1i64;
    for a in 0..ACCOUNTS {
        accounts.execute(&a.to_string(), &Cmd::Open)?;
    }
    for round in 0..4 {
        for a in 0..ACCOUNTS {
            accounts.execute(&a.to_string(), &Cmd::Deposit(amount))?;
            amount *= 2;
        }
        accounts.execute(&(round % ACCOUNTS).to_string(), &Cmd::Withdraw(1))?;
        book.acked.projection = projection.run_batch(Duration::ZERO)?.checkpoint;
        let now = if round == 3 { t0 + DAY_MS } else { t0 };
        let o = pm.run_batch_at(now, Duration::ZERO)?;
        book.acked.fired += o.fired;
        book.acked.notary = o.checkpoint;
    }
    book.acked.projection = projection.run_batch(Duration::ZERO)?.checkpoint;
    book.acked.notary = pm.run_batch_at(t0 + DAY_MS, Duration::ZERO)?.checkpoint;
    drop((projection, pm, accounts));
    Arc::try_unwrap(store).map_err(|_| "the store is shared")?.close()?;
    book.finished = true;
    Ok(())
}

#[test]
fn a_crash_at_any_call_keeps_projections_and_process_managers_exactly_once() {
    let started = Instant::now();
    let only_k = powerloss::env_u64("ANNAL_SIM_CRASH_AT");
    let traced = std::env::var_os("ANNAL_SIM_TRACE").is_some();
    let tmp = fast_tempdir();
    let io = Arc::new(PowerLossIo::new(&tmp.path().join("disk"), None));
    let book = run_workload(&tmp.path().join("disk"), &io);
    assert!(book.finished, "the workload runs through without a crash: {book:?}");
    assert_eq!(book.acked.fired, ACCOUNTS, "every account's timeout fired");
    check(&book.acked, &tmp.path().join("disk").join(STORE)).expect("the uninterrupted run checks out");
    let calls = io.calls();
    let (mut points, mut variants) = (0u64, 0u64);
    let mut states: BTreeMap<(u64, u64), u64> = BTreeMap::new();
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
        *states.entry((book.acked.projection, book.acked.notary)).or_default() += 1;
        if traced {
            eprintln!("crash_at {k}: {book:?}\n  {}", io.trace().join("\n  "));
        }
        for (v, mode) in powerloss::SWEEP_MODES.into_iter().enumerate() {
            let mut rng = SplitMix::new(k.wrapping_mul(0x9E37_79B9) ^ v as u64);
            let target = tmp.path().join(format!("after-{v}"));
            let report = io.power_loss_into(&target, mode, &mut rng);
            variants += 1;
            if let Err(e) = check(&book.acked, &target.join(STORE)) {
                failures.push(format!(
                    "crash_sim_es FAILURE: crash_at {k} (call: {}), {mode}: {e}\n    power loss: {report}\n    \
                     replay: ANNAL_SIM_CRASH_AT={k} cargo test --release --test crash_sim_es -- --nocapture",
                    io.describe_call(k).unwrap_or_else(|| "none: after the workload".into())
                ));
            }
            let _ = std::fs::remove_dir_all(&target);
        }
    }
    let summary = format!(
        "crash_sim_es: {points} crash points ({calls} calls), {variants} power-loss variants, {} distinct acknowledged states; {} failures, {:.1} s",
        states.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    assert!(failures.is_empty(), "{summary}\n\n{}", failures.iter().take(5).cloned().collect::<Vec<_>>().join("\n\n"));
    if only_k.is_none() {
        powerloss::assert_fired(
            &summary,
            &[("crash points", points, 100), ("acknowledged states", states.len() as u64, 5)],
        );
    }
}
