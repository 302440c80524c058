//! Closing a store while threads publish, with the simulated process dying
//! at every storage call of the close and a power cut after it: the store
//! always reopens strictly, as an exact prefix holding everything a sync or
//! the close reported durable.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{open_sim, small};
use spool::sim::SimStorage;

const PUBLISHERS: u64 = 3;

fn payload(thread: u64, i: u64) -> Vec<u8> {
    let mut v = thread.to_le_bytes().to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v.resize(16 + ((thread * 7 + i) % 90) as usize, (thread + i) as u8);
    v
}

/// One round: publishers run, the process is set to die at storage call
/// `crash_at` from the start of the close (`None`: the close completes),
/// the store is closed, then power is cut (`pages`: which dirty pages keep
/// their new bytes). Returns how many storage calls the close made.
fn round(crash_at: Option<u64>, pages: u64, seed: u64) -> u64 {
    let sim = SimStorage::new();
    let opts = small(16 << 10);
    let store = open_sim(&sim, opts.clone()).expect("open");
    let ch = store.channel("c").expect("channel");
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|t| {
            let ch = ch.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    match ch.publish(&payload(t, i)) {
                        Ok(seq) => acked.push((seq, payload(t, i))),
                        Err(_) => break,
                    }
                    i += 1;
                    if i % 97 == 0 && ch.sync().is_err() {
                        break;
                    }
                }
                acked
            })
        })
        .collect();
    // Let them get going, with some synced data and a roll or two behind.
    while ch.last_seq() < 300 {
        thread::yield_now();
    }
    let before = sim.ops();
    sim.crash_after_ops(crash_at);
    let closed = store.close();
    let calls = sim.ops() - before;
    stop.store(true, Ordering::Relaxed);
    let mut written: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut acked_max = 0;
    for p in publishers {
        for (seq, bytes) in p.join().expect("publisher") {
            acked_max = acked_max.max(seq);
            written.insert(seq, bytes);
        }
    }
    // What was reported durable: by the syncs, and by the close if it
    // succeeded (it covers every publish that returned).
    let durable = if closed.is_ok() { acked_max } else { ch.durable_seq() };
    drop(ch);
    for image in [sim.power_loss_choosing(pages, 0), sim.power_loss(seed)] {
        let ctx = format!("crash_at {crash_at:?} pages {pages:#x} seed {seed} (close: {closed:?})");
        let store = open_sim(&image, opts.clone()).unwrap_or_else(|e| panic!("{ctx}: strict open failed: {e}"));
        let ch = store.open_channel("c").expect("channel");
        assert!(
            ch.last_seq() >= durable,
            "{ctx}: lost durable messages ({} < {durable})",
            ch.last_seq()
        );
        let mut next = 1;
        for m in ch.read_from(1).expect("read") {
            let m = m.unwrap_or_else(|e| panic!("{ctx}: read failed: {e}"));
            assert_eq!(m.seq(), next, "{ctx}: not contiguous");
            // Every message there was written by a publisher; a publish that
            // died with the process may be there without having returned.
            if let Some(bytes) = written.get(&m.seq()) {
                assert_eq!(m.payload(), bytes.as_slice(), "{ctx}: seq {} has other bytes", m.seq());
            }
            next += 1;
        }
        assert_eq!(next - 1, ch.last_seq(), "{ctx}: read everything");
        common::assert_verified(&store, &ctx);
    }
    calls
}

#[test]
fn close_racing_publishers_survives_a_crash_at_every_point() {
    let base = common::seed();
    // A complete close first, to learn how many storage calls it makes.
    let calls = round(None, 0, base);
    let mut rng = common::Rng(base);
    for k in 0..calls + 2 {
        round(Some(k), rng.next(), rng.next());
    }
    // And whole closes with power cuts that keep no new page, then random
    // ones: the window between the close's last sync and its clean mark.
    for i in 0..60 {
        let pages = if i % 2 == 0 { 0 } else { rng.next() };
        round(None, pages, rng.next());
    }
}
