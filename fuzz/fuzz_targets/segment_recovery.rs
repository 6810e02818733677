#![no_main]
//! Fuzz target `segment_recovery`: see harness/segment_recovery.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../harness/common.rs"]
mod common;

#[allow(dead_code)]
#[path = "../harness/segment_recovery.rs"]
mod segment_recovery;

fuzz_target!(|data: &[u8]| segment_recovery::run(data));
