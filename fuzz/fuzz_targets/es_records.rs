#![no_main]
//! Fuzz target `es_records`: see harness/es_records.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[path = "../harness/es_records.rs"]
mod es_records;

fuzz_target!(|data: &[u8]| es_records::run(data));
