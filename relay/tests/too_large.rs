//! A message larger than JetStream accepts: the relay stops with an error
//! naming the seq and keeps its position just before it; in
//! skip-and-record mode it records the message in a spool channel and goes
//! on. Both the client's check (server max payload) and the server's (the
//! stream's max message size) are covered.

mod common;

use std::time::Duration;

use common::*;
use spool_relay::{OnTooLarge, Relay, RelayError, RelayState, StreamSpec};

const BIG: u64 = 11;

fn publish_with_big(channel: &spool::Channel, big_len: usize) {
    for seq in 1..=21 {
        if seq == BIG {
            channel.publish(&vec![b'x'; big_len]).unwrap();
        } else {
            channel.publish(&payload(seq)).unwrap();
        }
    }
}

async fn stops_then_skips(max_msg_size: i32, big_len: usize) {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    let mut config = stream_config("OUTBOX", &["outbox.>"]);
    config.max_message_size = max_msg_size;
    js.create_stream(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = spool::Options::default().max_payload(4 << 20);
    let store = spool::Store::open(dir.path(), opts).unwrap();
    let events = store.channel("events").unwrap();
    publish_with_big(&events, big_len);

    // Stop (the default).
    let relay = Relay::new(&store, "events", js.clone(), "outbox.events")
        .unwrap()
        .stream(StreamSpec::Require("OUTBOX".into()));
    let err = tokio::time::timeout(Duration::from_secs(30), relay.run())
        .await
        .expect("the relay did not stop")
        .unwrap_err();
    eprintln!("{err}");
    match &err {
        RelayError::TooLarge {
            seq, size, position, ..
        } => {
            assert_eq!((*seq, *size, *position), (BIG, big_len, BIG - 1));
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    assert!(err.to_string().contains(&format!("message {BIG} ")), "{err}");
    let stored = read_stream(&js, "OUTBOX").await;
    assert_exactly_once(&stored, events.id(), BIG - 1, payload);
    let sub = events.subscribe("relay-OUTBOX", spool::StartAt::First).unwrap();
    assert_eq!(sub.committed().0, BIG - 1, "position kept just before the message");
    drop(sub);

    // Restarted, it stops at the same message again.
    let relay = Relay::new(&store, "events", js.clone(), "outbox.events").unwrap();
    let again = within("the relay to stop", relay.run()).await.unwrap_err();
    assert!(matches!(again, RelayError::TooLarge { seq: BIG, .. }), "{again}");

    // Skip and record.
    let record = store.channel("events.too-large").unwrap();
    let relay = Relay::new(&store, "events", js.clone(), "outbox.events")
        .unwrap()
        .on_too_large(OnTooLarge::SkipAndRecord(record.clone()));
    let status = relay.status();
    let handle = relay.spawn();
    let up = status.clone();
    wait_until("the relay to pass the big message", Duration::from_secs(30), || {
        up.borrow().acked == 21
    })
    .await;
    let last = within("stopping the relay", handle.stop()).await.unwrap();
    assert_eq!((last.committed, last.skipped), (21, 1));

    let stored = read_stream(&js, "OUTBOX").await;
    let seqs: Vec<u64> = stored.iter().map(|s| s.id.unwrap().seq).collect();
    let expected: Vec<u64> = (1..=21).filter(|&s| s != BIG).collect();
    assert_eq!(seqs, expected);
    assert_eq!(record.last_seq(), 1);
    let rec = record.get(1).unwrap();
    let field = |i: usize| u64::from_le_bytes(rec.payload()[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!((field(0), field(1), field(2)), (events.id(), BIG, big_len as u64));
    let sub = events.subscribe("relay-OUTBOX", spool::StartAt::First).unwrap();
    let (position, blob) = sub.committed();
    let state = RelayState::decode(&blob).unwrap().unwrap();
    assert_eq!((position, state.skipped), (21, 1));
    assert_eq!(state.stream_seq, stored.last().unwrap().stream_seq);
}

/// 2 MiB: past the server's 1 MiB max payload; the client refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn larger_than_server_max_payload() {
    stops_then_skips(-1, 2 << 20).await;
}

/// 2 KB into a stream whose max message size is 1 KB: the server refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn larger_than_stream_max_message_size() {
    stops_then_skips(1024, 2048).await;
}
