//! Many publishers, readers alongside writers, group commit.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::small;
use spool::{Store, SyncPolicy};

fn tagged(thread: u64, i: u64) -> Vec<u8> {
    let mut v = thread.to_le_bytes().to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v.resize(16 + (i % 50) as usize, thread as u8);
    v
}

fn many_publishers(policy: SyncPolicy, threads: u64, per_thread: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(32 << 10).sync_policy(policy)).unwrap();
    let ch = store.channel("mt").unwrap();
    let barrier = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let ch = ch.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let mut seqs = Vec::new();
                for i in 0..per_thread {
                    if i % 10 == 0 {
                        let batch = [tagged(t, i), tagged(t, i + 1_000_000)];
                        let r = ch.publish_batch(&batch).unwrap();
                        assert_eq!(r.end() - r.start(), 1, "a batch is contiguous");
                        seqs.push((*r.start(), tagged(t, i)));
                        seqs.push((*r.end(), tagged(t, i + 1_000_000)));
                    } else {
                        seqs.push((ch.publish(&tagged(t, i)).unwrap(), tagged(t, i)));
                    }
                    if policy == SyncPolicy::Always {
                        assert!(ch.durable_seq() >= seqs.last().unwrap().0, "Always returns durable");
                    }
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let seqs = h.join().unwrap();
        assert!(seqs.windows(2).all(|w| w[0].0 < w[1].0), "one thread's seqs increase");
        all.extend(seqs);
    }
    let total = all.len() as u64;
    assert_eq!(ch.last_seq(), total);
    let unique: HashSet<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(unique.len() as u64, total, "no seq handed out twice");
    assert_eq!(unique, (1..=total).collect(), "no gaps");
    for (seq, payload) in &all {
        assert_eq!(ch.get(*seq).unwrap().payload(), payload.as_slice());
    }
    let mut last_ts = 0;
    for m in ch.read_from(1).unwrap() {
        let m = m.unwrap();
        assert!(m.timestamp() >= last_ts, "timestamps non-decreasing");
        last_ts = m.timestamp();
    }
}

#[test]
fn many_threads_publish_contiguously() {
    many_publishers(SyncPolicy::Never, 4, 2000);
}

#[test]
fn group_commit_many_threads() {
    many_publishers(SyncPolicy::Always, 4, 100);
}

#[test]
fn interval_flusher_makes_data_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        small(32 << 10).sync_policy(SyncPolicy::Interval(std::time::Duration::from_millis(5))),
    )
    .unwrap();
    let ch = store.channel("f").unwrap();
    ch.publish(b"x").unwrap();
    let start = std::time::Instant::now();
    while ch.durable_seq() < 1 {
        assert!(start.elapsed().as_secs() < 10, "flusher never synced");
        thread::sleep(std::time::Duration::from_millis(1));
    }
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "spool-flusher"), "{names:?}");
    drop(ch);
    store.close().unwrap();
}

#[test]
fn readers_alongside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(16 << 10)).unwrap();
    let ch = store.channel("rw").unwrap();
    const TOTAL: u64 = 20_000;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let ch = ch.clone();
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut it = ch.read_from(1).unwrap();
                let mut next = 1u64;
                let mut random_checks = 0;
                loop {
                    for m in it.by_ref() {
                        let m = m.unwrap();
                        assert_eq!(m.seq(), next);
                        assert_eq!(m.payload(), tagged(0, next).as_slice());
                        next += 1;
                    }
                    let last = ch.last_seq();
                    if last > 0 {
                        let s = 1 + (next * 7919 + r) % last;
                        assert_eq!(ch.get(s).unwrap().payload(), tagged(0, s).as_slice());
                        random_checks += 1;
                    }
                    if done.load(Ordering::Acquire) && next > ch.last_seq() {
                        break;
                    }
                    thread::yield_now();
                }
                assert_eq!(next, TOTAL + 1);
                assert!(random_checks > 0);
            })
        })
        .collect();
    for i in 1..=TOTAL {
        ch.publish(&tagged(0, i)).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn messages_outlive_channel_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small(16 << 10)).unwrap();
    let ch = store.channel("gone").unwrap();
    ch.publish(b"kept alive by the message").unwrap();
    let msg = ch.get(1).unwrap();
    store.delete_channel("gone").unwrap();
    assert_eq!(msg.payload(), b"kept alive by the message");
    assert!(matches!(ch.publish(b"x"), Err(spool::Error::ChannelDeleted { .. })));
}
