//! What happens beyond the duplicate window: the relay crashes after
//! JetStream acknowledged messages but before it committed them, and comes
//! back after the window has passed, so JetStream no longer recognises the
//! message ids. An exclusive relay takes the stored messages over from the
//! stream's tail (nothing stored twice); a shared one sends them again and
//! they are stored twice — the documented limit of `Ownership::Shared`.

mod common;

use std::time::Duration;

use common::*;
use spool_relay::{Ownership, Relay, StreamSpec};

const N: u64 = 500;
const WINDOW: Duration = Duration::from_secs(1);

async fn crash_then_return_after_window(ownership: Ownership) -> usize {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    let mut config = stream_config("OUTBOX", &["outbox.>"]);
    config.duplicate_window = WINDOW;
    js.create_stream(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();
    events.publish_batch(&(1..=N).map(payload).collect::<Vec<_>>()).unwrap();

    let relay = || {
        Relay::new(&store, "events", js.clone(), "outbox.events")
            .unwrap()
            .stream(StreamSpec::Require("OUTBOX".into()))
            .ownership(ownership)
            .min_duplicate_window(WINDOW)
    };
    // Never commits on its own; dropping the future is the crash (no final
    // commit): every message acknowledged, none committed.
    let r = relay()
        .commit_every(u64::MAX)
        .commit_interval(Duration::from_secs(3600));
    let status = r.status();
    let run = r.run();
    tokio::select! {
        r = run => panic!("the relay ended: {r:?}"),
        () = wait_until("all acks", Duration::from_secs(30), || status.borrow().acked == N) => {}
    }
    assert_eq!(read_stream(&js, "OUTBOX").await.len() as u64, N);
    let sub = events.subscribe("relay-OUTBOX", spool::StartAt::First).unwrap();
    assert_eq!(sub.committed().0, 0, "nothing committed before the crash");
    drop(sub);

    tokio::time::sleep(WINDOW * 2).await;
    let r = relay();
    let status = r.status();
    let handle = r.spawn();
    wait_until("the second run", Duration::from_secs(30), || {
        status.borrow().committed == N
    })
    .await;
    let last = within("stopping the relay", handle.stop()).await.unwrap();
    let expect_taken = if ownership == Ownership::Exclusive { N } else { 0 };
    assert_eq!(last.taken_over, expect_taken, "{}", last.line());
    read_stream(&js, "OUTBOX").await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_stores_once_even_beyond_the_window() {
    assert_eq!(crash_then_return_after_window(Ownership::Exclusive).await as u64, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_stores_twice_beyond_the_window() {
    assert_eq!(crash_then_return_after_window(Ownership::Shared).await as u64, 2 * N);
}
