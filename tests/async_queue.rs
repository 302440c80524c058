//! Async receive by queue members: each message goes to exactly one member
//! once, waiting members are woken by publishes, by acks from other tasks
//! and, for a redelivery, by the timer thread alone; under tokio (both
//! runtimes) and futures' executor.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use spool::{Channel, Options, QueueMember, QueueOptions, StartAt, Store, SyncPolicy};

const PUBLISHERS: u64 = 4;
const MEMBERS: usize = 4;
const PER_PUBLISHER: u64 = 10_000;
const TOTAL: u64 = PUBLISHERS * PER_PUBLISHER;
const DEADLINE: Duration = Duration::from_secs(120);

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().segment_size(1 << 20).sync_policy(SyncPolicy::Never);
    let store = Store::open(dir.path(), opts).unwrap();
    (dir, store)
}

fn opts(ack_wait: Duration, max_in_flight: usize) -> QueueOptions {
    QueueOptions::default().ack_wait(ack_wait).max_in_flight(max_in_flight)
}

/// Every seq, the members it went to and its delivery counts.
type Deliveries = Arc<Mutex<BTreeMap<u64, Vec<(usize, u32)>>>>;

fn check_once(deliveries: &Deliveries) {
    let d = deliveries.lock();
    assert_eq!(d.len() as u64, TOTAL, "every message delivered");
    for (seq, to) in d.iter() {
        assert_eq!(to.len(), 1, "seq {seq} delivered to {to:?}");
        assert_eq!(to[0].1, 1, "seq {seq} redelivered: {to:?}");
    }
}

/// Publishes in bursts; waits (yielding) until the group acked each burst,
/// so that every burst end is a wake-up that must not be lost.
async fn publish(ch: Channel, publisher: u64, floor: Arc<AtomicU64>) {
    let mut rng = common::Rng(publisher + 11);
    let mut i = 0;
    while i < PER_PUBLISHER {
        let mut last = 0;
        for _ in 0..=rng.below(8) {
            if i < PER_PUBLISHER {
                last = ch.publish(&i.to_le_bytes()).unwrap();
                i += 1;
            }
        }
        while floor.load(Ordering::Acquire) < last {
            tokio::task::yield_now().await;
        }
    }
}

/// Receives and acks until the group's ack floor reaches TOTAL.
async fn work(member: QueueMember, index: usize, deliveries: Deliveries, floor: Arc<AtomicU64>) {
    let mut stream = member.stream();
    while floor.load(Ordering::Acquire) < TOTAL {
        let next = if index.is_multiple_of(2) {
            member.recv_async().await
        } else {
            stream.next().await.unwrap()
        };
        let d = next.unwrap();
        deliveries
            .lock()
            .entry(d.seq())
            .or_default()
            .push((index, d.delivery_count()));
        member.ack(d.seq()).unwrap();
        floor.fetch_max(member.ack_floor(), Ordering::AcqRel);
    }
}

fn run_on_tokio(rt: tokio::runtime::Runtime) {
    let (_dir, store) = open();
    let ch = store.channel("jobs").unwrap();
    let deliveries = Deliveries::default();
    let floor = Arc::new(AtomicU64::new(0));
    let members: Vec<QueueMember> = (0..MEMBERS)
        .map(|_| {
            ch.queue_subscribe_with("g", StartAt::First, opts(Duration::from_secs(600), 2))
                .unwrap()
        })
        .collect();
    rt.block_on(async {
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| tokio::spawn(publish(ch.clone(), p, Arc::clone(&floor))))
            .collect();
        let mut workers: Vec<_> = members
            .into_iter()
            .enumerate()
            .map(|(i, m)| tokio::spawn(work(m, i, Arc::clone(&deliveries), Arc::clone(&floor))))
            .collect();
        let all = async {
            for p in publishers {
                p.await.unwrap();
            }
            // Members still waiting once everything is acked: one extra
            // message each ends their loop.
            let extra = ch.publish_batch(&[b"end"; MEMBERS]).unwrap();
            for w in workers.drain(..) {
                w.await.unwrap();
            }
            extra
        };
        tokio::time::timeout(DEADLINE, all)
            .await
            .expect("a member was never woken (lost wake-up)");
    });
    deliveries.lock().retain(|seq, _| *seq <= TOTAL);
    check_once(&deliveries);
}

#[test]
fn tokio_multi_thread_each_message_to_one_member_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    run_on_tokio(rt);
}

#[test]
fn tokio_current_thread_each_message_to_one_member_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    run_on_tokio(rt);
}

/// A member with room for one message at a time, shared by a receiving
/// thread and an acking thread: the receiver waits for the other thread's
/// ack, at random points of its look-register-look sequence. A lost ack
/// wake-up stalls the exchange (nothing is published meanwhile).
#[test]
fn an_ack_from_another_thread_wakes_the_waiting_receive() {
    const N: u64 = 20_000;
    let (_dir, store) = open();
    let ch = store.channel("jobs").unwrap();
    let batch: Vec<[u8; 8]> = (0..N).map(|i| i.to_le_bytes()).collect();
    ch.publish_batch(&batch).unwrap();
    let member = Arc::new(
        ch.queue_subscribe_with("g", StartAt::First, opts(Duration::from_secs(600), 1))
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let acker = {
        let member = Arc::clone(&member);
        thread::spawn(move || {
            let mut rng = common::Rng(3);
            for seq in rx {
                for _ in 0..rng.below(400) {
                    std::hint::spin_loop();
                }
                member.ack(seq).unwrap();
            }
        })
    };
    let receiver = {
        let member = Arc::clone(&member);
        thread::spawn(move || {
            futures::executor::block_on(async {
                for seq in 1..=N {
                    let d = member.recv_async().await.unwrap();
                    assert_eq!((d.seq(), d.delivery_count()), (seq, 1));
                    tx.send(seq).unwrap();
                }
            })
        })
    };
    let start = Instant::now();
    while !receiver.is_finished() {
        assert!(start.elapsed() < DEADLINE, "an ack's wake-up was lost");
        thread::sleep(Duration::from_millis(5));
    }
    receiver.join().unwrap();
    acker.join().unwrap();
    assert_eq!(member.ack_floor(), N);
}

/// With nothing published, a message left unacked comes back to a waiting
/// member after ack_wait: the store's timer thread wakes it.
fn redelivery_after_ack_wait<F>(block_on: F)
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>),
{
    let (_dir, store) = open();
    let ch = store.channel("jobs").unwrap();
    let o = opts(Duration::from_millis(100), 8);
    let a = ch.queue_subscribe_with("g", StartAt::First, o.clone()).unwrap();
    let b = ch.queue_subscribe_with("g", StartAt::First, o.clone()).unwrap();
    ch.publish(b"job").unwrap();
    let taken = a.try_recv().unwrap().unwrap();
    assert_eq!(taken.delivery_count(), 1);
    let start = Instant::now();
    block_on(Box::pin(async {
        let again = b.recv_async().await.unwrap();
        assert_eq!((again.seq(), again.delivery_count()), (taken.seq(), 2));
    }));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(90), "redelivered early: {waited:?}");
    assert!(waited < Duration::from_secs(3), "woken late: {waited:?}");
    assert!(matches!(a.ack(taken.seq()), Err(spool::Error::NotDelivered { .. })));
    b.ack(taken.seq()).unwrap();
}

#[test]
fn redelivery_wakes_a_waiting_member_on_futures_executor() {
    let run = thread::spawn(|| redelivery_after_ack_wait(|f| futures::executor::block_on(f)));
    let start = Instant::now();
    while !run.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(20), "never woken");
        thread::sleep(Duration::from_millis(5));
    }
    run.join().unwrap();
}

#[test]
fn redelivery_wakes_a_waiting_member_on_tokio() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    redelivery_after_ack_wait(|f| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), f)
                .await
                .expect("never woken")
        })
    });
}

/// A member that leaves with a message in flight hands it to a member that
/// waits, at once (no publish, no ack_wait).
#[test]
fn a_departing_member_wakes_a_waiting_one() {
    let (_dir, store) = open();
    let ch = store.channel("jobs").unwrap();
    let o = opts(Duration::from_secs(600), 8);
    let a = ch.queue_subscribe_with("g", StartAt::First, o.clone()).unwrap();
    let b = ch.queue_subscribe_with("g", StartAt::First, o.clone()).unwrap();
    ch.publish(b"job").unwrap();
    let taken = a.try_recv().unwrap().unwrap();
    let leaver = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        drop(a);
    });
    let start = Instant::now();
    let again = futures::executor::block_on(b.recv_async()).unwrap();
    assert_eq!((again.seq(), again.delivery_count()), (taken.seq(), 2));
    assert!(start.elapsed() < Duration::from_secs(10));
    leaver.join().unwrap();
}
