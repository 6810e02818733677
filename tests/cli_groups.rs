//! Tests of the `annal` binary's consumer-group commands: `consume --group`,
//! `groups list|describe|reset|delete`, each run as a separate process.

mod common;

use common::cli::{json_lines, ok, run, stderr, stdout};

fn store_with_records(n: usize) -> tempfile::TempDir {
    let dir = common::fast_tempdir();
    let d = dir.path().to_str().unwrap();
    ok(&["topic", "create", "orders", "--partitions", "2", "--dir", d], b"");
    let input: String = (0..n).map(|i| format!("v{i}\n")).collect();
    ok(&["produce", "orders", "--dir", d], input.as_bytes());
    dir
}

fn fails(args: &[&str], code: i32, needle: &str) {
    let out = run(args, b"");
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
}

#[test]
fn a_group_consumes_each_record_once_across_runs_and_its_lag_shows_it() {
    let dir = store_with_records(10);
    let d = dir.path().to_str().unwrap();
    let first = ok(&["consume", "orders", "--dir", d, "--group", "billing", "--max", "4"], b"");
    assert_eq!(first.lines().count(), 4);
    let peek = ok(&["consume", "orders", "--dir", d, "--group", "billing", "--no-commit"], b"");
    assert_eq!(peek.lines().count(), 6);
    let rest = ok(&["consume", "orders", "--dir", d, "--group", "billing", "--json"], b"");
    let rest = json_lines(&rest);
    assert_eq!(rest.len(), 6, "the 6 not committed");
    let mut values: Vec<String> = first.lines().map(|l| l.split('\t').nth(4).unwrap().to_owned()).collect();
    values.extend(rest.iter().map(|r| r["value"].as_str().unwrap().to_owned()));
    values.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(values, want);
    assert!(ok(&["consume", "orders", "--dir", d, "--group", "billing"], b"").is_empty());

    assert_eq!(ok(&["groups", "list", "--dir", d], b""), "billing\n");
    let rows = json_lines(&ok(&["groups", "describe", "billing", "--dir", d, "--json"], b""));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["lag"], 0, "{r}");
        assert_eq!(r["committed"], r["end"], "{r}");
    }
    let table = ok(&["groups", "describe", "billing", "--dir", d], b"");
    assert!(table.starts_with("TOPIC") && table.contains("LAG") && table.contains("total lag 0"), "{table}");
}

#[test]
fn resets_are_dry_runs_until_executed() {
    let dir = store_with_records(10);
    let d = dir.path().to_str().unwrap();
    ok(&["consume", "orders", "--dir", d, "--group", "g"], b"");
    let plan = ok(&["groups", "reset", "g", "--dir", d, "--to-earliest"], b"");
    assert!(plan.contains("dry run") && plan.contains("NEW-OFFSET"), "{plan}");
    let lag = |d: &str| -> u64 {
        json_lines(&ok(&["groups", "describe", "g", "--dir", d, "--json"], b""))
            .iter()
            .map(|r| r["lag"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(lag(d), 0, "the dry run wrote nothing");
    ok(&["groups", "reset", "g", "--dir", d, "--shift-by", "-2", "--topic", "orders:0", "--execute"], b"");
    assert_eq!(lag(d), 2);
    ok(&["groups", "reset", "g", "--dir", d, "--to-earliest", "--execute"], b"");
    assert_eq!(lag(d), 10);
    ok(&["groups", "reset", "g", "--dir", d, "--by-duration", "PT1H", "--execute"], b"");
    assert_eq!(lag(d), 10, "every record is younger than an hour");
    ok(&["groups", "reset", "g", "--dir", d, "--to-datetime", "2999-01-01T00:00:00Z", "--execute"], b"");
    assert_eq!(lag(d), 0);
    let csv = dir.path().join("offsets.csv");
    std::fs::write(&csv, "orders,0,1\norders,1,2\n").unwrap();
    ok(&["groups", "reset", "g", "--dir", d, "--from-file", csv.to_str().unwrap(), "--execute"], b"");
    let total: u64 = json_lines(&ok(&["groups", "describe", "g", "--dir", d, "--json"], b""))
        .iter()
        .map(|r| r["committed"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3);
    ok(&["groups", "delete", "g", "--dir", d], b"");
    assert!(ok(&["groups", "list", "--dir", d], b"").is_empty());
}

#[test]
fn wrong_arguments_and_unknown_groups_are_one_line_errors() {
    let dir = store_with_records(2);
    let d = dir.path().to_str().unwrap();
    fails(&["groups", "describe", "nobody", "--dir", d], 1, "no consumer group");
    fails(&["groups", "delete", "nobody", "--dir", d], 1, "no consumer group");
    fails(&["groups", "reset", "g", "--dir", d], 1, "required");
    fails(&["groups", "reset", "g", "--dir", d, "--to-earliest", "--to-latest"], 1, "cannot be used");
    fails(&["groups", "reset", "g", "--dir", d, "--by-duration", "30m"], 1, "ISO 8601");
    fails(&["groups", "reset", "g", "--dir", d, "--to-earliest", "--topic", "nope"], 1, "nope");
    fails(&["consume", "orders", "--dir", d, "--no-commit"], 1, "--group");
    fails(&["consume", "orders", "--dir", d, "--group", ""], 1, "group name");
    let missing = dir.path().join("missing");
    fails(&["groups", "list", "--dir", missing.to_str().unwrap()], 1, "store");
}

/// A group whose members live in another process cannot be reset, deleted
/// or consumed from the command line: that process holds the store (its
/// lock), and the command is refused with a one-line error, writing nothing.
#[test]
fn commands_are_refused_while_another_process_has_live_members() {
    use std::sync::Arc;
    let dir = store_with_records(4);
    let d = dir.path().to_str().unwrap();
    ok(&["consume", "orders", "--dir", d, "--group", "g", "--max", "2"], b"");
    {
        let store = Arc::new(annal::TopicStore::open(dir.path(), annal::TopicStoreConfig::default()).unwrap());
        let groups = annal::consumer::ConsumerGroups::open(Arc::clone(&store), Default::default()).unwrap();
        let member = groups.join("g", &annal::consumer::MemberConfig::new(["orders"])).unwrap();
        assert_eq!(groups.live_members("g"), 1);
        for args in [
            &["groups", "reset", "g", "--dir", d, "--to-earliest", "--execute"][..],
            &["groups", "delete", "g", "--dir", d],
            &["consume", "orders", "--dir", d, "--group", "g"],
        ] {
            fails(args, 1, "lock");
        }
        // In the process that has the member, a reset is refused too.
        let plan = groups
            .plan_reset("g", &annal::consumer::ResetTarget::Earliest, &annal::consumer::ResetScope::AllTopics)
            .unwrap();
        assert!(matches!(groups.execute_reset(&plan), Err(annal::consumer::Error::GroupNotEmpty { .. })));
        groups.leave("g", &member).unwrap();
        drop(groups);
        Arc::try_unwrap(store).unwrap().close().unwrap();
    }
    let rows = json_lines(&ok(&["groups", "describe", "g", "--dir", d, "--json"], b""));
    assert_eq!(rows.iter().map(|r| r["committed"].as_u64().unwrap_or(0)).sum::<u64>(), 2, "nothing was reset");
    ok(&["groups", "reset", "g", "--dir", d, "--to-earliest", "--execute"], b"");
}
