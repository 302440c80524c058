//! Read-only attach against an owner in another process (this test binary
//! run again, see `owner_process`): the reader follows appends across
//! segment rolls while retention deletes segments, a message it holds
//! stays readable after its file is deleted, and an iterator that falls
//! below the first retained seq moves on and counts what it skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spool::{Limits, Options, Store, SyncPolicy};

const OWNER_DIR: &str = "SPOOL_TEST_RO_OWNER_DIR";
const KEEP: u64 = 5_000;

fn payload(seq: u64) -> Vec<u8> {
    format!("message {seq} {}", "p".repeat((seq % 97) as usize)).into_bytes()
}

/// The owner: runs only when started by the test below (else empty).
/// Publishes until the file `stop` appears, then writes the last seq into
/// `done`. Pauses when the file `pause` exists (so the reader can fall
/// behind retention on purpose).
#[test]
fn owner_process() {
    let Some(dir) = std::env::var_os(OWNER_DIR).map(PathBuf::from) else {
        return;
    };
    let opts = Options::default()
        .segment_size(64 << 10)
        .sync_policy(SyncPolicy::Never)
        .limits(Limits::default().max_msgs(KEEP))
        .compact_interval(Duration::from_millis(10));
    let store = Store::open(dir.join("store"), opts).expect("owner open");
    let ch = store.channel("events").expect("channel");
    let mut seq = 0;
    while seq < 500 {
        seq += 1;
        ch.publish(&payload(seq)).expect("publish");
    }
    std::fs::write(dir.join("ready"), b"").expect("ready");
    while !dir.join("stop").exists() {
        if dir.join("pause").exists() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        for _ in 0..50 {
            seq += 1;
            ch.publish(&payload(seq)).expect("publish");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    store.close().expect("close");
    std::fs::write(dir.join("done"), seq.to_string()).expect("done");
}

struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_owner(dir: &Path) -> Owner {
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "owner_process", "--nocapture"])
        .env(OWNER_DIR, dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("owner");
    let t = Instant::now();
    while !dir.join("ready").exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "the owner did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    Owner(child)
}

#[test]
fn follows_an_owner_process_through_rolls_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut owner = start_owner(dir.path());
    let ro = Store::open_read_only(dir.path().join("store")).expect("attach");
    let ch = ro.open_channel("events").expect("channel");
    let held = ch.get(ch.first_seq()).expect("a message");
    let held_seq = held.seq();
    assert_eq!(held.payload(), payload(held_seq));
    let mut messages = ch.read_from(held_seq).expect("iterator");
    let mut next = held_seq;
    let started = Instant::now();
    // Follow for a while: every message once, in order, as published.
    while started.elapsed() < Duration::from_secs(2) {
        match messages.next() {
            Some(m) => {
                let m = m.expect("message");
                assert_eq!(m.seq(), next, "skipped or repeated");
                assert_eq!(m.payload(), payload(m.seq()));
                next += 1;
            }
            None => {
                ch.wait_for(next, Duration::from_millis(100)).expect("wait");
            }
        }
    }
    assert_eq!(messages.skipped(), 0);
    assert!(
        ch.first_seq() > held_seq + KEEP,
        "retention deleted the held message's segment"
    );
    assert_eq!(held.payload(), payload(held_seq), "a held message outlives its file");
    assert!(
        ch.stats().segments < 100,
        "segments below the first retained seq leave the list"
    );

    // A reader that falls behind retention moves on and says how far.
    std::fs::write(dir.path().join("pause"), b"").expect("pause");
    std::thread::sleep(Duration::from_millis(50));
    ro.refresh().expect("refresh");
    let mut late = ch.read_from(ch.first_seq()).expect("late iterator");
    let from = late.next_seq();
    std::fs::remove_file(dir.path().join("pause")).expect("resume");
    let t = Instant::now();
    while ch.first_seq() <= from + KEEP {
        assert!(t.elapsed() < Duration::from_secs(20), "retention did not move on");
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = late.next().expect("a message").expect("readable");
    assert_eq!(m.seq(), from + late.skipped());
    assert!(late.skipped() > 0);

    std::fs::write(dir.path().join("stop"), b"").expect("stop");
    assert!(owner.0.wait().expect("owner").success());
    let last: u64 = std::fs::read_to_string(dir.path().join("done"))
        .expect("done")
        .parse()
        .expect("seq");
    ro.refresh().expect("refresh");
    assert_eq!(ch.last_seq(), last);
    for m in messages.by_ref() {
        let m = m.expect("message");
        assert_eq!(m.payload(), payload(m.seq()));
    }
    assert_eq!(messages.next_seq(), last + 1);
}
