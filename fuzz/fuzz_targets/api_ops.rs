#![no_main]
//! Fuzz target `api_ops`: see harness/api_ops.rs for what it checks.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../harness/api_ops.rs"]
mod api_ops;

#[allow(dead_code)]
#[path = "../harness/common.rs"]
mod common;

fuzz_target!(|data: &[u8]| api_ops::run(data));
