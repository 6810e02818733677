//! Tests of the persistent subscription commands: `annal events subscribe
//! DIR --group G ...` and `annal events groups DIR`, each run as a separate
//! process.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::cli::{json_lines, ok, p, run, spawn_lines, stderr, stdout};
use serde_json::Value;

/// Runs a command that must fail with `code` and one line on stderr containing `needle`.
fn fails(args: &[&str], code: i32, needle: &str) -> Output {
    let out = run(args, b"");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    // Corruption (exit 2) is said without "error:".
    let prefix = if code == 2 { "annal: " } else { "annal: error: " };
    assert!(err.starts_with(prefix), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
    assert!(stdout(&out).is_empty(), "{args:?} printed {}", stdout(&out));
    out
}

fn append(dir: &Path, stream: &str, input: &str) {
    ok(&["events", "append", p(dir), stream], input.as_bytes());
}

/// A store in `tmp/store`: order-1 v0 and v1, cart-1 v0, order-2 v0, cart-1 v1.
fn sample_store(tmp: &Path) -> PathBuf {
    let dir = tmp.join("store");
    let placed = r#"{"type":"OrderPlaced","data":{"total":30}}"#;
    let paid = r#"{"type":"OrderPaid","data":{"amount":30}}"#;
    append(&dir, "order-1", &format!("{placed}\n{paid}\n"));
    append(&dir, "cart-1", "{\"type\":\"CartOpened\",\"data\":{}}\n");
    append(&dir, "order-2", &format!("{placed}\n"));
    append(&dir, "cart-1", &format!("{placed}\n"));
    dir
}

/// `annal events subscribe DIR --group G extra...`: the events it printed.
fn consume(dir: &Path, group: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["events", "subscribe", p(dir), "--group", group];
    args.extend_from_slice(extra);
    json_lines(&ok(&args, b""))
}

fn groups(dir: &Path) -> Vec<Value> {
    json_lines(&ok(&["events", "groups", p(dir), "--json"], b""))
}

#[test]
fn a_member_prints_acknowledges_and_the_next_run_resumes_after_what_it_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let orders = json_lines(&ok(&["events", "all", p(&dir), "--category", "order"], b""));
    assert_eq!(orders.len(), 3);
    // Created over the category; printed as `events all` prints them.
    let first = consume(&dir, "billing", &["--create", "--category", "order", "--max", "2"]);
    assert_eq!(first, orders[..2]);
    // The next run goes on after them: acknowledged, and checkpointed on exit.
    let second = consume(&dir, "billing", &["--max", "1"]);
    assert_eq!(second, orders[2..]);
    let listed = groups(&dir);
    assert_eq!(listed.len(), 1);
    let g = &listed[0];
    assert_eq!(
        (g["group"].as_str(), g["target"].as_str(), g["target_kind"].as_str()),
        (Some("billing"), Some("$ce-order"), Some("category"))
    );
    assert_eq!(
        (g["strategy"].as_str(), g["parked"].as_u64(), g["lag"].as_u64()),
        (Some("round-robin"), Some(0), Some(0))
    );
    // With nothing left, it waits for the next event, prints it and stops.
    let (mut child, rx) = spawn_lines(&["events", "subscribe", p(&dir), "--group", "billing", "--max", "1"]);
    append(&dir, "cart-2", "{\"type\":\"CartOpened\",\"data\":{}}\n");
    append(&dir, "order-3", "{\"type\":\"OrderPlaced\",\"data\":{\"total\":1}}\n");
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("the new order event");
    let printed: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((printed["stream"].as_str(), printed["version"].as_u64()), (Some("order-3"), Some(0)));
    assert!(child.wait().unwrap().success());
    assert!(rx.iter().next().is_none(), "one event only");
    assert_eq!(groups(&dir)[0]["lag"], 0);
    // Another group over the same events starts from the first one.
    let all = consume(&dir, "audit", &["--create", "--max", "3"]);
    assert_eq!(all, json_lines(&ok(&["events", "all", p(&dir), "--max", "3"], b"")));
}

#[test]
fn groups_lists_every_group_as_a_table_or_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    assert_eq!(ok(&["events", "groups", p(&dir)], b""), "GROUP  TARGET  STRATEGY  CHECKPOINT  LAG  PARKED\n");
    assert!(groups(&dir).is_empty());
    consume(&dir, "carts", &["--create", "--stream", "cart-1", "--pinned", "--max-retries", "3", "--max", "1"]);
    consume(&dir, "everything", &["--create", "--from-end", "--max", "0"]);
    let table = ok(&["events", "groups", p(&dir)], b"");
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["GROUP", "TARGET", "STRATEGY", "CHECKPOINT", "LAG", "PARKED"]);
    assert_eq!(rows[1][..3], ["carts", "cart-1", "pinned"]);
    assert_eq!(rows[2][..3], ["everything", "$all", "round-robin"]);
    let listed = groups(&dir);
    assert_eq!(listed.len(), 2);
    let carts = &listed[0];
    assert_eq!((carts["max_retries"].as_u64(), carts["start"].as_str()), (Some(3), Some("beginning")));
    // cart-1's second event (position 4) is not acknowledged yet.
    assert_eq!((carts["checkpoint"].as_u64(), rows[1][3]), (Some(4), "4"));
    let everything = &listed[1];
    assert_eq!(everything["target_kind"], "all");
    assert_eq!(everything["start"], "end");
    assert_eq!(everything["lag"], 0, "{everything}");
}

#[test]
fn refusals_name_what_and_where() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = p(&dir);
    fails(
        &["events", "subscribe", d, "--group", "nope"],
        1,
        "no persistent subscription named \"nope\" (create it with --create)",
    );
    consume(&dir, "g", &["--create", "--category", "order", "--max", "1"]);
    fails(&["events", "subscribe", d, "--group", "g", "--stream", "x"], 1, "has target $ce-order, not x");
    fails(&["events", "subscribe", d, "--group", "g", "--pinned"], 1, "has strategy round-robin, not pinned");
    fails(&["events", "subscribe", d, "--group", "g", "--type", "A"], 1, "cannot be used with");
    fails(&["events", "subscribe", d, "--pinned"], 1, "--group");
    fails(&["events", "subscribe", d, "--group", "", "--create"], 1, "invalid group name");
    fails(&["events", "subscribe", d, "--group", "h", "--create", "--category", "a-b"], 1, "no stream is in it");
    let missing = tmp.path().join("missing");
    fails(&["events", "groups", p(&missing)], 1, "is not an event store: no such directory");
    fails(&["events", "subscribe", p(&missing), "--group", "g"], 1, "is not an event store");
    // A damaged state event: corruption (exit 2), naming the stream and position.
    append(&dir, "$persistent-bad", "{\"type\":\"$persistent.settings\",\"data_b64\":\"AAAA\"}\n");
    let out = fails(&["events", "groups", d], 2, "damaged persistent subscription state in stream \"$persistent-bad\"");
    assert!(stderr(&out).contains("at position"), "{}", stderr(&out));
}
