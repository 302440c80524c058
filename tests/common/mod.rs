//! Helpers shared by the integration tests.
#![allow(dead_code)]

use spool::sim::SimStorage;
use spool::{Options, Store, SyncPolicy};

/// Options for tests: small segments so that rolls happen, no flusher.
pub fn small(segment_size: u64) -> Options {
    Options::default()
        .segment_size(segment_size)
        .index_interval(256)
        .max_payload(1024)
        .sync_policy(SyncPolicy::Never)
}

/// Deterministic payload for message `seq` of a channel.
pub fn payload(tag: u64, seq: u64) -> Vec<u8> {
    let len = ((seq.wrapping_mul(2_654_435_761) ^ tag) % 200) as usize;
    (0..len).map(|i| (seq as usize + i * 7 + tag as usize) as u8).collect()
}

/// Every message of a channel, as (seq, payload).
pub fn read_all(store: &Store, name: &str) -> Vec<(u64, Vec<u8>)> {
    let ch = store.channel(name).expect("channel");
    ch.read_from(1)
        .expect("read_from")
        .map(|m| {
            let m = m.expect("message");
            (m.seq(), m.payload().to_vec())
        })
        .collect()
}

/// Opens a store on a simulated file system.
pub fn open_sim(sim: &SimStorage, opts: Options) -> spool::Result<Store> {
    Store::open("/store", opts.simulated(sim))
}

/// SplitMix64, for seeded test workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Seed from SPOOL_SEED, or a fixed default; printed so failures reproduce.
pub fn seed() -> u64 {
    let seed = std::env::var("SPOOL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    eprintln!("SPOOL_SEED={seed}");
    seed
}

/// Runs the integrity checker and fails with its findings.
pub fn assert_verified(store: &Store, context: &str) {
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{context}: verify found {:#?}", report.problems);
}

/// Files of channel `id` in the store at `dir` with extension `ext`, sorted.
pub fn channel_files(dir: &std::path::Path, id: u64, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("channels").join(id.to_string()))
        .expect("channel directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}
