#![no_main]
//! Fuzz target `small_files`: see harness/small_files.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[path = "../harness/small_files.rs"]
mod small_files;

fuzz_target!(|data: &[u8]| small_files::run(data));
