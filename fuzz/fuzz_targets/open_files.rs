#![no_main]
//! Damaged store files: open and read everything; see tests/fuzz_harness.

#[path = "../../tests/fuzz_harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::open_files(data);
});
