//! The outbox pattern with spool and JetStream: a service writes its events
//! to a spool channel inside the request path (a local append, no network
//! hop, survives a crash of the process), and a relay ships them to
//! JetStream in the background, exactly once.
//!
//! ```sh
//! nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/nats &   # any JetStream server
//! cargo run --release --example outbox -- nats://127.0.0.1:4222
//! ```
//!
//! Kill it at any moment and run it again: the relay resumes where it
//! committed, and JetStream drops what it had already stored.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream;
use spool_relay::{Relay, StreamSpec};

/// The service: its request handler records what happened as an event.
struct OrderService {
    events: spool::Channel,
}

impl OrderService {
    /// Handles "create order". The event is written before the request is
    /// answered; shipping it is the relay's business.
    fn create_order(&self, order: u64, cents: u64) -> Result<u64, spool::Error> {
        // ... validate, apply the business change ...
        let event = format!(r#"{{"type":"order_created","order":{order},"cents":{cents}}}"#);
        self.events.publish(event.as_bytes())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let dir = std::env::temp_dir().join("spool-outbox-example");
    let store = spool::Store::open(&dir, spool::Options::default())?;
    let service = OrderService {
        events: store.channel("orders")?,
    };

    let client = async_nats::connect(&url).await?;
    let jetstream = async_nats::jetstream::new(client);
    let relay = Relay::new(&store, "orders", jetstream.clone(), "events.{channel}")?.stream(StreamSpec::Create(
        Box::new(stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        }),
    ));
    let status = relay.status();
    let handle = relay.spawn();

    // Serve 20,000 requests, arriving in bursts of 500 every 10 ms; each
    // writes its event to the outbox.
    let mut latencies = Vec::with_capacity(20_000);
    let first = service.events.last_seq() + 1;
    for order in first..first + 20_000 {
        let t = Instant::now();
        service.create_order(order, 100 + order % 900)?;
        latencies.push(t.elapsed());
        if order % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if order % 5_000 == 0 {
            println!("{}", status.borrow().line());
        }
    }
    latencies.sort();
    println!(
        "request path: outbox write p50 {:?}, p99 {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );

    // Let the relay catch up, then stop it (acks awaited, position committed).
    let deadline = Instant::now() + Duration::from_secs(60);
    while status.borrow().committed < service.events.last_seq() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = handle.stop().await?;
    println!("{}", last.line());
    let mut events = jetstream.get_stream("EVENTS").await?;
    let info = events.info().await?;
    println!(
        "stream EVENTS: {} messages, last sequence {}",
        info.state.messages, info.state.last_sequence
    );
    store.close()?;
    Ok(())
}
