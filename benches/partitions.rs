//! Many partitions: what one process needs to produce to, and consume from,
//! a topic of 1, 100, 1,000 and 10,000 partitions.
//!
//! For each partition count P, a fresh child process (so that resident
//! memory and open files are its own) opens a store on disk (the system's
//! temporary directory, or `ANNAL_BENCH_DIR`), creates one topic of P
//! partitions with 64 MiB segments under `Durability::Never`, then:
//!
//! 1. sends one record to each partition, timed apart: each partition's
//!    first append creates its first segment file (two fsyncs, a rename and
//!    a directory fsync), so this measures segment creation, paid once;
//! 2. sends `ANNAL_BENCH_RECORDS` (default 1,000,000) records of 100 bytes
//!    without a key (round-robin over the partitions), timed;
//! 3. sends as many keyed records (`key-<i>`, spread by hash), timed;
//! 4. reads every partition from its start to its end, timed.
//!
//! After each step it prints the process's threads, open files, mappings and
//! resident memory (anonymous and file-backed, from `/proc/self/status`),
//! then closes the store. Output: one line of JSON per partition count on
//! stdout, and a table on stderr.
//!
//! Run with `cargo bench --bench partitions` (a few minutes; the 10,000
//! partitions case creates 10,000 directories), or choose the counts with
//! `ANNAL_BENCH_PARTITIONS=1,100`. `ANNAL_BENCH_MAX_OPEN=N` sets the store's
//! `max_open_partitions` (default: half of `ulimit -n`, at most 4,096).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use annal::{Durability, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig};

const VALUE: usize = 100;
const SEGMENT_BYTES: u64 = 64 << 20;

/// Threads, open files, mappings and resident memory of this process.
fn resources() -> serde_json::Value {
    let count = |dir: &str| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |field: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
    serde_json::json!({
        "threads": count("/proc/self/task"),
        "open_files": count("/proc/self/fd"),
        "mappings": maps,
        "rss_mib": kb("VmRSS:") as f64 / 1024.0,
        "rss_anon_mib": kb("RssAnon:") as f64 / 1024.0,
        "rss_file_mib": kb("RssFile:") as f64 / 1024.0,
    })
}

/// One partition count, in this process.
fn child(partitions: u32, records: u64, dir: &Path) -> serde_json::Value {
    let mut config =
        TopicStoreConfig::default().with_log_config(LogConfig::default().with_durability(Durability::Never));
    if let Some(n) = std::env::var("ANNAL_BENCH_MAX_OPEN").ok().and_then(|v| v.parse().ok()) {
        config = config.with_max_open_partitions(n);
    }
    let started = Instant::now();
    let store = TopicStore::open(dir, config).expect("open the store");
    let topic = store
        .create_topic("t", TopicConfig::default().with_partitions(partitions).with_segment_bytes(SEGMENT_BYTES))
        .expect("create the topic");
    let create_secs = started.elapsed().as_secs_f64();
    let after_create = resources();
    let value = vec![0x5Au8; VALUE];

    let started = Instant::now();
    for p in 0..partitions {
        black_box(topic.send_to(p, &Record::new(&value)).expect("send"));
    }
    let first_appends = f64::from(partitions) / started.elapsed().as_secs_f64();

    let started = Instant::now();
    for _ in 0..records {
        black_box(topic.send(&Record::new(&value)).expect("send"));
    }
    let round_robin = records as f64 / started.elapsed().as_secs_f64();
    let after_round_robin = resources();

    let keys: Vec<Vec<u8>> = (0..records).map(|i| format!("key-{i}").into_bytes()).collect();
    let started = Instant::now();
    for key in &keys {
        black_box(topic.send(&Record::new(&value).with_key(key)).expect("send"));
    }
    let keyed = records as f64 / started.elapsed().as_secs_f64();
    let after_keyed = resources();

    let started = Instant::now();
    let mut read = 0u64;
    for p in 0..partitions {
        let mut reader = topic.read_from(p, 0).expect("read a partition");
        while let Some(r) = reader.next_record().expect("read a record") {
            black_box(r.value());
            read += 1;
        }
    }
    assert_eq!(read, 2 * records + u64::from(partitions), "every record read back");
    let consume = read as f64 / started.elapsed().as_secs_f64();
    let after_consume = resources();
    drop(topic);
    store.close().expect("close the store");
    serde_json::json!({
        "partitions": partitions,
        "records_per_step": records,
        "create_secs": create_secs,
        "first_append_per_partition_per_sec": first_appends,
        "produce_round_robin_per_sec": round_robin,
        "produce_keyed_per_sec": keyed,
        "consume_per_sec": consume,
        "after_create": after_create,
        "after_round_robin": after_round_robin,
        "after_keyed": after_keyed,
        "after_consume": after_consume,
    })
}

fn main() {
    let records: u64 = std::env::var("ANNAL_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let partitions: u32 = args[i + 1].parse().expect("a partition count");
        let parent = std::env::var_os("ANNAL_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
        let tmp = tempfile::Builder::new().prefix("annal-bench-partitions").tempdir_in(parent).expect("tempdir");
        println!("{}", child(partitions, records, tmp.path()));
        return;
    }
    // `cargo bench` passes `--bench` (and a filter, if given): ignore them.
    let counts: Vec<u32> = std::env::var("ANNAL_BENCH_PARTITIONS")
        .ok()
        .map(|v| v.split(',').map(|c| c.trim().parse().expect("a partition count")).collect())
        .unwrap_or_else(|| vec![1, 100, 1_000, 10_000]);
    eprintln!(
        "{:>10} {:>12} {:>12} {:>12} {:>12} | after keyed produce: {:>7} {:>7} {:>8} {:>9} {:>9}",
        "partitions",
        "first/part.",
        "round-robin",
        "keyed",
        "consume",
        "threads",
        "files",
        "maps",
        "rss anon",
        "rss file"
    );
    for p in counts {
        let out = Command::new(&args[0]).args(["--child", &p.to_string()]).output().expect("run a child");
        assert!(out.status.success(), "{p} partitions: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8(out.stdout).expect("UTF-8");
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("the child's JSON");
        let r = &v["after_keyed"];
        eprintln!(
            "{:>10} {:>10.0}/s {:>10.0}/s {:>10.0}/s {:>10.0}/s | {:>28} {:>7} {:>8} {:>6.0} MiB {:>5.0} MiB",
            p,
            v["first_append_per_partition_per_sec"].as_f64().unwrap_or(0.0),
            v["produce_round_robin_per_sec"].as_f64().unwrap_or(0.0),
            v["produce_keyed_per_sec"].as_f64().unwrap_or(0.0),
            v["consume_per_sec"].as_f64().unwrap_or(0.0),
            r["threads"],
            r["open_files"],
            r["mappings"],
            r["rss_anon_mib"].as_f64().unwrap_or(0.0),
            r["rss_file_mib"].as_f64().unwrap_or(0.0),
        );
        println!("{}", line.trim());
    }
}
