//! Topics: produce throughput across partitions, and the compaction rate.
//!
//! - `produce/<durability>/producers/<N>/partitions/<P>` for P = 1, 4 and
//!   16: a `TopicStore` holding one topic of P partitions (default 64 MiB
//!   segments); N producer threads call `Topic::send` with a keyed 100-byte
//!   record, each producer with its own keys (`producer<i>-<j>`, so records
//!   spread over the partitions by key hash). Durability `never` with 4
//!   producers (no fsync: what is left is the cost of the partitioner, the
//!   topic lock and each partition's writer lock; 10,000 records per producer
//!   and round), and `always` with 4 and 16 producers (each send returns
//!   after its partition's fsync; partitions fsync independently, sends to
//!   one partition share fsyncs; 50 records per producer and round). At most
//!   N sends are in flight, so under `always` more partitions than producers
//!   cannot add concurrency. A round is timed from the release of a barrier
//!   (producers spawned and waiting) to the last producer's last acknowledged
//!   send. Throughput is total records (elements) per second. One store per
//!   case, reused by every round (the warm-up brings the partitions'
//!   prefaulters ahead of the writers). A partition whose active segment
//!   might fill during the next round is rolled before it, outside the
//!   timing, so no timed round seals a segment (see `make_room`). After each
//!   case the bench prints to stderr the records sent and the fsyncs made
//!   during the rounds, counted through a wrapping `Io`.
//! - `compaction/<K>keys/<records|bytes>`: `Log::compact_at` of a log of
//!   200,000 keyed 100-byte records in 4 MiB segments, every segment sealed
//!   (rolled), in the page cache. K = 10,000 keys drawn pseudo-randomly, so
//!   about 95% of the records are superseded and almost every segment is
//!   rewritten; K = 200,000 (a key per record), so nothing is dropped and
//!   compaction only reads: the key map pass and the pass that finds nothing
//!   to rewrite. Each iteration compacts a freshly built log (built by the
//!   setup of `iter_batched_ref`, not timed; nor is dropping it). The same
//!   measurement is reported twice, as records examined per second
//!   (`records`) and as bytes of sealed segment data examined per second
//!   (`bytes`). What one compaction did is printed to stderr first.
//!
//! Run with `cargo bench --bench topic` (about 2 minutes), or
//! `cargo bench --bench topic -- --quick`; filter with e.g.
//! `cargo bench --bench topic -- compaction`.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annal::segment::{DATA_START, FOOTER_LEN};
use annal::{Compaction, Durability, Log, LogConfig, Record, Topic, TopicConfig, TopicStore, TopicStoreConfig};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

use common::{CountingIo, Rng, timed_threads};

const VALUE: usize = 100;
/// Durability and producer threads of the `produce` cases.
const PRODUCE_CASES: [(&str, Durability, usize); 3] =
    [("never", Durability::Never, 4), ("always", Durability::Always, 4), ("always", Durability::Always, 16)];
const PARTITIONS: [u32; 3] = [1, 4, 16];

const COMPACT_RECORDS: u64 = 200_000;
const COMPACT_SEGMENT: u64 = 4 << 20;
const COMPACT_KEYS: [u64; 2] = [10_000, COMPACT_RECORDS];

/// Records each producer sends per round.
fn per_producer(durability: Durability) -> u64 {
    match durability {
        Durability::Always => 50,
        _ => 10_000,
    }
}

fn produce(c: &mut Criterion) {
    let value = vec![0x5Au8; VALUE];
    let mut group = common::flat_group(c, "produce", Duration::from_secs(1), Duration::from_secs(3));
    for (dname, durability, producers) in PRODUCE_CASES {
        let per = per_producer(durability);
        let keys: Vec<Vec<Vec<u8>>> =
            (0..producers).map(|i| (0..per).map(|j| format!("producer{i}-{j}").into_bytes()).collect()).collect();
        // Every record of a round could go to one partition.
        let frame = keys.iter().flatten().map(|k| Record::new(&value).with_key(k).encoded_len().expect("size")).max();
        let round_bytes = frame.expect("a key") as u64 * per * producers as u64;
        for partitions in PARTITIONS {
            let dir = tempfile::tempdir().expect("tempdir");
            let io = Arc::new(CountingIo::default());
            let config = TopicStoreConfig::default()
                .with_log_config(LogConfig::default().with_durability(durability).with_io(io.clone()));
            let store = TopicStore::open(dir.path(), config).expect("open store");
            let topic_config = TopicConfig::default().with_partitions(partitions);
            let topic = store.create_topic("bench", topic_config).expect("create topic");
            let (mut sent, mut synced) = (0u64, 0u64);
            group.throughput(Throughput::Elements(per * producers as u64));
            group.bench_function(format!("{dname}/producers/{producers}/partitions/{partitions}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        make_room(&topic, round_bytes, topic_config.segment_bytes());
                        let syncs = io.syncs();
                        total += timed_threads(producers, |i| {
                            for key in &keys[i] {
                                black_box(topic.send(&Record::new(&value).with_key(key)).expect("send"));
                            }
                        });
                        synced += io.syncs() - syncs;
                        sent += per * producers as u64;
                    }
                    total
                });
            });
            // Nothing sent: the case was filtered out on the command line.
            if sent > 0 {
                let per_fsync = match synced {
                    0 => String::new(),
                    n => format!(", {:.2} records per fsync", sent as f64 / n as f64),
                };
                eprintln!(
                    "produce/{dname}/producers/{producers}/partitions/{partitions}: {sent} records, {synced} fsyncs \
                     during the rounds{per_fsync}"
                );
            }
            drop(topic);
            store.close().expect("close store");
        }
    }
    group.finish();
}

/// Rolls every partition of `topic` whose active segment might fill during
/// the next round (`round_bytes` of frames), outside the timing: no round
/// seals a segment. A roll under `Durability::Never` is an fsync of up to a
/// whole segment on the append path (64 MiB here), and its cost per byte is
/// the same whatever the partition count; but with partitions filling at
/// the same rate, rolls come in waves (every partition in the same round),
/// few enough for 16 partitions that a sample with a wave or without one
/// decided the figure.
fn make_room(topic: &Topic, round_bytes: u64, segment_bytes: u64) {
    let room = segment_bytes - (DATA_START + FOOTER_LEN) as u64;
    for p in 0..topic.partitions() {
        let log = topic.partition(p).expect("partition");
        let used = log.segments().last().map_or(0, |s| if s.sealed { 0 } else { s.data_bytes });
        if used + round_bytes > room {
            log.roll().expect("roll");
        }
    }
}

/// A log of `COMPACT_RECORDS` records keyed by `keys[order[i]]`, in
/// `COMPACT_SEGMENT` segments, rolled so that every record is in a sealed
/// segment.
fn build_log(keys: &[Vec<u8>], order: &[u32], value: &[u8]) -> (TempDir, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default().with_segment_bytes(COMPACT_SEGMENT).with_durability(Durability::Never);
    let log = Log::open(dir.path(), config).expect("open");
    for chunk in order.chunks(100) {
        let batch: Vec<Record<'_>> = chunk.iter().map(|&k| Record::new(value).with_key(&keys[k as usize])).collect();
        log.append_batch(&batch).expect("append");
    }
    log.roll().expect("roll");
    (dir, log)
}

fn compaction(c: &mut Criterion) {
    let value = vec![0x5Au8; VALUE];
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let policy = Compaction::default();
    let mut group = common::flat_group(c, "compaction", Duration::from_millis(500), Duration::from_secs(5));
    for key_count in COMPACT_KEYS {
        let keys: Vec<Vec<u8>> = (0..key_count).map(|k| format!("key-{k:08}").into_bytes()).collect();
        let order: Vec<u32> = if key_count == COMPACT_RECORDS {
            (0..COMPACT_RECORDS as u32).collect()
        } else {
            let mut rng = Rng::new(0x7091C);
            (0..COMPACT_RECORDS).map(|_| rng.below(key_count) as u32).collect()
        };

        // One compaction outside the timing: the figures to check and report.
        let (_dir, log) = build_log(&keys, &order, &value);
        let segments = log.segments();
        let sealed: Vec<_> = segments.iter().filter(|s| s.sealed).collect();
        let records: u64 = sealed.iter().map(|s| s.records).sum();
        let bytes: u64 = sealed.iter().map(|s| s.data_bytes).sum();
        assert_eq!(records, COMPACT_RECORDS, "every record is in a sealed segment");
        let out = log.compact_at(&policy, now).expect("compact");
        assert_eq!(out.segments_examined, sealed.len());
        assert_eq!(out.records_removed, COMPACT_RECORDS - out.keys as u64);
        eprintln!(
            "compaction/{key_count}keys: {records} records, {bytes} bytes in {} sealed segments; {} keys, \
             {} records ({} bytes) removed, {} segments rewritten",
            sealed.len(),
            out.keys,
            out.records_removed,
            out.bytes_removed,
            out.segments_rewritten
        );
        drop(log);

        for (unit, throughput) in [("records", Throughput::Elements(records)), ("bytes", Throughput::Bytes(bytes))] {
            group.throughput(throughput);
            group.bench_function(format!("{key_count}keys/{unit}"), |b| {
                b.iter_batched_ref(
                    || build_log(&keys, &order, &value),
                    |(_dir, log)| log.compact_at(&policy, now).expect("compact"),
                    BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, produce, compaction);
criterion_main!(benches);
