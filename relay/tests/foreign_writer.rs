//! Another publisher writing to a stream the relay owns exclusively is
//! noticed, at start and while it runs, and stops the relay with an error
//! naming the stream sequence; declared shared, the relay goes on.

mod common;

use std::time::Duration;

use common::*;
use spool_relay::{Ownership, Relay, RelayError};

async fn setup() -> (
    NatsServer,
    async_nats::jetstream::Context,
    tempfile::TempDir,
    spool::Store,
) {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    js.create_stream(stream_config("OUTBOX", &["outbox.>"])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();
    events
        .publish_batch(&(1..=100).map(payload).collect::<Vec<_>>())
        .unwrap();
    (server, js, dir, store)
}

async fn foreign(js: &async_nats::jetstream::Context) {
    js.publish("outbox.other", "foreign".into())
        .await
        .unwrap()
        .await
        .unwrap();
}

fn relay(store: &spool::Store, js: &async_nats::jetstream::Context) -> Relay {
    Relay::new(store, "events", js.clone(), "outbox.events").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noticed_at_start() {
    let (_server, js, _dir, store) = setup().await;
    let r = relay(&store, &js);
    let status = r.status();
    let handle = r.spawn();
    wait_until("the relay", Duration::from_secs(30), || status.borrow().acked == 100).await;
    within("stopping the relay", handle.stop()).await.unwrap();

    foreign(&js).await;
    store.channel("events").unwrap().publish(&payload(101)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), relay(&store, &js).run())
        .await
        .expect("the relay did not notice")
        .unwrap_err();
    assert!(
        matches!(err, RelayError::UnexpectedMessage { stream_seq: 101, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("another publisher"), "{err}");

    // Declared shared, it relays on.
    let r = relay(&store, &js).ownership(Ownership::Shared);
    let status = r.status();
    let handle = r.spawn();
    wait_until("the shared relay", Duration::from_secs(30), || {
        status.borrow().acked == 101
    })
    .await;
    within("stopping the relay", handle.stop()).await.unwrap();
    let stored = read_stream(&js, "OUTBOX").await;
    assert_eq!(stored.len(), 102);
    assert_eq!(stored[101].id.unwrap().seq, 101);
}

/// While it runs: its next publish expects the stream to end at its last
/// message, JetStream refuses it (wrong last sequence), the relay reads the
/// stream's tail, finds the foreign message, and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noticed_while_running() {
    let (_server, js, _dir, store) = setup().await;
    let r = relay(&store, &js);
    let status = r.status();
    let handle = r.spawn();
    wait_until("the relay", Duration::from_secs(30), || status.borrow().acked == 100).await;
    foreign(&js).await;
    store.channel("events").unwrap().publish(&payload(101)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("the relay did not notice")
        .unwrap_err();
    assert!(
        matches!(err, RelayError::UnexpectedMessage { stream_seq: 101, .. }),
        "{err}"
    );
    let stored = read_stream(&js, "OUTBOX").await;
    assert_eq!(
        stored.len(),
        101,
        "the relay's message was not stored after the foreign one"
    );
    let events = store.channel("events").unwrap();
    assert_eq!(
        events
            .subscribe("relay-OUTBOX", spool::StartAt::First)
            .unwrap()
            .committed()
            .0,
        100
    );
}
