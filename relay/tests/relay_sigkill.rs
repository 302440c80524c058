//! The relay process (the `spool-relay` binary) SIGKILLed 20 times at
//! random points and restarted: after every kill the committed JetStream
//! sequence matches the stream (the message stored there is the one at the
//! committed position) and the stream holds a prefix of the channel, each
//! message once, in order; at the end, the whole channel exactly once.
//!
//! A spool store is owned by one process at a time, so the messages are
//! produced up front and the child only relays.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use spool_relay::{MsgId, RelayState};

const N: u64 = 20_000;
const KILLS: usize = 20;

fn spawn_relay(dir: &Path, url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spool-relay"))
        .arg(dir)
        .arg("events")
        .args([
            "--nats",
            url,
            "--subject",
            "outbox.events",
            "--stream",
            "OUTBOX",
            "--quiet",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting spool-relay")
}

fn produce(dir: &Path) -> u64 {
    let store = spool::Store::open(dir, spool::Options::default()).unwrap();
    let events = store.channel("events").unwrap();
    for chunk in (1..=N).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Vec<u8>> = chunk.iter().map(|&s| payload(s)).collect();
        events.publish_batch(&batch).unwrap();
    }
    let id = events.id();
    store.close().unwrap();
    id
}

/// The relay's committed position and state, if it has a subscriber yet.
fn committed(dir: &Path, name: &str) -> Option<(u64, RelayState)> {
    let store = spool::Store::open(dir, spool::Options::default()).unwrap();
    let events = store.open_channel("events").unwrap();
    if !events.subscriber_names().iter().any(|n| n == name) {
        return None;
    }
    let sub = events.subscribe(name, spool::StartAt::First).unwrap();
    let (position, blob) = sub.committed();
    let state = RelayState::decode(&blob)
        .unwrap()
        .expect("a relay commits its state before it publishes");
    Some((position, state))
}

async fn stream_last(js: &jetstream::Context) -> u64 {
    js.get_stream("OUTBOX")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence
}

/// Checks the invariants after a kill; returns the committed position.
async fn check(js: &jetstream::Context, dir: &Path, channel_id: u64, context: &str) -> u64 {
    let stored = read_stream(js, "OUTBOX").await;
    // A prefix of the channel, once each, in order.
    for (i, s) in stored.iter().enumerate() {
        let id =
            s.id.unwrap_or_else(|| panic!("{context}: stream seq {} has no relay id", s.stream_seq));
        assert_eq!(id.channel, channel_id, "{context}");
        assert_eq!(
            id.seq,
            i as u64 + 1,
            "{context}: stream seq {} holds seq {}",
            s.stream_seq,
            id.seq
        );
        assert_eq!(s.payload, payload(id.seq), "{context}: payload of seq {}", id.seq);
    }
    let Some((position, state)) = committed(dir, "relay-OUTBOX") else {
        assert!(stored.is_empty(), "{context}: published before its subscriber existed");
        return 0;
    };
    assert_eq!(state.stream, "OUTBOX", "{context}");
    assert!(
        position <= stored.len() as u64,
        "{context}: committed {position} but the stream holds {}",
        stored.len()
    );
    if position == 0 {
        assert_eq!(state.seq_at_stream_seq, 0, "{context}");
    } else {
        // The committed JetStream sequence holds the committed message.
        assert_eq!(state.seq_at_stream_seq, position, "{context}");
        let at = stored
            .iter()
            .find(|s| s.stream_seq == state.stream_seq)
            .unwrap_or_else(|| panic!("{context}: committed stream seq {} not in the stream", state.stream_seq));
        assert_eq!(at.id.map(|id| id.seq), Some(position), "{context}");
    }
    position
}

async fn kill_loop(extra: &[&str], kills: usize) {
    let mut rng = Rng(seed());
    let server = NatsServer::start();
    let (_client, js) = connect(&server.url()).await;
    js.create_stream(stream_config("OUTBOX", &["outbox.>"])).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let channel_id = produce(dir.path());

    let mut positions = Vec::new();
    for kill in 0..kills {
        let before = stream_last(&js).await;
        let mut child = spawn_relay(dir.path(), &server.url(), extra);
        let how = if kill % 3 == 0 {
            // At a random moment: some during start-up.
            let ms = rng.below(400);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            format!("{ms} ms after start")
        } else {
            // After a random number of messages reached the stream.
            let target = before + 1 + rng.below(N / (kills as u64 + 5));
            let deadline = Instant::now() + Duration::from_secs(30);
            while stream_last(&js).await < target.min(N) {
                assert!(Instant::now() < deadline, "kill {kill}: no progress to {target}");
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("kill {kill}: the relay exited by itself: {status}");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            format!("at stream seq >= {target}")
        };
        child.kill().unwrap();
        child.wait().unwrap();
        let context = format!("kill {kill} ({how})");
        let position = check(&js, dir.path(), channel_id, &context).await;
        eprintln!("{context}: committed {position}, stream at {}", stream_last(&js).await);
        positions.push(position);
    }

    // The last run finishes the job.
    let mut child = spawn_relay(dir.path(), &server.url(), &[extra, &["--exit-when-caught-up"]].concat());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the final relay run did not catch up in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "final run: {status}");
    let position = check(&js, dir.path(), channel_id, "after the final run").await;
    assert_eq!(position, N);
    let stored = read_stream(&js, "OUTBOX").await;
    assert_exactly_once(&stored, channel_id, N, payload);
    let (_, state) = committed(dir.path(), "relay-OUTBOX").unwrap();
    assert_eq!(state.stream_seq, stream_last(&js).await);
    assert_eq!(
        stored.last().unwrap().id,
        Some(MsgId {
            seq: N,
            ..stored[0].id.unwrap()
        })
    );
    // The kills landed while it worked, not all before or after.
    assert!(positions.iter().any(|&p| p > 0 && p < N), "{positions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_20_times_exactly_once() {
    kill_loop(&[], KILLS).await;
}

/// The same with a shared stream: no sequence expectations, the message
/// ids alone keep it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_shared_stream_exactly_once() {
    kill_loop(&["--shared"], 8).await;
}
