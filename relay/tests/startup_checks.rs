//! What the relay refuses at start, with a clear error, instead of
//! relaying with weaker guarantees than it promises: a duplicate window
//! below the required minimum, a subject no stream captures, a stream
//! recreated behind its back, a state that belongs to another stream.
//! (Foreign messages: foreign_writer.rs.)

mod common;

use std::time::Duration;

use common::*;
use spool_relay::{Relay, RelayError, StreamSpec};

struct Setup {
    _server: NatsServer,
    js: async_nats::jetstream::Context,
    _dir: tempfile::TempDir,
    store: spool::Store,
}

async fn setup() -> Setup {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();
    events
        .publish_batch(&(1..=100).map(payload).collect::<Vec<_>>())
        .unwrap();
    Setup {
        _server: server,
        js,
        _dir: dir,
        store,
    }
}

fn relay(s: &Setup) -> Relay {
    Relay::new(&s.store, "events", s.js.clone(), "outbox.events").unwrap()
}

async fn run_to_end(s: &Setup, relay: Relay) {
    let status = relay.status();
    let handle = relay.spawn();
    wait_until("the relay to catch up", Duration::from_secs(30), || {
        status.borrow().acked == 100
    })
    .await;
    within("stopping the relay", handle.stop()).await.unwrap();
    let _ = s;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_window_below_minimum() {
    let s = setup().await;
    let mut config = stream_config("OUTBOX", &["outbox.>"]);
    config.duplicate_window = Duration::from_secs(10);
    s.js.create_stream(config).await.unwrap();
    let err = within("the relay to refuse", relay(&s).run()).await.unwrap_err();
    assert!(matches!(err, RelayError::DuplicateWindowTooShort { .. }), "{err}");
    assert!(err.to_string().contains("duplicate window"), "{err}");
    // Allowed explicitly, it runs.
    run_to_end(&s, relay(&s).min_duplicate_window(Duration::from_secs(10))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_not_captured() {
    let s = setup().await;
    let err = within("the relay to refuse", relay(&s).run()).await.unwrap_err();
    assert!(
        matches!(err, RelayError::SubjectNotInStream { found: None, .. }),
        "{err}"
    );
    s.js.create_stream(stream_config("OTHER", &["other.>"])).await.unwrap();
    s.js.create_stream(stream_config("OUTBOX", &["outbox.>"]))
        .await
        .unwrap();
    let err = within(
        "the relay to refuse",
        relay(&s).stream(StreamSpec::Require("OTHER".into())).run(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, RelayError::SubjectNotInStream { found: Some(f), .. } if f == "OUTBOX"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_recreated_behind_the_relay() {
    let s = setup().await;
    s.js.create_stream(stream_config("OUTBOX", &["outbox.>"]))
        .await
        .unwrap();
    run_to_end(&s, relay(&s)).await;
    s.js.delete_stream("OUTBOX").await.unwrap();
    s.js.create_stream(stream_config("OUTBOX", &["outbox.>"]))
        .await
        .unwrap();
    let err = within("the relay to refuse", relay(&s).run()).await.unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::StreamBehind {
                stream_last: 0,
                committed: 100,
                ..
            }
        ),
        "{err}"
    );
    // The way out the error names: remove the subscriber, relay again.
    s.store
        .channel("events")
        .unwrap()
        .remove_subscriber("relay-OUTBOX")
        .unwrap();
    run_to_end(&s, relay(&s)).await;
    assert_eq!(read_stream(&s.js, "OUTBOX").await.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_another_stream() {
    let s = setup().await;
    s.js.create_stream(stream_config("OUTBOX", &["outbox.>"]))
        .await
        .unwrap();
    s.js.create_stream(stream_config("ARCHIVE", &["archive.>"]))
        .await
        .unwrap();
    run_to_end(&s, relay(&s).name("shipper")).await;
    let other = Relay::new(&s.store, "events", s.js.clone(), "archive.events")
        .unwrap()
        .name("shipper");
    let err = within("the relay to refuse", other.run()).await.unwrap_err();
    assert!(matches!(err, RelayError::OtherStream { .. }), "{err}");
}
