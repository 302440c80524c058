//! Reads of messages that are always retained never fail while retention
//! removes segments under them: a publisher, a compaction loop and readers
//! (random `get` and iterators) run for seconds on real files.
//! `SPOOL_RACE_SECS` sets the duration (default 10).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use spool::{Limits, Options, Store, SyncPolicy};

fn payload(seq: u64) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    v.resize(8 + (seq % 120) as usize, seq as u8);
    v
}

#[test]
fn retained_reads_never_fail_while_retention_trims() {
    let secs = std::env::var("SPOOL_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = Options::default()
        .segment_size(4096)
        .index_interval(256)
        .sync_policy(SyncPolicy::Never)
        .compact_interval(Duration::from_secs(3600));
    let store = Arc::new(Store::open(dir.path(), opts).expect("open"));
    let ch = store
        .channel_with_limits("c", Limits::default().max_msgs(2000))
        .expect("channel");
    for seq in 1..=3000 {
        ch.publish(&payload(seq)).expect("publish");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let passes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    {
        let (ch, stop) = (ch.clone(), Arc::clone(&stop));
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let seq = ch.last_seq() + 1;
                assert_eq!(ch.publish(&payload(seq)).expect("publish"), seq);
                n += 1;
            }
            n
        }));
    }
    {
        let (store, stop, passes) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&passes));
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.compact_now().expect("compaction pass");
                passes.fetch_add(1, Ordering::Relaxed);
            }
            passes.load(Ordering::Relaxed)
        }));
    }
    for reader in 0..2u64 {
        let (ch, stop, errors) = (ch.clone(), Arc::clone(&stop), Arc::clone(&errors));
        threads.push(thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let last = ch.last_seq();
                if reader == 0 {
                    let seq = last - 100;
                    match ch.get(seq) {
                        Ok(m) if m.seq() == seq && m.payload() == payload(seq).as_slice() => {}
                        other => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("get({seq}) with last {last}: {other:?}");
                        }
                    }
                    reads += 1;
                } else {
                    let from = last - 500;
                    let iter = match ch.read_from(from) {
                        Ok(it) => it,
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("read_from({from}): {e}");
                            continue;
                        }
                    };
                    for (i, m) in iter.take(300).enumerate() {
                        match m {
                            Ok(m) if m.seq() == from + i as u64 && m.payload() == payload(m.seq()).as_slice() => {}
                            other => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("iterator from {from}, item {i}: {other:?}");
                                break;
                            }
                        }
                        reads += 1;
                    }
                }
            }
            reads
        }));
    }
    // At least `secs`, and at least `MIN_PASSES` passes racing the readers
    // (a pass settles pending seals with fsyncs, slow on some disks), up to
    // a bound that fails the test below rather than hanging.
    const MIN_PASSES: u64 = 10;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs)
        || (passes.load(Ordering::Relaxed) < MIN_PASSES && start.elapsed() < Duration::from_secs(secs.max(5) * 12))
    {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
    eprintln!(
        "published {}, passes {}, reads {:?}",
        counts[0],
        counts[1],
        &counts[2..]
    );
    assert!(counts[1] >= MIN_PASSES, "compaction ran {} passes", counts[1]);
    assert!(ch.first_seq() > 1, "retention removed messages");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "reads of retained messages failed");
}
