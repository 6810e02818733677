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
    let config = TopicStoreConfig::default().with_log_config(LogConfig::default().with_durability(Durability::Never));
    let store = TopicStore::open(dir, config).unwrap();
    let topic =
        store.create_topic("orders", TopicConfig::default().with_partitions(2).with_segment_bytes(16 * 1024)).unwrap();
    store.create_topic("other", TopicConfig::default().with_partitions(1).with_segment_bytes(16 * 1024)).unwrap();
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
        TopicStore::open(dir.path(), TopicStoreConfig::default().with_archive(archive, ArchivePolicy::default()))
            .unwrap();
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
    // Without the flag too: the store recorded where its archive is.
    let consumed = ok(&["consume", "plain", "--dir", d, "--partition", "0"], b"");
    assert_eq!(consumed.lines().count(), 200);
    let out = run(&["topic", "create", "x", "--dir", d, "--no-archive", "--archive-max-local-bytes", "5"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("annal topic create --help"), "{}", stderr(&out));
}

/// Files under `dir`, recursively.
fn files_under(dir: &Path) -> usize {
    match std::fs::read_dir(dir) {
        Err(_) => 0,
        Ok(entries) => entries.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { files_under(&p) } else { 1 }).sum(),
    }
}

/// The store records where its archive is (store.meta), so `consume`,
/// `stats`, `verify` and `retention run` reach it without `--archive-dir`.
/// Without a reachable archive, `consume` prints the local records and names
/// the archived offsets and the flag that reaches them.
#[test]
fn the_store_remembers_its_archive() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    filled_store(dir.path());
    let all = ok(&["consume", "orders", "--dir", d], b"");
    assert_eq!(all.lines().count(), 600);
    ok(&["archive", "run", "--dir", d, "--archive-dir", p(arch.path()), "--topic", "orders"], b"");
    let recorded = TopicStore::open_read_only(dir.path(), TopicStoreConfig::default()).unwrap().archive_location();
    let location = format!("file://{}", std::path::absolute(arch.path()).unwrap().display());
    assert_eq!(recorded.unwrap().as_deref(), Some(location.as_str()));

    // Found without the flag: every record, archived ones included.
    assert_eq!(ok(&["consume", "orders", "--dir", d], b""), all);
    // Two records after the archived ones, in a local segment.
    ok(&["produce", "orders", "--dir", d, "--partition", "0"], b"local-1\nlocal-2\n");
    let all = ok(&["consume", "orders", "--dir", d], b"");
    assert_eq!(all.lines().count(), 602);
    let verify = ok(&["verify", d, "--verbose"], b"");
    assert!(verify.contains(&format!("store.meta: ok: archive {location}")), "{verify}");

    // Not reachable: the local records, then one line naming what was not printed.
    let moved = tempfile::tempdir().unwrap();
    let elsewhere = moved.path().join("archive");
    std::fs::rename(arch.path(), &elsewhere).unwrap();
    let out = run(&["consume", "orders", "--dir", d], b"");
    assert_eq!(out.status.code(), Some(1));
    let printed = String::from_utf8(out.stdout.clone()).unwrap();
    // Every segment was sealed at the close and archived: the two records
    // produced since are the local ones.
    let values: Vec<&str> = printed.lines().map(|l| l.rsplit('\t').next().unwrap()).collect();
    assert_eq!(values, ["local-1", "local-2"], "{printed}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("partition 0 offsets 0..300, partition 1 offsets 0..300"), "{err}");
    assert!(err.contains(&location) && err.contains("--archive-dir DIR"), "{err}");
    // The flag reaches it where it is now.
    assert_eq!(ok(&["consume", "orders", "--dir", d, "--archive-dir", p(&elsewhere)], b""), all);
    std::fs::rename(&elsewhere, arch.path()).unwrap();
}

/// Retention that drops archived segments deletes their objects and says so;
/// deleting a topic deletes its archived objects, or, while the archive
/// cannot be reached, leaves them (and says so) for the next open that can.
#[test]
fn retention_and_topic_deletion_delete_archived_objects() {
    let dir = tempfile::tempdir().unwrap();
    let arch = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    filled_store(dir.path());
    ok(&["archive", "run", "--dir", d, "--archive-dir", p(arch.path())], b"");
    let archived = files_under(arch.path());
    assert!(archived >= 4, "{archived}");

    // Retention on `other` through the library (a size limit), run by the CLI.
    {
        let store = TopicStore::open(dir.path(), TopicStoreConfig::default()).unwrap();
        store.delete_topic("other").unwrap();
        let c = TopicConfig::default()
            .with_partitions(1)
            .with_segment_bytes(16 * 1024)
            .with_retention(annal::Retention::default().with_max_bytes(1));
        let t = store.create_topic("other", c).unwrap();
        for i in 0..300u64 {
            t.send(&Record::new(&value(i))).unwrap();
        }
        store.close().unwrap();
    }
    ok(&["archive", "run", "--dir", d, "--archive-dir", p(arch.path()), "--topic", "other"], b"");
    let with_other = files_under(&arch.path().join("other"));
    assert!(with_other > 0);
    let out = ok(&["retention", "run", "--dir", d], b"");
    assert!(out.contains(&format!("({with_other} archived: their objects deleted from the archive)")), "{out}");
    assert_eq!(files_under(&arch.path().join("other")), 0, "{out}");

    // The archive moved away: the topic is deleted, its objects stay, and say so.
    let orders = files_under(&arch.path().join("orders"));
    assert!(orders > 0);
    let moved = tempfile::tempdir().unwrap();
    let elsewhere = moved.path().join("archive");
    std::fs::rename(arch.path(), &elsewhere).unwrap();
    let out = ok(&["topic", "delete", "orders", "--dir", d], b"");
    assert!(out.contains(&format!("0 archived segment(s) deleted from the archive, {orders} left")), "{out}");
    assert!(!ok(&["topic", "list", "--dir", d], b"").contains("orders"));
    // Back in place: the next open finishes the deletion.
    std::fs::rename(&elsewhere, arch.path()).unwrap();
    TopicStore::open(dir.path(), TopicStoreConfig::default()).unwrap().close().unwrap();
    assert_eq!(files_under(&arch.path().join("orders")), 0);
    let hidden: Vec<_> = std::fs::read_dir(dir.path().join("topics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");

    // A topic deleted while its archive is reachable: deleted with it.
    filled_store_again(dir.path());
    ok(&["archive", "run", "--dir", d, "--archive-dir", p(arch.path()), "--topic", "orders"], b"");
    let orders = files_under(&arch.path().join("orders"));
    let out = ok(&["topic", "delete", "orders", "--dir", d], b"");
    assert_eq!(out, format!("deleted topic orders, and its {orders} archived segment(s) from the archive\n"));
    assert_eq!(files_under(&arch.path().join("orders")), 0);
}

/// `orders` again, in a store that already has `other`.
fn filled_store_again(dir: &Path) {
    let store = TopicStore::open(dir, TopicStoreConfig::default()).unwrap();
    let topic =
        store.create_topic("orders", TopicConfig::default().with_partitions(2).with_segment_bytes(16 * 1024)).unwrap();
    for i in 0..600u64 {
        topic.send_to((i % 2) as u32, &Record::new(&value(i))).unwrap();
    }
    store.close().unwrap();
}
