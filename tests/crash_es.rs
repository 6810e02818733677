//! SIGKILL of an application running the event-sourcing layer: a child
//! process changes accounts through the repository (with snapshots), runs a
//! balance projection and a process manager that notes each deposit and
//! fires a timeout per account, and reports each batch's acknowledged
//! checkpoints; the parent kills it at a random moment, reopens the store
//! and checks that every event was applied exactly once by both
//! (`common::es_workload::check`), then starts the next child on the same
//! store. `Durability::Always`.
//!
//! The child is this test binary itself, re-executed to run only the
//! ignored `child_es` test.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal::es::CommandError;
use annal::events::EventStore;
use common::Rng;
use common::bank::{AccountCommand as Cmd, AccountError};
use common::child::Child;
use common::es_workload::{ACCOUNTS, Acked, DAY_MS, balances, check, config, notary, repo};

const ENV_DIR: &str = "ANNAL_ES_CRASH_DIR";
const MARK: &str = "ACKED ";

#[test]
#[ignore = "run by sigkill_while_projecting_and_reacting as its child"]
fn child_es() {
    let dir = std::env::var(ENV_DIR).expect("the store's directory");
    let store = Arc::new(EventStore::open(Path::new(&dir), config(None)).unwrap());
    let accounts = repo(&store);
    let mut projection = balances(&store).unwrap();
    let mut pm = notary(&store).unwrap();
    for a in 0..ACCOUNTS {
        match accounts.execute(&a.to_string(), &Cmd::Open) {
            Ok(_) | Err(CommandError::Rejected(AccountError::AlreadyOpen)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let a = (i % ACCOUNTS as u64).to_string();
        accounts.execute(&a, &Cmd::Deposit(i as i64 % 1000 + 1)).unwrap();
        if i % 7 == 6 {
            let _ = accounts.execute(&a, &Cmd::Withdraw(3));
        }
        let p = projection.run_batch(Duration::ZERO).unwrap().checkpoint;
        // Timeouts fall due two days on: they fire in this child's batches.
        let o = pm.run_batch_at(common_now_ms() + 2 * DAY_MS, Duration::ZERO).unwrap();
        writeln!(out, "{MARK}{p} {} {}", o.checkpoint, o.fired).unwrap();
        out.flush().unwrap();
    }
}

fn common_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn run_child(dir: &Path, lines: u64, delay_us: u64) -> (Acked, u64) {
    let stderr_path = dir.with_extension("stderr");
    let child = Child::spawn("child_es", &[(ENV_DIR, dir.to_str().unwrap())], &stderr_path);
    let mut acked = Acked::default();
    let mut seen = 0;
    let parse = |line: &str, acked: &mut Acked| {
        let Some(at) = line.find(MARK) else { return false };
        let v: Vec<u64> = line[at + MARK.len()..].split(' ').map(|x| x.parse().unwrap()).collect();
        acked.projection = v[0];
        acked.notary = v[1];
        true
    };
    while seen < lines {
        match child.line(Duration::from_secs(60)) {
            Ok(line) => seen += u64::from(parse(&line, &mut acked)),
            Err(e) => child.fail(&format!("the child stopped reporting ({e}) after {seen} batches")),
        }
    }
    std::thread::sleep(Duration::from_micros(delay_us));
    let ended = child.kill();
    for line in &ended.lines {
        seen += u64::from(parse(line, &mut acked));
    }
    assert_eq!(
        ended.status.signal(),
        Some(9),
        "the child must die by SIGKILL, not {:?}; stderr:\n{}",
        ended.status,
        ended.stderr
    );
    (acked, seen)
}

#[test]
fn sigkill_while_projecting_and_reacting() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut rng = Rng::new(15);
    let (mut kills, mut batches) = (0u64, 0u64);
    for round in 0..12 {
        let (acked, seen) = run_child(&dir, rng.range(1, 60), rng.range(0, 3000));
        kills += 1;
        batches += seen;
        if let Err(e) = check(&acked, &dir) {
            panic!("round {round}: {e}");
        }
    }
    eprintln!("crash_es: {kills} kills, {batches} batches acknowledged, {:.1} s", started.elapsed().as_secs_f64());
}
