//! Running the `annal` binary from the CLI tests (`tests/cli*.rs`): each
//! command is a separate process, its output captured.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

/// The `annal` binary built for these tests.
pub fn annal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_annal"))
}

/// Runs `annal args...` with `stdin` as its input.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = annal()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn annal");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("wait for annal");
    writer.join().unwrap();
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Runs a command that must succeed with nothing on stderr; returns its stdout.
pub fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = run(args, stdin);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Output of `--json` commands: one JSON value a line.
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

/// Starts `annal args...` (a `tail`); a thread of its own sends each line it
/// prints to the returned channel. Its stderr goes to the test's, so that a
/// `tail` that gives up says why next to the failing test.
pub fn spawn_lines(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = annal().args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn annal");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, rx)
}
