//! Durable subscribers: start positions, resume, commits, bad input.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::small;
use spool::{Error, Options, StartAt, Store};

fn store_with(n: u64) -> (tempfile::TempDir, Store, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    let ch = store.channel("c").unwrap();
    let mut stamps = Vec::new();
    for i in 1..=n {
        ch.publish(format!("m{i}").as_bytes()).unwrap();
        stamps.push(ch.get(i).unwrap().timestamp());
        std::thread::sleep(Duration::from_millis(1));
    }
    (dir, store, stamps)
}

#[test]
fn every_start_position() {
    let (_dir, store, stamps) = store_with(10);
    let ch = store.channel("c").unwrap();
    let first = |start, name: &str| {
        let sub = ch.subscribe(name, start).unwrap();
        sub.try_recv().unwrap().map(|m| m.seq())
    };
    assert_eq!(first(StartAt::First, "first"), Some(1));
    assert_eq!(first(StartAt::Last, "last"), Some(10));
    assert_eq!(first(StartAt::New, "new"), None);
    assert_eq!(first(StartAt::Seq(4), "seq"), Some(4));
    assert_eq!(first(StartAt::Seq(11), "seq-next"), None);
    assert!(matches!(
        ch.subscribe("seq-far", StartAt::Seq(12)),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(first(StartAt::Time(stamps[6]), "time"), Some(7));
    assert_eq!(first(StartAt::Time(stamps[9] + 1), "time-future"), None);
    assert_eq!(first(StartAt::Ago(Duration::from_secs(3600)), "ago"), Some(1));
    assert_eq!(first(StartAt::Ago(Duration::ZERO), "ago-zero"), None);
    // "new" saw nothing; it gets what is published now.
    let sub = ch.subscribe("new", StartAt::First).unwrap();
    ch.publish(b"m11").unwrap();
    assert_eq!(
        sub.try_recv().unwrap().map(|m| m.seq()),
        Some(11),
        "start ignored after creation"
    );
}

#[test]
fn empty_channel_start_positions() {
    let (_dir, store, _) = store_with(0);
    for (name, start) in [("f", StartAt::First), ("l", StartAt::Last), ("n", StartAt::New)] {
        let ch = store.channel(name).unwrap();
        let sub = ch.subscribe(name, start).unwrap();
        assert!(sub.try_recv().unwrap().is_none());
        ch.publish(name.as_bytes()).unwrap();
        let m = sub.try_recv().unwrap().expect("the next message");
        assert_eq!(m.payload(), name.as_bytes());
    }
}

#[test]
fn resume_after_reopen_with_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small(64 << 10)).unwrap();
        let ch = store.channel("c").unwrap();
        for i in 1..=20u64 {
            ch.publish(&i.to_le_bytes()).unwrap();
        }
        let sub = ch.subscribe("sum", StartAt::First).unwrap();
        let mut sum = 0u64;
        for _ in 0..12 {
            let m = sub.recv().unwrap();
            sum += u64::from_le_bytes(m.payload().try_into().unwrap());
            sub.commit(m.seq(), &sum.to_le_bytes()).unwrap();
        }
        // Delivered but not committed: comes again after the restart.
        sub.recv().unwrap();
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("sum", StartAt::New).unwrap();
    let (pos, state) = sub.committed();
    assert_eq!(pos, 12);
    assert_eq!(u64::from_le_bytes((*state).try_into().unwrap()), (1..=12).sum::<u64>());
    let seqs: Vec<u64> = std::iter::from_fn(|| sub.try_recv().unwrap().map(|m| m.seq())).collect();
    assert_eq!(seqs, (13..=20).collect::<Vec<_>>());
    assert_eq!(ch.subscriber_names(), vec!["sum".to_string()]);
}

#[test]
fn commit_checks() {
    let (_dir, store, _) = store_with(5);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    sub.commit(3, b"x").unwrap();
    assert!(matches!(
        sub.commit(6, b""),
        Err(Error::CommitBeyondEnd { requested: 6, last: 5 })
    ));
    assert!(matches!(
        sub.commit(2, b""),
        Err(Error::CommitBehind {
            requested: 2,
            committed: 3
        })
    ));
    sub.commit(3, b"same position, new state").unwrap();
    assert_eq!(&*sub.committed().1, b"same position, new state");
    assert_eq!(sub.next_seq(), 4, "delivery moves past a commit");
    let big = vec![0u8; spool::DEFAULT_MAX_STATE + 1];
    match sub.commit(4, &big) {
        Err(Error::StateTooLarge { len, max }) => assert_eq!((len, max), (big.len(), spool::DEFAULT_MAX_STATE)),
        other => panic!("{other:?}"),
    }
    assert_eq!(sub.committed().0, 3, "a refused commit changes nothing");
    let err = sub.commit(9, b"").unwrap_err();
    assert!(err.to_string().contains("last message is 5"), "{err}");
}

#[test]
fn bad_input_is_typed() {
    let (_dir, store, _) = store_with(3);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    assert!(matches!(
        ch.subscribe("s", StartAt::First),
        Err(Error::SubscriberInUse { .. })
    ));
    assert!(matches!(
        ch.subscribe("", StartAt::First),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        ch.subscribe("a\0b", StartAt::First),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        ch.remove_subscriber("nobody"),
        Err(Error::NoSuchSubscriber { .. })
    ));
    assert!(matches!(
        ch.queue_subscribe("s", StartAt::First),
        Err(Error::SubscriberInUse { .. })
    ));
    drop(sub);
    assert!(matches!(
        ch.queue_subscribe("s", StartAt::First),
        Err(Error::SubscriberKind { .. })
    ));
    let again = ch.subscribe("s", StartAt::First).expect("closing releases the name");
    again.close();
    ch.remove_subscriber("s").unwrap();
    assert!(ch.subscriber_names().is_empty());
}

#[test]
fn max_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(64 << 10).max_subscribers(2)).unwrap();
    let ch = store.channel("c").unwrap();
    let a = ch.subscribe("a", StartAt::First).unwrap();
    let _g = ch.queue_subscribe("g", StartAt::First).unwrap();
    match ch.subscribe("b", StartAt::First) {
        Err(Error::TooManySubscribers { max: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    a.unsubscribe().unwrap();
    ch.subscribe("b", StartAt::First).expect("room again");
}

#[test]
fn unsubscribe_then_subscribe_starts_afresh() {
    let (_dir, store, _) = store_with(5);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    sub.commit(4, b"old").unwrap();
    sub.unsubscribe().unwrap();
    let sub = ch.subscribe("s", StartAt::Seq(2)).unwrap();
    assert_eq!(sub.committed().0, 1);
    assert!(sub.committed().1.is_empty());
}

#[test]
fn deleted_channel_subscribers_never_reattach() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small(64 << 10);
    {
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        let ch = store.channel("c").unwrap();
        ch.publish_batch(&[b"a", b"b", b"c"]).unwrap();
        let sub = ch.subscribe("s", StartAt::First).unwrap();
        sub.commit(2, b"state").unwrap();
        store.delete_channel("c").unwrap();
        assert!(matches!(sub.try_recv(), Err(Error::ChannelDeleted { .. })));
        assert!(matches!(sub.commit(3, b""), Err(Error::ChannelDeleted { .. })));
        let ch = store.channel("c").unwrap();
        assert!(ch.subscriber_names().is_empty());
        ch.publish(b"new life").unwrap();
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), opts).unwrap();
    let ch = store.channel("c").unwrap();
    assert!(ch.subscriber_names().is_empty(), "not even after a restart");
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    assert_eq!(sub.committed().0, 0);
    assert_eq!(sub.try_recv().unwrap().unwrap().payload(), b"new life");
}

#[test]
fn blocking_receive_wakes_on_publish() {
    let (_dir, store, _) = store_with(0);
    let ch = store.channel("c").unwrap();
    let sub = Arc::new(ch.subscribe("s", StartAt::New).unwrap());
    let start = Instant::now();
    let receiver = {
        let sub = Arc::clone(&sub);
        std::thread::spawn(move || {
            let m = sub.recv().unwrap();
            (m.seq(), start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    ch.publish(b"wake up").unwrap();
    let (seq, waited) = receiver.join().unwrap();
    assert_eq!(seq, 1);
    assert!(waited >= Duration::from_millis(100), "it did block");
    assert!(waited < Duration::from_secs(5), "woken by the publish, not a timeout");

    let start = Instant::now();
    assert!(sub.recv_timeout(Duration::from_millis(50)).unwrap().is_none());
    assert!(start.elapsed() >= Duration::from_millis(50));
}

/// CPU time of the calling thread, in clock ticks, from procfs.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn idle_receiver_costs_no_cpu() {
    let (_dir, store, _) = store_with(0);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::New).unwrap();
    let handle = std::thread::spawn(move || {
        let before = thread_cpu_ticks();
        assert!(sub.recv_timeout(Duration::from_millis(1500)).unwrap().is_none());
        thread_cpu_ticks() - before
    });
    let ticks = handle.join().unwrap();
    // Clock ticks are 10 ms: a spinning receiver would burn ~150.
    assert!(ticks <= 5, "an idle receiver used {ticks} ticks of CPU in 1.5 s");
}

#[test]
fn close_wakes_blocked_receivers() {
    let (_dir, store, _) = store_with(0);
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::New).unwrap();
    let h = std::thread::spawn(move || sub.recv().map(|m| m.seq()));
    std::thread::sleep(Duration::from_millis(50));
    store.close().unwrap();
    assert!(matches!(h.join().unwrap(), Err(Error::Closed)));
}

#[test]
fn store_wide_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::open(dir.path(), Options::default().max_state(1 << 30)),
        Err(Error::InvalidOption { name: "max_state", .. })
    ));
}

/// `Store::commit_all` refuses a subscriber of another store instead of
/// writing into that store's log.
#[test]
fn commit_all_refuses_another_stores_subscriber() {
    let (_d1, s1, _) = store_with(10);
    let (_d2, s2, _) = store_with(10);
    let a = s1.channel("c").unwrap().subscribe("a", StartAt::First).unwrap();
    let b = s2.channel("c").unwrap().subscribe("b", StartAt::First).unwrap();
    let err = s1.commit_all(&[(&b, 5)], b"x").unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    let err = s1.commit_all(&[(&a, 5), (&b, 5)], b"x").unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    assert_eq!(b.committed().0, 0, "nothing committed in the other store");
    assert_eq!(a.committed().0, 0, "nor in this one");
    s1.commit_all(&[(&a, 5)], b"x").unwrap();
    assert_eq!(a.committed().0, 5);
}
