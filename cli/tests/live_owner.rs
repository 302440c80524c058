//! The commands against a store an application owns: an owner *process*
//! (this test binary run again, see `owner_process`) publishes to two
//! channels and commits a subscriber continuously, with retention deleting
//! segments, while `spool stat`, `spool tail -f` and `spool backup` run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{payload, spool, stderr, stdout};
use serde_json::Value;
use spool::{Limits, Options, StartAt, Store, SyncPolicy};

const OWNER_DIR: &str = "SPOOL_TEST_OWNER_DIR";
/// Messages per channel retention keeps: small enough that segments are
/// deleted while the test runs.
const KEEP: u64 = 20_000;

/// The owner process: runs only when started by the test below with
/// `SPOOL_TEST_OWNER_DIR` set (otherwise it is an empty test). Publishes
/// `a` then `b` with the same seq, commits subscriber `s` of `a` with the
/// seq as its state every few messages, until the file `stop` appears;
/// then writes the last seq into `done`.
#[test]
fn owner_process() {
    let Some(dir) = std::env::var_os(OWNER_DIR).map(PathBuf::from) else {
        return;
    };
    let opts = Options::default()
        .segment_size(64 << 10)
        .sync_policy(SyncPolicy::Interval(Duration::from_millis(50)))
        .limits(Limits::default().max_msgs(KEEP).max_subscribers(10))
        .compact_interval(Duration::from_millis(20));
    let store = Store::open(dir.join("store"), opts).expect("owner open");
    let a = store.channel("a").expect("a");
    let b = store.channel("b").expect("b");
    let sub = a.subscribe("s", StartAt::First).expect("subscribe");
    std::fs::write(dir.join("ready"), b"").expect("ready");
    let mut seq = 0;
    while !dir.join("stop").exists() {
        for _ in 0..20 {
            seq += 1;
            assert_eq!(a.publish(&payload("a", seq)).expect("publish a"), seq);
            assert_eq!(b.publish(&payload("b", seq)).expect("publish b"), seq);
            if seq % 5 == 0 {
                sub.commit(seq, &seq.to_le_bytes()).expect("commit");
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(sub);
    store.close().expect("close");
    std::fs::write(dir.join("done"), seq.to_string()).expect("done");
}

/// The owner process, killed if the test fails before it stops.
struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_owner(dir: &Path) -> Owner {
    let me = std::env::current_exe().expect("test binary");
    let child = Command::new(me)
        .args(["--exact", "owner_process", "--nocapture", "--test-threads", "1"])
        .env(OWNER_DIR, dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the owner");
    let t = Instant::now();
    while !dir.join("ready").exists() {
        assert!(t.elapsed() < Duration::from_secs(30), "the owner did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    Owner(child)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Checks a backup: opens strictly, verifies clean, exact prefixes with
/// the owner's payloads, `b` at most one behind `a` when the ends are of
/// one instant, the subscriber's position within `a` and its state from
/// the same commit.
fn check_backup(copy: &Path, one_instant: bool) -> (u64, u64) {
    let store = Store::open(copy, Options::default().create_if_missing(false)).expect("the backup opens");
    let report = store.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    let mut ends = Vec::new();
    for name in ["a", "b"] {
        let ch = store.open_channel(name).expect("channel");
        let mut next = ch.first_seq();
        for m in ch.read_from(1).expect("read") {
            let m = m.expect("message");
            assert_eq!(m.seq(), next);
            assert_eq!(m.payload(), payload(name, m.seq()));
            next += 1;
        }
        assert_eq!(next, ch.last_seq() + 1);
        ends.push(ch.last_seq());
    }
    let (a, b) = (ends[0], ends[1]);
    if one_instant {
        assert!(b <= a && a <= b + 1, "not one instant: a {a}, b {b}");
    }
    let sub = store
        .open_channel("a")
        .expect("a")
        .subscribe("s", StartAt::First)
        .expect("subscriber");
    let (position, state) = sub.committed();
    assert!(position <= a, "subscriber at {position}, past a's end {a}");
    assert!(position > 0);
    assert_eq!(&*state, position.to_le_bytes(), "state from the same commit");
    (a, b)
}

#[test]
fn stat_tail_and_backup_while_an_owner_process_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut owner = start_owner(dir.path());
    let store_dir = dir.path().join("store");
    let s = store_dir.to_str().expect("utf-8").to_string();

    // tail -f from the start, reading lines in a thread.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_spool"))
        .args(["tail", &s, "a", "-n", "0", "-f", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail -f");
    let (lines_tx, lines) = mpsc::channel::<(Value, u64)>();
    let out = tail.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line).expect("a JSON line");
            if lines_tx.send((v, now_ns())).is_err() {
                break;
            }
        }
    });

    // stat, several times: both channels, growing, the subscriber there.
    let mut last_a = 0;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        let o = spool(&["stat", &s, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["owner_pid"].as_u64(), Some(u64::from(owner.0.id())));
        let a = &v["channels"][0];
        assert_eq!(a["name"], "a");
        let end = a["last_seq"].as_u64().expect("last_seq");
        assert!(end >= last_a, "stat went back: {end} < {last_a}");
        last_a = end;
        assert!(
            a["messages"].as_u64() <= Some(KEEP + 1000),
            "retention keeps about {KEEP}: {a}"
        );
        assert_eq!(a["subscribers"][0]["name"], "s");
        assert!(a["subscribers"][0]["position"].as_u64() <= Some(end));
    }
    let text = stdout(&spool(&["stat", &s]));
    assert!(text.contains(&format!("(open in pid {})", owner.0.id())), "{text}");

    // Backups while it writes.
    let mut backups = Vec::new();
    for i in 0..3 {
        let dest = dir.path().join(format!("backup-{i}"));
        let o = spool(&["backup", &s, dest.to_str().expect("utf-8"), "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        backups.push((dest, v["one_instant"].as_bool().unwrap_or(false)));
        std::thread::sleep(Duration::from_millis(300));
    }

    // Let retention delete many segments under tail -f, then stop.
    let first_before = Store::open_read_only(&store_dir)
        .expect("attach")
        .open_channel("a")
        .expect("a")
        .first_seq();
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(dir.path().join("stop"), b"").expect("stop");
    assert!(owner.0.wait().expect("owner exits").success(), "the owner failed");
    let last: u64 = std::fs::read_to_string(dir.path().join("done"))
        .expect("done")
        .parse()
        .expect("seq");
    let ro = Store::open_read_only(&store_dir).expect("attach");
    let first_after = ro.open_channel("a").expect("a").first_seq();
    assert!(
        first_after > first_before + 1000,
        "retention ran: {first_before} -> {first_after}"
    );

    // tail -f saw every message once, in order, none invented.
    let mut expected = None;
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (v, seen_at) = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("tail -f printed every message before the deadline");
        let seq = v["seq"].as_u64().expect("seq");
        if let Some(want) = expected {
            assert_eq!(seq, want, "tail -f skipped or repeated a message");
        }
        let text = v["text"].as_str().expect("text");
        assert_eq!(text.as_bytes(), payload("a", seq));
        latencies.push(seen_at.saturating_sub(v["timestamp_ns"].as_u64().expect("ts")));
        expected = Some(seq + 1);
        if seq == last {
            break;
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let mut err = String::new();
    if let Some(mut e) = tail.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(!err.contains("skipped"), "tail -f fell behind retention: {err}");
    drop(lines);
    let _ = reader.join();
    latencies.sort_unstable();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100] as f64 / 1e6;
    eprintln!(
        "tail -f: {} messages, publish to printed line p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(50),
        pct(99),
        pct(100)
    );
    assert!(pct(50) < 100.0, "tail -f latency p50 {:.1} ms", pct(50));

    for (dest, one_instant) in backups {
        let (a, b) = check_backup(&dest, one_instant);
        eprintln!("backup {}: a {a}, b {b}, one instant: {one_instant}", dest.display());
    }
}
