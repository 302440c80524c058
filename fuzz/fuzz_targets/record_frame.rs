#![no_main]
//! Arbitrary bytes into one decoder (an odd first byte recomputes the
//! checksums so the fuzzer gets past them); see src/fuzz_api.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spool::fuzz_api::record_frame(data);
});
