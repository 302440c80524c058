//! A real SIGKILL loop on the real file system. The test re-runs its own
//! binary as a child that publishes, commits and compacts with
//! deterministic payloads and reports each acknowledgement to the parent
//! over a pipe; the parent kills it at a random moment (some during open and
//! recovery), reopens the store, and checks that everything acknowledged is
//! there and the subscriber resumes exactly.
//!
//! `SPOOL_SIGKILL_ITERS` sets the number of kills (default 100).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{seed, Rng};
use spool::{Limits, Options, StartAt, Store, SyncPolicy};

const CHILD_ENV: &str = "SPOOL_SIGKILL_CHILD_DIR";
const KEEP: u64 = 3000;

fn opts() -> Options {
    Options::default()
        .segment_size(64 << 10)
        .sync_policy(SyncPolicy::Never)
        .limits(Limits::default().max_msgs(KEEP))
        .compact_interval(Duration::from_secs(3600))
}

fn payload(seq: u64) -> Vec<u8> {
    let len = (seq * 7919 % 300) as usize;
    (0..len).map(|i| (seq as usize ^ i) as u8).collect()
}

/// The child: runs until killed, acknowledging on stdout.
fn child(dir: &str) {
    let store = Store::open(dir, opts()).expect("child open");
    let ch = store.channel("k").expect("channel");
    let sub = ch.subscribe("s", StartAt::First).expect("subscribe");
    let mut out = std::io::stdout().lock();
    loop {
        let seq = ch.last_seq() + 1;
        ch.publish(&payload(seq)).expect("publish");
        writeln!(out, "P {seq}").and_then(|_| out.flush()).expect("ack");
        if seq.is_multiple_of(37) {
            let (pos, _) = sub.committed();
            let to = (pos + 30).min(seq);
            sub.commit(to, &to.to_le_bytes()).expect("commit");
            writeln!(out, "C {to}").and_then(|_| out.flush()).expect("ack");
        }
        if seq.is_multiple_of(500) {
            store.compact_now().expect("compact");
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Acked {
    published: u64,
    committed: u64,
}

fn check(dir: &Path, acked: Acked, context: &str) {
    let store = Store::open(dir, opts()).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{context}: {:#?}", report.problems);
    let ch = store.channel("k").unwrap();
    assert!(
        ch.last_seq() >= acked.published,
        "{context}: acknowledged publish {} lost (last {})",
        acked.published,
        ch.last_seq()
    );
    for m in ch.read_from(1).unwrap() {
        let m = m.unwrap();
        assert_eq!(m.payload(), payload(m.seq()).as_slice(), "{context}: seq {}", m.seq());
    }
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    let (pos, state) = sub.committed();
    assert!(
        pos >= acked.committed,
        "{context}: acknowledged commit {} lost ({pos})",
        acked.committed
    );
    if pos > 0 {
        assert_eq!(
            u64::from_le_bytes((*state).try_into().unwrap()),
            pos,
            "{context}: state from another commit"
        );
    }
    let next = sub.try_recv().unwrap().map(|m| m.seq());
    let expect = (pos + 1).max(ch.first_seq());
    assert_eq!(
        next,
        (expect <= ch.last_seq()).then_some(expect),
        "{context}: resumes exactly"
    );
}

#[test]
fn sigkill_loop() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let iters: u64 = std::env::var("SPOOL_SIGKILL_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(seed());
    let mut acked = Acked::default();
    for i in 0..iters {
        let mut child = Command::new(&exe)
            .args(["--exact", "sigkill_loop", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(acked));
        let reader = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut a = seen.lock().unwrap();
                    match line.split_once(' ') {
                        Some(("P", n)) => a.published = a.published.max(n.parse().unwrap_or(0)),
                        Some(("C", n)) => a.committed = a.committed.max(n.parse().unwrap_or(0)),
                        _ => {}
                    }
                }
            })
        };
        // One in ten dies during open/recovery.
        let delay = if i % 10 == 0 { rng.below(3) } else { 3 + rng.below(40) };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked = *seen.lock().unwrap();
        check(dir.path(), acked, &format!("kill {i} after {delay} ms"));
    }
    assert!(acked.published > 0, "the child made progress");
}
