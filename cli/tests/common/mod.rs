//! What the command tests share: running the built `spool`, and stores
//! made for them.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use spool::{Limits, Options, StartAt, Store, SyncPolicy};

/// Runs `spool` with `args`; its output.
pub fn spool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spool"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run spool")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure said in one line, without a panic or a backtrace;
/// returns the line.
pub fn one_line_error(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {err}", stdout(o));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("spool: error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    err
}

/// The payload of message `seq` of `channel` in the stores made here.
pub fn payload(channel: &str, seq: u64) -> Vec<u8> {
    format!("{channel} message {seq}").into_bytes()
}

/// Small segments (so a few thousand messages make several files).
pub fn opts() -> Options {
    Options::default().segment_size(64 << 10).sync_policy(SyncPolicy::Never)
}

/// A closed store at `dir`: channel "orders" with 2500 text messages in
/// several segments (max_msgs 100000), channel "bin" with 3 binary ones,
/// an empty channel "empty"; subscriber "billing" at 1200 with a 5-byte
/// state, queue group "workers" with 3 acked.
pub fn make_store(dir: &Path) {
    let store = Store::open(dir, opts()).expect("open");
    let orders = store
        .channel_with_limits("orders", Limits::default().max_msgs(100_000))
        .expect("orders");
    for seq in 1..=2500 {
        orders.publish(&payload("orders", seq)).expect("publish");
    }
    let bin = store.channel("bin").expect("bin");
    bin.publish_batch(&[vec![0u8, 1, 2, 255], vec![0xff; 20], b"ok".to_vec()])
        .expect("publish");
    store.channel("empty").expect("empty");
    orders
        .subscribe("billing", StartAt::First)
        .expect("subscribe")
        .commit(1200, b"state")
        .expect("commit");
    let group = orders.queue_subscribe("workers", StartAt::First).expect("group");
    for _ in 0..3 {
        let job = group.recv().expect("recv");
        group.ack(job.seq()).expect("ack");
    }
    drop(group);
    store.close().expect("close");
}
