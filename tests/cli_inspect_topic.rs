//! Tests of `annal verify` and `annal stats` given a store or a topic
//! directory instead of a log: every topic, every partition, read-only.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use annal::{TopicStore, TopicStoreConfig};
use common::cli::{ok, p, run, stderr, stdout};
use common::{all_files, assert_same_files, segment_files};

/// A store with topic `orders` (3 partitions holding 3, 0 and 2 records,
/// retention 1 h) and topic `audit` (1 partition, compacted, 2 records).
fn make_store() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = p(&dir);
    let orders = ["--partitions", "3", "--segment-bytes", "65536", "--retention-ms", "3600000"];
    ok(&[&["topic", "create", "orders", "--dir", d][..], &orders].concat(), b"");
    ok(&["topic", "create", "audit", "--dir", d, "--cleanup-policy", "compact", "--retention-bytes", "1048576"], b"");
    ok(&["produce", "orders", "--dir", d, "--partition", "0"], b"a\nb\nc\n");
    ok(&["produce", "orders", "--dir", d, "--partition", "2"], b"x\ny\n");
    ok(&["produce", "audit", "--dir", d, "--key", "k"], b"one\ntwo\n");
    (tmp, dir)
}

/// Every file below `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    all_files(dir).into_iter().map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap())).collect()
}

/// Runs `annal args...`, checks the exit status is `code`; returns stdout.
fn status(args: &[&str], code: i32) -> (String, Output) {
    let out = run(args, b"");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}{}", stdout(&out), stderr(&out));
    (stdout(&out), out)
}

/// The one line of `text` starting with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting with {prefix:?} in {text}");
    found[0]
}

/// Flips one byte inside the first record of partition `p`'s first segment
/// of topic `topic`; returns the segment file.
fn damage_first_record(store: &Path, topic: &str, p: u32) -> PathBuf {
    let seg = segment_files(&store.join(format!("topics/{topic}/{p:05}"))).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let frame = annal::record::decode_frame(&bytes[128..]).expect("an intact first frame").len();
    bytes[128 + frame - 1] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    seg
}

/// Flips a byte of topic `topic`'s topic.meta; returns the file.
fn damage_meta(store: &Path, topic: &str) -> PathBuf {
    let meta = store.join(format!("topics/{topic}/topic.meta"));
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&meta, &bytes).unwrap();
    meta
}

#[test]
fn help_mentions_stores_and_topics() {
    for cmd in ["verify", "stats"] {
        let text = ok(&[cmd, "--help"], b"");
        assert!(text.contains("store") && text.contains("topic.meta"), "{cmd}: {text}");
        assert!(text.contains("The log, topic or store directory"), "{cmd}: {text}");
    }
}

#[test]
fn verify_checks_every_partition_of_a_healthy_store_and_changes_nothing() {
    let (_tmp, dir) = make_store();
    let before = files(&dir);
    let (text, out) = status(&["verify", p(&dir)], 0);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    for (prefix, records) in [("audit 0: ok: ", 2), ("orders 0: ok: ", 3), ("orders 1: ok: ", 0), ("orders 2: ok: ", 2)]
    {
        assert!(line(&text, prefix).contains(&format!(" {records} records")), "{prefix}: {text}");
    }
    assert_eq!(text.lines().count(), 5, "{text}");
    let last = text.lines().last().unwrap();
    assert_eq!(last, format!("ok: {} 2 topic(s), 4 partition(s), 7 records, {}", dir.display(), bytes_checked(last)));

    // A topic directory: only its partitions.
    let topic = dir.join("topics/orders");
    let (text, _) = status(&["verify", p(&topic)], 0);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().take(3).zip(0..).all(|(l, i)| l.starts_with(&format!("orders {i}: ok: "))), "{text}");
    assert!(text.lines().last().unwrap().contains(" 1 topic(s), 3 partition(s), 5 records, "), "{text}");
    // Verbose mode passes each partition's notes and ignored files through, prefixed.
    // The store's own metadata first: no archive recorded.
    let (text, _) = status(&["verify", "--verbose", p(&dir)], 0);
    assert_eq!(text.lines().next(), Some("store.meta: ok: archive none recorded"), "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("audit 0: ") || l.starts_with("orders ") || l.starts_with("ok: "))
    );
    assert_same_files(&before, &files(&dir), "verify");
}

/// The `N bytes checked` end of a summary line.
fn bytes_checked(summary: &str) -> &str {
    let at = summary.rfind(", ").unwrap();
    let tail = &summary[at + 2..];
    assert!(tail.ends_with(" bytes checked"), "{summary}");
    tail
}

#[test]
fn verify_names_the_topic_and_partition_of_a_damaged_record() {
    let (_tmp, dir) = make_store();
    let seg = damage_first_record(&dir, "orders", 2);
    let before = files(&dir);
    let (text, out) = status(&["verify", p(&dir)], 2);
    let problem = line(&text, "orders 2: error: corruption: ");
    assert!(problem.contains(&seg.display().to_string()), "{problem}");
    assert!(problem.contains("offset 0 byte 128:") && problem.contains("checksum mismatch"), "{problem}");
    // The damaged record is the first: nothing after it is trusted.
    let summary = line(&text, "orders 2: CORRUPT: 1 corruption problem(s), 0 warning(s); ");
    assert!(summary.contains(" 0 records, offsets 0..2, "), "{summary}");
    for ok_partition in ["audit 0: ok: ", "orders 0: ok: ", "orders 1: ok: "] {
        line(&text, ok_partition);
    }
    let last = text.lines().last().unwrap();
    let corrupt =
        format!("CORRUPT: {} 1 corruption problem(s), 0 warning(s); 2 topic(s), 4 partition(s)", dir.display());
    assert!(last.starts_with(&corrupt), "{last}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("1 corruption problem(s) found"), "{err}");
    // The topic directory alone finds the same.
    let (text, _) = status(&["verify", p(&dir.join("topics/orders"))], 2);
    line(&text, "orders 2: error: corruption: ");
    assert_same_files(&before, &files(&dir), "verify of a damaged partition");
}

#[test]
fn verify_reports_a_damaged_topic_meta_and_still_checks_the_partitions() {
    let (_tmp, dir) = make_store();
    let meta = damage_meta(&dir, "orders");
    let before = files(&dir);
    let (text, out) = status(&["verify", p(&dir)], 2);
    let problem = line(&text, "orders -: error: corruption in ");
    assert!(problem.contains(&meta.display().to_string()) && problem.contains("checksum mismatch"), "{problem}");
    // Unable to read the count, verify checks the partition directories it finds.
    for prefix in ["audit 0: ok: ", "orders 0: ok: ", "orders 1: ok: ", "orders 2: ok: "] {
        line(&text, prefix);
    }
    assert!(text.lines().last().unwrap().starts_with("CORRUPT: "), "{text}");
    assert!(stderr(&out).contains("1 corruption problem(s) found"), "{}", stderr(&out));
    let (text, _) = status(&["verify", p(&dir.join("topics/orders"))], 2);
    assert!(line(&text, "orders -: error: ").contains("topic.meta"), "{text}");
    assert_same_files(&before, &files(&dir), "verify of a damaged topic.meta");
}

#[test]
fn a_missing_partition_directory_is_corruption_for_verify_and_stats() {
    let (tmp, dir) = make_store();
    let partition = dir.join("topics/orders/00001");
    std::fs::rename(&partition, tmp.path().join("moved")).unwrap();
    let (text, _) = status(&["verify", p(&dir)], 2);
    let problem = line(&text, "orders 1: error: corruption: ");
    assert!(problem.contains(&format!("{}: the partition directory is missing", partition.display())), "{problem}");
    for prefix in ["audit 0: ok: ", "orders 0: ok: ", "orders 2: ok: "] {
        line(&text, prefix);
    }
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("CORRUPT: ") && last.contains("2 topic(s), 3 partition(s), 7 records"), "{last}");

    // stats cannot open the topic, says why, and still reports the other one.
    let (text, _) = status(&["stats", p(&dir)], 2);
    assert!(line(&text, "orders -: error: ").contains("partition 1 of topic \"orders\" is missing"), "{text}");
    line(&text, "audit 0: ");
    assert!(line(&text, "store: ").ends_with("; 1 topic(s) could not be opened"), "{text}");
}

#[test]
fn stats_of_a_store_reports_each_partition_and_totals_without_changing_files() {
    let (_tmp, dir) = make_store();
    let before = files(&dir);
    let (text, out) = status(&["stats", p(&dir)], 0);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(
        line(&text, "topic orders: "),
        "topic orders: 3 partition(s), cleanup policy delete, retention ms 3600000, retention bytes none"
    );
    assert_eq!(
        line(&text, "topic audit: "),
        "topic audit: 1 partition(s), cleanup policy compact, retention ms none, retention bytes 1048576"
    );
    let mut data = BTreeMap::new();
    // A partition never written to has no segment file yet.
    for (prefix, next, segs) in [("audit 0: ", 2, 1), ("orders 0: ", 3, 1), ("orders 1: ", 0, 0), ("orders 2: ", 2, 1)]
    {
        let l = line(&text, prefix);
        let fixed = format!("{prefix}start offset 0, next offset {next}, {next} record(s), {segs} segment(s), ");
        assert!(l.starts_with(&fixed) && l.ends_with(" data bytes"), "{l}");
        data.insert(prefix, l[fixed.len()..].trim_end_matches(" data bytes").parse::<u64>().unwrap());
    }
    assert_eq!(data["orders 1: "], 0);
    assert!(data["orders 0: "] > data["orders 2: "] && data["orders 2: "] > 0, "{data:?}");
    let orders = data["orders 0: "] + data["orders 2: "];
    assert_eq!(
        line(&text, "orders total: "),
        format!("orders total: 3 partition(s), 5 record(s), 2 segment(s), {orders} data bytes")
    );
    let all = orders + data["audit 0: "];
    assert_eq!(
        line(&text, "store: "),
        format!("store: 2 topic(s), 4 partition(s), 7 record(s), 3 segment(s), {all} data bytes")
    );
    assert!(!text.contains("archived"), "{text}");
    assert_eq!(text.lines().count(), 9, "{text}");
    assert_same_files(&before, &files(&dir), "stats");

    // No lock: stats reads a store a writer holds open, and sees its records.
    let store = TopicStore::open(&dir, TopicStoreConfig::default()).unwrap();
    store.topic("orders").unwrap().send_to(1, &annal::Record::new(b"late")).unwrap();
    let (text, _) = status(&["stats", p(&dir)], 0);
    assert!(line(&text, "orders 1: ").starts_with("orders 1: start offset 0, next offset 1, "), "{text}");
    store.close().unwrap();
}

#[test]
fn stats_counts_archived_segments() {
    let (tmp, dir) = make_store();
    let d = p(&dir);
    ok(&["topic", "create", "big", "--dir", d, "--segment-bytes", "4096"], b"");
    let lines: String = (0..200).map(|i| format!("record-{i:04}-{}\n", "x".repeat(100))).collect();
    ok(&["produce", "big", "--dir", d, "--durability", "never"], lines.as_bytes());
    let archive = tmp.path().join("archive");
    let out = ok(&["archive", "run", "--dir", d, "--archive-dir", p(&archive), "--topic", "big"], b"");
    let archived: usize = line(&out, "big 0: archived ").split(' ').nth(3).unwrap().parse().unwrap();
    assert!(archived > 0, "{out}");

    let (text, _) = status(&["stats", d], 0);
    let l = line(&text, "big 0: ");
    assert!(l.starts_with("big 0: start offset 0, next offset 200, "), "{l}");
    // Segment counts include the archived ones, and say how many they are,
    // as `topic describe` does; `verify` counts local segments and says so.
    let segments: usize = l.split(", ").nth(3).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(segments >= archived, "{l}");
    let counted = format!("{segments} segment(s) ({archived} archived), ");
    assert!(l.contains(&counted), "{l}");
    assert!(line(&text, "big total: ").contains(&counted), "{text}");
    assert!(line(&text, "store: 3 topic(s), 5 partition(s), ").contains(&format!("({archived} archived)")), "{text}");
    assert!(!line(&text, "orders 0: ").contains("archived"), "{text}");
    let describe = ok(&["topic", "describe", "big", "--dir", d], b"");
    let row: Vec<&str> = describe.lines().last().unwrap().split('\t').collect();
    assert_eq!((row[4], row[6]), (segments.to_string().as_str(), archived.to_string().as_str()), "{describe}");
    let (text, _) = status(&["verify", d], 0);
    let local = segments - archived;
    assert!(line(&text, "big 0: ").contains(&format!("ok: {local} local segments (")), "{text}");
    assert!(line(&text, "big 0: ").contains(&format!("and {archived} archived segments (")), "{text}");
    // `stats` of the partition directory: the archived segments have no local file.
    let (text, _) = status(&["stats", p(&dir.join("topics/big/00000"))], 0);
    assert!(
        text.contains(&format!("segments: {segments} ({segments} sealed, {archived} of them archived, 0 unsealed)"))
    );
}

#[test]
fn stats_of_a_topic_directory_reports_that_topic_only() {
    let (tmp, dir) = make_store();
    let topic = dir.join("topics/orders");
    let (text, _) = status(&["stats", &format!("{}/", topic.display())], 0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("topic orders: 3 partition(s), "), "{text}");
    assert!(lines[1].starts_with("orders 0: start offset 0, next offset 3, "), "{text}");
    assert_eq!(lines[2], "orders 1: start offset 0, next offset 0, 0 record(s), 0 segment(s), 0 data bytes", "{text}");
    assert!(lines[3].starts_with("orders 2: start offset 0, next offset 2, "), "{text}");
    assert!(lines[4].starts_with("orders total: 3 partition(s), 5 record(s), 2 segment(s), "), "{text}");

    // A topic directory copied out of its store: verify still works, stats needs the store.
    let copy = tmp.path().join("orders");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(topic.join("topic.meta"), copy.join("topic.meta")).unwrap();
    for p in ["00000", "00001", "00002"] {
        common::copy_dir(&topic.join(p), &copy.join(p));
    }
    let (text, _) = status(&["verify", p(&copy)], 0);
    assert!(text.lines().last().unwrap().contains("1 topic(s), 3 partition(s), 5 records"), "{text}");
    let (text, out) = status(&["stats", p(&copy)], 1);
    assert!(text.is_empty(), "{text}");
    assert!(stderr(&out).contains("is a topic directory outside a store"), "{}", stderr(&out));
}

#[test]
fn stats_with_a_damaged_topic_meta_still_reports_the_other_topic() {
    let (_tmp, dir) = make_store();
    let meta = damage_meta(&dir, "orders");
    let before = files(&dir);
    let (text, out) = status(&["stats", p(&dir)], 2);
    let problem = line(&text, "orders -: error: corruption in ");
    assert!(problem.contains(&meta.display().to_string()) && problem.contains("checksum mismatch"), "{problem}");
    line(&text, "topic audit: 1 partition(s), ");
    assert!(line(&text, "audit 0: ").starts_with("audit 0: start offset 0, next offset 2, "), "{text}");
    let store = line(&text, "store: ");
    assert!(store.starts_with("store: 1 topic(s), 1 partition(s), 2 record(s), 1 segment(s), "), "{store}");
    assert!(store.ends_with("; 1 topic(s) could not be opened"), "{store}");
    assert!(!text.contains("topic orders:"), "{text}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("1 topic(s) could not be opened"), "{err}");
    // The damaged topic's own directory: exit 2 as well.
    let (text, _) = status(&["stats", p(&dir.join("topics/orders"))], 2);
    line(&text, "orders -: error: corruption in ");
    assert_same_files(&before, &files(&dir), "stats of a damaged topic.meta");
}

/// A damaged store.meta (where the archive is) is damage to data that
/// opening trusts: `verify` names it, exit status 2, and opening the store
/// fails the same way.
#[test]
fn verify_reports_a_damaged_store_meta() {
    let (tmp, dir) = make_store();
    let archive = tmp.path().join("archive");
    ok(&["archive", "run", "--dir", p(&dir), "--archive-dir", p(&archive), "--topic", "orders"], b"");
    let path = dir.join("store.meta");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (text, _) = status(&["verify", p(&dir)], 2);
    assert!(text.starts_with("store.meta: error: corruption in ") && text.contains("store.meta"), "{text}");
    let out = run(&["consume", "orders", "--dir", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("store.meta: checksum mismatch"), "{}", stderr(&out));
}
