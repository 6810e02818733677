//! Tests of the `annal` binary's topic commands: `topic create|list|describe|delete`,
//! `produce`, `consume` and `retention run`, each run as a separate process.

mod common;

use std::process::Output;

use annal::{TopicStore, TopicStoreConfig};
use common::cli::{json_lines, ok, p, run, stderr, stdout};

/// Runs a command that must fail with `code` and one line on stderr containing `needle`.
fn fails(args: &[&str], stdin: &[u8], code: i32, needle: &str) -> Output {
    let out = run(args, stdin);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("annal: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
    out
}

#[test]
fn help_works_for_every_topic_command() {
    let top = ok(&["--help"], b"");
    for cmd in ["topic", "produce", "consume", "retention", "compact"] {
        assert!(top.contains(cmd), "top-level help lists {cmd}");
    }
    for cmd in [
        &["topic"][..],
        &["topic", "create"],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["produce"],
        &["consume"],
        &["retention"],
        &["retention", "run"],
        &["compact"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let text = ok(&args, b"");
        assert!(text.contains(&format!("Usage: annal {}", cmd.join(" "))), "{cmd:?}: {text}");
    }
}

#[test]
fn wrong_arguments_give_one_line_naming_the_help_to_read() {
    for (args, help) in [
        (&["topic", "create", "t"][..], "annal topic create --help"),
        (&["topic", "frobnicate"], "annal topic --help"),
        (&["topic", "create", "t", "--dir", "x", "--partitions", "0"], "annal topic create --help"),
        (&["consume", "t", "--dir", "x", "--from", "3"], "annal consume --help"),
        (
            &["consume", "t", "--dir", "x", "--partition", "0", "--from", "1", "--from-time", "5"],
            "annal consume --help",
        ),
        (&["produce", "t"], "annal produce --help"),
        (&["retention", "run"], "annal retention run --help"),
    ] {
        fails(args, b"", 1, help);
    }
}

#[test]
fn create_list_describe_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = p(&dir);
    let out = ok(&["topic", "create", "orders", "--dir", d, "--partitions", "3", "--retention-ms", "3600000"], b"");
    assert_eq!(out, "created topic orders with 3 partition(s)\n");
    ok(&["topic", "create", "audit", "--dir", d, "--cleanup-policy", "compact", "--retention-bytes", "1048576"], b"");
    assert_eq!(ok(&["topic", "list", "--dir", d], b""), "audit\norders\n");

    let text = ok(&["topic", "describe", "orders", "--dir", d], b"");
    for line in [
        "topic: orders\n",
        "partitions: 3\n",
        "cleanup policy: delete\n",
        "retention ms: 3600000\n",
        "retention bytes: none\n",
        "segment bytes: 67108864\n",
        "tombstone retention ms: 86400000\n",
        "partition\tstart\tnext\trecords\tsegments\tbytes\tarchived\n",
        "0\t0\t0\t0\t",
        "2\t0\t0\t0\t",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    let text = ok(&["topic", "describe", "audit", "--dir", d], b"");
    assert!(text.contains("cleanup policy: compact\n") && text.contains("retention bytes: 1048576\n"), "{text}");
    assert!(text.contains("retention ms: none\n"), "{text}");

    fails(&["topic", "create", "orders", "--dir", d], b"", 1, "topic \"orders\" already exists");
    fails(&["topic", "create", "a/b", "--dir", d], b"", 1, "invalid topic name \"a/b\"");
    fails(&["topic", "create", "x", "--dir", d, "--segment-bytes", "10"], b"", 1, "invalid configuration");
    fails(&["topic", "describe", "nope", "--dir", d], b"", 1, "unknown topic \"nope\"");

    assert_eq!(ok(&["topic", "delete", "orders", "--dir", d], b""), "deleted topic orders\n");
    assert_eq!(ok(&["topic", "list", "--dir", d], b""), "audit\n");
    fails(&["topic", "delete", "orders", "--dir", d], b"", 1, "unknown topic \"orders\"");
    assert!(!dir.join("topics/orders").exists());
}

#[test]
fn commands_refuse_what_is_not_a_store_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let m = p(&missing);
    for args in [
        &["topic", "list", "--dir", m][..],
        &["topic", "describe", "t", "--dir", m],
        &["topic", "delete", "t", "--dir", m],
        &["produce", "t", "--dir", m],
        &["consume", "t", "--dir", m],
        &["retention", "run", "--dir", m],
    ] {
        fails(args, b"x\n", 1, "is not an annal store: no such directory");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
}

/// A file where a directory goes, a log where a store goes and the other way
/// round, and a negative count: each gets one line saying what is wrong and
/// what to run instead.
#[test]
fn wrong_kinds_of_directory_and_negative_numbers_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let f = p(&file);
    for args in [&["topic", "list", "--dir", f][..], &["produce", "t", "--dir", f], &["consume", "t", "--dir", f]] {
        fails(args, b"x\n", 1, "is not an annal store: it is a file, not a directory");
    }
    for args in [&["read", f][..], &["append", f], &["stats", f], &["tail", f]] {
        fails(args, b"x\n", 1, "is not an annal log: it is a file, not a directory");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");

    let store = tmp.path().join("store");
    let s = p(&store);
    ok(&["topic", "create", "t", "--dir", s], b"");
    let out = fails(&["read", s], b"", 1, "(it is a topic store)");
    assert!(
        stderr(&out).contains(&format!("read its topics with `annal consume TOPIC --dir {s}`")),
        "{}",
        stderr(&out)
    );
    let log = tmp.path().join("log");
    let l = p(&log);
    ok(&["append", l], b"x\n");
    let out = fails(&["consume", "t", "--dir", l], b"", 1, "is not an annal store: no topics directory");
    assert!(stderr(&out).contains(&format!("it is a log, read it with `annal read {l}`")), "{}", stderr(&out));

    fails(&["consume", "t", "--dir", s, "--max", "-1"], b"", 1, "--max -1: must be a non-negative integer");
    fails(&["read", l, "--from", "-3"], b"", 1, "--from -3: must be a non-negative integer");
    fails(
        &["topic", "create", "u", "--dir", s, "--partitions", "-2"],
        b"",
        1,
        "--partitions -2: must be a non-negative",
    );
}

/// A second writer of a store is refused with the store's path and the
/// process that holds it, which wrote its id into the lock file.
#[test]
fn a_locked_store_names_the_process_that_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d], b"");
    let store = TopicStore::open(tmp.path(), TopicStoreConfig::default()).unwrap();
    let lock = std::fs::read_to_string(tmp.path().join("store.lock")).unwrap();
    assert_eq!(lock, format!("{}\n", std::process::id()));
    let needle = format!("the store at {d} is locked by another writer (process {})", std::process::id());
    fails(&["produce", "t", "--dir", d], b"x\n", 1, &needle);
    store.close().unwrap();
    ok(&["produce", "t", "--dir", d], b"x\n");
}

#[test]
fn produce_routes_by_key_partition_or_round_robin_and_consume_prints_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--partitions", "4", "--segment-bytes", "65536"], b"");
    // Keyless: round-robin from a random partition, one `partition<tab>offset`
    // line per record.
    ok(&["topic", "create", "rr", "--dir", d, "--partitions", "4", "--segment-bytes", "65536"], b"");
    let out = ok(&["produce", "rr", "--dir", d, "--durability", "never"], b"a\nb\nc\nd\ne\n");
    let sent: Vec<(u32, u64)> = out
        .lines()
        .map(|l| {
            let (p, o) = l.split_once('\t').unwrap();
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .collect();
    let first = sent[0].0;
    let expected: Vec<(u32, u64)> = (0..5).map(|i| ((first + i) % 4, u64::from(i / 4))).collect();
    assert_eq!(sent, expected, "{out}");
    // The same layout in t, by explicit partitions.
    for (value, partition) in [("a", "0"), ("b", "1"), ("c", "2"), ("d", "3"), ("e", "0")] {
        ok(&["produce", "t", "--dir", d, "--partition", partition], format!("{value}\n").as_bytes());
    }
    // Keyed: fnv1a_64("user-1") % 4 = 0, fnv1a_64("user-3") % 4 = 2.
    assert_eq!(ok(&["produce", "t", "--dir", d, "--key", "user-1"], b"k1\nk2\n"), "0\t2\n0\t3\n");
    assert_eq!(ok(&["produce", "t", "--dir", d, "--key", "user-3"], b"k3\n"), "2\t1\n");
    // Explicit partition (a key with it is refused, not ignored).
    fails(&["produce", "t", "--dir", d, "--partition", "3", "--key", "user-1"], b"p3\n", 1, "cannot be used with");
    assert_eq!(ok(&["produce", "t", "--dir", d, "--partition", "3"], b"p3\n"), "3\t1\n");
    assert_eq!(ok(&["produce", "t", "--dir", d], b""), "");
    fails(&["produce", "t", "--dir", d, "--partition", "4"], b"", 1, "partition 4 is out of range");
    fails(&["produce", "nope", "--dir", d], b"x\n", 1, "unknown topic \"nope\"");

    // Consume everything: partition by partition, in offset order.
    let text = ok(&["consume", "t", "--dir", d], b"");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let brief: Vec<(&str, &str, &str, &str)> = rows.iter().map(|r| (r[0], r[1], r[3], r[4])).collect();
    assert_eq!(
        brief,
        [
            ("0", "0", "\\N", "a"),
            ("0", "1", "\\N", "e"),
            ("0", "2", "user-1", "k1"),
            ("0", "3", "user-1", "k2"),
            ("1", "0", "\\N", "b"),
            ("2", "0", "\\N", "c"),
            ("2", "1", "user-3", "k3"),
            ("3", "0", "\\N", "d"),
            ("3", "1", "\\N", "p3"),
        ]
    );
    // One partition, from an offset, at most N.
    let text = ok(&["consume", "t", "--dir", d, "--partition", "0", "--from", "1", "--max", "2"], b"");
    let values: Vec<&str> = text.lines().map(|l| l.rsplit('\t').next().unwrap()).collect();
    assert_eq!(values, ["e", "k1"]);
    assert_eq!(ok(&["consume", "t", "--dir", d, "--max", "3"], b"").lines().count(), 3);
    // JSON carries the partition.
    let rows = json_lines(&ok(&["consume", "t", "--dir", d, "--partition", "2", "--json"], b""));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["partition"], 2);
    assert_eq!(rows[1]["offset"], 1);
    assert_eq!(rows[1]["key"], "user-3");
    assert_eq!(rows[1]["value"], "k3");
    // By time: the first timestamp of partition 0's third record.
    let ts: i64 = ok(&["consume", "t", "--dir", d, "--partition", "0", "--json"], b"")
        .lines()
        .nth(2)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["timestamp"].as_i64().unwrap())
        .unwrap();
    let text = ok(&["consume", "t", "--dir", d, "--partition", "0", "--from-time", &ts.to_string()], b"");
    assert_eq!(text.lines().next().unwrap().split('\t').nth(1), Some("2"), "{text}");
    let far = (ts + 10_000_000).to_string();
    assert_eq!(ok(&["consume", "t", "--dir", d, "--from-time", &far], b""), "");
    // Out of range.
    fails(&["consume", "t", "--dir", d, "--partition", "9"], b"", 1, "partition 9 is out of range");
    fails(&["consume", "t", "--dir", d, "--partition", "1", "--from", "5"], b"", 1, "offset 5 is out of range");
    fails(&["consume", "nope", "--dir", d], b"", 1, "unknown topic");
}

#[test]
fn consume_reads_while_a_writer_holds_the_store_and_produce_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--partitions", "2", "--segment-bytes", "65536"], b"");
    ok(&["produce", "t", "--dir", d, "--partition", "1"], b"one\ntwo\n");
    let store = TopicStore::open(tmp.path(), TopicStoreConfig::default()).unwrap();
    store.topic("t").unwrap().send_to(1, &annal::Record::new(b"three")).unwrap();
    fails(&["produce", "t", "--dir", d], b"x\n", 1, "locked by another writer");
    fails(&["topic", "create", "u", "--dir", d], b"", 1, "locked by another writer");
    fails(&["retention", "run", "--dir", d], b"", 1, "locked by another writer");
    // Read-only commands see the writer's records.
    let text = ok(&["consume", "t", "--dir", d, "--partition", "1"], b"");
    let values: Vec<&str> = text.lines().map(|l| l.rsplit('\t').next().unwrap()).collect();
    assert_eq!(values, ["one", "two", "three"]);
    assert!(ok(&["topic", "describe", "t", "--dir", d], b"").contains("1\t0\t3\t3\t"));
    assert_eq!(ok(&["topic", "list", "--dir", d], b""), "t\n");
    store.close().unwrap();
}

#[test]
fn retention_run_prints_what_each_partition_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(
        &[
            "topic",
            "create",
            "big",
            "--dir",
            d,
            "--partitions",
            "2",
            "--segment-bytes",
            "4096",
            "--retention-bytes",
            "8192",
        ],
        b"",
    );
    ok(&["topic", "create", "small", "--dir", d], b"");
    let lines: String = (0..400).map(|i| format!("record-{i:04}-{}\n", "x".repeat(100))).collect();
    ok(&["produce", "big", "--dir", d, "--durability", "never"], lines.as_bytes());
    ok(&["produce", "small", "--dir", d], b"kept\n");

    let text = ok(&["retention", "run", "--dir", d], b"");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (i, line) in lines[..2].iter().enumerate() {
        assert!(line.starts_with(&format!("big {i}: deleted ")), "{line}");
        assert!(!line.starts_with(&format!("big {i}: deleted 0 ")), "{line}");
    }
    assert_eq!(lines[2], "small 0: deleted 0 segment(s), 0 bytes; start offset 0");
    assert!(lines[3].starts_with("retention: ") && lines[3].ends_with("from 3 partition(s); 0 failure(s)"), "{text}");
    // The start offsets moved, and a second run deletes nothing.
    let describe = ok(&["topic", "describe", "big", "--dir", d], b"");
    let starts: Vec<u64> = describe
        .lines()
        .skip_while(|l| !l.starts_with("partition\t"))
        .skip(1)
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 2);
    assert!(starts.iter().all(|&s| s > 0), "{describe}");
    let first = ok(&["consume", "big", "--dir", d, "--partition", "0", "--max", "1"], b"");
    assert_eq!(first.split('\t').nth(1).unwrap().parse::<u64>().unwrap(), starts[0]);
    let text = ok(&["retention", "run", "--dir", d], b"");
    assert!(text.contains("retention: 0 segment(s), 0 bytes deleted"), "{text}");
}

#[test]
fn a_damaged_topic_meta_is_exit_2_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--partitions", "2"], b"");
    ok(&["topic", "create", "fine", "--dir", d], b"");
    ok(&["produce", "t", "--dir", d], b"a\nb\n");
    let meta = tmp.path().join("topics/t/topic.meta");
    let good = std::fs::read(&meta).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 0x40;
    std::fs::write(&meta, &bad).unwrap();

    fails(&["topic", "describe", "t", "--dir", d], b"", 2, "topics/t/topic.meta");
    fails(&["consume", "t", "--dir", d], b"", 2, "checksum mismatch");
    fails(&["produce", "t", "--dir", d], b"x\n", 2, "topic.meta");
    // The other topics still work, and the damaged one is still listed.
    assert_eq!(ok(&["topic", "list", "--dir", d], b""), "fine\nt\n");
    ok(&["produce", "fine", "--dir", d], b"ok\n");
    // Retention processes the rest, prints the failure, and exits 2.
    let out = run(&["retention", "run", "--dir", d], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("fine 0: deleted 0 segment(s)"), "{text}");
    assert!(text.contains("t -: error: corruption in ") && text.contains("topic.meta"), "{text}");
    assert!(text.contains("1 failure(s)"), "{text}");
    assert!(stderr(&out).contains("retention failed for 1"), "{}", stderr(&out));
    // Nothing was lost: with the file repaired, every record is there.
    assert_eq!(std::fs::read(&meta).unwrap(), bad);
    std::fs::write(&meta, &good).unwrap();
    assert_eq!(ok(&["consume", "t", "--dir", d], b"").lines().count(), 2);
}

#[test]
fn compact_keeps_the_latest_record_of_each_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    let small = ["--segment-bytes", "4096"];
    ok(
        &[&["topic", "create", "state", "--dir", d, "--cleanup-policy", "compact", "--partitions", "2"][..], &small]
            .concat(),
        b"",
    );
    ok(&[&["topic", "create", "log", "--dir", d][..], &small].concat(), b"");
    // Three rounds over four keys; each round's value names the round.
    for round in 0..3 {
        for key in ["a", "b", "c", "d"] {
            let lines: String = (0..10).map(|i| format!("{key}-round{round}-{i}-{}\n", "z".repeat(120))).collect();
            ok(&["produce", "state", "--dir", d, "--key", key, "--durability", "never"], lines.as_bytes());
        }
    }
    ok(&["produce", "log", "--dir", d, "--key", "a"], b"one\ntwo\n");
    let before = ok(&["consume", "state", "--dir", d], b"");
    assert_eq!(before.lines().count(), 120);

    let text = ok(&["compact", "--dir", d], b"");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, line) in lines[..2].iter().enumerate() {
        assert!(line.starts_with(&format!("state {i}: ")), "{line}");
    }
    assert!(lines[2].starts_with("compaction: ") && lines[2].ends_with("from 2 partition(s); 0 failure(s)"), "{text}");
    assert!(!lines[2].starts_with("compaction: 0 record(s)"), "{text}");
    let after = ok(&["consume", "state", "--dir", d], b"");
    let after_lines: Vec<&str> = after.lines().collect();
    assert!(after_lines.len() < 120, "{after}");
    // Every key's latest value is still there, and what remains is a subset
    // of what was there, in the same order, with the same offsets.
    for key in ["a", "b", "c", "d"] {
        assert!(after.contains(&format!("{key}-round2-9-")), "{key}: {after}");
    }
    let mut it = before.lines();
    for line in &after_lines {
        assert!(it.any(|b| b == *line), "{line} was not in the log before, or is out of order");
    }
    // describe counts the records left, not the offsets.
    let describe = ok(&["topic", "describe", "state", "--dir", d], b"");
    let records: u64 = describe
        .lines()
        .skip_while(|l| !l.starts_with("partition\t"))
        .skip(1)
        .map(|l| l.split('\t').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(records, after_lines.len() as u64, "{describe}");
    // The delete-policy topic is untouched; naming it is refused; so is a missing topic.
    assert_eq!(ok(&["consume", "log", "--dir", d], b"").lines().count(), 2);
    fails(&["compact", "--dir", d, "--topic", "log"], b"", 1, "cleanup policy delete");
    fails(&["compact", "--dir", d, "--topic", "nope"], b"", 1, "unknown topic \"nope\"");
    fails(&["compact", "--dir", p(&tmp.path().join("missing"))], b"", 1, "not an annal store");
    // A second run over one topic compacts again but removes nothing more.
    let text = ok(&["compact", "--dir", d, "--topic", "state"], b"");
    assert!(text.ends_with("compaction: 0 record(s), 0 bytes removed from 2 partition(s); 0 failure(s)\n"), "{text}");
}

/// After a clean close every segment of a partition is sealed, and compaction
/// examines and rewrites all of them, the last one included (only an active
/// segment is left alone, and a closed partition has none).
#[test]
fn compact_after_a_clean_close_rewrites_every_sealed_segment_the_last_included() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--cleanup-policy", "compact", "--segment-bytes", "4096"], b"");
    let lines: String = (0..400).map(|i| format!("value-{i}\n")).collect();
    ok(&["produce", "t", "--dir", d, "--key", "k"], lines.as_bytes());
    let describe = ok(&["topic", "describe", "t", "--dir", d], b"");
    let row = describe.lines().last().unwrap();
    let segments: usize = row.split('\t').nth(4).unwrap().parse().unwrap();
    assert!(segments >= 3, "{describe}");
    let text = ok(&["compact", "--dir", d, "--topic", "t"], b"");
    // One key: every segment holds superseded records, the last one too
    // (it holds more than the key's latest record).
    assert!(
        text.contains(&format!("1 key(s); rewrote {segments} of {segments} segment(s); removed 399 record(s)")),
        "{text}"
    );
    let left = ok(&["consume", "t", "--dir", d], b"");
    assert!(left.lines().count() == 1 && left.ends_with("\tk\tvalue-399\n"), "{left}");
}

/// One keyless record per `produce` process: each process starts its
/// round-robin at a random partition, so the records spread over the
/// partitions instead of all going to partition 0.
#[test]
fn one_record_per_produce_process_spreads_over_the_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--partitions", "4", "--segment-bytes", "65536"], b"");
    let mut used = std::collections::BTreeSet::new();
    for i in 0..20 {
        let out = ok(&["produce", "t", "--dir", d, "--durability", "never"], format!("r{i}\n").as_bytes());
        used.insert(out.split('\t').next().unwrap().to_owned());
    }
    // All 20 in one partition by chance: probability 4^-19.
    assert!(used.len() > 1, "every process started at partition {used:?}");
}

/// `--key-separator` splits each line into key and value; `--null-empty`
/// makes an empty value a tombstone; `--tombstone KEY` sends tombstones
/// alone. A line without the separator stops the command after the lines
/// before it, which are stored and printed.
#[test]
fn produce_parses_keys_and_sends_tombstones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--partitions", "1", "--cleanup-policy", "compact"], b"");
    let out = ok(&["produce", "t", "--dir", d, "--key-separator", "::", "--null-empty"], b"a::1\nb::x::y\na::\n::v\n");
    assert_eq!(out, "0\t0\n0\t1\n0\t2\n0\t3\n");
    // Without --null-empty an empty value is an empty value.
    assert_eq!(ok(&["produce", "t", "--dir", d, "--key-separator", ":"], b"c:\n"), "0\t4\n");
    let out = fails(&["produce", "t", "--dir", d, "--key-separator", ":"], b"d:1\nno separator\ne:2\n", 1, "line 2");
    assert!(stderr(&out).contains("has no key separator \":\": no separator"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0\t5\n", "the record before the bad line is stored and acknowledged");
    assert_eq!(ok(&["produce", "t", "--dir", d, "--tombstone", "b", "--tombstone", "c"], b"ignored\n"), "0\t6\n0\t7\n");

    let rows = json_lines(&ok(&["consume", "t", "--dir", d, "--json"], b""));
    let kv: Vec<(String, serde_json::Value)> =
        rows.iter().map(|r| (r["key"].as_str().unwrap().to_owned(), r["value"].clone())).collect();
    let s = |v: &str| serde_json::Value::String(v.into());
    let null = serde_json::Value::Null;
    assert_eq!(
        kv,
        [
            ("a".into(), s("1")),
            ("b".into(), s("x::y")),
            ("a".into(), null.clone()),
            ("".into(), s("v")),
            ("c".into(), s("")),
            ("d".into(), s("1")),
            ("b".into(), null.clone()),
            ("c".into(), null),
        ]
    );
    fails(&["produce", "t", "--dir", d, "--null-empty"], b"x\n", 1, "--null-empty needs --key or --key-separator");
    fails(&["produce", "t", "--dir", d, "--key", "k", "--key-separator", ":"], b"", 1, "cannot be used with");
    fails(&["produce", "t", "--dir", d, "--key-separator", ""], b"", 1, "--key-separator");
}

/// `consume --follow` prints what the topic holds, then what producers in
/// other processes append to any partition, until --max records.
#[test]
fn consume_follow_prints_what_is_appended_to_every_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let d = p(tmp.path());
    ok(&["topic", "create", "t", "--dir", d, "--partitions", "3", "--segment-bytes", "65536"], b"");
    ok(&["produce", "t", "--dir", d, "--partition", "1"], b"before\n");
    let (mut child, rx) = common::cli::spawn_lines(&["consume", "t", "--dir", d, "--follow", "--max", "4"]);
    let next = || rx.recv_timeout(std::time::Duration::from_secs(60)).expect("consume --follow printed a line");
    assert!(next().starts_with("1\t0\t"));
    for partition in ["2", "0", "1"] {
        ok(&["produce", "t", "--dir", d, "--partition", partition], format!("to-{partition}\n").as_bytes());
        let line = next();
        assert!(line.starts_with(&format!("{partition}\t")) && line.ends_with(&format!("to-{partition}")), "{line}");
    }
    // --max 4 reached: it exits on its own.
    assert!(child.wait().unwrap().success());
}
