//! Channel catalog: create, list, delete, recreate; ids are never reused,
//! and deleted data never comes back, whatever the crash.

mod common;

use common::{open_sim, payload, read_all, small};
use spool::sim::SimStorage;
use spool::{Error, Store};

#[test]
fn create_list_delete_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let a = store.channel("a").unwrap();
    let b = store.channel("b").unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(store.channel("a").unwrap().id(), a.id(), "same incarnation");
    for seq in 1..=300 {
        a.publish(&payload(1, seq)).unwrap();
    }
    assert_eq!(store.channel_names(), vec!["a".to_string(), "b".to_string()]);
    let old_id = a.id();
    store.delete_channel("a").unwrap();
    assert!(matches!(store.delete_channel("a"), Err(Error::NoSuchChannel { .. })));
    assert!(matches!(a.publish(b"x"), Err(Error::ChannelDeleted { .. })));
    assert!(!dir.path().join("channels").join(old_id.to_string()).exists());
    assert_eq!(store.channel_names(), vec!["b".to_string()]);
    let a2 = store.channel("a").unwrap();
    assert!(a2.id() > b.id(), "a new id, never a reused one");
    assert_eq!((a2.first_seq(), a2.last_seq()), (1, 0), "empty");
    drop((a, a2, b));
    store.close().unwrap();

    // The high-water mark survives a restart.
    let store = Store::open(dir.path(), small(8192)).unwrap();
    store.delete_channel("a").unwrap();
    let c = store.channel("c").unwrap();
    assert!(c.id() > old_id + 1);
    assert!(read_all(&store, "a").is_empty());
}

#[test]
fn crash_at_every_sync_of_a_delete() {
    for k in 0.. {
        let sim = SimStorage::new();
        let store = open_sim(&sim, small(8192)).unwrap();
        let ch = store.channel("d").unwrap();
        for seq in 1..=200 {
            ch.publish(&payload(4, seq)).unwrap();
        }
        ch.sync().unwrap();
        let old_id = ch.id();
        drop(ch);
        sim.fail_sync_after(Some(k));
        let deleted = store.delete_channel("d");
        if deleted.is_ok() {
            assert!(k > 0);
            break;
        }
        for seed in 0..6 {
            let after = sim.power_loss(seed + 100 * k);
            let store = open_sim(&after, small(8192)).unwrap();
            common::assert_verified(&store, &format!("k={k} seed={seed}"));
            let names = store.channel_names();
            if names.contains(&"d".to_string()) {
                // The delete did not happen: the old log is intact.
                let ch = store.open_channel("d").unwrap();
                assert_eq!(ch.id(), old_id);
                let got = read_all(&store, "d");
                assert_eq!(got.len(), 200, "k={k} seed={seed}");
            } else {
                // The delete happened: recreating yields a new, empty log.
                let ch = store.channel("d").unwrap();
                assert!(ch.id() > old_id);
                assert_eq!(ch.last_seq(), 0);
                assert!(!after.list_all().iter().any(|p| p.ends_with(old_id.to_string())));
            }
        }
    }
}

/// A handle of a deleted incarnation reads nothing: not its old bytes, and
/// not the new incarnation's, even when the name was created again.
#[test]
fn reads_through_a_deleted_handle_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(8192)).unwrap();
    let old = store.channel("c").unwrap();
    old.publish(b"old incarnation").unwrap();
    let held = old.get(1).unwrap();
    store.delete_channel("c").unwrap();
    let new = store.channel("c").unwrap();
    new.publish(b"new incarnation").unwrap();
    assert!(matches!(old.get(1), Err(Error::ChannelDeleted { .. })));
    assert!(matches!(old.read_from(1), Err(Error::ChannelDeleted { .. })));
    assert!(matches!(old.seq_at_or_after(0), Err(Error::ChannelDeleted { .. })));
    assert_eq!(held.payload(), b"old incarnation", "a message read before stays valid");
    assert_eq!(new.get(1).unwrap().payload(), b"new incarnation");
}

/// `verify` running while channels are deleted and created reports the
/// store as it finds it, never an I/O error about a directory that went
/// away under it.
#[test]
fn verify_races_delete_channel() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), small(4096)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) {
                let ch = store.channel("churn").unwrap();
                for seq in 1..=60 {
                    ch.publish(&payload(3, seq)).unwrap();
                }
                store.delete_channel("churn").unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let start = std::time::Instant::now();
    let mut checks = 0;
    while start.elapsed() < std::time::Duration::from_secs(2) {
        let report = store.verify().unwrap_or_else(|e| panic!("verify failed: {e}"));
        // Orphan directories can show up mid-delete; nothing else may.
        for p in &report.problems {
            assert!(p.detail.contains("orphan"), "{p:?}");
        }
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churn.join().unwrap();
    assert!(checks > 5 && rounds > 5, "{checks} checks, {rounds} rounds");
}
