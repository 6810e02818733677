#![no_main]
//! Fuzz target `consumer_records`: see harness/consumer_records.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[path = "../harness/consumer_records.rs"]
mod consumer_records;

fuzz_target!(|data: &[u8]| consumer_records::run(data));
