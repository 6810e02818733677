//! Group commit under power loss, with many appending threads.
//!
//! `tests/crash_sim.rs` crashes single-threaded workloads at every
//! persistence call; it cannot see what group commit does when records
//! arrive while another thread's fsync is in flight. Here eight threads
//! append batches under `Durability::Always` through a [`PowerLossIo`] whose
//! fsyncs take a while (200 µs after they captured what they make durable,
//! as a real fsync does), so that appends keep arriving during them. At a
//! moment chosen by the number of acknowledged appends, the process dies
//! (every later call fails), and the directory is rewritten to a state after
//! a power loss: only what was fsynced (clean), or a random mix of it and the
//! page cache. The log is then reopened and must hold
//!
//! - every record whose append returned `Ok` (it was durably acknowledged),
//!   with its contents, at the offset it was given;
//! - only records that were appended, in whole batches (a batch's records
//!   are all there or none is);
//! - dense offsets from 0.
//!
//! Reporting as durable more than an fsync covered (for example the offset
//! read after the fsync instead of the one captured before it) loses
//! acknowledged records here, in most rounds.

mod common;
#[path = "common/powerloss.rs"]
mod powerloss;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use annal::{Durability, Log, LogConfig, Record};
use powerloss::{LossMode, PowerLossIo, SplitMix};

const THREADS: u64 = 8;
/// Rounds (crash moments) per run.
const ROUNDS: u64 = 12;

/// The value of record `i` of batch `b` of thread `t`.
fn value(t: u64, b: u64, i: u64) -> Vec<u8> {
    let mut r = SplitMix::new(t.wrapping_mul(0x9E37_79B9) ^ b.wrapping_mul(0x85EB_CA6B) ^ i);
    let len = 20 + r.below(200) as usize;
    let mut v = format!("t{t}-b{b}-i{i}-").into_bytes();
    v.extend((0..len).map(|_| r.next_u64() as u8));
    v
}

/// Which (thread, batch, index) a recovered value is, if it is one of ours.
fn identify(v: &[u8]) -> Option<(u64, u64, u64)> {
    // The prefix `t{t}-b{b}-i{i}-`: up to the third '-'.
    let end = v.iter().enumerate().filter(|&(_, &c)| c == b'-').nth(2)?.0;
    let text = std::str::from_utf8(&v[..end]).ok()?;
    let mut parts = text.split('-');
    let t = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let b = parts.next()?.strip_prefix('b')?.parse().ok()?;
    let i = parts.next()?.strip_prefix('i')?.parse().ok()?;
    Some((t, b, i))
}

/// What the threads did: per (thread, batch), its size, and the offsets it
/// was acknowledged at (if it was).
#[derive(Default)]
struct Book {
    sizes: HashMap<(u64, u64), u64>,
    acked: HashMap<(u64, u64), std::ops::Range<u64>>,
}

fn round(seed: u64) -> Result<(u64, u64), String> {
    let tmp = common::fast_tempdir();
    let dir = tmp.path().join("log");
    let io = Arc::new(PowerLossIo::new(&dir, None).with_sync_delay(Duration::from_micros(200)));
    let config = LogConfig::default()
        .with_segment_bytes(32 << 10)
        .with_index_interval_bytes(512)
        .with_durability(Durability::Always)
        .with_io(Arc::clone(&io) as Arc<dyn annal::io::Io>);
    let log = Log::open(&dir, config).map_err(|e| format!("open: {e}"))?;
    let book = Mutex::new(Book::default());
    let acked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut rng = SplitMix::new(seed);
    // Die after this many acknowledged appends.
    let crash_after = 40 + rng.below(400);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (log, book, acked, stop) = (&log, &book, &acked, &stop);
            s.spawn(move || {
                let mut r = SplitMix::new(seed ^ t.wrapping_mul(0x1234_5678_9ABC));
                for b in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let n = 1 + r.below(4);
                    let values: Vec<Vec<u8>> = (0..n).map(|i| value(t, b, i)).collect();
                    let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
                    book.lock().unwrap().sizes.insert((t, b), n);
                    match log.append_batch(&records) {
                        Ok(range) => {
                            book.lock().unwrap().acked.insert((t, b), range);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        // The process is dead: every call fails from now on.
                        Err(_) => return,
                    }
                }
            });
        }
        // Wait for the crash moment (a count, not a time), then cut the power.
        while acked.load(Ordering::SeqCst) < crash_after {
            thread::yield_now();
        }
        io.crash_now();
        stop.store(true, Ordering::SeqCst);
    });
    log.abandon();
    let book = book.into_inner().unwrap();
    let mode = match seed % 3 {
        0 => LossMode::Clean,
        1 => LossMode::Random { keep_percent: 50, torn: true },
        _ => LossMode::Random { keep_percent: 10, torn: false },
    };
    let after = tmp.path().join("after");
    io.power_loss_into(&after, mode, &mut rng);
    let log = Log::open(&after, LogConfig::default().with_segment_bytes(32 << 10))
        .map_err(|e| format!("{mode}: the log does not open after the crash: {e}"))?;
    let recs = common::read_all(&log).map_err(|e| format!("{mode}: reading after the crash: {e}"))?;
    // Every recovered record is one that was appended, at a dense offset.
    let mut found: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    for (k, r) in recs.iter().enumerate() {
        if r.offset != k as u64 {
            return Err(format!("{mode}: record #{k} has offset {}", r.offset));
        }
        let v = r.value.as_deref().unwrap_or(&[]);
        let (t, b, i) = identify(v).ok_or_else(|| format!("{mode}: offset {k} holds a record never appended"))?;
        if value(t, b, i) != v {
            return Err(format!("{mode}: offset {k} holds damaged contents of t{t} b{b} i{i}"));
        }
        found.entry((t, b)).or_default().push((i, r.offset));
    }
    // Whole batches only, each where it was acknowledged if it was.
    for (key, records) in &found {
        let size = *book.sizes.get(key).ok_or_else(|| format!("{mode}: batch {key:?} was never appended"))?;
        if records.len() as u64 != size {
            return Err(format!("{mode}: {} of the {size} records of batch {key:?} recovered", records.len()));
        }
        if let Some(range) = book.acked.get(key) {
            let first = records.iter().map(|&(_, o)| o).min().unwrap_or(0);
            if first != range.start {
                return Err(format!("{mode}: batch {key:?} acknowledged at {range:?} recovered at {first}"));
            }
        }
    }
    // Every acknowledged batch survived.
    let lost: Vec<_> = book.acked.iter().filter(|(k, _)| !found.contains_key(k)).collect();
    if let Some((key, range)) = lost.first() {
        return Err(format!(
            "{mode}: {} acknowledged batches lost, for example {key:?} at {range:?} ({} records recovered, {} batches acknowledged)",
            lost.len(),
            recs.len(),
            book.acked.len()
        ));
    }
    let appended_after = (book.sizes.len() - book.acked.len()) as u64;
    Ok((recs.len() as u64, appended_after))
}

#[test]
fn every_acknowledged_record_survives_a_power_loss_while_threads_append() {
    let seeds: Vec<u64> = match std::env::var("ANNAL_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => (1..=ROUNDS).collect(),
    };
    let mut failures = Vec::new();
    let (mut recovered, mut unacked) = (0, 0);
    for seed in seeds {
        match round(seed) {
            Ok((n, u)) => {
                recovered += n;
                unacked += u;
            }
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    eprintln!(
        "crash_sim_threads: {recovered} records recovered, {unacked} batches in flight at the crashes, {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(unacked > 0, "no append was in flight at any crash: the simulation tests nothing");
}
