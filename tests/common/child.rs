//! A child process for the SIGKILL tests: this test binary itself,
//! re-executed to run one ignored test, whose stdout lines reach the parent
//! through a channel as they are printed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a child ended ([`Child::kill`]).
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// The lines it printed that were not read yet.
    pub lines: Vec<String>,
    /// What it wrote on stderr.
    pub stderr: String,
}

/// A running child and the lines it printed so far.
pub struct Child {
    child: std::process::Child,
    lines: Receiver<String>,
    reader: JoinHandle<()>,
    stderr_path: PathBuf,
}

impl Child {
    /// Runs test `test` of this binary (ignored, alone, without capture) with
    /// `envs`, its stderr into `stderr_path`.
    pub fn spawn(test: &str, envs: &[(&str, &str)], stderr_path: &Path) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", test, "--nocapture", "--ignored", "--test-threads", "1"]);
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Child { child, lines, reader, stderr_path: stderr_path.to_owned() }
    }

    /// The next line, waiting up to `timeout`.
    pub fn line(&self, timeout: Duration) -> Result<String, RecvTimeoutError> {
        self.lines.recv_timeout(timeout)
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the child with SIGKILL (if it still runs) and waits for it.
    pub fn kill(mut self) -> Ended {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        // Everything the child printed before it died is still in the pipe.
        self.reader.join().unwrap();
        let lines = self.lines.try_iter().collect();
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&self.stderr_path);
        Ended { status, lines, stderr }
    }

    /// Kills the child and panics with `why` and its stderr.
    pub fn fail(self, why: &str) -> ! {
        let stderr = self.stderr();
        let _ = self.kill();
        panic!("{why}; stderr:\n{stderr}");
    }
}
