//! A store written by spool's first format (catalog and subscribers log
//! version 1, kept in tests/fixtures/v1-store, written by the code before
//! the version 2 formats) opens with everything in it, is upgraded once,
//! and then reopens without another change.

use std::fs;
use std::path::Path;

use spool::{Options, StartAt, Store, SyncPolicy};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("LOCK") {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_version_1_store_opens_and_is_upgraded_once() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let opts = Options::default()
        .segment_size(4096)
        .index_interval(256)
        .sync_policy(SyncPolicy::Never);
    let id = {
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        let report = store.recovery_report();
        let upgraded: Vec<String> = report
            .upgraded
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(upgraded, ["catalog", "subscribers"], "{report:#?}");
        assert!(!report.lost_anything());
        assert_eq!(store.channel_names(), ["alpha", "beta"]);
        let alpha = store.open_channel("alpha").unwrap();
        assert_eq!((alpha.first_seq(), alpha.last_seq()), (1, 300));
        for m in alpha.read_from(1).unwrap() {
            let m = m.unwrap();
            assert_eq!(m.payload(), format!("alpha {}", m.seq()).as_bytes());
        }
        let beta = store.open_channel("beta").unwrap();
        assert_eq!(beta.last_seq(), 200);
        assert!(
            beta.first_seq() >= 151,
            "retention's first seq kept: {}",
            beta.first_seq()
        );
        assert_eq!(beta.stats().limits.max_msgs, Some(50), "limits kept");
        let reader = alpha.subscribe("reader", StartAt::New).unwrap();
        assert_eq!(reader.committed(), (120, std::sync::Arc::from(&b"state at 120"[..])));
        let group = beta.queue_subscribe("workers", StartAt::New).unwrap();
        assert!(group.ack_floor() >= 150, "ack floor kept: {}", group.ack_floor());
        assert!(
            store.verify().unwrap().is_ok(),
            "{:#?}",
            store.verify().unwrap().problems
        );
        // New writes work on the upgraded store.
        assert_eq!(alpha.publish(b"alpha 301").unwrap(), 301);
        reader.commit(301, b"state at 301").unwrap();
        let id = store.store_id();
        drop((reader, group));
        store.close().unwrap();
        id
    };
    let before = tree(dir.path());
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    assert!(store.recovery_report().upgraded.is_empty(), "upgraded once only");
    assert_eq!(store.store_id(), id, "the identity given at the upgrade stays");
    let alpha = store.open_channel("alpha").unwrap();
    assert_eq!(alpha.get(301).unwrap().payload(), b"alpha 301");
    let reader = alpha.subscribe("reader", StartAt::New).unwrap();
    assert_eq!(reader.committed().0, 301);
    drop(reader);
    drop(alpha);
    store.close().unwrap();
    let store = Store::open(dir.path(), opts).unwrap();
    drop(store);
    assert_eq!(before.len(), tree(dir.path()).len(), "reopening adds no file");
}
