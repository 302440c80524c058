//! The workloads, each run on a fresh directory per engine.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::engine::{can_sync, open};
use crate::report::Row;

pub const MESSAGES: usize = 1_000_000;
pub const PAYLOAD: usize = 100;
pub const BATCH: usize = 1000;
/// Single durable appends timed for the latency percentiles.
const DURABLE_SINGLES: usize = 2000;

fn payload() -> Vec<u8> {
    vec![0x42u8; PAYLOAD]
}

/// Flushes every dirty page on the machine (`sync`) and lets writeback go
/// quiet, so no engine pays for the previous one's data.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(300));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(std::env::current_dir().unwrap_or_else(|_| ".".into())).expect("tempdir")
}

/// Appends 1M messages in batches of 1000, without and with a sync per
/// batch; reads everything back after the unsynced run.
pub fn append_and_read(name: &'static str) -> Vec<Row> {
    let p = payload();
    let batch: Vec<&[u8]> = vec![&p; BATCH];
    let mut rows = Vec::new();
    for sync in [false, true] {
        if sync && !can_sync(name) {
            continue;
        }
        let dir = tempdir();
        let mut e = open(name, dir.path(), sync);
        settle();
        let start = Instant::now();
        for _ in 0..MESSAGES / BATCH {
            e.append(&batch, sync);
        }
        let workload = if sync {
            "append, sync per batch"
        } else {
            "append, no sync"
        };
        rows.push(Row::rate(workload, name, MESSAGES, start.elapsed()));
        if !sync {
            settle();
            let start = Instant::now();
            assert_eq!(e.read_all(), MESSAGES * PAYLOAD, "{name} reads back everything");
            rows.push(Row::rate("sequential read", name, MESSAGES, start.elapsed()));
        }
    }
    rows
}

/// Single-message appends, each durable before the next: p50/p99.
pub fn durable(name: &'static str) -> Vec<Row> {
    if !can_sync(name) {
        return Vec::new();
    }
    let dir = tempdir();
    let mut e = open(name, dir.path(), true);
    let p = payload();
    let mut lat = Vec::with_capacity(DURABLE_SINGLES);
    settle();
    let start = Instant::now();
    for _ in 0..DURABLE_SINGLES {
        let t = Instant::now();
        e.append(&[&p], true);
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    vec![Row::latency(
        "durable single append",
        name,
        DURABLE_SINGLES,
        total,
        &mut lat,
    )]
}

/// Reads messages and commits position + 64-byte state atomically, per
/// message and per 100 messages, durable and not.
pub fn consume(name: &'static str) -> Vec<Row> {
    let mut rows = Vec::new();
    for (every, sync, count, workload) in [
        (1, false, 100_000usize, "consume+commit each, no sync"),
        (100, false, 1_000_000, "consume+commit per 100, no sync"),
        (1, true, 5_000, "consume+commit each, durable"),
        (100, true, 200_000, "consume+commit per 100, durable"),
    ] {
        let dir = tempdir();
        let mut e = open(name, dir.path(), sync);
        let p = payload();
        let batch: Vec<&[u8]> = vec![&p; BATCH];
        for _ in 0..count.div_ceil(BATCH) {
            e.append(&batch, false);
        }
        settle();
        let start = Instant::now();
        if let Some(seen) = e.consume(count, every, sync) {
            assert_eq!(seen, count, "{name} consumed everything asked");
            rows.push(Row::rate(workload, name, count, start.elapsed()));
        }
    }
    rows
}

/// Child side of `open_after_kill`: appends without syncing until `bytes`
/// of payload are written.
pub fn fill(name: &str, dir: &Path, bytes: usize) {
    let mut e = open(name, dir, false);
    let p = payload();
    let batch: Vec<&[u8]> = vec![&p; BATCH];
    for _ in 0..bytes / (PAYLOAD * BATCH) {
        e.append(&batch, false);
    }
    // No destructor may run: the parent SIGKILLs this process next, and a
    // clean close would spare the engine its recovery.
    std::mem::forget(e);
}

/// Fills a store in a child process, SIGKILLs it, and times the open plus
/// a read of the last message.
pub fn open_after_kill(name: &'static str) -> std::io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (bytes, workload) in [
        (100 << 20, "open after SIGKILL, 100 MB"),
        (1 << 30, "open after SIGKILL, 1 GB"),
    ] {
        let dir = tempdir();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--fill", name, &dir.path().to_string_lossy(), &bytes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
        assert_eq!(line.trim(), "filled", "{name} filled the store");
        child.kill()?; // SIGKILL
        child.wait()?;
        let _ = child.stdin.take().map(|mut s| s.flush());
        settle();
        let start = Instant::now();
        let mut e = open(name, dir.path(), false);
        let last = e.last();
        let took = start.elapsed();
        // Reported, not asserted: an engine may legitimately keep nothing
        // that was never made durable.
        rows.push(Row::time(workload, name, took.max(Duration::from_nanos(1)), last));
    }
    Ok(rows)
}
