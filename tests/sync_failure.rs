//! A failed sync is sticky: the store refuses writes, nothing after the
//! last good sync was reported durable, and a reopen recovers.

mod common;

use common::{open_sim, payload, read_all, small};
use spool::sim::SimStorage;
use spool::{Error, SyncPolicy};

#[test]
fn kth_sync_fails_for_every_k() {
    let opts = small(4096).sync_policy(SyncPolicy::Always);
    let mut k = 0;
    loop {
        let sim = SimStorage::new();
        let store = open_sim(&sim, opts.clone()).unwrap();
        let ch = store.channel("s").unwrap();
        sim.fail_sync_after(Some(k));
        let mut acked = 0u64;
        let mut failure = None;
        for seq in 1..=60u64 {
            match ch.publish(&payload(1, seq)) {
                Ok(s) => {
                    assert_eq!(s, seq);
                    acked = seq;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let Some(err) = failure else {
            // k is past every sync this workload makes: done.
            assert!(k > 10, "the workload makes several syncs");
            break;
        };
        assert!(matches!(err, Error::Failed { .. }), "k={k}: {err}");
        assert!(err.to_string().contains("sync"), "names the cause: {err}");
        // Sticky: later writes and syncs fail too, naming the same cause.
        let again = ch.publish(b"later").unwrap_err();
        assert!(matches!(again, Error::Failed { .. }), "{again}");
        assert!(ch.sync().is_err());
        assert!(store.channel("other").is_err());
        assert!(store.failure().is_some());
        assert!(ch.durable_seq() <= acked);

        for seed in 0..4 {
            let after = sim.power_loss(seed * 31 + k);
            let recovered = open_sim(&after, opts.clone()).unwrap();
            common::assert_verified(&recovered, &format!("k={k} seed={seed}"));
            let got = read_all(&recovered, "s");
            assert!(
                got.len() as u64 >= acked,
                "k={k} seed={seed}: lost acknowledged messages"
            );
            for (seq, p) in got {
                assert_eq!(p, payload(1, seq));
            }
        }
        drop(ch);
        assert!(store.close().is_err(), "close reports the failure");
        k += 1;
    }
}

#[test]
fn disk_full_when_creating_a_segment() {
    let sim = SimStorage::new();
    let opts = small(8192);
    let store = open_sim(&sim, opts.clone()).unwrap();
    let ch = store.channel("full").unwrap();
    ch.publish(b"first").unwrap();
    let used: u64 = sim
        .list_all()
        .iter()
        .filter_map(|p| sim.read(p).ok())
        .map(|b| b.len() as u64)
        .sum();
    sim.set_space_limit(Some(used + 100));
    let mut acked = 1;
    let err = loop {
        match ch.publish(&[7u8; 500]) {
            Ok(s) => acked = s,
            Err(e) => break e,
        }
    };
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc_enospc()), "{err}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(store.failure().is_none(), "a full disk is not a sync failure");
    assert_eq!(ch.last_seq(), acked, "nothing half-written is visible");
    sim.set_space_limit(None);
    let s = ch.publish(b"after space came back").unwrap();
    assert_eq!(s, acked + 1);
    ch.sync().unwrap();
    drop(ch);
    store.close().unwrap();
    let store = open_sim(&sim.power_loss(3), opts).unwrap();
    assert_eq!(read_all(&store, "full").len() as u64, acked + 1);
}

fn libc_enospc() -> i32 {
    28
}
