//! Runs the structural fuzz targets inside ordinary `cargo test`: every committed
//! regression input under `fuzz/regressions/<target>/`, then a bounded
//! number of seeded random inputs per target (`SPOOL_SEED` picks the seed,
//! `SPOOL_FUZZ_CASES` the count; the seed is printed so a failure
//! reproduces).

mod common;
mod fuzz_harness;

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use common::{seed, Rng};
use fuzz_harness::OpsInput;

type Target = fn(&[u8]);

/// Decodes the input exactly as `fuzz_target!` does, so a regression file
/// replays the same workload.
fn ops_crash(data: &[u8]) {
    if let Ok(input) = OpsInput::arbitrary_take_rest(Unstructured::new(data)) {
        if std::env::var("SPOOL_FUZZ_DEBUG").is_ok() {
            eprintln!("{input:#?}");
        }
        fuzz_harness::ops_crash(&input);
    }
}

// The decoder targets (record_frame, index_file, subscribers_log, catalog)
// reach crate-private decoders and are replayed by unit tests in
// src/fuzz_api.rs.
const TARGETS: [(&str, Target, usize); 2] = [
    ("ops_crash", ops_crash, 300),
    ("open_files", fuzz_harness::open_files, 300),
];

fn regressions(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_none_or(|x| x != "md"))
        .filter_map(|e| {
            std::fs::read(e.path())
                .ok()
                .map(|b| (e.file_name().to_string_lossy().into_owned(), b))
        })
        .collect();
    out.sort();
    out
}

/// Random bytes shaped a little like the target's input: mostly short,
/// sometimes long.
fn random_input(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0..=5 => rng.below(64),
        6..=8 => rng.below(600),
        _ => rng.below(6000),
    } as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

fn run_target(name: &str, target: Target, default_cases: usize) {
    for (file, input) in regressions(name) {
        eprintln!("{name}: regression {file}");
        target(&input);
    }
    let cases = std::env::var("SPOOL_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    let base = seed();
    for i in 0..cases {
        let case_seed = base ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = Rng(case_seed);
        let input = random_input(&mut rng);
        let outcome = std::panic::catch_unwind(|| target(&input));
        if outcome.is_err() {
            panic!("{name}: case {i} failed; input (case seed {case_seed}): {input:?}");
        }
    }
}

#[test]
fn ops_crash_target() {
    let (name, f, n) = TARGETS[0];
    run_target(name, f, n);
}

#[test]
fn open_files_target() {
    let (name, f, n) = TARGETS[1];
    run_target(name, f, n);
}
