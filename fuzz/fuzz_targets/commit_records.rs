#![no_main]
//! Fuzz target `commit_records`: see harness/commit_records.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[path = "../harness/commit_records.rs"]
mod commit_records;

fuzz_target!(|data: &[u8]| commit_records::run(data));
