#![no_main]
//! Structured workloads with crashes and power cuts; see tests/fuzz_harness.

#[path = "../../tests/fuzz_harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: harness::OpsInput| {
    harness::ops_crash(&input);
});
