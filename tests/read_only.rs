//! Read-only attach in one process: what it sees, that it writes nothing
//! (file bytes and times compared before and after), that every write is
//! refused, and how it follows appends, rolls, retention and deletes.
//! (tests/read_only_process.rs does the same against an owner in another
//! process.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use spool::{Error, Limits, Options, StartAt, Store, SyncPolicy};

/// Every file under `root`: its bytes and modification time.
fn image(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::metadata(&path).expect("metadata");
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.insert(path, (bytes, meta.modified().expect("mtime")));
            }
        }
    }
    out
}

/// A 100-byte payload.
fn big(i: u32) -> Vec<u8> {
    format!("{i:0100}").into_bytes()
}

fn small_segments() -> Options {
    Options::default().segment_size(64 << 10).sync_policy(SyncPolicy::Never)
}

#[test]
fn attach_writes_nothing_and_refuses_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    {
        let store = Store::open(&root, small_segments()).expect("open");
        let ch = store.channel("orders").expect("channel");
        // Several segments: sealed ones, and the last one.
        for i in 0..2000u32 {
            ch.publish(&big(i)).expect("publish");
        }
        let sub = ch.subscribe("billing", StartAt::First).expect("subscribe");
        sub.commit(10, b"state").expect("commit");
        let group = ch.queue_subscribe("workers", StartAt::First).expect("group");
        drop(group);
        drop(sub);
        // A crash leaves an unsealed tail and no clean mark: the strictest
        // case for "no repair".
        store.sync().expect("sync");
        ch.publish(b"unsynced").expect("publish");
        std::mem::forget(ch);
        std::mem::forget(store);
    }
    // A sealed segment without its index file: the reader rebuilds the
    // index in memory, and must not write the file.
    let chan = root.join("channels/1");
    let idx_files = || -> Vec<PathBuf> {
        std::fs::read_dir(&chan)
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .collect()
    };
    for idx in idx_files() {
        std::fs::remove_file(idx).expect("remove an index file");
    }
    let before = image(&root);
    std::thread::sleep(Duration::from_millis(20));
    {
        let ro = Store::open_read_only(&root).expect("attach");
        assert!(ro.is_read_only());
        let ch = ro.open_channel("orders").expect("open channel");
        assert_eq!(ch.last_seq(), 2001);
        let all: Vec<_> = ch
            .read_from(1)
            .expect("read")
            .collect::<Result<_, _>>()
            .expect("messages");
        assert_eq!(all.len(), 2001);
        for (i, m) in all.iter().take(2000).enumerate() {
            assert_eq!(m.payload(), big(i as u32));
        }
        assert_eq!(all[2000].payload(), b"unsynced");
        assert_eq!(ch.get(1500).expect("get").payload(), big(1499));
        assert!(ch.stats().segments >= 3, "{:?}", ch.stats());
        assert!(ch.seq_at_or_after(0).expect("time").is_some());
        let report = ro.verify().expect("verify");
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(ch.subscriber_names(), ["billing", "workers"]);
        assert_eq!(ch.subscribers().expect("subscribers")[0].position, 10);
        let copy = dir.path().join("copy");
        ro.backup_to(&copy).expect("backup through read-only attach");
        let copied = Store::open(&copy, small_segments()).expect("the copy opens");
        assert_eq!(copied.open_channel("orders").expect("orders").last_seq(), 2001);

        let ro_err = |r: Result<(), Error>| assert!(matches!(r, Err(Error::ReadOnly { .. })), "{r:?}");
        ro_err(ch.publish(b"x").map(|_| ()));
        ro_err(ch.publish_batch(&[b"x"]).map(|_| ()));
        ro_err(ch.sync());
        ro_err(ch.subscribe("billing", StartAt::First).map(|_| ()));
        ro_err(ch.subscribe("new", StartAt::First).map(|_| ()));
        ro_err(ch.queue_subscribe("workers", StartAt::First).map(|_| ()));
        ro_err(ch.remove_subscriber("billing"));
        ro_err(ro.channel("orders-2").map(|_| ()));
        ro_err(ro.set_channel_limits("orders", Limits::default().max_msgs(1)));
        ro_err(ro.delete_channel("orders"));
        ro_err(ro.sync());
        ro_err(ro.compact_now().map(|_| ()));
        // An existing channel by `channel` is fine: nothing to create.
        assert_eq!(ro.channel("orders").expect("existing").id(), ch.id());
        ro.close().expect("close");
    }
    assert!(idx_files().is_empty(), "an index file was written");
    assert_eq!(image(&root), before, "read-only attach changed a file");
}

#[test]
fn follows_appends_rolls_retention_and_deletes_of_an_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owner = Store::open(dir.path(), small_segments()).expect("open");
    let ch = owner
        .channel_with_limits("events", Limits::default().max_msgs(3000))
        .expect("channel");
    ch.publish(b"first").expect("publish");
    let ro = Store::open_read_only(dir.path()).expect("attach");
    let seen = ro.open_channel("events").expect("channel");
    let held = seen.get(1).expect("held message");
    let mut iter = seen.read_from(1).expect("iter");
    assert_eq!(iter.next().transpose().expect("next").map(|m| m.seq()), Some(1));
    assert!(iter.next().is_none());

    // Many rolls (64 KiB segments), then retention removes the first ones.
    let payload = [7u8; 500];
    for _ in 0..10_000 {
        ch.publish(&payload).expect("publish");
    }
    owner.compact_now().expect("compact");
    assert!(ch.first_seq() > 1);
    ro.refresh().expect("refresh");
    assert_eq!(seen.last_seq(), 10_001);
    assert_eq!(seen.first_seq(), ch.first_seq());
    assert_eq!(held.payload(), b"first", "a held message outlives retention");
    // The iterator below the first retained seq moves on and says so.
    let next = iter.next().transpose().expect("next").expect("a message");
    assert_eq!(next.seq(), ch.first_seq());
    assert_eq!(iter.skipped(), ch.first_seq() - 2);
    let rest = iter.by_ref().map(|m| m.expect("message").seq()).collect::<Vec<_>>();
    assert_eq!(rest.last(), Some(&10_001));
    assert!(matches!(seen.get(1), Err(Error::OutOfRange { .. })));

    // Without an explicit refresh, the poller finds new messages soon.
    ch.publish(b"late").expect("publish");
    let t = std::time::Instant::now();
    while seen.last_seq() < 10_002 {
        assert!(t.elapsed() < Duration::from_secs(5), "the poller never saw it");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        iter.next().transpose().expect("next").map(|m| m.payload().to_vec()),
        Some(b"late".to_vec())
    );

    // New channels appear; deleted ones are deleted for the reader too.
    owner.channel("other").expect("other").publish(b"o").expect("publish");
    let other = ro.open_channel("other").expect("other");
    // The follower may have found the channel before its first message.
    ro.refresh().expect("refresh");
    assert_eq!(other.last_seq(), 1);
    owner.delete_channel("events").expect("delete");
    ro.refresh().expect("refresh");
    assert!(matches!(seen.get(10_002), Err(Error::ChannelDeleted { .. })));
    assert!(matches!(ro.open_channel("events"), Err(Error::NoSuchChannel { .. })));
    assert_eq!(ro.channel_names(), ["other"]);
}

#[test]
fn open_never_surprises() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An empty path.
    assert!(matches!(
        Store::open("", Options::default()),
        Err(Error::InvalidOption { name: "path", .. })
    ));
    assert!(matches!(Store::open_read_only(""), Err(Error::InvalidOption { .. })));
    // A mistyped path: nothing created.
    let typo = dir.path().join("typo");
    for r in [
        Store::open(&typo, Options::default().create_if_missing(false)),
        Store::open_read_only(&typo),
    ] {
        match r {
            Err(Error::NotAStore { path, .. }) => assert_eq!(path, typo),
            other => panic!("{other:?}"),
        }
    }
    assert!(!typo.exists());
    // A directory of other files is never made a store.
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("cat.jpg"), b"meow").expect("write");
    let err = Store::open(&foreign, Options::default()).expect_err("not a store");
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("cat.jpg"), "{err}");
    assert_eq!(std::fs::read_dir(&foreign).expect("ls").count(), 1, "nothing written");
    // A file.
    assert!(matches!(
        Store::open_read_only(foreign.join("cat.jpg")),
        Err(Error::NotAStore { .. })
    ));
    // An empty directory: created by default, refused without create.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert!(matches!(
        Store::open(&empty, Options::default().create_if_missing(false)),
        Err(Error::NotAStore { .. })
    ));
    assert!(matches!(Store::open_read_only(&empty), Err(Error::NotAStore { .. })));
    Store::open(&empty, Options::default())
        .expect("create")
        .close()
        .expect("close");
    Store::open(&empty, Options::default().create_if_missing(false))
        .expect("existing store")
        .close()
        .expect("close");
}

#[test]
fn an_empty_newest_segment_is_not_a_roll() {
    // The owner names a new segment before it writes its first record: a
    // reader can find it empty (here: a crash between the two, made by
    // zeroing that record).
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, files) = {
        let store = Store::open(dir.path(), small_segments()).expect("open");
        let ch = store.channel("c").expect("channel");
        while ch.stats().segments < 2 {
            ch.publish(&[1u8; 300]).expect("publish");
        }
        let base = ch.last_seq();
        store.close().expect("close");
        let files = std::fs::read_dir(dir.path().join("channels/1"))
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
            })
            .count();
        (base, files)
    };
    let last = dir.path().join(format!("channels/1/{base:020}.seg"));
    let mut bytes = std::fs::read(&last).expect("read");
    bytes[128..128 + 24 + 304].fill(0);
    std::fs::write(&last, &bytes).expect("write");
    let ro = Store::open_read_only(dir.path()).expect("attach");
    let ch = ro.open_channel("c").expect("channel");
    for _ in 0..3 {
        ro.refresh().expect("refresh");
    }
    assert_eq!(ch.stats().segments, files, "one entry per file");
    assert_eq!(ch.last_seq(), base - 1);
    assert_eq!(ch.read_from(1).expect("read").count() as u64, base - 1);
    assert!(ro.verify().expect("verify").is_ok());
}
