//! 100,000 messages relayed to a real JetStream: the stream holds each
//! exactly once and in order (read back through async-nats), and the
//! committed state names the stream's last message.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spool_relay::{Relay, RelayState, StreamSpec};

const N: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_100k_exactly_once_in_order() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();

    // Half up front, half while the relay runs.
    let payloads: Vec<Vec<u8>> = (1..=N / 2).map(payload).collect();
    events.publish_batch(&payloads).unwrap();

    let relay = Relay::new(&store, "events", js.clone(), "outbox.{channel}")
        .unwrap()
        .stream(StreamSpec::Create(Box::new(stream_config("OUTBOX", &["outbox.>"]))));
    let mut status = relay.status();
    let started = Instant::now();
    let handle = relay.spawn();
    for chunk in (N / 2 + 1..=N).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Vec<u8>> = chunk.iter().map(|&s| payload(s)).collect();
        events.publish_batch(&batch).unwrap();
        tokio::task::yield_now().await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while status.borrow().acked < N {
        assert!(!handle.is_finished(), "relay ended early: {:?}", status.borrow());
        assert!(Instant::now() < deadline, "relay stuck: {:?}", status.borrow());
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
    let elapsed = started.elapsed();
    let last = within("stopping the relay", handle.stop()).await.unwrap();
    eprintln!(
        "relayed {N} messages in {elapsed:?} ({:.0} msg/s); final status: {}",
        N as f64 / elapsed.as_secs_f64(),
        last.line()
    );
    assert_eq!(last.committed, N);
    assert_eq!(last.lag, 0);

    let stored = read_stream(&js, "OUTBOX").await;
    assert_exactly_once(&stored, events.id(), N, payload);
    assert_eq!(stored.len() as u64, N);

    // The committed state names the stream's last message.
    let sub = events.subscribe("relay-OUTBOX", spool::StartAt::First).unwrap();
    let (position, blob) = sub.committed();
    let state = RelayState::decode(&blob).unwrap().unwrap();
    assert_eq!(position, N);
    assert_eq!(state.stream, "OUTBOX");
    assert_eq!(state.stream_seq, stored.last().unwrap().stream_seq);
    assert_eq!(state.seq_at_stream_seq, N);
}
