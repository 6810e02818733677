#![no_main]
//! Fuzz target `event_files`: see harness/event_files.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[path = "../harness/event_files.rs"]
mod event_files;

fuzz_target!(|data: &[u8]| event_files::run(data));
