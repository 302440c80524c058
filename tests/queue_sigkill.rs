//! A real SIGKILL loop for dead letters: poison messages with
//! `max_deliveries(3)` must end in the dead-letter channel exactly once,
//! and never be handed out after their letter is there, whatever moment
//! the process dies at. The test re-runs its own binary as a child that
//! publishes the jobs (every seventh is poison: always nakked), works
//! through them with two members and reports violations it sees itself
//! (a delivery of a message whose letter exists, a count past the limit);
//! the parent kills it at random moments, checks the files after each
//! kill, and finally lets a child run to the end.
//!
//! `SPOOL_SIGKILL_ITERS` sets the number of kills (default 40).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{seed, Rng};
use spool::{DeadLetter, Options, QueueOptions, StartAt, Store, SyncPolicy};

const CHILD_ENV: &str = "SPOOL_QUEUE_SIGKILL_DIR";
const JOBS: u64 = 100_000;
const MAX: u32 = 3;

fn opts() -> Options {
    Options::default()
        .segment_size(64 << 10)
        .sync_policy(SyncPolicy::Interval(Duration::from_millis(2)))
}

fn poison(seq: u64) -> bool {
    seq.is_multiple_of(7)
}

/// Dead letters by original seq: how many, and the delivery count of the
/// last.
fn letters(store: &Store) -> BTreeMap<u64, (usize, u32)> {
    let dead = store.channel("dead").expect("dead");
    let mut seen = BTreeMap::new();
    for m in dead.read_from(1).expect("read") {
        let l = DeadLetter::from_message(m.expect("message")).expect("a dead letter");
        let e = seen.entry(l.seq()).or_insert((0, 0));
        *e = (e.0 + 1, l.delivery_count());
    }
    seen
}

/// The child: works until everything is acked or given up, then says DONE.
fn child(dir: &str) {
    let store = Store::open(dir, opts()).expect("child open");
    let jobs = store.channel("jobs").expect("jobs");
    let dead = store.channel("dead").expect("dead");
    while jobs.last_seq() < JOBS {
        jobs.publish(&(jobs.last_seq() + 1).to_le_bytes()).expect("publish");
    }
    let o = QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(4)
        .max_deliveries(MAX)
        .dead_letter(&dead);
    let members: Vec<_> = (0..2)
        .map(|_| {
            jobs.queue_subscribe_with("workers", StartAt::First, o.clone())
                .expect("join")
        })
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").and_then(|_| out.flush()).expect("out");
    // The letters published so far (read incrementally).
    let (mut known, mut next_letter) = (std::collections::BTreeSet::new(), 1);
    let mut i = 0usize;
    while members[0].ack_floor() < JOBS {
        i += 1;
        let m = &members[i % 2];
        let Some(d) = m.try_recv().expect("recv") else { continue };
        for l in dead.read_from(next_letter).expect("read") {
            let l = l.expect("letter");
            next_letter = l.seq() + 1;
            known.insert(DeadLetter::from_message(l).expect("a dead letter").seq());
        }
        if known.contains(&d.seq()) {
            writeln!(out, "VIOLATION {} handed out after its dead letter", d.seq()).expect("out");
        }
        if d.delivery_count() > MAX + 1 {
            writeln!(out, "VIOLATION {} delivered {} times", d.seq(), d.delivery_count()).expect("out");
        }
        if poison(d.seq()) {
            m.nak(d.seq()).expect("nak");
        } else {
            m.ack(d.seq()).expect("ack");
        }
    }
    writeln!(out, "DONE").and_then(|_| out.flush()).expect("out");
}

/// Checks the files; whether the child was still working.
fn check(dir: &Path, context: &str) -> bool {
    let store = Store::open(dir, opts()).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
    for (seq, (n, count)) in letters(&store) {
        // A good message too is given up if kills took MAX deliveries of it
        // before its ack was recorded; never before that.
        assert!(
            count >= MAX,
            "{context}: message {seq} given up after {count} deliveries"
        );
        assert_eq!(n, 1, "{context}: message {seq} dead-lettered {n} times");
    }
    let jobs = store.channel("jobs").expect("jobs");
    jobs.last_seq() < JOBS
        || jobs
            .queue_subscribe("workers", StartAt::First)
            .expect("join")
            .ack_floor()
            < JOBS
}

fn run_child(exe: &Path, dir: &Path) -> std::process::Child {
    Command::new(exe)
        .args([
            "--exact",
            "dead_letters_exactly_once_across_sigkills",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What a child said: violations, whether it finished, whether it got to
/// work (past open and recovery).
fn violations(out: std::process::ChildStdout) -> std::thread::JoinHandle<(Vec<String>, bool, bool)> {
    std::thread::spawn(move || {
        let mut bad = Vec::new();
        let (mut done, mut ready) = (false, false);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            ready |= line.contains("READY");
            // The harness's own words may start the line.
            if line.contains("VIOLATION") {
                bad.push(line);
            } else if line.contains("DONE") {
                done = true;
            }
        }
        (bad, done, ready)
    })
}

#[test]
fn dead_letters_exactly_once_across_sigkills() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let iters: u64 = std::env::var("SPOOL_SIGKILL_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(seed());
    let mut midway = 0;
    for i in 0..iters {
        let mut child = run_child(&exe, dir.path());
        let reader = violations(child.stdout.take().unwrap());
        let delay = if i % 10 == 0 { rng.below(3) } else { 3 + rng.below(30) };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let (bad, _, ready) = reader.join().unwrap();
        assert!(bad.is_empty(), "kill {i} after {delay} ms: {bad:?}");
        let working = check(dir.path(), &format!("kill {i} after {delay} ms"));
        midway += u64::from(working && ready);
    }
    assert!(
        midway * 2 >= iters,
        "only {midway} of {iters} kills hit the child at work (past its open)"
    );
    // The last child runs to the end (it stops once every job is acked or
    // given up: bounded by the jobs).
    let mut child = run_child(&exe, dir.path());
    let reader = violations(child.stdout.take().unwrap());
    assert!(child.wait().unwrap().success(), "the last child finished");
    let (bad, done, _) = reader.join().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert!(done, "the last child got through every job");
    let store = Store::open(dir.path(), opts()).unwrap();
    let got = letters(&store);
    assert!(got.values().all(|(n, _)| *n == 1), "no message dead-lettered twice");
    let poisoned = (1..=JOBS).filter(|s| poison(*s));
    assert!(
        poisoned.clone().all(|s| got.contains_key(&s)),
        "every poison message is in the dead-letter channel"
    );
    let good = got.keys().filter(|s| !poison(**s)).count();
    eprintln!(
        "{} poison messages and {good} good ones dead-lettered",
        poisoned.count()
    );
    let m = store
        .channel("jobs")
        .unwrap()
        .queue_subscribe("workers", StartAt::First)
        .unwrap();
    assert_eq!(m.ack_floor(), JOBS);
    assert_eq!(m.dead_lettered(), got.len() as u64);
}
