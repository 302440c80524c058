//! The relay command (`spool relay`, `spool-relay`; both run
//! `spool_relay::command::run`) against a real nats-server: it creates the
//! stream, relays everything exactly once, exits when caught up with its
//! position committed, and resumes from there when run again.

mod common;

use std::path::Path;

use clap::Parser;
use common::*;
use spool_relay::command::{self, RelayArgs};
use spool_relay::RelayState;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: RelayArgs,
}

fn relay_args(dir: &Path, url: &str) -> RelayArgs {
    let dir = dir.to_str().expect("utf-8");
    Cli::try_parse_from([
        "spool-relay",
        dir,
        "events",
        "--nats",
        url,
        "--subject",
        "outbox.{channel}",
        "--stream",
        "OUTBOX",
        "--create-stream",
        "--exit-when-caught-up",
        "--quiet",
    ])
    .expect("arguments")
    .args
}

fn publish(dir: &Path, seqs: std::ops::RangeInclusive<u64>) -> u64 {
    let store = spool::Store::open(dir, spool::Options::default()).expect("open");
    let events = store.channel("events").expect("channel");
    let batch: Vec<Vec<u8>> = seqs.map(payload).collect();
    events.publish_batch(&batch).expect("publish");
    let id = events.id();
    store.close().expect("close");
    id
}

#[test]
fn the_command_relays_exactly_once_and_resumes() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let id = publish(dir.path(), 1..=3000);
    command::run(relay_args(dir.path(), &server.url())).expect("first run");
    // More messages while the relay is not running, then a second run.
    publish(dir.path(), 3001..=5000);
    command::run(relay_args(dir.path(), &server.url())).expect("second run");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stored = runtime.block_on(async {
        let (_client, js) = connect(&server.url()).await;
        read_stream(&js, "OUTBOX").await
    });
    assert_exactly_once(&stored, id, 5000, payload);
    assert_eq!(stored.len(), 5000);

    let store = spool::Store::open(dir.path(), spool::Options::default()).expect("reopen");
    let sub = store
        .channel("events")
        .expect("channel")
        .subscribe("relay-OUTBOX", spool::StartAt::First)
        .expect("the relay's subscriber");
    let (position, blob) = sub.committed();
    let state = RelayState::decode(&blob).expect("state").expect("committed state");
    assert_eq!(position, 5000, "exited caught up, position committed");
    assert_eq!(state.stream_seq, stored.last().expect("stored").stream_seq);
}
