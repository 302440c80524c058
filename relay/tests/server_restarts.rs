//! nats-server SIGKILLed and restarted 5 times (JetStream file storage)
//! while a producer writes and the relay forwards: afterwards the stream
//! holds every message exactly once, in order.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use spool_relay::{Relay, RelayState, StreamSpec};

const N: u64 = 60_000;
const RESTARTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_five_times() {
    let mut rng = Rng(seed());
    let mut server = NatsServer::start();
    let (client, js) = connect(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();

    // A backlog, so that the first kill surely lands with publishes in
    // flight; then a steady stream.
    const BACKLOG: u64 = 20_000;
    let backlog: Vec<Vec<u8>> = (1..=BACKLOG).map(payload).collect();
    events.publish_batch(&backlog).unwrap();

    let relay = Relay::new(&store, "events", js.clone(), "outbox.events")
        .unwrap()
        .stream(StreamSpec::Create(Box::new(stream_config("OUTBOX", &["outbox.>"]))));
    let status = relay.status();
    let handle = relay.spawn();

    // The producer: about 10,000 messages a second for 4 seconds.
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let events = events.clone();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for chunk in (BACKLOG + 1..=N).collect::<Vec<_>>().chunks(100) {
                let batch: Vec<Vec<u8>> = chunk.iter().map(|&s| payload(s)).collect();
                events.publish_batch(&batch).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            done.store(true, Ordering::Release);
        })
    };

    let mut acked_at_kill = Vec::new();
    for restart in 0..RESTARTS {
        // Kill at a random moment while messages flow; some restarts come
        // back at once, some after a pause.
        if restart == 0 {
            // The first one while the relay works through the backlog.
            let up = status.clone();
            wait_until("the first acks", Duration::from_secs(30), || up.borrow().acked > 0).await;
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
        }
        acked_at_kill.push(status.borrow().acked);
        server.kill();
        tokio::time::sleep(Duration::from_millis(rng.below(if restart % 2 == 0 {
            50
        } else {
            1500
        })))
        .await;
        server.restart();
        eprintln!("restart {restart}: {}", status.borrow().line());
    }
    producer.join().unwrap();
    assert!(done.load(Ordering::Acquire));

    let deadline = Instant::now() + Duration::from_secs(120);
    while status.borrow().acked < N {
        assert!(!handle.is_finished(), "relay ended: {:?}", status.borrow());
        assert!(Instant::now() < deadline, "relay stuck: {}", status.borrow().line());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = within("stopping the relay", handle.stop()).await.unwrap();
    eprintln!(
        "final: {} (acked at the kills: {acked_at_kill:?}; resent {}, taken over from the stream {})",
        last.line(),
        last.resent,
        last.taken_over
    );
    assert!(last.retries >= 1, "the kills never disturbed the relay");
    assert!(last.resent >= 1, "no kill landed with publishes in flight");
    // The kills landed while the relay was forwarding.
    assert!(acked_at_kill.iter().any(|&a| a > 0 && a < N));

    let stored = read_stream(&js, "OUTBOX").await;
    assert_exactly_once(&stored, events.id(), N, payload);
    assert_eq!(stored.len() as u64, N, "the stream holds other messages too");

    let sub = events.subscribe("relay-OUTBOX", spool::StartAt::First).unwrap();
    let (position, blob) = sub.committed();
    let state = RelayState::decode(&blob).unwrap().unwrap();
    assert_eq!(position, N);
    assert_eq!(state.stream_seq, stored.last().unwrap().stream_seq);
    drop(client);
}
