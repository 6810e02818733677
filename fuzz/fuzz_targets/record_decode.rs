#![no_main]
//! Fuzz target `record_decode`: see harness/record_decode.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../harness/record_decode.rs"]
mod record_decode;

fuzz_target!(|data: &[u8]| record_decode::run(data));
