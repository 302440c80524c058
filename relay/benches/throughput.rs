//! Relay throughput on loopback, next to a plain async-nats JetStream
//! publisher publishing the same messages with the same in-flight window.
//!
//! `cargo bench --bench throughput` (in relay/). Starts its own
//! `nats-server -js` on a free loopback port. `RELAY_BENCH_N` (default
//! 200,000) messages of 100 bytes each; `RELAY_BENCH_WINDOW` (default
//! 256, the relay's default `max_in_flight`). Each variant runs once.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use common::*;
use spool_relay::{MsgId, Relay, StreamSpec};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The plain publisher: publish, keep at most `window` acks outstanding,
/// await them in order.
async fn plain(js: &async_nats::jetstream::Context, subject: &str, n: u64, window: usize, ids: bool) -> f64 {
    let store = u128::from_le_bytes([7; 16]);
    let start = Instant::now();
    let mut acks = VecDeque::with_capacity(window);
    for seq in 1..=n {
        if acks.len() == window {
            let ack: async_nats::jetstream::context::PublishAckFuture = acks.pop_front().unwrap();
            ack.await.unwrap();
        }
        let mut msg = PublishMessage::build().payload(payload(seq).into());
        if ids {
            let id = MsgId { store, channel: 1, seq };
            msg = msg.message_id(id.to_string()).expected_last_sequence(seq - 1);
        }
        acks.push_back(js.send_publish(subject.to_string(), msg).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn relay(js: &async_nats::jetstream::Context, n: u64, window: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(10_000) {
        let batch: Vec<Vec<u8>> = chunk.iter().map(|&s| payload(s)).collect();
        events.publish_batch(&batch).unwrap();
    }
    events.sync().unwrap();
    let relay = Relay::new(&store, "events", js.clone(), "relay.events")
        .unwrap()
        .stream(StreamSpec::Require("RELAY".into()))
        .max_in_flight(window)
        .status_interval(Duration::from_millis(5));
    let mut status = relay.status();
    let start = Instant::now();
    let handle = relay.spawn();
    while status.borrow().acked < n {
        assert!(!handle.is_finished(), "relay ended: {:?}", status.borrow());
        let _ = tokio::time::timeout(Duration::from_millis(5), status.changed()).await;
    }
    let elapsed = start.elapsed();
    handle.stop().await.unwrap();
    n as f64 / elapsed.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then
    // only check that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env("RELAY_BENCH_N", 200_000) as u64;
    let window = env("RELAY_BENCH_WINDOW", spool_relay::DEFAULT_MAX_IN_FLIGHT);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = NatsServer::start();
        let (_client, js) = connect(&server.url()).await;
        for (name, subject) in [("PLAIN", "plain.>"), ("BARE", "bare.>"), ("RELAY", "relay.>")] {
            js.create_stream(stream_config(name, &[subject])).await.unwrap();
        }
        println!("{n} messages of 100 B, {window} in flight, nats-server on loopback, file storage");
        let bare = plain(&js, "bare.events", n, window, false).await;
        println!("plain publisher, no headers:                  {bare:>9.0} msg/s");
        let same = plain(&js, "plain.events", n, window, true).await;
        println!("plain publisher, same headers as the relay:   {same:>9.0} msg/s");
        let relayed = relay(&js, n, window).await;
        println!("relay (spool channel -> JetStream, commits):  {relayed:>9.0} msg/s");
        println!(
            "relay / plain (same headers): {:.2}x; relay / plain (no headers): {:.2}x",
            relayed / same,
            relayed / bare
        );
    });
}
