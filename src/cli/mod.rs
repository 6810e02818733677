//! Argument parsing, dispatch, and the mapping of errors to messages and exit codes.

mod append;
mod archive;
mod bench;
mod events;
mod follow;
mod groups;
mod inspect;
mod produce;
mod read;
mod topic;

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use annal::Durability;
use annal::PassReport;
use annal::TopicStore;

const EXIT_CODES: &str = "\
Exit status: 0 on success; 1 for wrong arguments, a directory that is not an \
annal log or store, or any other error; 2 when stored data is corrupt (the message names \
the file, the log offset and the byte position); 3 when an event append finds its stream \
at another version than --expected says. `verify` has its own, as fsck: see \
'annal verify --help'. Every error is one line on stderr.";

/// Every subcommand's name.
const COMMANDS: [&str; 15] = [
    "bench",
    "append",
    "read",
    "tail",
    "verify",
    "dump",
    "stats",
    "topic",
    "produce",
    "consume",
    "groups",
    "retention",
    "compact",
    "archive",
    "events",
];

/// The annal log storage engine's command-line tool.
#[derive(Debug, Parser)]
#[command(name = "annal", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Bench(bench::BenchArgs),
    Append(append::AppendArgs),
    Read(read::ReadArgs),
    Tail(read::TailArgs),
    Verify(inspect::VerifyArgs),
    Dump(inspect::DumpArgs),
    Stats(inspect::StatsArgs),
    Topic(topic::TopicArgs),
    Produce(produce::ProduceArgs),
    Consume(produce::ConsumeArgs),
    Groups(groups::GroupsArgs),
    Retention(topic::RetentionArgs),
    Compact(topic::CompactArgs),
    Archive(archive::ArchiveArgs),
    Events(events::EventsArgs),
}

/// The durability policy, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// No fsync on append (sealing and close still fsync).
    Never,
    /// A background fsync every 100 ms.
    Interval,
    /// Every append (batch) returns once it is on disk.
    Always,
}

impl DurabilityArg {
    pub(crate) fn to_durability(self) -> Durability {
        match self {
            DurabilityArg::Never => Durability::Never,
            DurabilityArg::Interval => Durability::Interval(Duration::from_millis(100)),
            DurabilityArg::Always => Durability::Always,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            DurabilityArg::Never => "never",
            DurabilityArg::Interval => "interval",
            DurabilityArg::Always => "always",
        }
    }
}

/// Why a command failed, and so which exit code it gets.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Wrong usage or an operational error: exit 1.
    Error(String),
    /// Stored data is corrupt: exit 2.
    Corruption(String),
    /// Stdout was closed by the reader (`annal read ... | head`): exit quietly.
    BrokenPipe,
    /// A command's own exit status (`verify`'s), with its one-line message.
    Status(u8, String),
    /// An event append's stream is not at the expected version: exit 3.
    WrongExpectedVersion(String),
}

impl From<annal::Error> for Failure {
    fn from(e: annal::Error) -> Failure {
        match &e {
            annal::Error::Corruption { .. } => Failure::Corruption(e.to_string()),
            annal::Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe => Failure::BrokenPipe,
            annal::Error::NotALog { path, .. } if path.join(annal::topic::TOPICS_DIR_NAME).is_dir() => {
                Failure::Error(format!("{e}: read its topics with `annal consume TOPIC --dir {}`", path.display()))
            }
            annal::Error::NotAStore { path, .. } if path.join(annal::log::LOCK_FILE_NAME).is_file() => {
                Failure::Error(format!("{e}: it is a log, read it with `annal read {}`", path.display()))
            }
            _ => Failure::Error(e.to_string()),
        }
    }
}

impl From<annal::events::Error> for Failure {
    fn from(e: annal::events::Error) -> Failure {
        match e {
            annal::events::Error::Engine(e) => Failure::from(e),
            e @ annal::events::Error::WrongExpectedVersion { .. } => Failure::WrongExpectedVersion(e.to_string()),
            e => Failure::Error(e.to_string()),
        }
    }
}

impl From<annal::consumer::persistent::Error> for Failure {
    fn from(e: annal::consumer::persistent::Error) -> Failure {
        use annal::consumer::persistent::Error;
        match e {
            Error::Store(e) => Failure::from(e),
            e @ Error::DamagedState { .. } => Failure::Corruption(e.to_string()),
            e => Failure::Error(e.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(m) | Failure::Corruption(m) | Failure::Status(_, m) | Failure::WrongExpectedVersion(m) => {
                f.write_str(m)
            }
            Failure::BrokenPipe => f.write_str("broken pipe"),
        }
    }
}

/// Maps an error writing to stdout.
pub(crate) fn stdout_error(e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::BrokenPipe
    } else {
        Failure::Error(format!("writing to stdout: {e}"))
    }
}

pub(crate) type CliResult<T = ()> = Result<T, Failure>;

/// Writes `text` to stdout and flushes it.
pub(crate) fn print(text: &str) -> CliResult {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(stdout_error)
}

/// A progress bar of `len` steps drawn on stdout with `template` when stdout
/// is a terminal, hidden otherwise.
pub(crate) fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The current time in milliseconds since the Unix epoch (the clock of record timestamps).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Prints what a store-wide pass (`what`: `retention`, `archival`,
/// `compaction`) did, then closes `store`: one `TOPIC PARTITION: ` line per
/// partition (the rest from `line`), one `TOPIC PARTITION: error: ...` line
/// per failure (`-` for a whole topic), and `summary` followed by ` from N
/// partition(s); F failure(s)`. Success without failures, else exit 1, or 2
/// if one of them is corruption.
pub(crate) fn finish_pass<O>(
    store: TopicStore,
    what: &str,
    report: &PassReport<O>,
    line: impl Fn(&O) -> String,
    summary: &str,
) -> CliResult {
    let mut text = String::new();
    for p in &report.partitions {
        text.push_str(&format!("{} {}: {}\n", p.topic, p.partition, line(&p.outcome)));
    }
    let failures = &report.failures;
    for f in failures {
        let partition = f.partition.map_or_else(|| "-".to_owned(), |p| p.to_string());
        text.push_str(&format!("{} {partition}: error: {}\n", f.topic, f.error));
    }
    text.push_str(&format!("{summary} from {} partition(s); {} failure(s)\n", report.partitions.len(), failures.len()));
    print(&text)?;
    store.close()?;
    if failures.is_empty() {
        return Ok(());
    }
    let message = format!("{what} failed for {} topic(s) or partition(s)", failures.len());
    if failures.iter().any(|f| f.error.is_corruption()) {
        Err(Failure::Corruption(message))
    } else {
        Err(Failure::Error(message))
    }
}

/// Parses the arguments, runs the command, and turns the outcome into an exit code.
pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Append(args) => append::run(&args),
        Command::Read(args) => read::run_read(&args),
        Command::Tail(args) => read::run_tail(&args),
        Command::Verify(args) => inspect::run_verify(&args),
        Command::Dump(args) => inspect::run_dump(&args),
        Command::Stats(args) => inspect::run_stats(&args),
        Command::Topic(args) => topic::run_topic(&args),
        Command::Produce(args) => produce::run_produce(&args),
        Command::Consume(args) => produce::run_consume(&args),
        Command::Groups(args) => groups::run_groups(&args),
        Command::Retention(args) => topic::run_retention(&args),
        Command::Compact(args) => topic::run_compact(&args),
        Command::Archive(args) => archive::run_archive(&args),
        Command::Events(args) => events::run_events(&args),
    };
    match result {
        Ok(()) | Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Error(m)) => {
            eprintln!("annal: error: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Corruption(m)) => {
            eprintln!("annal: {m}");
            ExitCode::from(2)
        }
        Err(Failure::WrongExpectedVersion(m)) => {
            eprintln!("annal: error: {m}");
            ExitCode::from(3)
        }
        Err(Failure::Status(code, m)) => {
            eprintln!("annal: {m}");
            ExitCode::from(code)
        }
    }
}

/// Prints help and version as clap does, and any other parse error as one line.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(1)
        }
        _ => {
            let rendered = e.render().to_string();
            // Keep the message, drop the usage block and the hint clap appends.
            let message = rendered.split("\n\nUsage:").next().unwrap_or(&rendered);
            let message = message.split("\n\nFor more information").next().unwrap_or(message);
            let message = message.strip_prefix("error: ").unwrap_or(message);
            let mut one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
            // A negative number where a count or an offset goes reads to clap
            // as an unknown flag, and its tip (`-- -1`) misleads: say what is wrong.
            if let Some(clap::error::ContextValue::String(arg)) = e.get(clap::error::ContextKind::InvalidArg)
                && e.kind() == ErrorKind::UnknownArgument
                && arg.strip_prefix('-').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                let flag = negative_value_flag(arg);
                one_line = format!("{flag}{arg}: must be a non-negative integer");
            }
            // `annal COMMAND --help`, or `annal COMMAND SUBCOMMAND --help` for topic, retention and events.
            let args: Vec<String> = std::env::args().skip(1).take(2).collect();
            let known = |list: &[&str], a: Option<&String>| a.filter(|a| list.contains(&a.as_str())).cloned();
            let command = known(&COMMANDS, args.first());
            let sub = match command.as_deref() {
                Some("topic") => known(&["create", "list", "describe", "delete"], args.get(1)),
                Some("retention") => known(&["run"], args.get(1)),
                Some("events") => known(&events::SUBCOMMANDS, args.get(1)),
                _ => None,
            };
            let help = match (command, sub) {
                (Some(c), Some(s)) => format!("annal {c} {s} --help"),
                (Some(c), None) => format!("annal {c} --help"),
                _ => "annal --help".to_owned(),
            };
            eprintln!("annal: error: {one_line} (see '{help}')");
            // `verify` has exit statuses of its own, as fsck: 16 is a usage error.
            if args.first().is_some_and(|a| a == "verify") {
                return ExitCode::from(inspect::VERIFY_USAGE_ERROR);
            }
            ExitCode::from(1)
        }
    }
}

/// The flag a negative number on the command line was given to (`--max `),
/// or nothing if it came on its own.
fn negative_value_flag(value: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == value);
    match at.and_then(|i| i.checked_sub(1)).map(|i| &args[i]) {
        Some(flag) if flag.starts_with("--") => format!("{flag} "),
        _ => String::new(),
    }
}
