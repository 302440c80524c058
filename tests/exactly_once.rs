//! Runs `examples/exactly_once` as a child process, SIGKILLs it at random
//! moments (some during open and recovery) while its producer publishes,
//! restarts it, and checks after every kill that the committed sum is the
//! sum of exactly the messages up to the committed position.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{seed, Rng};
use spool::{Options, StartAt, Store};

const MESSAGES: &str = "4000";

fn example_binary() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/examples/exactly_once
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join("exactly_once");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "exactly_once"])
            .status()
            .unwrap();
        assert!(status.success(), "building the example failed");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

fn decode(b: &[u8]) -> u64 {
    b.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

/// Opens the store after a kill and checks the committed pair.
fn check(dir: &Path, context: &str) -> u64 {
    let store = Store::open(dir, Options::default()).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{context}: {:#?}", report.problems);
    let numbers = store.channel("numbers").unwrap();
    let summer = numbers.subscribe("summer", StartAt::First).unwrap();
    let (position, state) = summer.committed();
    assert!(position <= numbers.last_seq(), "{context}: position past the log");
    let sum: u64 = (1..=position).map(|s| decode(numbers.get(s).unwrap().payload())).sum();
    assert_eq!(
        decode(&state),
        sum,
        "{context}: committed sum is not the sum up to {position}"
    );
    position
}

#[test]
fn sigkill_loop_keeps_exactly_once() {
    let bin = example_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed());
    let kills = std::env::var("SPOOL_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(50);
    let mut progress = Vec::new();
    for kill in 0..kills {
        let mut child = Command::new(&bin)
            .arg(dir.path())
            .arg(MESSAGES)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Some kills land during open/recovery, most while it works.
        let delay = if kill % 5 == 0 { rng.below(5) } else { 5 + rng.below(60) };
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        progress.push(check(dir.path(), &format!("kill {kill} after {delay} ms")));
    }
    // Let it finish: the final sum must be the full one.
    let status = Command::new(&bin)
        .arg(dir.path())
        .arg(MESSAGES)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the example's own final check failed");
    let position = check(dir.path(), "final");
    assert_eq!(position, MESSAGES.parse::<u64>().unwrap());
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "committed positions never go back: {progress:?}"
    );
}
