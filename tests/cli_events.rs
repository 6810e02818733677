//! Tests of the `annal events` commands (`append`, `read`, `all`,
//! `subscribe`, `streams`), each run as a separate process.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use annal::events::{DeleteMode, EventStore, EventStoreConfig, ExpectedVersion, StreamMetadata};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::cli::{json_lines, ok, p, run, spawn_lines, stderr, stdout};
use serde_json::{Value, json};

/// Runs a command that must fail with `code` and one line on stderr containing `needle`.
fn fails(args: &[&str], stdin: &[u8], code: i32, needle: &str) -> Output {
    let out = run(args, stdin);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("annal: error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
    assert!(stdout(&out).is_empty(), "{args:?} printed {}", stdout(&out));
    out
}

/// `annal events append DIR STREAM extra...` with `input`; its one output object.
fn append(dir: &Path, stream: &str, input: &str, extra: &[&str]) -> Value {
    let mut args = vec!["events", "append", p(dir), stream];
    args.extend_from_slice(extra);
    let lines = json_lines(&ok(&args, input.as_bytes()));
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

/// The output of `annal events args...`, one JSON value per line.
fn events(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    json_lines(&ok(&all, b""))
}

/// `(stream, version)` of each event.
fn ids(events: &[Value]) -> Vec<(String, u64)> {
    events.iter().map(|e| (e["stream"].as_str().unwrap().to_owned(), e["version"].as_u64().unwrap())).collect()
}

fn positions(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["position"].as_u64().unwrap()).collect()
}

/// A store in `tmp/store` with, in this order: order-1 v0 and v1 (OrderPlaced,
/// OrderPaid), cart-1 v0 (CartOpened), order-2 v0 (OrderPlaced), cart-1 v1
/// (OrderPlaced).
fn sample_store(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("store");
    let placed = r#"{"type":"OrderPlaced","data":{"total":30}}"#;
    let paid = r#"{"type":"OrderPaid","data":{"amount":30}}"#;
    append(&dir, "order-1", &format!("{placed}\n{paid}\n"), &[]);
    append(&dir, "cart-1", "{\"type\":\"CartOpened\",\"data\":{}}\n", &[]);
    append(&dir, "order-2", &format!("{placed}\n"), &[]);
    append(&dir, "cart-1", &format!("{placed}\n"), &[]);
    dir
}

#[test]
fn append_then_read_round_trips_the_json_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let id = "0190a4c2-7d4e-7b1a-9c3e-2f5d6a7b8c9d";
    // Member order, spacing and a number no float holds are kept as written.
    let input = format!(
        "{{\"type\":\"OrderPlaced\",\"data\":{{\"z\":1, \"a\":[1,2], \"big\":123456789012345678901234567890}},\
         \"metadata\":{{\"$correlationId\":\"c-1\"}},\"id\":\"{id}\"}}\n{{\"type\":\"OrderPaid\",\"data\":\"paid\"}}\n"
    );
    let written = append(&dir, "order-17", &input, &["--expected", "no-stream"]);
    assert_eq!(written, json!({"stream": "order-17", "first_version": 0, "next_expected_version": 1, "position": 1}));
    let out = ok(&["events", "read", p(&dir), "order-17"], b"");
    let first = out.lines().next().unwrap();
    assert!(first.contains(r#""data":{"z":1, "a":[1,2], "big":123456789012345678901234567890}"#), "{first}");
    let read = json_lines(&out);
    assert_eq!(ids(&read), [("order-17".to_owned(), 0), ("order-17".to_owned(), 1)]);
    assert_eq!(positions(&read), [0, 1]);
    assert_eq!(read[0]["id"], id);
    assert_eq!(read[0]["type"], "OrderPlaced");
    assert_eq!(read[0]["metadata"], json!({"$correlationId": "c-1"}));
    assert_eq!(read[1]["data"], "paid");
    assert!(read[1].get("metadata").is_none(), "no metadata, no member: {}", read[1]);
    assert!(read[1]["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for e in &read {
        let t = e["timestamp"].as_i64().unwrap();
        assert!(t > now - 600_000 && t <= now, "{t} is a timestamp in milliseconds of now ({now})");
    }
    // Expected states: exists, then the exact version.
    let next = append(&dir, "order-17", "{\"type\":\"OrderShipped\",\"data\":{}}\n", &["--expected", "exists"]);
    assert_eq!(next, json!({"stream": "order-17", "first_version": 2, "next_expected_version": 2, "position": 2}));
    let next = append(&dir, "order-17", "{\"type\":\"OrderClosed\",\"data\":null}\n", &["--expected", "2"]);
    assert_eq!((next["first_version"].as_u64(), next["position"].as_u64()), (Some(3), Some(3)));
    assert_eq!(events(&["read", p(&dir), "order-17"])[3]["data"], Value::Null);
    // An unknown stream reads as nothing.
    assert!(ok(&["events", "read", p(&dir), "order-99"], b"").is_empty());
}

#[test]
fn all_lines_of_one_append_are_one_atomic_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let lines: String = (0..5).map(|i| format!("{{\"type\":\"Step\",\"data\":{{\"i\":{i}}}}}\n")).collect();
    let written = append(&dir, "job-1", &lines, &[]);
    assert_eq!(written, json!({"stream": "job-1", "first_version": 0, "next_expected_version": 4, "position": 4}));
    // Another stream's append follows, all five before it.
    let other = append(&dir, "job-2", &lines[..lines.find('\n').unwrap() + 1], &[]);
    assert_eq!(other["position"], 5);
    let all = events(&["all", p(&dir)]);
    assert_eq!(positions(&all), [0, 1, 2, 3, 4, 5]);
    assert_eq!(all.iter().map(|e| e["data"]["i"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 0]);
    // A bad fifth line: none of the four good ones is written.
    let four: String = lines.lines().take(4).map(|l| format!("{l}\n")).collect();
    let bad = format!("{four}{{\"type\":\"Step\"}}\n");
    let before = events(&["all", p(&dir)]);
    fails(&["events", "append", p(&dir), "job-1"], bad.as_bytes(), 1, "line 5 of stdin");
    assert_eq!(events(&["all", p(&dir)]), before);
}

#[test]
fn a_wrong_expected_version_exits_3_names_the_actual_version_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let before = events(&["all", p(&dir)]);
    let line = b"{\"type\":\"OrderPaid\",\"data\":{}}\n";
    let cases: [(&str, &str, &str); 5] = [
        ("order-1", "0", "the stream is at version 1"),
        ("order-1", "5", "the stream is at version 1"),
        ("order-1", "no-stream", "the stream is at version 1"),
        ("order-9", "exists", "the stream is at no stream"),
        ("order-9", "0", "the stream is at no stream"),
    ];
    for (stream, expected, actual) in cases {
        let args = ["events", "append", p(&dir), stream, "--expected", expected];
        let out = fails(&args, line, 3, actual);
        assert!(stderr(&out).contains("wrong expected version"), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("{stream:?}")), "{}", stderr(&out));
    }
    assert_eq!(events(&["all", p(&dir)]), before);
    // The right one goes through.
    assert_eq!(
        append(&dir, "order-1", "{\"type\":\"OrderPaid\",\"data\":{}}\n", &["--expected", "1"])["first_version"],
        2
    );
    // A value that is none of them is a wrong argument.
    fails(&["events", "append", p(&dir), "order-1", "--expected", "maybe"], line, 1, "--expected");
}

#[test]
fn a_malformed_line_is_refused_by_its_number_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let good = "{\"type\":\"T\",\"data\":1}";
    let cases: [(&str, &str); 13] = [
        ("{\"type\":\"T\",\"data\":", "is not JSON"),
        ("[1,2]", "is not a JSON object but an array"),
        ("plain text", "is not JSON"),
        ("", "is empty"),
        ("{\"data\":1}", "has no \"type\""),
        ("{\"type\":\"T\"}", "has no \"data\""),
        ("{\"type\":7,\"data\":1}", "\"type\" that is not a string"),
        ("{\"type\":\"\",\"data\":1}", "event type cannot be empty"),
        ("{\"type\":\"T\",\"data\":1,\"dat\":2}", "unknown member \"dat\""),
        ("{\"type\":\"T\",\"data\":1,\"metadata\":[1]}", "\"metadata\" that is an array, not an object"),
        ("{\"type\":\"T\",\"data\":1,\"id\":\"42\"}", "\"id\" that is not a UUID"),
        ("{\"type\":\"T\",\"data_b64\":\"***\"}", "\"data_b64\" that is not base64"),
        ("{\"type\":\"T\",\"data\":1,\"data_b64\":\"AA==\"}", "both \"data\" and \"data_b64\""),
    ];
    for (line, why) in cases {
        let input = format!("{good}\n{good}\n{line}\n{good}\n");
        let out = fails(&["events", "append", p(&dir), "s-1"], input.as_bytes(), 1, "line 3 of stdin");
        assert!(stderr(&out).contains(why), "{line:?}: expected {why:?} in {}", stderr(&out));
        assert!(stderr(&out).contains("nothing was appended"), "{}", stderr(&out));
        assert!(!dir.exists(), "{line:?}: the store was created");
    }
    // Not UTF-8, and no input at all.
    let out = fails(&["events", "append", p(&dir), "s-1"], b"\xff\xfe\n", 1, "line 1 of stdin is not UTF-8");
    assert!(stderr(&out).contains("--type"), "{}", stderr(&out));
    fails(&["events", "append", p(&dir), "s-1"], b"", 1, "stdin holds no event");
    assert!(!dir.exists());
    // The same lines on an existing store leave it as it was.
    append(&dir, "s-1", &format!("{good}\n"), &[]);
    let input = format!("{good}\n{{\"type\":\"T\",\"data\":1,\"x\":0}}\n");
    fails(&["events", "append", p(&dir), "s-1"], input.as_bytes(), 1, "line 2 of stdin has an unknown member \"x\"");
    assert_eq!(events(&["all", p(&dir)]).len(), 1);
}

#[test]
fn invalid_stream_ids_and_oversized_events_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let line = b"{\"type\":\"T\",\"data\":1}\n";
    fails(&["events", "append", p(&dir), ""], line, 1, "invalid stream id \"\": a stream id cannot be empty");
    let long = "s".repeat(1025);
    fails(&["events", "append", p(&dir), &long], line, 1, "a stream id of 1025 bytes (at most 1024)");
    fails(&["events", "append", p(&dir), "s-1", "--type", ""], line, 1, "invalid --type");
    assert!(!dir.exists());
    append(&dir, "s-1", "{\"type\":\"T\",\"data\":1}\n", &[]);
    // A second line of over 1 MiB: nothing is written.
    let big = format!("small\n{}\n", "x".repeat(1_100_000));
    let out = fails(&["events", "append", p(&dir), "s-1", "--type", "Blob"], big.as_bytes(), 1, "line 2 of stdin");
    assert!(stderr(&out).contains("more than the largest allowed (1048576)"), "{}", stderr(&out));
    assert_eq!(ids(&events(&["all", p(&dir)])), [("s-1".to_owned(), 0)]);
    fails(&["events", "read", p(&dir), ""], b"", 1, "invalid stream id");
}

#[test]
fn binary_data_round_trips_as_data_b64() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // With --type, a line that is JSON is JSON data, any other line binary.
    let input = b"plain text\n{\"json\":true}\n\xff\x00\x01\n\n  42 \n";
    let out = run(&["events", "append", p(&dir), "blob-1", "--type", "Chunk"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = events(&["read", p(&dir), "blob-1"]);
    assert_eq!(read.len(), 5);
    assert!(read.iter().all(|e| e["type"] == "Chunk"));
    assert_eq!(read[0]["data_b64"], BASE64.encode(b"plain text"));
    assert_eq!(read[1]["data"], json!({"json": true}));
    assert_eq!(read[2]["data_b64"], BASE64.encode(b"\xff\x00\x01"));
    assert_eq!(read[3]["data_b64"], "");
    assert_eq!(read[4]["data"], 42);
    for e in &read[..4] {
        assert!(e.get("data").is_none() || e.get("data_b64").is_none(), "{e}");
    }
    // data_b64 and metadata_b64 in a JSON line, and back.
    let bytes: Vec<u8> = (0..=255).collect();
    let line = json!({"type": "Raw", "data_b64": BASE64.encode(&bytes), "metadata_b64": BASE64.encode(b"\x00meta")});
    append(&dir, "blob-2", &format!("{line}\n"), &[]);
    let read = events(&["read", p(&dir), "blob-2"]);
    assert_eq!(BASE64.decode(read[0]["data_b64"].as_str().unwrap()).unwrap(), bytes);
    assert_eq!(BASE64.decode(read[0]["metadata_b64"].as_str().unwrap()).unwrap(), b"\x00meta");
    assert!(read[0].get("data").is_none() && read[0].get("metadata").is_none(), "{}", read[0]);
}

#[test]
fn read_output_appends_to_another_store_as_the_same_events_and_a_retry_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let copy = tmp.path().join("copy");
    let lines = ok(&["events", "read", p(&dir), "order-1"], b"");
    let written = append(&copy, "order-1", &lines, &["--expected", "no-stream"]);
    assert_eq!(written, json!({"stream": "order-1", "first_version": 0, "next_expected_version": 1, "position": 1}));
    let strip = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .map(|mut e| {
                let o = e.as_object_mut().unwrap();
                o.remove("position");
                o.remove("timestamp");
                e
            })
            .collect()
    };
    assert_eq!(strip(events(&["read", p(&copy), "order-1"])), strip(json_lines(&lines)));
    // The same events again (their ids are in the stream): the first result, nothing written.
    assert_eq!(append(&copy, "order-1", &lines, &[]), written);
    assert_eq!(events(&["all", p(&copy)]).len(), 2);
}

#[test]
fn reads_go_backward_from_a_version_or_position_and_stop_at_max() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // In appends of 250 (reading an event decodes the whole append it came in).
    for chunk in 0..10 {
        let lines: String =
            (chunk * 250..(chunk + 1) * 250).map(|i| format!("{{\"type\":\"Tick\",\"data\":{i}}}\n")).collect();
        append(&dir, "clock-1", &lines, &[]);
    }
    append(&dir, "other-1", "{\"type\":\"Tock\",\"data\":0}\n", &[]);
    // Across pages of the store's reads.
    let versions = |events: Vec<Value>| events.iter().map(|e| e["version"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(versions(events(&["read", p(&dir), "clock-1"])), (0..2500).collect::<Vec<_>>());
    assert_eq!(versions(events(&["read", p(&dir), "clock-1", "--backward"])), (0..2500).rev().collect::<Vec<_>>());
    assert_eq!(
        versions(events(&["read", p(&dir), "clock-1", "--backward", "--from", "1500", "--max", "3"])),
        [1500, 1499, 1498]
    );
    assert_eq!(versions(events(&["read", p(&dir), "clock-1", "--from", "2498", "--max", "5"])), [2498, 2499]);
    assert_eq!(versions(events(&["read", p(&dir), "clock-1", "--backward", "--from", "1"])), [1, 0]);
    assert!(events(&["read", p(&dir), "clock-1", "--max", "0"]).is_empty());
    let all = events(&["all", p(&dir), "--backward"]);
    assert_eq!(positions(&all), (0..2501).rev().collect::<Vec<_>>());
    assert_eq!(all[0]["stream"], "other-1");
    assert_eq!(positions(&events(&["all", p(&dir), "--backward", "--from", "1200", "--max", "2"])), [1200, 1199]);
    assert_eq!(positions(&events(&["all", p(&dir), "--from", "2499"])), [2499, 2500]);
    // The events of a forward read, reversed, are those of a backward one.
    let mut forward = events(&["read", p(&dir), "clock-1"]);
    forward.reverse();
    assert_eq!(forward, events(&["read", p(&dir), "clock-1", "--backward"]));
}

#[test]
fn all_filters_by_category_and_type_and_streams_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let order = |s: &str, v: u64| (s.to_owned(), v);
    let all = events(&["all", p(&dir)]);
    assert_eq!(
        ids(&all),
        [order("order-1", 0), order("order-1", 1), order("cart-1", 0), order("order-2", 0), order("cart-1", 1)]
    );
    assert_eq!(positions(&all), [0, 1, 2, 3, 4]);
    let orders = events(&["all", p(&dir), "--category", "order"]);
    assert_eq!(ids(&orders), [order("order-1", 0), order("order-1", 1), order("order-2", 0)]);
    let placed = events(&["all", p(&dir), "--type", "OrderPlaced"]);
    assert_eq!(ids(&placed), [order("order-1", 0), order("order-2", 0), order("cart-1", 1)]);
    let placed_back = events(&["all", p(&dir), "--type", "OrderPlaced", "--backward", "--max", "2"]);
    assert_eq!(ids(&placed_back), [order("cart-1", 1), order("order-2", 0)]);
    assert_eq!(positions(&events(&["all", p(&dir), "--category", "cart", "--from", "3"])), [4]);
    assert_eq!(positions(&events(&["all", p(&dir), "--category", "order", "--backward", "--from", "2"])), [1, 0]);
    assert!(events(&["all", p(&dir), "--category", "nothing"]).is_empty());
    // The filtered events are those of $all.
    assert!(orders.iter().all(|e| all.contains(e)));
    fails(&["events", "all", p(&dir), "--category", "order", "--type", "OrderPlaced"], b"", 1, "cannot be used with");

    let streams = events(&["streams", p(&dir)]);
    assert_eq!(
        streams,
        [
            json!({"stream": "cart-1", "events": 2, "last_version": 1, "last_position": 4}),
            json!({"stream": "order-1", "events": 2, "last_version": 1, "last_position": 1}),
            json!({"stream": "order-2", "events": 1, "last_version": 0, "last_position": 3}),
        ]
    );
    assert_eq!(events(&["streams", p(&dir), "--category", "cart"]), streams[..1]);
}

#[test]
fn read_as_of_a_time_keeps_the_events_appended_until_then() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    append(&dir, "acct-1", "{\"type\":\"Opened\",\"data\":{}}\n", &[]);
    let first = events(&["read", p(&dir), "acct-1"])[0]["timestamp"].as_i64().unwrap();
    // The clock has moved on before the next append.
    while (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64) <= first {
        std::thread::sleep(Duration::from_millis(1));
    }
    append(&dir, "acct-1", "{\"type\":\"Credited\",\"data\":{}}\n", &[]);
    let last = events(&["read", p(&dir), "acct-1"])[1]["timestamp"].as_i64().unwrap();
    assert!(last > first);
    let as_of = |time: &str| ids(&events(&["read", p(&dir), "acct-1", "--as-of", time])).len();
    assert_eq!(as_of(&first.to_string()), 1);
    assert_eq!(as_of(&(first - 1).to_string()), 0);
    assert_eq!(as_of(&last.to_string()), 2);
    assert_eq!(as_of(&annal::inspect::format_timestamp(first)), 1);
    assert_eq!(as_of(&annal::inspect::format_timestamp(last)), 2);
    assert_eq!(as_of("1970-01-01T00:00:00Z"), 0);
    assert_eq!(as_of("9999-12-31T23:59:59.999+01:00"), 2);
    let backward = events(&["read", p(&dir), "acct-1", "--as-of", &first.to_string(), "--backward"]);
    assert_eq!(ids(&backward), [("acct-1".to_owned(), 0)]);
    fails(&["events", "read", p(&dir), "acct-1", "--as-of", "yesterday"], b"", 1, "RFC 3339");
}

/// The next line a subscription printed, as JSON; fails after a generous
/// bound if none comes.
fn next_event(rx: &Receiver<String>, what: &str) -> Value {
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("subscribe printed no {what}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
}

#[test]
fn subscribe_prints_past_then_live_events_as_all_prints_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let (mut all_sub, all_rx) = spawn_lines(&["events", "subscribe", p(&dir)]);
    let (mut order_sub, order_rx) = spawn_lines(&["events", "subscribe", p(&dir), "--category", "order"]);
    let (mut type_sub, type_rx) =
        spawn_lines(&["events", "subscribe", p(&dir), "--type", "OrderPlaced", "--from", "1"]);
    let (mut stream_sub, stream_rx) = spawn_lines(&["events", "subscribe", p(&dir), "--stream", "cart-1"]);
    // The past events.
    let mut got_all: Vec<Value> = (0..5).map(|_| next_event(&all_rx, "past event")).collect();
    let mut got_order: Vec<Value> = (0..3).map(|_| next_event(&order_rx, "past order event")).collect();
    let mut got_type: Vec<Value> = (0..2).map(|_| next_event(&type_rx, "past OrderPlaced event")).collect();
    let mut got_stream: Vec<Value> = (0..2).map(|_| next_event(&stream_rx, "past cart-1 event")).collect();
    assert_eq!(got_all, events(&["all", p(&dir)]));
    // Live ones, appended by other processes while the subscriptions run:
    // JSON and binary data, metadata, several events in one append.
    let placed = "{\"type\":\"OrderPlaced\",\"data\":{\"total\":5},\"metadata\":{\"$causationId\":\"x\"}}";
    append(&dir, "order-3", &format!("{placed}\n{{\"type\":\"OrderPaid\",\"data_b64\":\"AP8=\"}}\n"), &[]);
    append(&dir, "cart-1", "\u{1}bin\n", &["--type", "CartClosed"]);
    append(&dir, "order-1", &format!("{placed}\n"), &["--expected", "1"]);
    got_all.extend((0..4).map(|_| next_event(&all_rx, "live event")));
    got_order.extend((0..3).map(|_| next_event(&order_rx, "live order event")));
    got_type.extend((0..2).map(|_| next_event(&type_rx, "live OrderPlaced event")));
    got_stream.push(next_event(&stream_rx, "live cart-1 event"));
    for (child, rx) in
        [(&mut all_sub, &all_rx), (&mut order_sub, &order_rx), (&mut type_sub, &type_rx), (&mut stream_sub, &stream_rx)]
    {
        child.kill().unwrap();
        child.wait().unwrap();
        // Nothing more than expected.
        let rest: Vec<String> = rx.iter().collect();
        assert!(rest.is_empty(), "{rest:?}");
    }
    // What each subscription printed is what the reads print.
    assert_eq!(got_all, events(&["all", p(&dir)]));
    assert_eq!(got_order, events(&["all", p(&dir), "--category", "order"]));
    assert_eq!(got_type, events(&["all", p(&dir), "--type", "OrderPlaced", "--from", "1"]));
    assert_eq!(got_stream, events(&["read", p(&dir), "cart-1"]));
    assert_eq!(got_all[6]["data_b64"], "AP8=");
    assert_eq!(got_all[5]["metadata"], json!({"$causationId": "x"}));
}

#[test]
fn subscribe_hides_what_reads_hide_as_the_library_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    {
        let store = EventStore::open(&dir, EventStoreConfig::default()).unwrap();
        store.delete_stream("order-1", ExpectedVersion::Exact(1), DeleteMode::Soft).unwrap();
        // (A hard delete panics in debug builds: u64::MAX + 1 in `append_locked`.)
        store.set_stream_metadata("cart-1", StreamMetadata::default().with_max_count(1)).unwrap();
        store.close().unwrap();
    }
    let before = events(&["all", p(&dir)]);
    assert!(!before.iter().any(|e| e["stream"] == "order-1"), "{before:?}");
    let carts: Vec<_> = before.iter().filter(|e| e["stream"] == "cart-1").map(|e| e["version"].as_u64()).collect();
    assert_eq!(carts, [Some(1)]);
    let (mut sub, rx) = spawn_lines(&["events", "subscribe", p(&dir)]);
    let mut got: Vec<Value> = (0..before.len()).map(|_| next_event(&rx, "past event")).collect();
    assert_eq!(got, before);
    // A soft-deleted stream takes appends again, from the next version.
    let written = append(&dir, "order-1", "{\"type\":\"OrderReopened\",\"data\":{}}\n", &[]);
    assert_eq!(written["first_version"], 2);
    got.push(next_event(&rx, "live event"));
    assert_eq!(got, events(&["all", p(&dir)]));
    assert_eq!(
        (got.last().unwrap()["stream"].as_str(), got.last().unwrap()["version"].as_u64()),
        (Some("order-1"), Some(2))
    );
    sub.kill().unwrap();
    sub.wait().unwrap();
    assert!(rx.iter().next().is_none());
}

#[test]
fn subscribe_from_the_end_prints_only_what_is_appended_after_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let (mut sub, rx) = spawn_lines(&["events", "subscribe", p(&dir), "--from-end", "--stream", "order-1"]);
    // Nothing tells when it has read the end: append until an event comes
    // through; from then on, every event appended is printed.
    let mut appended = 0u64;
    let first = loop {
        append(&dir, "order-1", "{\"type\":\"Ping\",\"data\":{}}\n", &[]);
        appended += 1;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(250)) {
            break serde_json::from_str::<Value>(&line).unwrap();
        }
        assert!(appended < 200, "subscribe --from-end printed nothing");
    };
    // The versions appended are 2 ..= last; the first printed is one of them.
    let last = 1 + appended;
    let first_version = first["version"].as_u64().unwrap();
    assert!((2..=last).contains(&first_version), "{first}");
    let mut versions = vec![first_version];
    while versions.last() < Some(&last) {
        versions.push(next_event(&rx, "appended event")["version"].as_u64().unwrap());
    }
    append(&dir, "order-2", "{\"type\":\"Ping\",\"data\":{}}\n", &[]);
    append(&dir, "order-1", "{\"type\":\"Ping\",\"data\":{}}\n", &[]);
    versions.push(next_event(&rx, "last event")["version"].as_u64().unwrap());
    assert_eq!(versions, (first_version..=last + 1).collect::<Vec<_>>());
    sub.kill().unwrap();
    sub.wait().unwrap();
}

/// Every file below `dir` with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::all_files(dir).into_iter().map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap())).collect()
}

#[test]
fn commands_that_read_refuse_what_is_not_an_event_store_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a store").unwrap();
    let log = tmp.path().join("log");
    assert!(run(&["append", p(&log)], b"a record\n").status.success());
    let cases: [(&Path, &str); 4] = [
        (&missing, "no such directory"),
        (&empty, "it has no events.meta"),
        (&file, "it is a file, not a directory"),
        (&log, "it is an annal log"),
    ];
    for (dir, why) in cases {
        let before = tree(tmp.path());
        for args in [
            &["events", "read", p(dir), "s-1"][..],
            &["events", "all", p(dir)],
            &["events", "all", p(dir), "--category", "s"],
            &["events", "streams", p(dir)],
            &["events", "subscribe", p(dir)],
        ] {
            let out = fails(args, b"", 1, "is not an event store");
            assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        }
        assert!(tree(tmp.path()) == before, "a read of {dir:?} changed files");
        assert_eq!(dir.exists(), dir != missing.as_path());
    }
    // An append creates a store only in a new or empty directory.
    let out =
        fails(&["events", "append", p(&log), "s-1"], b"{\"type\":\"T\",\"data\":1}\n", 1, "is not an event store");
    assert!(stderr(&out).contains("a new store needs a new or empty directory"), "{}", stderr(&out));
    append(&empty, "s-1", "{\"type\":\"T\",\"data\":1}\n", &[]);
    assert_eq!(events(&["all", p(&empty)]).len(), 1);
}

#[test]
fn wrong_arguments_give_one_line_naming_the_subcommand_help() {
    for args in [
        &["events"][..],
        &["events", "read", "dir"],
        &["events", "frobnicate"],
        &["events", "all", "dir", "--max", "-1"],
        &["events", "subscribe", "dir", "--from", "3", "--from-end"],
    ] {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        // `annal events` alone prints the help.
        if let Some(sub) = args.get(1) {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            let help = match ["append", "read", "all", "subscribe", "streams"].contains(sub) {
                true => format!("(see 'annal events {sub} --help')"),
                false => "(see 'annal events --help')".to_owned(),
            };
            assert!(err.starts_with("annal: error: ") && err.trim_end().ends_with(&help), "{args:?}: {err}");
        }
    }
    for sub in ["append", "read", "all", "subscribe", "streams"] {
        let out = run(&["events", sub, "--help"], b"");
        assert!(out.status.success(), "{sub}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("Usage: annal events {sub}")), "{sub}: {}", stdout(&out));
    }
}

/// `meta` prints and sets a stream's metadata, which reads then honour;
/// `delete` soft and hard, with exit 3 on a wrong expected version; and
/// `scavenge` removes what no read returns, leaving every read's answer as
/// it was.
#[test]
fn meta_delete_and_scavenge() {
    let tmp = common::fast_tempdir();
    let dir = sample_store(tmp.path());
    let d = p(&dir);
    assert_eq!(
        events(&["meta", d, "order-1"]),
        [json!({"stream": "order-1", "max_age_ms": null, "max_count": null, "truncate_before": null})]
    );
    let set = events(&["meta", d, "order-1", "--max-count", "1"]);
    assert_eq!(set[0]["max_count"], json!(1));
    assert_eq!(set[0]["position"], json!(5), "the metadata event follows the 5 sample events");
    assert_eq!(ids(&events(&["read", d, "order-1"])), [("order-1".to_owned(), 1)]);
    assert_eq!(events(&["meta", d, "order-1"])[0]["max_count"], json!(1));

    fails(&["events", "delete", d, "order-2", "--expected", "5"], b"", 3, "is at version 0");
    assert_eq!(events(&["delete", d, "order-2"]), [json!({"stream": "order-2", "deleted": "soft", "position": 6})]);
    assert!(events(&["read", d, "order-2"]).is_empty(), "a soft-deleted stream reads as not found");
    let again = append(&dir, "order-2", r#"{"type":"OrderPlaced","data":{}}"#, &["--expected", "no-stream"]);
    assert_eq!(again["first_version"], json!(1), "appending again continues its versions");

    assert_eq!(events(&["delete", d, "cart-1", "--hard"])[0]["deleted"], json!("hard"));
    fails(&["events", "read", d, "cart-1"], b"", 1, "is deleted (hard)");
    fails(&["events", "append", d, "cart-1"], br#"{"type":"X","data":1}"#, 1, "is deleted (hard)");

    let before = events(&["all", d]);
    let scavenged = events(&["scavenge", d]);
    assert_eq!(scavenged.len(), 1);
    assert!(scavenged[0]["segments_examined"].as_u64().unwrap() >= 1, "{scavenged:?}");
    // order-1 v0, order-2 v0 (soft-deleted, not its last), cart-1 v0 and v1.
    assert_eq!(scavenged[0]["events_removed"], json!(4), "{scavenged:?}");
    assert_eq!(events(&["all", d]), before, "every read gives what it gave before");
    fails(&["events", "scavenge", p(&tmp.path().join("nothing"))], b"", 1, "not an event store");
    fails(&["events", "meta", d, "s", "--max-count", "x"], b"", 1, "invalid value");
}

/// `verify`, `stats` and `dump` understand an event store: its global log,
/// its index runs (a damaged one is a warning: the next open rebuilds it),
/// and its events.
#[test]
fn verify_stats_and_dump_of_an_event_store() {
    let tmp = common::fast_tempdir();
    let dir = sample_store(tmp.path());
    let d = p(&dir);
    let out = ok(&["verify", d], b"");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("5 events"), "{out}");
    let stats = ok(&["stats", d], b"");
    assert!(stats.contains("events: 5 (positions below 5)"), "{stats}");
    assert!(stats.contains("records: 5"), "{stats}");
    let dump = ok(&["dump", d], b"");
    assert!(dump.contains("order-1"), "{dump}");
    // Damage one index run: a warning, which the next open repairs.
    let run = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "run"))
        .expect("an index run");
    let mut bytes = std::fs::read(&run).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&run, bytes).unwrap();
    let out = run_annal(&["verify", d]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("the next open rebuilds it"), "{}", stdout(&out));
    assert_eq!(events(&["read", d, "order-1"]).len(), 2, "the open rebuilt the index");
    assert!(ok(&["verify", d], b"").starts_with("ok: "));
}

fn run_annal(args: &[&str]) -> Output {
    run(args, b"")
}
