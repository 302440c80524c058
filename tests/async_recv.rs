//! Async receive by subscribers: every message delivered once and in order
//! to each subscriber, with no lost wake-up, under tokio's multi-thread and
//! current-thread runtimes and under futures' minimal executor (one thread
//! per receiver, parked between wake-ups). In each run 4 publishers publish
//! 100k messages (25k each), and 4 receivers each receive all of them.
//!
//! A missed wake-up is only fatal when no later publish comes to rescue the
//! receiver, so publishers publish in short bursts and wait until every
//! receiver has the burst's last message before the next one: each burst
//! end is a wake-up that must not be lost.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use spool::{Channel, Options, StartAt, Store, Subscriber, SyncPolicy};

const PUBLISHERS: u64 = 4;
const RECEIVERS: usize = 4;
const PER_PUBLISHER: u64 = 25_000;
const TOTAL: u64 = PUBLISHERS * PER_PUBLISHER;
const DEADLINE: Duration = Duration::from_secs(120);

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().segment_size(1 << 20).sync_policy(SyncPolicy::Never);
    let store = Store::open(dir.path(), opts).unwrap();
    (dir, store)
}

fn payload(publisher: u64, i: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&publisher.to_le_bytes());
    p[8..].copy_from_slice(&i.to_le_bytes());
    p
}

/// Yields once to the executor, whichever it is.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What a receiver saw, checked: seqs 1..=TOTAL in order, each once, and
/// each publisher's messages in its order.
#[derive(Default)]
struct Seen {
    next_seq: u64,
    per_publisher: Vec<u64>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            next_seq: 1,
            per_publisher: vec![0; PUBLISHERS as usize],
        }
    }

    fn saw(&mut self, m: &spool::Message) {
        assert_eq!(m.seq(), self.next_seq, "delivered out of order, twice or with a gap");
        self.next_seq += 1;
        let p = u64::from_le_bytes(m.payload()[..8].try_into().unwrap()) as usize;
        let i = u64::from_le_bytes(m.payload()[8..].try_into().unwrap());
        assert_eq!(i, self.per_publisher[p], "publisher {p}'s messages out of order");
        self.per_publisher[p] += 1;
    }

    fn done(&self) -> bool {
        self.next_seq > TOTAL
    }
}

/// The last seq each receiver has.
type Progress = Arc<Vec<AtomicU64>>;

fn progress() -> Progress {
    Arc::new((0..RECEIVERS).map(|_| AtomicU64::new(0)).collect())
}

fn caught_up(progress: &Progress, seq: u64) -> bool {
    progress.iter().all(|p| p.load(Ordering::Acquire) >= seq)
}

/// Publishes PER_PUBLISHER messages in bursts of 1 to 8, each followed by
/// a wait until every receiver has the burst's last message.
async fn publish_async(ch: Channel, publisher: u64, progress: Progress) {
    let mut rng = common::Rng(publisher + 1);
    let mut i = 0;
    while i < PER_PUBLISHER {
        let mut last = 0;
        for _ in 0..=rng.below(8) {
            if i < PER_PUBLISHER {
                last = ch.publish(&payload(publisher, i)).unwrap();
                i += 1;
            }
        }
        while !caught_up(&progress, last) {
            YieldNow(false).await;
        }
    }
}

fn publish_blocking(ch: &Channel, publisher: u64, progress: &Progress) {
    let mut rng = common::Rng(publisher + 1);
    let mut i = 0;
    while i < PER_PUBLISHER {
        let mut last = 0;
        for _ in 0..=rng.below(8) {
            if i < PER_PUBLISHER {
                last = ch.publish(&payload(publisher, i)).unwrap();
                i += 1;
            }
        }
        while !caught_up(progress, last) {
            std::hint::spin_loop();
            thread::yield_now();
        }
    }
}

/// Receives TOTAL messages: even receivers through `recv_async`, odd ones
/// through `stream`.
async fn receive(sub: Subscriber, index: usize, progress: Progress) -> Subscriber {
    let mut seen = Seen::new();
    if index.is_multiple_of(2) {
        while !seen.done() {
            let m = sub.recv_async().await.unwrap();
            seen.saw(&m);
            progress[index].store(m.seq(), Ordering::Release);
        }
    } else {
        let mut stream = sub.stream();
        while !seen.done() {
            let m = stream.next().await.unwrap().unwrap();
            seen.saw(&m);
            progress[index].store(m.seq(), Ordering::Release);
        }
    }
    assert!(sub.try_recv().unwrap().is_none(), "nothing past the last message");
    sub
}

fn subscribers(ch: &Channel) -> Vec<Subscriber> {
    (0..RECEIVERS)
        .map(|r| ch.subscribe(&format!("rx{r}"), StartAt::First).unwrap())
        .collect()
}

fn run_on_tokio(rt: tokio::runtime::Runtime) {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let subs = subscribers(&ch);
    let progress = progress();
    rt.block_on(async {
        let receivers: Vec<_> = subs
            .into_iter()
            .enumerate()
            .map(|(i, s)| tokio::spawn(receive(s, i, Arc::clone(&progress))))
            .collect();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| tokio::spawn(publish_async(ch.clone(), p, Arc::clone(&progress))))
            .collect();
        let all = async {
            for p in publishers {
                p.await.unwrap();
            }
            for r in receivers {
                r.await.unwrap();
            }
        };
        tokio::time::timeout(DEADLINE, all)
            .await
            .expect("a receiver was never woken (lost wake-up)");
    });
    assert_eq!(ch.last_seq(), TOTAL);
}

#[test]
fn tokio_multi_thread_delivers_each_message_once_in_order() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    run_on_tokio(rt);
}

#[test]
fn tokio_current_thread_delivers_each_message_once_in_order() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    run_on_tokio(rt);
}

/// futures' `block_on`: each receiver parks its own thread between
/// wake-ups, and publishers are plain threads.
#[test]
fn futures_executor_delivers_each_message_once_in_order() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let progress = progress();
    let receivers: Vec<_> = subscribers(&ch)
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let progress = Arc::clone(&progress);
            thread::spawn(move || drop(futures::executor::block_on(receive(s, i, progress))))
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (ch, progress) = (ch.clone(), Arc::clone(&progress));
            thread::spawn(move || publish_blocking(&ch, p, &progress))
        })
        .collect();
    let start = Instant::now();
    for h in publishers.into_iter().chain(receivers) {
        while !h.is_finished() {
            assert!(start.elapsed() < DEADLINE, "a receiver was never woken (lost wake-up)");
            thread::sleep(Duration::from_millis(5));
        }
        h.join().unwrap();
    }
}

/// Ping-pong: one message at a time, published after a random spin, so
/// that each publish lands anywhere in the receiver's look-register-look
/// sequence; a lost wake-up stops the exchange.
#[test]
fn one_message_at_a_time_is_always_woken() {
    const N: u64 = 20_000;
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("one", StartAt::First).unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (ch, got) = (ch.clone(), Arc::clone(&got));
        thread::spawn(move || {
            let mut rng = common::Rng(7);
            for i in 0..N {
                let spin = rng.below(400);
                for _ in 0..spin {
                    std::hint::spin_loop();
                }
                let seq = ch.publish(&payload(0, i)).unwrap();
                while got.load(Ordering::Acquire) < seq {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let rx = {
        let got = Arc::clone(&got);
        thread::spawn(move || {
            futures::executor::block_on(async {
                for seq in 1..=N {
                    assert_eq!(sub.recv_async().await.unwrap().seq(), seq);
                    got.store(seq, Ordering::Release);
                }
            })
        })
    };
    let start = Instant::now();
    while !rx.is_finished() {
        assert!(start.elapsed() < DEADLINE, "lost wake-up");
        thread::sleep(Duration::from_millis(5));
    }
    rx.join().unwrap();
    publisher.join().unwrap();
}
