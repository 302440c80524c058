//! Queue groups: one member per message, acks, redelivery, limits, restarts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::small;
use spool::{Error, QueueOptions, StartAt, Store};

fn store(n: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    let ch = store.channel("jobs").unwrap();
    for i in 1..=n {
        ch.publish(format!("job {i}").as_bytes()).unwrap();
    }
    (dir, store)
}

fn opts(ack_wait_ms: u64, max_in_flight: usize) -> QueueOptions {
    QueueOptions::default()
        .ack_wait(Duration::from_millis(ack_wait_ms))
        .max_in_flight(max_in_flight)
}

#[test]
fn each_message_goes_to_one_member() {
    let (_dir, store) = store(100);
    let ch = store.channel("jobs").unwrap();
    let a = ch.queue_subscribe("workers", StartAt::First).unwrap();
    let b = ch.queue_subscribe("workers", StartAt::First).unwrap();
    let (mut got_a, mut got_b) = (BTreeSet::new(), BTreeSet::new());
    loop {
        let da = a.try_recv().unwrap();
        let db = b.try_recv().unwrap();
        if da.is_none() && db.is_none() {
            break;
        }
        for (d, set, m) in [(da, &mut got_a, &a), (db, &mut got_b, &b)] {
            if let Some(d) = d {
                assert_eq!(d.delivery_count(), 1);
                assert!(!d.redelivered());
                set.insert(d.seq());
                m.ack(d.seq()).unwrap();
            }
        }
    }
    assert!(got_a.is_disjoint(&got_b));
    assert_eq!(got_a.len() + got_b.len(), 100);
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both members got work");
    assert_eq!(a.ack_floor(), 100);
}

#[test]
fn unacked_messages_come_back_after_ack_wait() {
    let (_dir, store) = store(3);
    let ch = store.channel("jobs").unwrap();
    let a = ch.queue_subscribe_with("w", StartAt::First, opts(50, 10)).unwrap();
    let b = ch.queue_subscribe("w", StartAt::First).unwrap();
    let first = a.try_recv().unwrap().unwrap();
    assert_eq!(first.seq(), 1);
    std::thread::sleep(Duration::from_millis(80));
    let again = b.recv_timeout(Duration::from_secs(5)).unwrap().expect("redelivered");
    assert_eq!(again.seq(), 1);
    assert!(again.redelivered());
    assert_eq!(again.delivery_count(), 2);
    assert!(matches!(a.ack(1), Err(Error::NotDelivered { seq: 1 })), "now it is b's");
    b.ack(1).unwrap();
    // A blocked receiver is woken by the expiry, not only by publishes.
    let d2 = a.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    let start = std::time::Instant::now();
    let d2_again = b.recv_timeout(Duration::from_secs(5)).unwrap();
    let d2_again = match d2_again {
        Some(d) if d.seq() == 3 => {
            b.ack(3).unwrap();
            b.recv_timeout(Duration::from_secs(5)).unwrap().unwrap()
        }
        Some(d) => d,
        None => panic!("nothing redelivered"),
    };
    assert_eq!(d2_again.seq(), d2.seq());
    assert!(d2_again.redelivered());
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn max_in_flight_bounds_each_member() {
    let (_dir, store) = store(10);
    let ch = store.channel("jobs").unwrap();
    let a = ch.queue_subscribe_with("w", StartAt::First, opts(60_000, 2)).unwrap();
    let d1 = a.try_recv().unwrap().unwrap();
    let _d2 = a.try_recv().unwrap().unwrap();
    assert!(a.try_recv().unwrap().is_none(), "two in flight is the limit");
    assert!(a.recv_timeout(Duration::from_millis(30)).unwrap().is_none());
    a.ack(d1.seq()).unwrap();
    assert_eq!(a.try_recv().unwrap().unwrap().seq(), 3);
}

#[test]
fn a_dropped_members_messages_go_to_the_others() {
    let (_dir, store) = store(5);
    let ch = store.channel("jobs").unwrap();
    let a = ch.queue_subscribe("w", StartAt::First).unwrap();
    let b = ch.queue_subscribe("w", StartAt::First).unwrap();
    let taken: Vec<u64> = (0..3).map(|_| a.try_recv().unwrap().unwrap().seq()).collect();
    drop(a);
    let mut seen = Vec::new();
    while let Some(d) = b.try_recv().unwrap() {
        if taken.contains(&d.seq()) {
            assert!(d.redelivered());
        }
        seen.push(d.seq());
        b.ack(d.seq()).unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

#[test]
fn group_state_survives_a_restart_compactly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small(64 << 10)).unwrap();
        let ch = store.channel("jobs").unwrap();
        for i in 1..=6u64 {
            ch.publish(&i.to_le_bytes()).unwrap();
        }
        let m = ch.queue_subscribe("w", StartAt::First).unwrap();
        let ds: Vec<u64> = (0..5).map(|_| m.try_recv().unwrap().unwrap().seq()).collect();
        assert_eq!(ds, vec![1, 2, 3, 4, 5]);
        for s in [1, 2, 4] {
            m.ack(s).unwrap();
        }
        assert_eq!(m.ack_floor(), 2);
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), small(64 << 10)).unwrap();
    let ch = store.channel("jobs").unwrap();
    let m = ch.queue_subscribe("w", StartAt::New).unwrap();
    assert_eq!(m.ack_floor(), 2);
    let mut rest = Vec::new();
    while let Some(d) = m.try_recv().unwrap() {
        rest.push(d.seq());
        m.ack(d.seq()).unwrap();
    }
    assert_eq!(rest, vec![3, 5, 6], "4 was acked before the restart");
    assert_eq!(m.ack_floor(), 6);
}

#[test]
fn queue_bad_input() {
    let (_dir, store) = store(2);
    let ch = store.channel("jobs").unwrap();
    for bad in [opts(0, 1), opts(25 * 3600 * 1000, 1), opts(100, 0)] {
        assert!(matches!(
            ch.queue_subscribe_with("w", StartAt::First, bad),
            Err(Error::InvalidOption { .. })
        ));
    }
    let m = ch.queue_subscribe("w", StartAt::First).unwrap();
    assert!(
        matches!(m.ack(1), Err(Error::NotDelivered { seq: 1 })),
        "not delivered yet"
    );
    let d = m.try_recv().unwrap().unwrap();
    m.ack(d.seq()).unwrap();
    assert!(matches!(m.ack(d.seq()), Err(Error::NotDelivered { .. })), "acked twice");
    assert!(matches!(m.ack(99), Err(Error::NotDelivered { seq: 99 })));
    assert!(matches!(
        ch.queue_subscribe("", StartAt::First),
        Err(Error::InvalidName { .. })
    ));
    drop(m);
    assert!(matches!(
        ch.subscribe("w", StartAt::First),
        Err(Error::SubscriberKind { .. })
    ));
}

/// When the last member of a group goes, its unacked messages come back to
/// the next member with their delivery count (in the same process).
#[test]
fn last_member_leaving_keeps_delivery_counts() {
    let (_dir, store) = store(5);
    let ch = store.channel("jobs").unwrap();
    let first = ch.queue_subscribe("workers", StartAt::First).unwrap();
    let d = first.recv().unwrap();
    assert_eq!((d.seq(), d.delivery_count(), d.redelivered()), (1, 1, false));
    drop(first);
    let next = ch.queue_subscribe("workers", StartAt::First).unwrap();
    let d = next.recv().unwrap();
    assert_eq!(d.seq(), 1, "the unacked message comes back first");
    assert_eq!((d.delivery_count(), d.redelivered()), (2, true));
    next.ack(1).unwrap();
    let d = next.recv().unwrap();
    assert_eq!((d.seq(), d.delivery_count()), (2, 1));
}

/// A blocked `recv` of a member with no room (max_in_flight 1) is woken by
/// the ack another thread sends, wherever the ack lands in its wait (before
/// it was visible as a waiter, the ack once went unnoticed until ack_wait).
#[test]
fn an_ack_from_another_thread_wakes_a_blocked_recv() {
    const N: u64 = 20_000;
    let (_dir, store) = store(N);
    let ch = store.channel("jobs").unwrap();
    let member = std::sync::Arc::new(ch.queue_subscribe_with("w", StartAt::First, opts(600_000, 1)).unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let acker = {
        let member = std::sync::Arc::clone(&member);
        std::thread::spawn(move || {
            let mut rng = common::Rng(5);
            for seq in rx {
                for _ in 0..rng.below(400) {
                    std::hint::spin_loop();
                }
                member.ack(seq).unwrap();
            }
        })
    };
    let receiver = {
        let member = std::sync::Arc::clone(&member);
        std::thread::spawn(move || {
            for seq in 1..=N {
                assert_eq!(member.recv().unwrap().seq(), seq);
                tx.send(seq).unwrap();
            }
        })
    };
    let start = std::time::Instant::now();
    while !receiver.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(120), "an ack's wake-up was lost");
        std::thread::sleep(Duration::from_millis(5));
    }
    receiver.join().unwrap();
    acker.join().unwrap();
}
