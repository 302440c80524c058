//! The workloads, each run on a fresh directory per engine and per run.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::engine::{can_consume, can_sync, open, Engine};
use crate::engines::spool::Spool;
use crate::report::{Figure, Row};

pub const MESSAGES: usize = 1_000_000;
pub const PAYLOAD: usize = 100;
pub const BATCH: usize = 1000;
/// Single durable appends timed for the latency percentiles.
const DURABLE_SINGLES: usize = 2000;
/// Single non-durable publishes timed for the publish-stall percentiles:
/// enough to cross about 20 segment rolls at spool's default 64 MiB.
const PUBLISH_SINGLES: usize = 10_000_000;
/// Messages written before measuring the disk footprint.
const FOOTPRINT_MESSAGES: usize = 3;

/// What a workload measures; each variant runs on a fresh directory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// 1M messages in batches of 1000, with or without a sync per batch.
    Append { sync: bool },
    /// 1M messages appended untimed, then read back; `lending` selects
    /// spool's lending scan (the other engines have one read).
    Read { lending: bool },
    /// Single appends, each durable before the next: latency percentiles.
    DurableSingle,
    /// Read and commit position + state every `every` messages.
    Consume { every: usize, sync: bool, count: usize },
    /// Fill in a child, SIGKILL it, time the open plus a read of the last.
    OpenAfterKill { bytes: usize },
    /// 10M single publishes without a sync of their own, each timed: the
    /// longest stall a publisher sees (segment rolls included).
    PublishLatency { interval: bool },
    /// Bytes allocated on disk for a fresh store holding 3 messages.
    Footprint,
}

/// One workload: the name in the table and CSV, the short id accepted on
/// the command line (the name is accepted too), and the group ids that
/// select it along with its siblings.
pub struct Workload {
    pub id: &'static str,
    pub name: &'static str,
    pub groups: &'static [&'static str],
    pub kind: Kind,
}

/// The workloads, in table order.
pub const WORKLOADS: [Workload; 14] = [
    Workload {
        id: "append-no-sync",
        name: "append, no sync",
        groups: &["append"],
        kind: Kind::Append { sync: false },
    },
    Workload {
        id: "append-sync",
        name: "append, sync per batch",
        groups: &["append"],
        kind: Kind::Append { sync: true },
    },
    Workload {
        id: "read-owned",
        name: "sequential read (owned iterator)",
        groups: &["read"],
        kind: Kind::Read { lending: false },
    },
    Workload {
        id: "read-lending",
        name: "sequential read (lending scan)",
        groups: &["read"],
        kind: Kind::Read { lending: true },
    },
    Workload {
        id: "durable-single",
        name: "durable single append",
        groups: &["latency"],
        kind: Kind::DurableSingle,
    },
    Workload {
        id: "consume-each",
        name: "consume+commit each, no sync",
        groups: &["consume"],
        kind: Kind::Consume {
            every: 1,
            sync: false,
            count: 100_000,
        },
    },
    Workload {
        id: "consume-100",
        name: "consume+commit per 100, no sync",
        groups: &["consume"],
        kind: Kind::Consume {
            every: 100,
            sync: false,
            count: 1_000_000,
        },
    },
    Workload {
        id: "consume-each-durable",
        name: "consume+commit each, durable",
        groups: &["consume"],
        kind: Kind::Consume {
            every: 1,
            sync: true,
            count: 5_000,
        },
    },
    Workload {
        id: "consume-100-durable",
        name: "consume+commit per 100, durable",
        groups: &["consume"],
        kind: Kind::Consume {
            every: 100,
            sync: true,
            count: 200_000,
        },
    },
    Workload {
        id: "open-100mb",
        name: "open after SIGKILL, 100 MB",
        groups: &["open"],
        kind: Kind::OpenAfterKill { bytes: 100 << 20 },
    },
    Workload {
        id: "open-1gb",
        name: "open after SIGKILL, 1 GB",
        groups: &["open"],
        kind: Kind::OpenAfterKill { bytes: 1 << 30 },
    },
    Workload {
        id: "publish-latency-never",
        name: "max publish latency, Never",
        groups: &["latency", "max-publish-latency"],
        kind: Kind::PublishLatency { interval: false },
    },
    Workload {
        id: "publish-latency-interval",
        name: "max publish latency, Interval(1s)",
        groups: &["latency", "max-publish-latency"],
        kind: Kind::PublishLatency { interval: true },
    },
    Workload {
        id: "footprint",
        name: "disk footprint, 3 messages",
        groups: &[],
        kind: Kind::Footprint,
    },
];

impl Workload {
    /// Whether the open-after-SIGKILL workloads (`--no-open`, `--open-only`).
    pub fn is_open(&self) -> bool {
        matches!(self.kind, Kind::OpenAfterKill { .. })
    }

    /// Whether this workload has a row for engine `name`.
    pub fn applies(&self, name: &str) -> bool {
        match self.kind {
            Kind::Append { sync } => !sync || can_sync(name),
            Kind::Read { lending } => !lending || name == "spool",
            Kind::DurableSingle => can_sync(name),
            Kind::Consume { .. } => can_consume(name),
            Kind::OpenAfterKill { .. } | Kind::Footprint => true,
            // The raw loops are cheap references for the Never row; a
            // transaction per message would take minutes on the others.
            Kind::PublishLatency { interval } => {
                name == "spool" || (!interval && matches!(name, "raw write+crc" | "raw mmap+crc"))
            }
        }
    }

    /// Runs this workload once on engine `name` (which it applies to).
    pub fn run(&self, name: &'static str) -> std::io::Result<Row> {
        let w = self.name;
        Ok(match self.kind {
            Kind::Append { sync } => append(w, name, sync),
            Kind::Read { lending } => read(w, name, lending),
            Kind::DurableSingle => durable(w, name),
            Kind::Consume { every, sync, count } => consume(w, name, every, sync, count),
            Kind::OpenAfterKill { bytes } => open_after_kill(w, name, bytes)?,
            Kind::PublishLatency { interval } => publish_latency(w, name, interval),
            Kind::Footprint => footprint(w, name)?,
        })
    }
}

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

/// A histogram of nanoseconds from 1 ns to 10 minutes, 3 significant
/// digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, took: Duration) {
    h.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
}

fn fill(e: &mut dyn Engine, messages: usize, sync: bool) {
    let p = payload();
    let batch: Vec<&[u8]> = vec![&p; BATCH];
    for _ in 0..messages.div_ceil(BATCH) {
        e.append(&batch, sync);
    }
}

/// Appends 1M messages in batches of 1000.
fn append(workload: &'static str, name: &'static str, sync: bool) -> Row {
    let dir = tempdir();
    let mut e = open(name, dir.path(), sync);
    let p = payload();
    let batch: Vec<&[u8]> = vec![&p; BATCH];
    settle();
    let start = Instant::now();
    for _ in 0..MESSAGES / BATCH {
        e.append(&batch, sync);
    }
    Row::rate(workload, name, MESSAGES, start.elapsed())
}

/// Appends 1M messages without sync (untimed), then reads them all back.
fn read(workload: &'static str, name: &'static str, lending: bool) -> Row {
    let dir = tempdir();
    let mut e = open(name, dir.path(), false);
    fill(&mut *e, MESSAGES, false);
    settle();
    let start = Instant::now();
    let bytes = if lending {
        e.read_lending().expect("a lending scan")
    } else {
        e.read_all()
    };
    let took = start.elapsed();
    assert_eq!(bytes, MESSAGES * PAYLOAD, "{name} reads back everything");
    Row::rate(workload, name, MESSAGES, took)
}

/// Single-message appends, each durable before the next.
fn durable(workload: &'static str, name: &'static str) -> Row {
    let dir = tempdir();
    let mut e = open(name, dir.path(), true);
    let p = payload();
    let mut h = histogram();
    settle();
    let start = Instant::now();
    for _ in 0..DURABLE_SINGLES {
        let t = Instant::now();
        e.append(&[&p], true);
        record(&mut h, t.elapsed());
    }
    Row::latency(workload, name, Figure::P50, DURABLE_SINGLES, start.elapsed(), &h)
}

/// Reads messages and commits position + 64-byte state atomically every
/// `every` messages.
fn consume(workload: &'static str, name: &'static str, every: usize, sync: bool, count: usize) -> Row {
    let dir = tempdir();
    let mut e = open(name, dir.path(), sync);
    fill(&mut *e, count, false);
    settle();
    let start = Instant::now();
    let seen = e.consume(count, every, sync).expect("a consumer position");
    let took = start.elapsed();
    assert_eq!(seen, count, "{name} consumed everything asked");
    Row::rate(workload, name, count, took)
}

/// Child side of `open_after_kill` (`--fill`): appends without syncing
/// until `bytes` of payload are written.
pub fn fill_child(name: &str, dir: &Path, bytes: usize) {
    let mut e = open(name, dir, false);
    fill(&mut *e, bytes / (PAYLOAD * BATCH) * BATCH, false);
    // No destructor may run: the parent SIGKILLs this process next, and a
    // clean close would spare the engine its recovery.
    std::mem::forget(e);
}

/// Fills a store in a child process, SIGKILLs it, and times the open plus
/// a read of the last message.
fn open_after_kill(workload: &'static str, name: &'static str, bytes: usize) -> std::io::Result<Row> {
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
    // Reported, not asserted: an engine may legitimately keep nothing that
    // was never made durable.
    Ok(Row::time(workload, name, took.max(Duration::from_nanos(1)), last))
}

/// 10M single publishes of 100 B, each timed into a histogram: spool under
/// `Never` or `Interval(1 s)`, the raw loops (no sync) for reference. The
/// figure is the maximum: the longest stall a publisher saw.
fn publish_latency(workload: &'static str, name: &'static str, interval: bool) -> Row {
    let dir = tempdir();
    let mut e: Box<dyn Engine> = if name == "spool" {
        let policy = if interval {
            spool::SyncPolicy::Interval(Duration::from_secs(1))
        } else {
            spool::SyncPolicy::Never
        };
        Box::new(Spool::open_with(dir.path(), policy))
    } else {
        open(name, dir.path(), false)
    };
    let p = payload();
    let mut h = histogram();
    settle();
    let start = Instant::now();
    for _ in 0..PUBLISH_SINGLES {
        let t = Instant::now();
        e.publish_one(&p);
        record(&mut h, t.elapsed());
    }
    let took = start.elapsed();
    e.close();
    // About 1.3 GB for spool: gone before the next workload starts.
    drop(dir);
    Row::latency(workload, name, Figure::Max, PUBLISH_SINGLES, took, &h)
}

/// Opens a fresh store, publishes 3 messages of 100 B one by one, closes,
/// and sums the blocks allocated to every file under the directory
/// (`st_blocks * 512`: real allocation, so preallocated space counts and
/// sparse holes do not).
fn footprint(workload: &'static str, name: &'static str) -> std::io::Result<Row> {
    let dir = tempdir();
    let mut e = open(name, dir.path(), false);
    let p = payload();
    for _ in 0..FOOTPRINT_MESSAGES {
        e.publish_one(&p);
    }
    e.close();
    Ok(Row::bytes(workload, name, allocated(dir.path())?))
}

/// Bytes allocated to the files under `dir`, recursively.
fn allocated(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?; // does not follow symlinks
        if meta.is_dir() {
            total += allocated(&entry.path())?;
        } else if meta.is_file() {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}
