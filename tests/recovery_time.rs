//! Recovery scans only the tail: what came after the last segment's index
//! file, never the sealed data.

mod common;

use common::{open_sim, read_all, small};
use spool::sim::SimStorage;
use spool::SyncPolicy;

#[test]
fn clean_reopen_scans_nothing() {
    let sim = SimStorage::new();
    let opts = small(8 << 20).max_payload(4096);
    let store = open_sim(&sim, opts.clone()).unwrap();
    let ch = store.channel("c").unwrap();
    let p = vec![1u8; 1000];
    for _ in 0..3000 {
        ch.publish(&p).unwrap();
    }
    drop(ch);
    store.close().unwrap();
    let store = open_sim(&sim, opts).unwrap();
    assert_eq!(store.recovery_report().channels[0].scanned_bytes, 0);
    assert_eq!(read_all(&store, "c").len(), 3000);
}

#[test]
fn crash_recovery_scans_since_the_last_index_checkpoint() {
    let sim = SimStorage::new();
    let opts = small(32 << 20).max_payload(4096).sync_policy(SyncPolicy::Never);
    let store = open_sim(&sim, opts.clone()).unwrap();
    let ch = store.channel("c").unwrap();
    let p = vec![2u8; 1000];
    // ~10 MB synced in 1 MB steps: index checkpoints every 4 MiB.
    for _ in 0..10 {
        for _ in 0..1000 {
            ch.publish(&p).unwrap();
        }
        ch.sync().unwrap();
    }
    // Unsynced tail.
    for _ in 0..100 {
        ch.publish(&p).unwrap();
    }
    let crashed = sim.process_crash();
    drop(ch);
    drop(store);
    let store = open_sim(&crashed, opts).unwrap();
    let report = &store.recovery_report().channels[0];
    assert!(
        report.scanned_bytes < 5 << 20,
        "scanned {} bytes of ~10 MB",
        report.scanned_bytes
    );
    assert!(report.scanned_bytes > 100_000, "the unsynced tail was scanned");
    let got = read_all(&store, "c");
    assert_eq!(got.len(), 10_100, "a process crash loses nothing written");
}
