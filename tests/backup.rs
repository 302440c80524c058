//! `Store::backup_to`: the copy opens as an ordinary store (strict mode,
//! verify clean), holds exact prefixes with the same ids and the
//! subscribers' commits, from an owning store and through read-only
//! attach, while writers run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spool::{Error, Limits, Options, StartAt, Store, SyncPolicy};

fn opts() -> Options {
    Options::default().segment_size(64 << 10).sync_policy(SyncPolicy::Never)
}

/// Checks a copy: opens strictly, verifies clean, every channel holds
/// `payload(seq)` for each seq it has, no subscriber past its channel.
fn check_copy(path: &std::path::Path) -> Store {
    let copy = Store::open(path, opts().create_if_missing(false)).expect("the copy opens");
    let report = copy.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    for name in copy.channel_names() {
        let ch = copy.open_channel(&name).expect("channel");
        let mut expected = ch.first_seq();
        for m in ch.read_from(1).expect("read") {
            let m = m.expect("message");
            assert_eq!(m.seq(), expected);
            assert_eq!(m.payload(), payload(&name, m.seq()), "{name} {}", m.seq());
            expected += 1;
        }
        assert_eq!(expected, ch.last_seq() + 1);
        for s in ch.subscribers().expect("subscribers") {
            assert!(s.position <= ch.last_seq(), "{s:?} past {}", ch.last_seq());
        }
    }
    copy
}

fn payload(channel: &str, seq: u64) -> Vec<u8> {
    format!("{channel}-{seq:08}-{}", "x".repeat((seq % 300) as usize)).into_bytes()
}

#[test]
fn owning_backup_is_a_store_with_the_same_ids_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("live"), opts()).expect("open");
    let a = store.channel("a").expect("a");
    // A deleted and recreated channel: the copy has the new id only.
    store.channel("b").expect("b");
    store.delete_channel("b").expect("delete");
    let b = store.channel("b").expect("b again");
    for seq in 1..=3000 {
        a.publish(&payload("a", seq)).expect("publish");
    }
    for seq in 1..=10 {
        b.publish(&payload("b", seq)).expect("publish");
    }
    let sub = a.subscribe("reader", StartAt::First).expect("subscribe");
    sub.commit(1234, b"counter=1234").expect("commit");
    let group = b.queue_subscribe("workers", StartAt::First).expect("group");
    for _ in 0..3 {
        let job = group.recv().expect("recv");
        group.ack(job.seq()).expect("ack");
    }
    // Seals what the writer rolled away from (under `Never` they wait).
    store.sync().expect("sync");
    let report = store.backup_to(dir.path().join("copy")).expect("backup");
    assert!(report.one_instant);
    assert_eq!((report.channels, report.messages, report.subscribers), (2, 3010, 2));
    assert!(report.segments_linked > 0, "{report:?}");
    let copy = check_copy(&dir.path().join("copy"));
    assert_eq!(copy.store_id(), store.store_id());
    assert_eq!(copy.open_channel("a").expect("a").id(), a.id());
    assert_eq!(copy.open_channel("b").expect("b").id(), b.id());
    assert_ne!(b.id(), 2, "b was recreated");
    let subs = copy.open_channel("a").expect("a").subscribers().expect("subs");
    assert_eq!((subs[0].position, subs[0].state_len), (1234, 12));
    let s = copy
        .open_channel("a")
        .expect("a")
        .subscribe("reader", StartAt::First)
        .expect("sub");
    assert_eq!(&*s.committed().1, b"counter=1234");
    let groups = copy.open_channel("b").expect("b").subscribers().expect("subs");
    assert_eq!(groups[0].ack_floor, Some(3));
    // The copy is a store of its own: writable, and the original unchanged.
    copy.open_channel("a").expect("a").publish(b"more").expect("publish");
    assert_eq!(a.last_seq(), 3000);
    // A destination that is not empty is refused.
    assert!(matches!(
        store.backup_to(dir.path().join("copy")),
        Err(Error::InvalidOption { name: "dest", .. })
    ));
    assert!(matches!(
        store.backup_to(dir.path().join("live").join("inside")),
        Err(Error::InvalidOption { name: "dest", .. })
    ));
}

#[test]
fn backups_while_writers_run_are_consistent_cuts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        Store::open(
            dir.path().join("live"),
            opts()
                .limits(Limits::default().max_msgs(20_000))
                .compact_interval(Duration::from_millis(5)),
        )
        .expect("open"),
    );
    let a = store.channel("a").expect("a");
    let b = store.channel("b").expect("b");
    let stop = Arc::new(AtomicBool::new(false));
    // One thread publishes a then b (same seq), then commits a subscriber
    // of a at that seq: any one instant has |b| <= |a| <= |b| + 1 and the
    // subscriber at most at |a|.
    let writer = {
        let (a, b, stop) = (a.clone(), b.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let sub = a.subscribe("s", StartAt::First).expect("subscribe");
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                a.publish(&payload("a", seq)).expect("a");
                b.publish(&payload("b", seq)).expect("b");
                if seq % 7 == 0 {
                    sub.commit(seq, &seq.to_le_bytes()).expect("commit");
                }
            }
        })
    };
    let reader = Store::open_read_only(dir.path().join("live")).expect("attach");
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(30));
        let path = dir.path().join(format!("copy-{round}"));
        let report = if round % 2 == 0 {
            store.backup_to(&path).expect("owning backup")
        } else {
            reader.backup_to(&path).expect("read-only backup")
        };
        let copy = check_copy(&path);
        let (ca, cb) = (copy.open_channel("a").expect("a"), copy.open_channel("b").expect("b"));
        if report.one_instant {
            assert!(
                cb.last_seq() <= ca.last_seq() && ca.last_seq() <= cb.last_seq() + 1,
                "round {round}: a {} b {}",
                ca.last_seq(),
                cb.last_seq()
            );
        }
        let sub = ca.subscribe("s", StartAt::First).expect("sub");
        let (pos, state) = sub.committed();
        assert!(pos <= ca.last_seq());
        if pos > 0 {
            assert_eq!(&*state, pos.to_le_bytes(), "state from the same commit as the position");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}
