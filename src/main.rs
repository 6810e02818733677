//! `annal`: the command-line tool of the annal log storage engine (benchmark,
//! append, read, tail, verify, dump, stats; topics: topic, produce, consume,
//! retention; the event store: events). Run `annal --help`.

#![deny(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
