//! Publish, read back, restart.

mod common;

use common::{payload, read_all, small};
use spool::{Error, Options, Store};

#[test]
fn round_trip_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let store = Store::open(dir.path(), small(64 << 10)).unwrap();
        let ch = store.channel("orders").unwrap();
        assert_eq!(ch.first_seq(), 1);
        assert_eq!(ch.last_seq(), 0);
        for seq in 1..=500u64 {
            let p = payload(1, seq);
            assert_eq!(ch.publish(&p).unwrap(), seq);
            expected.push((seq, p));
        }
        let batch: Vec<Vec<u8>> = (501..=600).map(|s| payload(1, s)).collect();
        assert_eq!(ch.publish_batch(&batch).unwrap(), 501..=600);
        expected.extend((501..=600).zip(batch));
        assert_eq!(read_all(&store, "orders"), expected);
        let m = ch.get(42).unwrap();
        assert_eq!((m.seq(), m.payload()), (42, payload(1, 42).as_slice()));
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    assert_eq!(store.channel_names(), vec!["orders".to_string()]);
    assert_eq!(read_all(&store, "orders"), expected);
    let ch = store.channel("orders").unwrap();
    assert_eq!(ch.publish(b"after restart").unwrap(), 601);
    assert_eq!(ch.get(601).unwrap().payload(), b"after restart");
    for report in &store.recovery_report().channels {
        assert_eq!(report.torn_tail, None);
        assert!(report.lost.is_empty());
    }
}

#[test]
fn empty_payloads_are_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    let ch = store.channel("e").unwrap();
    assert_eq!(ch.publish(b"").unwrap(), 1);
    assert_eq!(ch.publish_batch(&[b"".as_slice(), b"x", b""]).unwrap(), 2..=4);
    let lens: Vec<usize> = ch.read_from(1).unwrap().map(|m| m.unwrap().payload().len()).collect();
    assert_eq!(lens, vec![0, 0, 1, 0]);
}

#[test]
fn payload_too_large_is_typed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(64 << 10).max_payload(100)).unwrap();
    let ch = store.channel("p").unwrap();
    assert_eq!(ch.publish(&[0u8; 100]).unwrap(), 1);
    match ch.publish(&[0u8; 101]) {
        Err(Error::PayloadTooLarge { len: 101, max: 100 }) => {}
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    let err = ch.publish_batch(&[vec![1u8; 10], vec![2u8; 500]]).unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { len: 500, .. }), "{err}");
    assert_eq!(ch.last_seq(), 1, "a rejected batch writes nothing");
    assert!(err.to_string().contains("max_payload"));
}

#[test]
fn out_of_range_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    let ch = store.channel("r").unwrap();
    match ch.get(1) {
        Err(Error::OutOfRange {
            requested: 1,
            first: 1,
            last: 0,
        }) => {}
        other => panic!("{other:?}"),
    }
    ch.publish_batch(&[b"a", b"b", b"c"]).unwrap();
    for bad in [0, 4, u64::MAX] {
        match ch.get(bad) {
            Err(Error::OutOfRange {
                requested,
                first: 1,
                last: 3,
            }) => assert_eq!(requested, bad),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(ch.read_from(5), Err(Error::OutOfRange { .. })));
    assert_eq!(ch.read_from(4).unwrap().count(), 0, "reading from last + 1 is the tail");
    assert_eq!(ch.read_from(0).unwrap().count(), 3, "below first starts at first");
}

#[test]
fn invalid_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for (name, why) in [("", "empty"), ("a\0b", "NUL")] {
        match store.channel(name) {
            Err(Error::InvalidName { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    let long = "é".repeat(128); // 256 bytes
    assert!(matches!(store.channel(&long), Err(Error::InvalidName { .. })));
    let max = "x".repeat(255);
    assert_eq!(store.channel(&max).unwrap().name(), max);
    assert!(store.channel("../escape/attempt").is_ok(), "names are not paths");
    assert!(matches!(
        store.open_channel("missing"),
        Err(Error::NoSuchChannel { .. })
    ));
}

#[test]
fn second_opener_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { path, holder_pid }) => {
            assert_eq!(path, dir.path().join("LOCK"));
            assert_eq!(holder_pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(store);
    Store::open(dir.path(), Options::default()).expect("lock released on drop");
}

#[test]
fn second_process_gets_locked() {
    // Re-run this test binary as a child that tries to open the store.
    if let Ok(dir) = std::env::var("SPOOL_LOCK_CHILD_DIR") {
        match Store::open(&dir, Options::default()) {
            Err(Error::Locked { .. }) => std::process::exit(42),
            other => {
                eprintln!("child got {other:?}");
                std::process::exit(1)
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path(), Options::default()).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "second_process_gets_locked", "--nocapture"])
        .env("SPOOL_LOCK_CHILD_DIR", dir.path())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(42), "the child must see Locked");
}

#[test]
fn invalid_options_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        Options::default().segment_size(100),
        Options::default().segment_size(1 << 33),
        Options::default().index_interval(8),
        Options::default().segment_size(8192).max_payload(8192),
        Options::default().sync_policy(spool::SyncPolicy::Interval(std::time::Duration::ZERO)),
    ];
    for opts in cases {
        match Store::open(dir.path(), opts.clone()) {
            Err(Error::InvalidOption { .. }) => {}
            other => panic!("{opts:?}: {other:?}"),
        }
    }
}

/// Under `SyncPolicy::Always` the writer stores records with pwrite(2)
/// instead of through the mapping; readers of the mapping, a reader tailing
/// the channel, and a reopen must all see exactly the same bytes, across
/// segment rolls and batches larger than the write-through staging buffer.
#[test]
fn write_through_under_always_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::default()
            .segment_size(1 << 20)
            .index_interval(256)
            .max_payload(4096)
            .sync_policy(spool::SyncPolicy::Always)
    };
    let big = |seq: u64| -> Vec<u8> { (0..3000).map(|i| (seq as usize * 31 + i) as u8).collect() };
    let mut expected = Vec::new();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        let ch = store.channel("through").unwrap();
        let tail = {
            let ch = ch.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut next = 1;
                while next <= 1300 {
                    for m in ch.read_from(next).unwrap() {
                        let m = m.unwrap();
                        seen.push((m.seq(), m.payload().to_vec()));
                        next = m.seq() + 1;
                    }
                }
                seen
            })
        };
        for seq in 1..=300u64 {
            let p = payload(3, seq);
            assert_eq!(ch.publish(&p).unwrap(), seq);
            assert!(ch.durable_seq() >= seq);
            expected.push((seq, p));
        }
        // 1000 x 3000 B = 3 MB: rolls 1 MiB segments and overflows staging.
        let batch: Vec<Vec<u8>> = (301..=1300).map(big).collect();
        assert_eq!(ch.publish_batch(&batch).unwrap(), 301..=1300);
        expected.extend((301..=1300).zip(batch));
        assert_eq!(tail.join().unwrap(), expected);
        assert_eq!(read_all(&store, "through"), expected);
        assert_eq!(ch.get(1000).unwrap().payload(), big(1000).as_slice());
        common::assert_verified(&store, "after write-through appends");
        // Dropped without close: the reopen must find everything on disk.
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(read_all(&store, "through"), expected);
    for report in &store.recovery_report().channels {
        assert!(report.lost.is_empty());
    }
    let ch = store.channel("through").unwrap();
    assert_eq!(ch.publish(b"after reopen").unwrap(), 1301);
    assert_eq!(ch.get(1301).unwrap().payload(), b"after reopen");
}

/// A lock that carries this process's pid while no store of this process
/// holds it (what a forked, not yet exec'd child leaves for a moment) is
/// waited for instead of reported as `Locked`.
#[test]
fn lock_left_with_a_forked_child_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), Options::default()).unwrap().close().unwrap();
    let other = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("LOCK"))
        .unwrap();
    other.lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(other);
    });
    let start = std::time::Instant::now();
    let store = Store::open(dir.path(), Options::default()).expect("opens once the other descriptor is closed");
    assert!(start.elapsed() >= std::time::Duration::from_millis(100), "it did wait");
    release.join().unwrap();
    // A second open while a store of this process holds it is still Locked.
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    drop(store);
}
