//! Closing the store and deleting a channel end every wait: pending receive
//! futures and streams (subscribers, queue members, some waiting for a
//! redelivery timer) return `Closed` / `ChannelDeleted`, on tokio and on
//! futures' executor; durability futures finish; `Subscriber::iter` ends;
//! held handles behave as `Store::close` documents.

use std::future::Future;
use std::pin::Pin;
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use spool::{Channel, Error, Options, QueueOptions, StartAt, Store, SyncPolicy};

const DEADLINE: Duration = Duration::from_secs(30);

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().segment_size(1 << 20).sync_policy(SyncPolicy::Never);
    let store = Store::open(dir.path(), opts).unwrap();
    (dir, store)
}

type Waiting = Pin<Box<dyn Future<Output = Error> + Send>>;

/// Pending receives of every kind on `ch`, each resolving to the error that
/// ended it. Two queue members hold a message in flight (so they also wait
/// on the timer thread for its redelivery).
fn waiting_receives(ch: &Channel) -> Vec<Waiting> {
    waiting(ch, true)
}

/// As [`waiting_receives`]; without `in_flight`, no member holds a message,
/// so nothing waits on the timer thread: only the close (or delete) itself
/// can wake the futures. (With the timer, its stop wakes the members, whose
/// departure wakes every receive of the channel.)
fn waiting(ch: &Channel, in_flight: bool) -> Vec<Waiting> {
    let mut out: Vec<Waiting> = Vec::new();
    if in_flight {
        ch.publish_batch(&[b"j1".as_slice(), b"j2"]).unwrap();
    }
    for i in 0..6 {
        let sub = ch.subscribe(&format!("s{i}"), StartAt::New).unwrap();
        out.push(Box::pin(async move {
            if i % 2 == 0 {
                sub.recv_async().await.unwrap_err()
            } else {
                let mut stream = sub.stream();
                let err = stream.next().await.unwrap().unwrap_err();
                assert!(stream.next().await.is_none(), "the stream ends after the error");
                err
            }
        }));
    }
    let opts = QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(8);
    for i in 0..4 {
        let member = ch.queue_subscribe_with("g", StartAt::First, opts.clone()).unwrap();
        if in_flight && i < 2 {
            // In flight: the waiting member below has a redelivery deadline.
            let d = member.try_recv().unwrap().unwrap();
            assert_eq!(d.delivery_count(), 1);
        }
        out.push(Box::pin(async move {
            if i % 2 == 0 {
                member.recv_async().await.unwrap_err()
            } else {
                let mut stream = member.stream();
                let err = stream.next().await.unwrap().unwrap_err();
                assert!(stream.next().await.is_none(), "the stream ends after the error");
                err
            }
        }));
    }
    out
}

/// Spawns the receives on `rt`, lets them go pending, runs `end`, and
/// returns the errors they ended with.
fn end_on_tokio(rt: &tokio::runtime::Runtime, waiting: Vec<Waiting>, end: impl FnOnce()) -> Vec<Error> {
    let handles: Vec<_> = waiting.into_iter().map(|w| rt.spawn(w)).collect();
    // A current-thread runtime polls its tasks only inside `block_on`.
    rt.block_on(async {
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
    });
    thread::sleep(Duration::from_millis(100));
    assert!(handles.iter().all(|h| !h.is_finished()), "nothing ends before");
    end();
    rt.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            let mut errors = Vec::new();
            for h in handles {
                errors.push(h.await.unwrap());
            }
            errors
        })
        .await
        .expect("a pending future was not woken")
    })
}

/// The same with futures' `block_on`, one thread per receive.
fn end_on_futures_executor(waiting: Vec<Waiting>, end: impl FnOnce()) -> Vec<Error> {
    let threads: Vec<_> = waiting
        .into_iter()
        .map(|w| thread::spawn(move || futures::executor::block_on(w)))
        .collect();
    thread::sleep(Duration::from_millis(100));
    assert!(threads.iter().all(|t| !t.is_finished()), "nothing ends before");
    end();
    let start = Instant::now();
    threads
        .into_iter()
        .map(|t| {
            while !t.is_finished() {
                assert!(start.elapsed() < DEADLINE, "a pending future was not woken");
                thread::sleep(Duration::from_millis(5));
            }
            t.join().unwrap()
        })
        .collect()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn close_wakes_every_pending_future_on_tokio() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let rt = multi_thread();
    let errors = end_on_tokio(&rt, waiting_receives(&ch), || store.close().unwrap());
    assert_eq!(errors.len(), 10);
    for e in errors {
        assert!(matches!(e, Error::Closed), "{e:?}");
    }
}

#[test]
fn close_wakes_every_pending_future_on_tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for in_flight in [true, false] {
        let (_dir, store) = open();
        let ch = store.channel("c").unwrap();
        let errors = end_on_tokio(&rt, waiting(&ch, in_flight), || store.close().unwrap());
        assert_eq!(errors.len(), 10);
        for e in errors {
            assert!(matches!(e, Error::Closed), "{e:?}");
        }
    }
}

/// Nothing waits on the timer: the close alone wakes the futures.
#[test]
fn close_alone_wakes_every_pending_future() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let errors = end_on_tokio(&multi_thread(), waiting(&ch, false), || store.close().unwrap());
    assert_eq!(errors.len(), 10);
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let errors = errors
        .into_iter()
        .chain(end_on_futures_executor(waiting(&ch, false), || store.close().unwrap()));
    for e in errors {
        assert!(matches!(e, Error::Closed), "{e:?}");
    }
}

#[test]
fn close_wakes_every_pending_future_on_futures_executor() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let errors = end_on_futures_executor(waiting_receives(&ch), || store.close().unwrap());
    assert_eq!(errors.len(), 10);
    for e in errors {
        assert!(matches!(e, Error::Closed), "{e:?}");
    }
}

#[test]
fn deleting_the_channel_wakes_every_pending_future() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let rt = multi_thread();
    let errors = end_on_tokio(&rt, waiting_receives(&ch), || store.delete_channel("c").unwrap());
    assert_eq!(errors.len(), 10);
    for e in errors {
        assert!(matches!(e, Error::ChannelDeleted { .. }), "{e:?}");
    }
    let ch = store.channel("c").unwrap();
    let errors = end_on_futures_executor(waiting_receives(&ch), || store.delete_channel("c").unwrap());
    for e in errors {
        assert!(matches!(e, Error::ChannelDeleted { .. }), "{e:?}");
    }
}

/// Durability futures still waiting when the store closes finish: the
/// close makes their messages durable. Many are in flight at once (their
/// sync rounds race the close).
#[test]
fn close_finishes_pending_durability_futures() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let rt = multi_thread();
    let handles: Vec<_> = (0..64u64)
        .map(|i| {
            let pending = ch.publish_durable_async(&i.to_le_bytes());
            rt.spawn(pending)
        })
        .collect();
    store.close().unwrap();
    rt.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            for h in handles {
                let seq = h.await.unwrap().unwrap();
                assert!(seq >= 1);
            }
        })
        .await
        .expect("a durability future was not woken")
    });
    assert_eq!(ch.durable_seq(), 64);
    // Nothing more can be published or awaited.
    let late = futures::executor::block_on(ch.publish_durable_async(b"late"));
    assert!(matches!(late, Err(Error::Closed)), "{late:?}");
    futures::executor::block_on(ch.synced_through(64)).unwrap();
}

/// Deleting the channel ends durability futures too: each returns either
/// its seq (the sync won the race) or `ChannelDeleted`, never hangs.
#[test]
fn delete_finishes_pending_durability_futures() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let rt = multi_thread();
    let handles: Vec<_> = (0..64u64)
        .map(|i| rt.spawn(ch.publish_durable_async(&i.to_le_bytes())))
        .collect();
    store.delete_channel("c").unwrap();
    rt.block_on(async {
        tokio::time::timeout(DEADLINE, async {
            for h in handles {
                match h.await.unwrap() {
                    Ok(_) | Err(Error::ChannelDeleted { .. }) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        })
        .await
        .expect("a durability future was not woken")
    });
}

/// `Subscriber::iter` yields the messages, then `Closed` once, then ends
/// (it used to yield `Closed` forever).
#[test]
fn subscriber_iter_ends_after_closed() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    for i in 0..10u64 {
        ch.publish(&i.to_le_bytes()).unwrap();
    }
    let reader = thread::spawn(move || {
        let items: Vec<_> = sub.iter().take(1000).collect();
        let errors = items.iter().filter(|r| r.is_err()).count();
        assert!(matches!(items.last(), Some(Err(Error::Closed))), "{:?}", items.last());
        (items.len(), errors)
    });
    thread::sleep(Duration::from_millis(50));
    store.close().unwrap();
    assert_eq!(reader.join().unwrap(), (11, 1));
}

/// What `Store::close` documents for handles held past it: reads, writes,
/// receives and acks return `Closed` (each method that returns a `Result`
/// and is not about durability); the counters keep their last values.
#[test]
fn held_handles_after_close_behave_as_documented() {
    let (_dir, store) = open();
    let ch = store.channel("c").unwrap();
    ch.publish_batch(&[b"a".as_slice(), b"b"]).unwrap();
    let mut messages = ch.read_from(1).unwrap();
    let held = ch.get(1).unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    let member = ch.queue_subscribe("g", StartAt::First).unwrap();
    store.close().unwrap();
    let closed = |r: Result<(), Error>, what: &str| assert!(matches!(r, Err(Error::Closed)), "{what}: {r:?}");
    closed(ch.publish_batch(&[b"c"]).map(drop), "publish_batch");
    closed(ch.subscribe("t", StartAt::First).map(drop), "subscribe");
    closed(ch.queue_subscribe("h", StartAt::First).map(drop), "queue_subscribe");
    closed(ch.remove_subscriber("s"), "remove_subscriber");
    closed(ch.subscribers().map(drop), "subscribers");
    closed(ch.disk_usage().map(drop), "disk_usage");
    closed(sub.recv().map(drop), "recv");
    closed(sub.recv_timeout(Duration::from_millis(1)).map(drop), "recv_timeout");
    closed(futures::executor::block_on(sub.recv_async()).map(drop), "recv_async");
    closed(member.try_recv().map(drop), "member try_recv");
    closed(member.recv().map(drop), "member recv");
    closed(
        futures::executor::block_on(member.recv_async()).map(drop),
        "member recv_async",
    );
    closed(member.ack(1), "ack");
    closed(
        futures::executor::block_on(ch.publish_durable_async(b"d")).map(drop),
        "publish_durable_async",
    );
    // Everything was made durable by the close: waiting for durability
    // succeeds at once; so does waiting for a message that is there.
    ch.sync().unwrap();
    futures::executor::block_on(ch.synced_through(2)).unwrap();
    assert!(ch.wait_for(2, Duration::from_secs(600)).unwrap());
    assert!(!ch.wait_for(3, Duration::from_secs(600)).unwrap(), "returns at once");
    assert!(matches!(ch.get(1), Err(Error::Closed)));
    assert!(matches!(ch.read_from(1), Err(Error::Closed)));
    assert!(matches!(ch.publish(b"c"), Err(Error::Closed)));
    assert!(matches!(ch.seq_at_or_after(0), Err(Error::Closed)));
    assert!(matches!(messages.next(), Some(Err(Error::Closed))));
    assert!(messages.next().is_none(), "an iterator ends after its error");
    assert!(matches!(sub.try_recv(), Err(Error::Closed)));
    assert!(matches!(sub.commit(1, b""), Err(Error::Closed)));
    assert_eq!((ch.first_seq(), ch.last_seq(), ch.durable_seq()), (1, 2, 2));
    assert_eq!(held.payload(), b"a", "a message read before stays valid");
}
