#![no_main]
//! Fuzz target `compact_ops`: see harness/compact_ops.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../harness/compact_ops.rs"]
mod compact_ops;

#[allow(dead_code)]
#[path = "../harness/common.rs"]
mod common;

fuzz_target!(|data: &[u8]| compact_ops::run(data));
