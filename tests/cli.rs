//! Tests of the `annal` binary: every subcommand, run as a separate process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::cli::{annal, json_lines, p, run, spawn_lines, stderr, stdout};

const SEGMENT_BYTES: &str = "65536";

/// Appends `lines` (newline-separated) to a log in `dir` with small segments; checks success.
fn append(dir: &Path, input: &[u8], extra: &[&str]) -> Output {
    let mut args = vec!["append", p(dir), "--segment-bytes", SEGMENT_BYTES, "--durability", "never"];
    args.extend_from_slice(extra);
    let out = run(&args, input);
    assert!(out.status.success(), "append failed: {}", stderr(&out));
    out
}

/// A log of `n` records `value-{i}` spread over several segments.
fn make_log(n: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let input: String = (0..n).map(|i| format!("value-{i:06}-{}\n", "x".repeat(60))).collect();
    append(&dir, input.as_bytes(), &["--batch", "64"]);
    (tmp, dir)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn help_works_for_every_subcommand() {
    let out = run(&["--help"], b"");
    assert!(out.status.success());
    for cmd in ["bench", "append", "read", "tail", "verify", "dump", "stats"] {
        assert!(stdout(&out).contains(cmd), "top-level help lists {cmd}");
        let out = run(&[cmd, "--help"], b"");
        assert!(out.status.success(), "{cmd} --help: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(&format!("Usage: annal {cmd}")), "{cmd} --help: {text}");
    }
}

#[test]
fn wrong_arguments_give_one_line_and_exit_1() {
    for args in
        [&["read"][..], &["read", "x", "--max", "abc"], &["frobnicate"], &["bench", "--durability", "sometimes"]]
    {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("annal: error: "), "{args:?}: {err}");
    }
}

#[test]
fn bench_json_has_the_keys() {
    let out = run(&["bench", "--records", "3000", "--batch", "50", "--segment-bytes", SEGMENT_BYTES, "--json"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    for key in [
        "records",
        "record_size",
        "batch",
        "durability",
        "append_records_per_sec",
        "append_mb_per_sec",
        "scan_records_per_sec",
        "scan_mb_per_sec",
        "reopen_ms",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {last}");
    }
    assert_eq!(v["records"], 3000);
    assert_eq!(v["record_size"], 100);
    assert_eq!(v["batch"], 50);
    assert_eq!(v["durability"], "never");
    for key in ["append_records_per_sec", "append_mb_per_sec", "scan_records_per_sec", "scan_mb_per_sec"] {
        assert!(v[key].as_f64().unwrap() > 0.0, "{key} in {last}");
    }
    assert!(v["reopen_ms"].as_f64().unwrap() >= 0.0);
    // Not a terminal: no progress bar in the output.
    assert!(!text.contains('\r'));
}

#[test]
fn bench_with_writers_splits_the_records_and_reports_latency() {
    let args = [
        "bench",
        "--records",
        "3001",
        "--batch",
        "7",
        "--writers",
        "3",
        "--durability",
        "always",
        "--segment-bytes",
        SEGMENT_BYTES,
        "--json",
    ];
    let out = run(&args, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("3 writers"), "{text}");
    assert!(text.contains("p99.9"), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.lines().last().expect("output")).expect("JSON");
    assert_eq!(v["records"], 3001);
    assert_eq!(v["writers"], 3);
    // Shares of 1001, 1000 and 1000 records in calls of at most 7: 143 each.
    assert_eq!(v["append_calls"], 3 * 143);
    let l = &v["append_latency_us"];
    let (p50, p99, p999, max) = (
        l["p50"].as_u64().unwrap(),
        l["p99"].as_u64().unwrap(),
        l["p99_9"].as_u64().unwrap(),
        l["max"].as_u64().unwrap(),
    );
    assert!(p50 > 0 && p50 <= p99 && p99 <= p999 && p999 <= max, "{l}");
}

#[test]
fn bench_keeps_a_given_dir_and_refuses_a_used_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    let args =
        ["bench", "--dir", p(&dir), "--records", "500", "--durability", "always", "--segment-bytes", SEGMENT_BYTES];
    let out = run(&args, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!segment_files(&dir).is_empty());
    let out = run(&args, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn append_prints_one_offset_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let input: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let out = append(&dir, input.as_bytes(), &["--batch", "7"]);
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), expected);
    // A second run continues the offsets.
    let out = run(&["append", p(&dir)], b"more\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "100\n");
}

#[test]
fn append_json_prints_one_object_per_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let input: String = (0..25).map(|i| format!("line {i}\n")).collect();
    let out = append(&dir, input.as_bytes(), &["--batch", "10", "--json"]);
    let batches = json_lines(&stdout(&out));
    let ranges: Vec<(u64, u64)> =
        batches.iter().map(|b| (b["first_offset"].as_u64().unwrap(), b["next_offset"].as_u64().unwrap())).collect();
    // Whole input is in the pipe: batches of 10, 10 and 5.
    assert_eq!(ranges, [(0, 10), (10, 20), (20, 25)]);
}

/// The disk fills up while `annal append --batch` runs (a 2 MiB tmpfs):
/// it exits 1 with the error, and every record it printed an offset for is
/// stored, and nothing else: the batch that failed left no record behind.
/// Needs root (to mount the tmpfs); without it the test says so and checks
/// nothing (the library test `tests/log.rs`
/// `a_batch_survives_an_io_error_at_any_call_whole_or_not_at_all` covers
/// the same with injected errors, everywhere).
#[test]
fn append_on_a_full_disk_prints_only_what_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs", p(&mnt)])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED append_on_a_full_disk_prints_only_what_is_stored: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let dir = mnt.join("log");
    let input: String = (0..30_000).map(|i| format!("line {i:06} {}\n", "x".repeat(40))).collect();
    for (round, json) in [(0, false), (1, true)] {
        let dir = dir.with_extension(round.to_string());
        let mut args = vec!["append", p(&dir), "--segment-bytes", SEGMENT_BYTES, "--batch", "100"];
        if json {
            args.push("--json");
        }
        let out = run(&args, input.as_bytes());
        assert_eq!(out.status.code(), Some(1), "the disk fills up: {}", stderr(&out));
        assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
        // What was acknowledged.
        let acked = if json {
            let batches = json_lines(&stdout(&out));
            for w in batches.windows(2) {
                assert_eq!(w[0]["next_offset"], w[1]["first_offset"], "batches follow each other");
            }
            for b in &batches {
                let size = b["next_offset"].as_u64().unwrap() - b["first_offset"].as_u64().unwrap();
                assert!((1..=100).contains(&size), "a batch of {size} records");
            }
            batches.last().unwrap()["next_offset"].as_u64().unwrap()
        } else {
            let offsets: Vec<u64> = stdout(&out).lines().map(|l| l.parse().unwrap()).collect();
            assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
            offsets.len() as u64
        };
        assert!(acked > 1000 && acked < 30_000, "round {round}: {acked} records acknowledged");
        // Exactly those records are in the log, now and after another open.
        for _ in 0..2 {
            let out = run(&["read", p(&dir)], b"");
            assert!(out.status.success(), "{}", stderr(&out));
            let text = stdout(&out);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len() as u64, acked, "round {round}: records stored, {acked} acknowledged");
            for (i, l) in lines.iter().enumerate() {
                assert!(l.starts_with(&format!("{i}\t")) && l.contains(&format!("line {i:06} ")), "{l}");
            }
            let out = run(&["read", p(&dir), "--from", &acked.to_string()], b"");
            assert!(out.status.success() && stdout(&out).is_empty(), "nothing after the last acknowledged record");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn append_with_batch_acknowledges_interactive_lines_without_waiting_for_more() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut child = annal()
        .args(["append", p(&dir), "--batch", "10", "--segment-bytes", SEGMENT_BYTES])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut acks = BufReader::new(child.stdout.take().unwrap()).lines();
    for i in 0..3 {
        writeln!(stdin, "interactive {i}").unwrap();
        stdin.flush().unwrap();
        // Fewer than 10 lines are pending: the offset must come back anyway.
        assert_eq!(acks.next().unwrap().unwrap(), i.to_string());
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(acks.next().is_none());
}

#[test]
fn append_then_read_json_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let input: &[u8] = b"hello\nw\xc3\xb6rld \"quoted\"\tTAB\n\xff\xfe not utf8\n\nlast line without newline";
    append(&dir, input, &["--key", "k1", "--batch", "2"]);
    let out = run(&["read", p(&dir), "--json"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let records = json_lines(&stdout(&out));
    let expected: Vec<&[u8]> =
        vec![b"hello", "wörld \"quoted\"\tTAB".as_bytes(), b"\xff\xfe not utf8", b"", b"last line without newline"];
    assert_eq!(records.len(), expected.len());
    for (i, (r, want)) in records.iter().zip(&expected).enumerate() {
        assert_eq!(r["offset"], i as u64);
        assert!(r["timestamp"].as_i64().unwrap() > 0);
        assert_eq!(r["key"], "k1");
        let got = match std::str::from_utf8(want) {
            Ok(_) => {
                assert!(r.get("value_b64").is_none());
                r["value"].as_str().unwrap().as_bytes().to_vec()
            }
            Err(_) => {
                assert!(r.get("value").is_none(), "{r}");
                BASE64.decode(r["value_b64"].as_str().unwrap()).unwrap()
            }
        };
        assert_eq!(&got[..], *want, "record {i}");
        assert!(r.get("headers").is_none());
    }

    // Plain format: tab-separated, escaped, and --from / --max.
    let out = run(&["read", p(&dir), "--from", "1", "--max", "2"], b"");
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields[0], "1");
    assert_eq!(fields[2], "k1");
    assert_eq!(fields[3], "wörld \"quoted\"\\tTAB");
    assert!(lines[1].ends_with("\t\\xff\\xfe not utf8"), "{}", lines[1]);
}

#[test]
fn read_json_of_keyless_records_and_tombstones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = annal::Log::open(&dir, annal::LogConfig::default().with_segment_bytes(65536)).unwrap();
    let headers = [annal::Header { name: "h", value: b"v" }, annal::Header { name: "bin", value: b"\x80" }];
    log.append(&annal::Record::new(b"v").with_headers(&headers)).unwrap();
    log.append(&annal::Record::tombstone(b"\xc0gone")).unwrap();
    log.close().unwrap();
    let out = run(&["read", p(&dir), "--json"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json_lines(&stdout(&out));
    assert!(r[0]["key"].is_null());
    assert_eq!(r[0]["headers"], serde_json::json!([{"name": "h", "value": "v"}, {"name": "bin", "value_b64": "gA=="}]));
    assert!(r[1]["value"].is_null());
    assert_eq!(BASE64.decode(r[1]["key_b64"].as_str().unwrap()).unwrap(), b"\xc0gone");
}

#[test]
fn read_only_commands_refuse_what_is_not_a_log_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for cmd in ["read", "tail", "verify", "dump", "stats"] {
        for dir in [&missing, &empty] {
            let out = run(&[cmd, p(dir)], b"");
            // verify has fsck's exit statuses: 8 when it could not check.
            let code = if cmd == "verify" { 8 } else { 1 };
            assert_eq!(out.status.code(), Some(code), "{cmd} {dir:?}");
            let err = stderr(&out);
            assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
            assert!(err.contains("is not an annal log"), "{cmd}: {err}");
            assert!(stdout(&out).is_empty());
        }
        assert!(!missing.exists(), "{cmd} created the directory");
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{cmd} wrote into the empty directory");
    }
}

#[test]
fn verify_dump_and_stats_on_a_good_log() {
    let (_tmp, dir) = make_log(2000);
    assert!(segment_files(&dir).len() >= 3);
    let out = run(&["verify", p(&dir)], b"");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok: "), "{text}");
    assert!(text.contains("2000 records"), "{text}");

    let out = run(&["stats", p(&dir)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("records: 2000\n"), "{text}");
    assert!(text.contains("first offset: 0\n") && text.contains("last offset: 1999\n"), "{text}");
    assert!(text.contains("sealed"), "{text}");

    let out = run(&["dump", p(&dir), "--segment", "0"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("segment 00000000000000000000.log"), "{text}");
    assert!(text.contains("batch at byte 128 "), "{text}");
    assert!(text.contains("offset 0 at byte 160 "), "{text}");
    assert!(text.contains("footer: data_end"), "{text}");
    let out = run(&["dump", p(&dir), "--segment", "12345"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no segment with base offset 12345"), "{}", stderr(&out));
}

/// File position and first offset of the frame (a batch of records) that
/// contains byte `pos` of a segment file.
fn record_start(file: &[u8], pos: usize) -> (usize, u64) {
    let mut at = 128;
    loop {
        let f = annal::record::decode_frame(&file[at..]).expect("valid frame before the damage");
        let end = at + f.len();
        if pos < end {
            return (at, f.base_offset());
        }
        at = end;
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_found_and_stops_read() {
    let (_tmp, dir) = make_log(2000);
    let segments = segment_files(&dir);
    let damaged = &segments[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let flip = 128 + 3000;
    let (start, offset) = record_start(&bytes, flip);
    bytes[flip] ^= 0x20;
    std::fs::write(damaged, &bytes).unwrap();
    let name = damaged.file_name().unwrap().to_str().unwrap();

    let out = run(&["verify", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    let problem = text.lines().find(|l| l.starts_with("error: corruption")).expect("a corruption line");
    assert!(problem.contains(name), "{problem}");
    assert!(problem.contains(&format!("offset {offset} byte {start}:")), "{problem}");
    assert!(problem.contains("checksum mismatch"), "{problem}");
    assert!(!stderr(&out).is_empty());

    let out = run(&["read", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(2));
    let offsets: Vec<u64> = stdout(&out).lines().map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
    assert_eq!(offsets, (0..offset).collect::<Vec<_>>(), "every record before the damage, none after");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(name) && err.contains(&format!("at byte {start} (offset {offset})")), "{err}");

    // Reading from after the damaged segment still works.
    let next_base: u64 = segments[2].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let out = run(&["read", p(&dir), "--from", &next_base.to_string(), "--max", "1"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing was changed by any of it.
    assert_eq!(std::fs::read(damaged).unwrap(), bytes);
}

#[test]
fn a_missing_index_file_is_only_a_warning() {
    let (_tmp, dir) = make_log(2000);
    let index = segment_files(&dir)[0].with_extension("index");
    std::fs::remove_file(&index).unwrap();
    let out = run(&["verify", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(1), "damage that opening repairs: {}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("warning: index: will be rebuilt on open"), "{text}");
    assert!(text.contains("00000000000000000000.index"), "{text}");
    assert!(text.contains("ok with 1 warning(s)"), "{text}");
    assert!(!index.exists(), "verify must not rebuild anything");
}

#[test]
fn a_torn_tail_is_a_warning_and_damage_before_the_checkpoint_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let config = || annal::LogConfig::default().with_segment_bytes(65536).with_durability(annal::Durability::Never);
    let log = annal::Log::open(&dir, config()).unwrap();
    for i in 0..50u32 {
        log.append(&annal::Record::new(&i.to_le_bytes())).unwrap();
    }
    log.abandon();
    let seg = segment_files(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[30_000] = 0x5a;
    std::fs::write(&seg, &bytes).unwrap();

    let out = run(&["verify", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(1), "a torn tail is repaired by opening: {}", stdout(&out));
    assert!(stdout(&out).contains("warning: torn tail"), "{}", stdout(&out));
    let out = run(&["stats", p(&dir)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("records: 50\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains("torn tail of"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "read-only commands changed the file");

    // Make the first records durable (the checkpoint moves past them), then damage one.
    let log = annal::Log::open(&dir, config()).unwrap();
    log.sync().unwrap();
    log.abandon();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[128 + 40] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    let out = run(&["verify", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("before the durable checkpoint"), "{}", stdout(&out));
    let out = run(&["read", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("corruption in"), "{}", stderr(&out));
}

#[test]
fn tail_follows_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    append(&dir, b"first\nsecond\n", &[]);
    let (mut tail, rx) = spawn_lines(&["tail", p(&dir), "--from", "1"]);
    let next =
        |what: &str| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("tail printed no {what}"));
    assert!(next("existing record").starts_with("1\t"));
    // A writer that stays open (the segment is neither sealed nor resized).
    let mut writer = annal()
        .args(["append", p(&dir), "--segment-bytes", SEGMENT_BYTES])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acks = BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut stdin = writer.stdin.take().unwrap();
    for (i, value) in ["third", "fourth"].iter().enumerate() {
        writeln!(stdin, "{value}").unwrap();
        stdin.flush().unwrap();
        assert_eq!(acks.next().unwrap().unwrap(), (i + 2).to_string());
        let line = next(value);
        assert_eq!(line.split('\t').nth(3), Some(*value), "{line}");
    }
    // Many records through segment rolls, then the writer closes.
    let many: String = (0..1500).map(|i| format!("bulk-{i}-{}\n", "y".repeat(80))).collect();
    stdin.write_all(many.as_bytes()).unwrap();
    drop(stdin);
    assert!(writer.wait().unwrap().success());
    for i in 0..1500 {
        let line = next("bulk record");
        assert_eq!(line.split('\t').next(), Some((i + 4).to_string().as_str()), "{line}");
    }
    tail.kill().unwrap();
    tail.wait().unwrap();
}

#[test]
fn tail_survives_a_crashed_writer_and_its_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let config = || annal::LogConfig::default().with_segment_bytes(65536).with_durability(annal::Durability::Never);
    let log = annal::Log::open(&dir, config()).unwrap();
    log.append(&annal::Record::new(b"r0")).unwrap();
    let (mut tail, rx) = spawn_lines(&["tail", p(&dir)]);
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line from tail");
    assert_eq!(next(), format!("0\t{}\t\\N\tr0", log.get(0).unwrap().timestamp));
    for i in 1..800u32 {
        log.append(&annal::Record::new(format!("r{i}").as_bytes())).unwrap();
    }
    // A crash: the last segment stays unsealed; the next writer recovers it and appends.
    log.abandon();
    let log = annal::Log::open(&dir, config()).unwrap();
    for i in 800..1600u32 {
        log.append(&annal::Record::new(format!("r{i}").as_bytes())).unwrap();
    }
    log.close().unwrap();
    for i in 1..1600u32 {
        let line = next();
        assert!(line.starts_with(&format!("{i}\t")) && line.ends_with(&format!("\tr{i}")), "{line}");
    }
    tail.kill().unwrap();
    tail.wait().unwrap();
}

/// A writer that has rolled to a new segment and not yet appended to it:
/// `tail` reaches the empty segment and waits there for the next record.
#[test]
fn tail_waits_on_a_new_segment_that_holds_no_record_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let config = annal::LogConfig::default().with_segment_bytes(65536).with_durability(annal::Durability::Never);
    let log = annal::Log::open(&dir, config).unwrap();
    for i in 0..10u32 {
        log.append(&annal::Record::new(format!("r{i}").as_bytes())).unwrap();
    }
    log.roll().unwrap();
    assert_eq!(log.segments().last().unwrap().base_offset, 10);
    let (mut tail, rx) = spawn_lines(&["tail", p(&dir), "--from", "0"]);
    let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line from tail");
    for i in 0..10u32 {
        assert!(next().ends_with(&format!("\tr{i}")));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(tail.try_wait().unwrap().is_none(), "tail gave up on the empty segment");
    log.append(&annal::Record::new(b"r10")).unwrap();
    let line = next();
    assert!(line.starts_with("10\t") && line.ends_with("\tr10"), "{line}");
    tail.kill().unwrap();
    tail.wait().unwrap();
    log.close().unwrap();
}

#[test]
fn tail_stops_at_damage_with_exit_2() {
    let (_tmp, dir) = make_log(2000);
    let damaged = segment_files(&dir)[0].clone();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let (start, offset) = record_start(&bytes, 128 + 1000);
    bytes[128 + 1000] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&["tail", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count() as u64, offset);
    assert!(stderr(&out).contains(&format!("at byte {start} (offset {offset})")), "{}", stderr(&out));
}

/// Rewrites an index file with its first entry's position moved by `delta`,
/// with a valid checksum of its own (so only the check against the data fails).
fn shift_first_index_entry(path: &Path, delta: i32) {
    let mut b = std::fs::read(path).unwrap();
    assert!(b.len() >= 40, "the index has an entry");
    let pos = u32::from_le_bytes(b[36..40].try_into().unwrap()).wrapping_add_signed(delta);
    b[36..40].copy_from_slice(&pos.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..24]);
    h.update(&b[32..]);
    let crc = h.finalize();
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn an_index_entry_that_misses_its_record_is_an_index_warning() {
    let (_tmp, dir) = make_log(2000);
    let index = segment_files(&dir)[1].with_extension("index");
    shift_first_index_entry(&index, 1);
    let out = run(&["verify", p(&dir)], b"");
    assert_eq!(out.status.code(), Some(1), "an index file is rebuilt by opening: {}", stdout(&out));
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("warning: index")).expect("an index warning");
    assert!(line.contains(index.file_name().unwrap().to_str().unwrap()), "{line}");
    assert!(line.contains("index entry says offset"), "{line}");
    // Reading is not affected: the log rebuilds the index instead of using it.
    let out = run(&["read", p(&dir)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2000);
}

/// `verify`'s exit statuses (fsck's spirit), for damage in each kind of file
/// a log directory holds: 0 clean, 1 for damage that opening repairs (index
/// files, a torn tail), 2 for damage to data (segment headers, records,
/// footers, the start-offset file, the archive manifest), 8 when it cannot
/// check, 16 for wrong arguments.
#[test]
fn verify_exit_status_says_what_kind_of_damage_it_found() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let archive = tmp.path().join("archive");
    let store = Arc::new(annal::LocalDirArchive::open(&archive).unwrap());
    let cfg = || {
        annal::LogConfig::default()
            .with_segment_bytes(8192)
            .with_durability(annal::Durability::Never)
            .with_archive(store.clone(), "t/0")
    };
    let log = annal::Log::open(&pristine, cfg()).unwrap();
    for i in 0..300u32 {
        log.append(&annal::Record::new(format!("record {i:05} {}", "v".repeat(40)).as_bytes())).unwrap();
    }
    log.roll().unwrap();
    let _ = log.delete_before(20).unwrap();
    let _ = log.archive_at(&annal::ArchivePolicy::default().with_max_local_bytes(30_000), 0).unwrap();
    for i in 0..30u32 {
        log.append(&annal::Record::new(format!("tail {i}").as_bytes())).unwrap();
    }
    log.sync().unwrap();
    for i in 0..5u32 {
        log.append(&annal::Record::new(format!("unsynced {i}").as_bytes())).unwrap();
    }
    log.abandon();
    let names: Vec<String> = {
        let mut v: Vec<String> =
            std::fs::read_dir(&pristine).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert!(names.iter().any(|n| n == "start-offset") && names.iter().any(|n| n == "archive-manifest"), "{names:?}");
    let out = run(&["verify", p(&pristine)], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("archived segments"), "{}", stdout(&out));

    let logs: Vec<&String> = names.iter().filter(|n| n.ends_with(".log")).collect();
    let (first_sealed, last) = (logs[0].clone(), logs[logs.len() - 1].clone());
    let index = first_sealed.replace(".log", ".index");
    let timeindex = first_sealed.replace(".log", ".timeindex");
    let last_len = std::fs::metadata(pristine.join(&last)).unwrap().len() as usize;
    // (file, byte to flip, expected status, what)
    let cases: Vec<(String, usize, i32, &str)> = vec![
        (index.clone(), 20, 1, "the offset index"),
        (timeindex.clone(), 20, 1, "the time index"),
        (last.clone(), last_len - 100, 1, "the unsynced end of the last segment (a torn tail)"),
        (first_sealed.clone(), 10, 2, "a segment header"),
        (first_sealed.clone(), 200, 2, "a record of a sealed segment"),
        (
            first_sealed.clone(),
            std::fs::metadata(pristine.join(&first_sealed)).unwrap().len() as usize - 10,
            2,
            "a footer",
        ),
        (last.clone(), 200, 2, "a record of the last segment before its checkpoint"),
        ("start-offset".into(), 17, 2, "the start-offset file"),
        ("archive-manifest".into(), 30, 2, "the archive manifest"),
    ];
    for (i, (file, at, want, what)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case-{i}"));
        common::copy_dir(&pristine, &dir);
        let path = dir.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[*at] ^= 0x41;
        std::fs::write(&path, &bytes).unwrap();
        let out = run(&["verify", p(&dir)], b"");
        assert_eq!(out.status.code(), Some(*want), "damage in {what} ({file} byte {at}): {}", stdout(&out));
        assert!(stdout(&out).contains(file.as_str()), "the problem names {file}: {}", stdout(&out));
    }
    // A missing index file is repaired by opening too.
    let dir = tmp.path().join("no-index");
    common::copy_dir(&pristine, &dir);
    std::fs::remove_file(dir.join(&index)).unwrap();
    assert_eq!(run(&["verify", p(&dir)], b"").status.code(), Some(1));
    // Could not check; wrong arguments.
    assert_eq!(run(&["verify", p(&tmp.path().join("nothing"))], b"").status.code(), Some(8));
    assert_eq!(run(&["verify"], b"").status.code(), Some(16));
    assert_eq!(run(&["verify", p(&pristine), "--no-such-flag"], b"").status.code(), Some(16));
    let help = stdout(&run(&["verify", "--help"], b""));
    for needle in ["16  wrong arguments", "8   verify could not check", "2   damage to data", "1   only damage"] {
        assert!(help.contains(needle), "verify --help documents {needle:?}: {help}");
    }
}

/// The README's command table lists every flag that each command's `--help`
/// shows.
#[test]
fn the_readme_command_table_lists_every_flag_of_every_command() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let cells: Vec<&str> =
        readme.lines().filter(|l| l.starts_with("| `annal ")).map(|l| l.split(" | ").next().unwrap()).collect();
    // Every command and subcommand, as `--help` lists them.
    let listed = |args: &[&str]| -> Vec<String> {
        let help = stdout(&annal().args(args).arg("--help").output().unwrap());
        help.lines()
            .skip_while(|l| *l != "Commands:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(str::to_owned)
            .collect()
    };
    let mut commands = Vec::new();
    for command in listed(&[]) {
        match listed(&[&command]) {
            subs if subs.is_empty() => commands.push(command),
            subs => commands.extend(subs.into_iter().map(|s| format!("{command} {s}"))),
        }
    }
    assert!(commands.len() >= 17, "{commands:?}");
    let mut missing = Vec::new();
    for command in &commands {
        let words: Vec<&str> = command.split(' ').collect();
        // The row (or rows) of the command: `annal topic list|describe NAME|delete NAME` covers three.
        let rows: Vec<&str> = cells
            .iter()
            .copied()
            .filter(|c| c.starts_with(&format!("| `annal {} ", words[0])) || *c == format!("| `annal {}`", words[0]))
            .filter(|c| words.get(1).is_none_or(|sub| c.contains(sub)))
            .collect();
        assert!(!rows.is_empty(), "no row for `annal {command}` in the README's command table");
        let help = stdout(&annal().args(&words).arg("--help").output().unwrap());
        for line in help.lines() {
            // `  --name <V>` or `  -f, --name`.
            let t = line.trim_start();
            let t = if t.len() > 4 && t.as_bytes()[0] == b'-' && t.as_bytes()[2] == b',' { &t[4..] } else { t };
            if let Some(rest) = t.strip_prefix("--") {
                let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
                if name != "help" && !rows.iter().any(|r| r.contains(&format!("--{name}"))) {
                    missing.push(format!("annal {command} --{name}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "flags in --help but not in the README's command table: {missing:?}");
}

/// A one-line log takes 256 KiB of disk while its writer has it open (the
/// first step of its segment, not the 1 GiB the default segment size allows),
/// and under 64 KiB once closed (the segment trimmed to its record and footer).
#[test]
fn a_one_line_log_is_small_on_disk_with_the_default_settings() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let disk = |dir: &Path| -> u64 {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().blocks() * 512).sum()
    };
    let mut writer = annal().args(["append", p(&dir)]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    stdin.write_all(b"one line\n").unwrap();
    stdin.flush().unwrap();
    let mut ack = String::new();
    BufReader::new(writer.stdout.take().unwrap()).read_line(&mut ack).unwrap();
    assert_eq!(ack, "0\n");
    let open = disk(&dir);
    assert!(open <= (256 << 10) + (16 << 10), "{open} bytes on disk while open");
    drop(stdin);
    assert!(writer.wait().unwrap().success());
    let closed = disk(&dir);
    assert!(closed < 64 << 10, "{closed} bytes on disk once closed");
}
