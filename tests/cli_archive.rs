//! Tests of the `annal archive run|list` commands, each run as a separate
//! process, against a store filled through the library.

mod common;

use std::path::Path;
use std::sync::Arc;

use annal::ArchivePolicy;
use annal::{Durability, LocalDirArchive, LogConfig, Record, TopicConfig, TopicStore, TopicStoreConfig};
use common::cli::{ok, p, run, stderr};

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-").repeat(20).into_bytes()
}

/// A store with topic `orders` (2 partitions) holding several sealed segments each.
fn filled_store(dir: &Path) {
    let config = TopicStoreConfig::default().log_config(LogConfig::default().durability(Durability::Never));
    let store = TopicStore::open(dir, config).unwrap();
    let topic = store.create_topic("orders", TopicConfig::default().partitions(2).segment_bytes(16 * 1024)).unwrap();
    store.create_topic("other", TopicConfig::default().partitions(1).segment_bytes(16 * 1024)).unwrap();
    for i in 0..600u64 {
        topic.send_to((i % 2) as u32, &Record::new(&value(i))).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn archive_run_then_list_then_read_back_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tempfile::tempdir().unwrap();
    filled_store(dir.path());

    let out =
        ok(&["archive", "run", "--dir", p(dir.path()), "--archive-dir", p(arch.path()), "--topic", "orders"], b"");
    assert!(out.contains("orders 0: archived "), "{out}");
    assert!(out.contains("orders 1: archived "), "{out}");
    assert!(!out.contains("other"), "{out}");
    let summary = out.lines().last().unwrap();
    assert!(summary.starts_with("archive: ") && summary.ends_with("0 failure(s)"), "{summary}");

    let listed = ok(&["archive", "list", "--dir", p(dir.path())], b"");
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert!(rows.len() >= 4, "{listed}");
    for row in &rows {
        let cols: Vec<&str> = row.split('\t').collect();
        assert_eq!(cols.len(), 6, "{row}");
        assert_eq!(cols[0], "orders");
        let key = cols[5];
        let size: u64 = cols[4].parse().unwrap();
        assert_eq!(std::fs::metadata(arch.path().join(key)).unwrap().len(), size, "{row}");
    }

    // Every record reads back through a store configured with the archive.
    let archive = Arc::new(LocalDirArchive::open(arch.path()).unwrap());
    let store =
        TopicStore::open(dir.path(), TopicStoreConfig::default().archive(archive, ArchivePolicy::default())).unwrap();
    let topic = store.topic("orders").unwrap();
    for part in 0..2u32 {
        let mut reader = topic.read_from(part, 0).unwrap();
        let mut i = u64::from(part);
        while let Some(r) = reader.next_record().unwrap() {
            assert_eq!(r.value(), Some(&value(i)[..]));
            i += 2;
        }
        assert_eq!(i, 600 + u64::from(part));
    }
}

#[test]
fn archive_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tempfile::tempdir().unwrap();
    let out = run(&["archive", "run", "--dir", p(dir.path()), "--archive-dir", p(arch.path())], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not an annal store"), "{err}");
    filled_store(dir.path());
    let out = run(&["archive", "run", "--dir", p(dir.path()), "--archive-dir", p(arch.path()), "--topic", "nope"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1);
    // Nothing archived: list prints the header only.
    assert_eq!(ok(&["archive", "list", "--dir", p(dir.path())], b"").lines().count(), 1);
}

#[test]
fn archive_run_follows_each_topics_own_policy_unless_limits_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    let a = p(arch.path());
    let small = ["--segment-bytes", "4096"];
    ok(&[&["topic", "create", "keep", "--dir", d, "--no-archive"][..], &small].concat(), b"");
    ok(
        &[&["topic", "create", "capped", "--dir", d, "--archive-max-local-bytes", "1000000000"][..], &small].concat(),
        b"",
    );
    ok(&[&["topic", "create", "plain", "--dir", d][..], &small].concat(), b"");
    let lines: String = (0..200).map(|i| format!("line-{i:04}-{}\n", "y".repeat(100))).collect();
    for t in ["keep", "capped", "plain"] {
        ok(&["produce", t, "--dir", d, "--durability", "never"], lines.as_bytes());
    }
    let describe = |t: &str| ok(&["topic", "describe", t, "--dir", d], b"");
    assert!(describe("keep").contains("archive policy: never\n"));
    assert!(describe("capped").contains("archive policy: max local age ms none, max local bytes 1000000000\n"));
    assert!(describe("plain").contains("archive policy: the store's\n"));

    // Without limits: "keep" opts out, "capped" is under its limit, "plain"
    // (no policy of its own) has every sealed segment archived.
    let out = ok(&["archive", "run", "--dir", d, "--archive-dir", a], b"");
    assert!(!out.contains("keep "), "{out}");
    assert!(out.contains("capped 0: archived 0 segment(s)"), "{out}");
    assert!(out.contains("plain 0: archived ") && !out.contains("plain 0: archived 0 "), "{out}");
    // Limits on the command line apply to every topic, "keep" included.
    let out = ok(&["archive", "run", "--dir", d, "--archive-dir", a, "--max-local-bytes", "4096"], b"");
    assert!(out.contains("keep 0: archived ") && !out.contains("keep 0: archived 0 "), "{out}");
    // Everything still reads back, through the archive.
    for t in ["keep", "capped", "plain"] {
        let consumed = ok(&["consume", t, "--dir", d, "--partition", "0", "--archive-dir", a], b"");
        assert_eq!(consumed.lines().count(), 200, "{t}");
        for (got, sent) in consumed.lines().zip(lines.lines()) {
            assert!(got.contains(&format!("\t{sent}")), "{t}: {got} for {sent}");
        }
    }
    // Without the archive, archived offsets are a one-line error naming the archive.
    let out = run(&["consume", "plain", "--dir", d, "--partition", "0"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no archive store configured"), "{}", stderr(&out));
    let out = run(&["topic", "create", "x", "--dir", d, "--no-archive", "--archive-max-local-bytes", "5"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("annal topic create --help"), "{}", stderr(&out));
}
