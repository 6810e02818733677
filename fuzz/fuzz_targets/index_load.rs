#![no_main]
//! Fuzz target `index_load`: see harness/index_load.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../harness/common.rs"]
mod common;

#[allow(dead_code)]
#[path = "../harness/index_load.rs"]
mod index_load;

#[allow(dead_code)]
#[path = "../harness/segment_recovery.rs"]
mod segment_recovery;

fuzz_target!(|data: &[u8]| index_load::run(data));
