//! Retention: each limit alone and combined, changed at runtime, by an
//! injected clock, during publishing and reading, across crashes.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{open_sim, read_all, small, Rng};
use spool::sim::SimStorage;
use spool::{Clock, Error, Limits, ManualClock, Options, StartAt, Store, SyncPolicy};

const SEG: u64 = 8192;

fn opts() -> Options {
    small(SEG).compact_interval(Duration::from_secs(3600))
}

fn frame(len: usize) -> u64 {
    ((24 + len + 7) & !7) as u64
}

fn segment_files(dir: &Path, id: u64) -> usize {
    common::channel_files(dir, id, "seg").len()
}

fn fill(ch: &spool::Channel, n: u64, len: usize) {
    for i in 0..n {
        ch.publish(&vec![(i % 251) as u8; len]).unwrap();
    }
}

#[test]
fn max_msgs_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel_with_limits("m", Limits::default().max_msgs(100)).unwrap();
    fill(&ch, 1000, 40);
    let files_before = segment_files(dir.path(), ch.id());
    let report = store.compact_now().unwrap();
    assert_eq!(report.channels_trimmed, 1);
    assert!(report.segments_deleted > 0);
    assert_eq!(ch.first_seq(), 901);
    assert_eq!(
        ch.read_from(1).unwrap().count(),
        100,
        "a reader never sees more than max_msgs"
    );
    assert!(matches!(
        ch.get(900),
        Err(Error::OutOfRange {
            requested: 900,
            first: 901,
            last: 1000
        })
    ));
    assert_eq!(ch.get(901).unwrap().seq(), 901);
    let files_after = segment_files(dir.path(), ch.id());
    assert!(files_after < files_before);
    // Disk use exceeds the limit by at most one segment (plus the active one).
    assert!(files_after as u64 <= (100 * frame(40)).div_ceil(SEG - 128) + 2);
    let stats = ch.stats();
    assert_eq!(
        (stats.messages, stats.first_seq, stats.limits.max_msgs),
        (100, 901, Some(100))
    );
    drop(ch);
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("m").unwrap();
    assert_eq!(ch.first_seq(), 901, "the first seq is durable");
    assert_eq!(
        ch.stats().own_limits.max_msgs,
        Some(100),
        "limits persist in the catalog"
    );
    assert_eq!(read_all(&store, "m").len(), 100);
}

#[test]
fn max_bytes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let keep = 50 * frame(100) + 10;
    let ch = store
        .channel_with_limits("b", Limits::default().max_bytes(keep))
        .unwrap();
    fill(&ch, 500, 100);
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 451, "exactly the 50 newest fit");
    assert_eq!(ch.read_from(1).unwrap().count(), 50);
}

#[test]
fn max_age_with_an_injected_clock() {
    let clock = ManualClock::new(1_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts().clock(Arc::new(clock.clone()))).unwrap();
    let ch = store
        .channel_with_limits("t", Limits::default().max_age(Duration::from_secs(60)))
        .unwrap();
    for minute in 0..10u64 {
        fill(&ch, 30, 50);
        assert_eq!(ch.get(minute * 30 + 1).unwrap().timestamp(), clock.now_ns());
        clock.advance(Duration::from_secs(60));
    }
    // Now = t0 + 10 min: messages of minute 9 are exactly 60 s old.
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 271);
    clock.advance(Duration::from_nanos(1));
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 301, "one nanosecond later everything expired");
    assert_eq!(ch.read_from(1).unwrap().count(), 0);
    // A clock that goes backwards brings nothing back.
    clock.set(0);
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 301);
    assert_eq!(ch.publish(b"after").unwrap(), 301);
}

#[test]
fn combined_limits_and_runtime_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts().limits(Limits::default().max_msgs(500))).unwrap();
    let ch = store.channel("c").unwrap();
    fill(&ch, 800, 60);
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 301, "store default");
    store
        .set_channel_limits("c", Limits::default().max_msgs(400).max_bytes(100 * frame(60)))
        .unwrap();
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 701, "the stricter of the two");
    store.set_channel_limits("c", Limits::default().max_msgs(50)).unwrap();
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 751);
    // Options::limits replaced every default, max_subscribers included.
    assert_eq!(ch.stats().limits, Limits::default().max_msgs(50));
}

#[test]
fn bad_limits_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        Limits::default().max_msgs(0),
        Limits::default().max_bytes(100),
        Limits::default().max_age(Duration::ZERO),
        Limits::default().max_subscribers(0),
        Limits::default().max_inactivity(Duration::ZERO),
    ];
    for limits in bad {
        assert!(matches!(
            Store::open(dir.path(), opts().limits(limits)),
            Err(Error::InvalidOption { .. })
        ));
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    for limits in bad {
        assert!(matches!(
            store.channel_with_limits("x", limits),
            Err(Error::InvalidOption { .. })
        ));
    }
    store.channel("x").unwrap();
    assert!(matches!(
        store.set_channel_limits("x", Limits::default().max_msgs(0)),
        Err(Error::InvalidOption { name: "max_msgs", .. })
    ));
    assert!(matches!(
        store.set_channel_limits("nope", Limits::default()),
        Err(Error::NoSuchChannel { .. })
    ));
}

#[test]
fn publishers_and_readers_keep_going_during_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), opts()).unwrap());
    let ch = store
        .channel_with_limits("live", Limits::default().max_msgs(300))
        .unwrap();
    fill(&ch, 10, 80);
    let held = ch.get(1).unwrap();
    let writer = {
        let ch = ch.clone();
        std::thread::spawn(move || fill(&ch, 5000, 80))
    };
    let reader = {
        let ch = ch.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            for _ in 0..200 {
                let mut prev = 0;
                for m in ch.read_from(1).unwrap() {
                    let m = m.unwrap();
                    assert!(m.seq() > prev);
                    assert!(m.seq() >= ch.first_seq().min(m.seq()));
                    prev = m.seq();
                    seen += 1;
                }
            }
            seen
        })
    };
    for _ in 0..50 {
        store.compact_now().unwrap();
    }
    writer.join().unwrap();
    assert!(reader.join().unwrap() > 0);
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 5010 - 300 + 1);
    assert_eq!(
        held.payload(),
        vec![0u8; 80].as_slice(),
        "a held message outlives its segment file"
    );
    assert!(!dir.path().join("channels/1/00000000000000000001.seg").exists());
}

#[test]
fn deleted_segment_file_coming_back_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let first_seg = dir.path().join("channels/1/00000000000000000001.seg");
    let copy = dir.path().join("saved.seg");
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        let ch = store.channel_with_limits("r", Limits::default().max_msgs(10)).unwrap();
        fill(&ch, 500, 60);
        fs::copy(&first_seg, &copy).unwrap();
        store.compact_now().unwrap();
        assert!(!first_seg.exists());
        store.close().unwrap();
    }
    fs::copy(&copy, &first_seg).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("r").unwrap();
    assert_eq!(ch.first_seq(), 491);
    assert!(!first_seg.exists(), "recovery removed it");
    assert_eq!(read_all(&store, "r").len(), 10);
    assert!(matches!(ch.get(1), Err(Error::OutOfRange { .. })));
}

#[test]
fn max_inactivity_deletes_and_recreation_is_new() {
    let clock = ManualClock::new(5_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts().clock(Arc::new(clock.clone()))).unwrap();
    let idle = Limits::default().max_inactivity(Duration::from_secs(10));
    let ch = store.channel_with_limits("idle", idle).unwrap();
    let busy = store.channel_with_limits("busy", idle).unwrap();
    ch.publish(b"x").unwrap();
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    sub.commit(1, b"st").unwrap();
    drop(sub);
    let old_id = ch.id();
    clock.advance(Duration::from_secs(9));
    busy.publish(b"keeps it alive").unwrap();
    assert!(store.compact_now().unwrap().channels_deleted.is_empty());
    clock.advance(Duration::from_secs(2));
    let report = store.compact_now().unwrap();
    assert_eq!(report.channels_deleted, vec!["idle".to_string()]);
    assert!(matches!(ch.publish(b"y"), Err(Error::ChannelDeleted { .. })));
    let again = store.channel("idle").unwrap();
    assert!(again.id() > old_id);
    assert_eq!((again.first_seq(), again.last_seq()), (1, 0));
    assert!(again.subscriber_names().is_empty());
    assert_eq!(store.channel_names(), vec!["busy".to_string(), "idle".to_string()]);
    // An open subscriber counts as activity.
    let held = busy.subscribe("watcher", StartAt::New).unwrap();
    clock.advance(Duration::from_secs(60));
    assert!(store
        .compact_now()
        .unwrap()
        .channels_deleted
        .iter()
        .all(|n| n != "busy"));
    drop(held);
}

#[test]
fn subscribers_below_the_first_seq_skip_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel_with_limits("s", Limits::default().max_msgs(50)).unwrap();
    fill(&ch, 10, 30);
    let sub = ch.subscribe("slow", StartAt::First).unwrap();
    for _ in 0..5 {
        let m = sub.recv().unwrap();
        sub.commit(m.seq(), b"").unwrap();
    }
    let group = ch.queue_subscribe("workers", StartAt::First).unwrap();
    let d = group.try_recv().unwrap().unwrap();
    group.ack(d.seq()).unwrap();
    fill(&ch, 190, 30);
    store.compact_now().unwrap();
    assert_eq!(ch.first_seq(), 151);
    let next = sub.recv().unwrap();
    assert_eq!(next.seq(), 151);
    assert_eq!(sub.missed(), 145, "6..=150 were removed before it saw them");
    let d = group.try_recv().unwrap().unwrap();
    assert_eq!(d.seq(), 151, "the queue group continues at the first retained message");
}

#[test]
fn subscribers_log_compaction_keeps_every_latest_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("c").unwrap();
    fill(&ch, 100, 10);
    let subs: Vec<_> = (0..5)
        .map(|i| ch.subscribe(&format!("s{i}"), StartAt::First).unwrap())
        .collect();
    for seq in 1..=100u64 {
        for (i, s) in subs.iter().enumerate() {
            s.commit(seq, format!("{i}:{seq}:{}", "x".repeat(200)).as_bytes())
                .unwrap();
        }
    }
    // 500 commits of ~260 bytes went through a log that is rewritten (one
    // record per subscriber) whenever it fills: it stays small.
    store.compact_now().unwrap();
    let len = fs::metadata(dir.path().join("subscribers")).unwrap().len();
    assert!(len <= 512 << 10, "the subscribers log is {len} bytes");
    drop(subs);
    drop(ch);
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("c").unwrap();
    for i in 0..5 {
        let s = ch.subscribe(&format!("s{i}"), StartAt::New).unwrap();
        let (pos, state) = s.committed();
        assert_eq!(pos, 100);
        assert_eq!(&*state, format!("{i}:100:{}", "x".repeat(200)).as_bytes());
    }
}

#[test]
fn crash_at_every_step_of_a_deletion_pass() {
    let mut rng = Rng(common::seed());
    let opts = small(4096)
        .compact_interval(Duration::from_secs(3600))
        .sync_policy(SyncPolicy::Never);
    for k in 0.. {
        let sim = SimStorage::new();
        let store = open_sim(&sim, opts.clone()).unwrap();
        let ch = store.channel_with_limits("d", Limits::default().max_msgs(40)).unwrap();
        for i in 0..300u64 {
            ch.publish(&i.to_le_bytes()).unwrap();
        }
        store.sync().unwrap();
        sim.fail_sync_after(Some(k));
        let pass = store.compact_now();
        for attempt in 0..4 {
            let after = sim.power_loss(rng.next());
            let recovered = open_sim(&after, opts.clone()).unwrap();
            common::assert_verified(&recovered, &format!("k={k}"));
            let ch = recovered.channel("d").unwrap();
            let first = ch.first_seq();
            assert!(first == 1 || first == 261, "k={k} attempt={attempt}: first {first}");
            let got = read_all(&recovered, "d");
            assert_eq!(
                got.len() as u64,
                300 - first + 1,
                "k={k}: nothing above the first seq is lost"
            );
            for (seq, p) in got {
                assert_eq!(p, (seq - 1).to_le_bytes().to_vec());
            }
            assert!(matches!(
                ch.get(first.saturating_sub(1).max(1)),
                Ok(_) | Err(Error::OutOfRange { .. })
            ));
            if first > 1 {
                assert!(matches!(ch.get(first - 1), Err(Error::OutOfRange { .. })));
            }
        }
        drop(ch);
        drop(store);
        if pass.is_ok() {
            assert!(k > 0, "the pass syncs at least once");
            break;
        }
    }
}
