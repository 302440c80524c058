//! A channel deleted and created again under the same name is relayed with
//! new message ids: its seqs start at 1 again, and JetStream's duplicate
//! window would drop them as repeats of the earlier incarnation if the ids
//! did not carry the channel's incarnation id.

mod common;

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use common::*;
use spool_relay::{MsgId, Relay, StreamSpec};

fn gen_payload(generation: u8, seq: u64) -> Vec<u8> {
    let mut p = payload(seq);
    p[0] = b'0' + generation;
    p
}

async fn relay_all(store: &spool::Store, js: &async_nats::jetstream::Context, upto: u64) {
    let relay = Relay::new(store, "events", js.clone(), "outbox.events")
        .unwrap()
        .stream(StreamSpec::Require("OUTBOX".into()));
    let status = relay.status();
    let handle = relay.spawn();
    let up = status.clone();
    wait_until("the relay to catch up", Duration::from_secs(60), || {
        up.borrow().acked >= upto
    })
    .await;
    let last = within("stopping the relay", handle.stop()).await.unwrap();
    assert_eq!(last.committed, upto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_channel_gets_new_ids() {
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    js.create_stream(stream_config("OUTBOX", &["outbox.>"])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();

    let first = store.channel("events").unwrap();
    let old_id = first.id();
    first
        .publish_batch(&(1..=1000).map(|s| gen_payload(1, s)).collect::<Vec<_>>())
        .unwrap();
    relay_all(&store, &js, 1000).await;

    store.delete_channel("events").unwrap();
    let second = store.channel("events").unwrap();
    let new_id = second.id();
    assert_ne!(old_id, new_id);
    second
        .publish_batch(&(1..=500).map(|s| gen_payload(2, s)).collect::<Vec<_>>())
        .unwrap();
    relay_all(&store, &js, 500).await;

    let stored = read_stream(&js, "OUTBOX").await;
    assert_eq!(stored.len(), 1500, "the second incarnation was dropped as duplicates");
    assert_exactly_once(&stored[..1000], old_id, 1000, |s| gen_payload(1, s));
    assert_exactly_once(&stored[1000..], new_id, 500, |s| gen_payload(2, s));
    let (a, b) = (stored[0].id.unwrap(), stored[1000].id.unwrap());
    assert_eq!((a.seq, b.seq), (1, 1));
    assert_eq!(a.store, b.store);
    assert_ne!(a.to_string(), b.to_string());

    // What the incarnation id prevents: the old id for seq 1 is still in
    // the duplicate window, and JetStream drops a message carrying it.
    let old = MsgId {
        store: a.store,
        channel: old_id,
        seq: 1,
    };
    let ack = js
        .send_publish(
            "outbox.events",
            PublishMessage::build()
                .payload("again".into())
                .message_id(old.to_string()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate);
    assert_eq!(ack.sequence, 1);
}
