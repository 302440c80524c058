//! Review 12: hostile tests against the "no silent loss" contract (see the
//! issue: strict open serves exactly what was durable or fails with
//! `Corrupt`; repair opens, keeps every intact record and reports exactly
//! what was lost; the catalog refuses what cannot be). Each test is one
//! finding and FAILS on the engine as reviewed; its comment says what it
//! shows and which clause it breaks.

mod common;
#[path = "common/damage.rs"]
mod damage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use spool::sim::SimStorage;
use spool::{Error, Options, RecoveryMode, StartAt, Store, SyncPolicy};

const ROOT: &str = "/store";

fn opts(sim: &SimStorage) -> Options {
    Options::default()
        .segment_size(64 << 10)
        .index_interval(256)
        .max_payload(1024)
        .sync_policy(SyncPolicy::Never)
        .compact_interval(Duration::from_secs(3600))
        .simulated(sim)
}

fn repair(sim: &SimStorage) -> Options {
    opts(sim).recovery_mode(RecoveryMode::Repair)
}

fn p(root: &str, rel: &str) -> PathBuf {
    Path::new(root).join(rel)
}

fn payload(seq: u64) -> Vec<u8> {
    common::payload(7, seq)
}

fn publish(store: &Store, name: &str, n: u64) {
    let ch = store.channel(name).unwrap();
    for _ in 0..n {
        let seq = ch.last_seq() + 1;
        assert_eq!(ch.publish(&payload(seq)).unwrap(), seq);
    }
}

fn describe(r: &spool::Result<Store>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!("Err({e})"),
    }
}

// ----------------------------------------------------------------- finding 1

/// A catalog rolled back to an older valid copy (here: the one written
/// before channel `b` was created, e.g. a lost rename of `catalog.tmp` on a
/// file system that reorders, or an operator restoring a file) makes strict
/// open delete `b`'s directory as an "orphan" and succeed without `b`: 80
/// durable messages and a durable subscriber commit on `b` are gone, with no
/// error and nothing in the recovery report. Yet the directory `channels/2`
/// has an id at or above the catalog's next id (2), which cannot be (ids are
/// handed out by the catalog before the directory exists), and the
/// subscribers log holds a durable commit naming channel 2. Breaks: strict
/// never opens with "a channel gone"; "the catalog rejects what cannot be
/// (ids at or above the high-water mark)".
#[test]
fn f1_rolled_back_catalog_silently_deletes_a_newer_channel() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "a", 10);
    store.close().unwrap();
    let old_catalog = sim.read(p(ROOT, "catalog")).unwrap();

    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "b", 80);
    let b = store.channel("b").unwrap();
    assert_eq!(b.id(), 2);
    let s = b.subscribe("reader", StartAt::First).unwrap();
    s.commit(60, b"sixty").unwrap();
    store.close().unwrap();

    sim.overwrite(p(ROOT, "catalog"), &old_catalog).unwrap();
    let opened = Store::open(ROOT, opts(&sim));
    match opened {
        Err(Error::Corrupt { .. }) => {}
        Ok(store) => {
            let names = store.channel_names();
            let b_dir_left = sim.list_all().iter().any(|x| x.starts_with(p(ROOT, "channels/2")));
            panic!(
                "strict open of a rolled-back catalog succeeded with channels {names:?} (b's 80 durable \
                 messages and its subscriber commit gone; channels/2 still on disk: {b_dir_left}); report: {:?}",
                store.recovery_report()
            );
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
    }
}

// ----------------------------------------------------------------- finding 2

/// Repair falling back to a `catalog.bak` that is one change behind (a
/// crash between the two renames of `Catalog::save` leaves it so, and
/// nothing but a repair rewrites it) deletes the directory of the channel
/// created by that change: `channels/2` with 80 intact records is removed
/// as an orphan (not set aside as `*.damaged`), and the report names no lost
/// range for `b`, only "catalog restored". Breaks: repair "keeps every
/// intact record", "never writes over a record that validates" (it deletes
/// them) and "reports exactly what was lost (message ranges per channel)".
#[test]
fn f2_repair_from_older_backup_deletes_intact_channel_unreported() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "a", 10);
    store.close().unwrap();
    let old_backup = sim.read(p(ROOT, "catalog.bak")).unwrap();

    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "b", 80);
    store.close().unwrap();

    // The backup one change behind, the catalog damaged.
    sim.overwrite(p(ROOT, "catalog.bak"), &old_backup).unwrap();
    let mut cat = sim.read(p(ROOT, "catalog")).unwrap();
    cat[20] ^= 0x40;
    sim.overwrite(p(ROOT, "catalog"), &cat).unwrap();

    let store = Store::open(ROOT, repair(&sim)).expect("repair opens");
    let r = store.recovery_report();
    let b_reported = r.channels.iter().any(|c| c.name == "b" && !c.lost.is_empty());
    let b_files: Vec<PathBuf> = sim
        .list_all()
        .into_iter()
        .filter(|x| x.starts_with(p(ROOT, "channels/2")))
        .collect();
    assert!(
        store.channel_names().contains(&"b".to_string()) || (b_reported && !b_files.is_empty()),
        "repair dropped channel b (80 intact records) without a lost range and left {b_files:?} of its files; \
         report: catalog_restored={:?}, channels={:?}",
        r.catalog_restored,
        r.channels.iter().map(|c| (&c.name, &c.lost)).collect::<Vec<_>>()
    );
}

// ----------------------------------------------------------------- finding 3

/// Durability order broken by the subscribers-log rewrite. Under
/// `SyncPolicy::Never`/`Interval` a commit is only appended; the rewrite
/// that an append which does not fit triggers (`Subscriptions::append` ->
/// `rewrite` -> `write_generation`) writes the in-memory state, including
/// that unsynced commit, into a new generation that is synced and marked
/// clean *without syncing the channels first*. After a plain power loss (no
/// damage at all) the commit at 150 is durable while its channel lost its
/// unsynced messages 101..=200: the commit is taken as a witness that seq
/// 150 was durable and strict open fails with `Corrupt` on an undamaged
/// store; repair would report never-durable seqs as lost and put holes
/// there. Breaks docs/format.md "Durability order" ("every durable commit is
/// a witness"), and the contract: strict returns what was durable (it
/// refuses a store that only lost what was never durable).
#[test]
fn f3_sublog_rewrite_makes_a_commit_durable_before_its_channel() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "c", 100);
    store.sync().unwrap();
    publish(&store, "c", 100); // 101..=200, never synced
    let ch = store.channel("c").unwrap();
    let s = ch.subscribe("s", StartAt::First).unwrap();
    s.commit(150, b"x").unwrap(); // appended, not durable
                                  // A second subscriber's commit with a large state does not fit the
                                  // 64 KiB log: the log is rewritten at once, with s@150 in it.
    let big = ch.subscribe("big", StartAt::First).unwrap();
    big.commit(1, &vec![9u8; 70 << 10]).unwrap();
    // Power loss: no unsynced page of the channel survives.
    let after = sim.power_loss_choosing(0, 0);
    drop((s, big, ch));
    std::mem::forget(store);

    let opened = Store::open(ROOT, opts(&after));
    match &opened {
        Ok(store) => {
            let ch = store.open_channel("c").unwrap();
            let s = ch.subscribe("s", StartAt::First).unwrap();
            assert!(
                s.committed().0 <= ch.last_seq(),
                "subscriber at {} past the channel's end {}",
                s.committed().0,
                ch.last_seq()
            );
        }
        Err(_) => panic!(
            "strict open after a plain power loss (no damage) failed: {} -- the rewritten subscribers log made \
             the commit at 150 durable before its channel was",
            describe(&opened)
        ),
    }
}

// ----------------------------------------------------------------- finding 4

fn last_segment(sim: &SimStorage, root: &str, id: u64) -> PathBuf {
    let dir = p(root, &format!("channels/{id}"));
    sim.list_all()
        .into_iter()
        .filter(|x| x.parent() == Some(dir.as_path()) && x.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment")
}

/// The boot id of the machine `sim` simulates, as `LOCK` spells it: the
/// line a store opened (and closed) in another directory writes.
fn boot_line(sim: &SimStorage) -> String {
    let probe = Store::open("/probe", opts(sim)).unwrap();
    probe.close().unwrap();
    let lock = String::from_utf8(sim.read("/probe/LOCK").unwrap()).unwrap();
    lock.lines().find(|l| l.starts_with("boot=")).unwrap().to_string()
}

/// The `LOCK` boot line is trusted without any check: when it names the
/// current boot although the disk image is what a power loss leaves (a
/// forged/damaged LOCK, or a file-system snapshot of the running store
/// rolled back on the same boot: the LOCK then legitimately says "this
/// boot"), a torn tail is zeroed only `crash_span` (1 MiB) past the cut.
/// Unsynced records that survived further on stay. The writer then reuses
/// those seqs; once its records reach the stale ones (same layout: equal
/// sizes), a process crash and reopen scans straight through them: the
/// channel serves 47 records (old payloads) that were cut at the previous
/// open and never written again. Breaks: "returns exactly what was durable
/// plus, after a process crash, what was written"; README "the bytes after
/// the cut zeroed so they can never validate later".
#[test]
fn f4_boot_line_naming_this_boot_after_power_loss_resurrects_a_cut_tail() {
    // Control: the same power loss with the LOCK as it was left.
    let (last, written, _) = cut_then_crash(false);
    assert_eq!(last, written);
    let (last, written, stale) = cut_then_crash(true);
    assert_eq!(
        last, written,
        "after a process crash the channel should hold exactly what was written (to {written}); it serves to \
         {last}, {stale} of them stale records the previous open had cut"
    );
}

/// See f4: returns (last seq served, last seq written, stale records served).
fn cut_then_crash(forge: bool) -> (u64, u64, usize) {
    const FRAME: usize = 16 << 10;
    const PAYLOAD: usize = FRAME - 24;
    let o = |sim: &SimStorage| opts(sim).segment_size(2 << 20).max_payload(PAYLOAD as u32);
    let body = |tag: u8, seq: u64| -> Vec<u8> {
        let mut v = vec![tag; PAYLOAD];
        v[..8].copy_from_slice(&seq.to_le_bytes());
        v
    };
    let sim = SimStorage::new();
    let store = Store::open(ROOT, o(&sim)).unwrap();
    let ch = store.channel("c").unwrap();
    // Fill the smaller first segments, then 8 records of the first
    // full-size (2 MiB) one.
    let seg_len = |sim: &SimStorage| sim.read(last_segment(sim, ROOT, 1)).unwrap().len();
    let mut reached = false;
    for _ in 0..1000 {
        ch.publish(&body(1, ch.last_seq() + 1)).unwrap();
        if seg_len(&sim) == 2 << 20 {
            reached = true;
            break;
        }
    }
    assert!(reached, "no 2 MiB segment after 1000 records of 16 KiB");
    let base = ch.last_seq();
    for _ in 0..7 {
        ch.publish(&body(1, ch.last_seq() + 1)).unwrap();
    }
    store.sync().unwrap(); // base..=base+7 durable
    for _ in 8..127 {
        ch.publish(&body(1, ch.last_seq() + 1)).unwrap(); // up to base+126, unsynced
    }
    let seg = last_segment(&sim, ROOT, 1);
    let live = sim.read(&seg).unwrap();
    assert_eq!(live.len(), 2 << 20);

    // A power loss: the pages of records 8..72 never reached the disk,
    // those of records 72..127 did (each page independently old or new).
    let after = sim.power_loss(1);
    std::mem::forget(store);
    let mut image = live.clone();
    let rec = |i: usize| 128 + i * FRAME;
    image[rec(8)..rec(72)].fill(0);
    after.overwrite(&seg, &image).unwrap();
    // LOCK names the current boot (forged, or a snapshot rolled back).
    if forge {
        let line = boot_line(&after);
        after
            .overwrite(p(ROOT, "LOCK"), format!("1\n{line}\n").as_bytes())
            .unwrap();
    }

    let store = Store::open(ROOT, o(&after)).expect("strict open after the power loss");
    let ch = store.open_channel("c").unwrap();
    assert_eq!(ch.last_seq(), base + 7, "cut after the durable records");
    // The application publishes new messages in the seqs the cut freed.
    for _ in 8..80 {
        ch.publish(&body(2, ch.last_seq() + 1)).unwrap();
    }
    let written = ch.last_seq();
    assert_eq!(written, base + 79);
    let again = after.process_crash();
    drop(ch);
    std::mem::forget(store);

    let store = Store::open(ROOT, o(&again)).expect("open after the process crash");
    let ch = store.open_channel("c").unwrap();
    let last = ch.last_seq();
    let stale = (written + 1..=last)
        .filter(|s| ch.get(*s).is_ok_and(|m| m.payload()[8] == 1))
        .count();
    (last, written, stale)
}

// ----------------------------------------------------------------- finding 5

/// Retention deletes the catalog's newest segment. When recovery leaves a
/// channel whose last segment is sealed (`Last::Sealed`: a power loss
/// after the seal of A dropped the not-yet-synced creation of the next
/// segment B), and `max_age` then expires every message, retention counts
/// A as removable (sealed, `next_seq <= first_seq`) and unlinks it, though
/// the catalog still records A as the channel's newest segment. A clean
/// close and reopen of that undamaged store then fails with `Corrupt`
/// ("this segment file is missing, but the catalog records it"). Breaks: a
/// store with no damage must open strictly (strict refuses only damage);
/// here retention itself produced the state format.md calls corruption.
#[test]
fn f5_retention_deletes_the_segment_the_catalog_records_as_newest() {
    let (after, store, o) = retention_took_the_newest_segment();
    store.close().unwrap();
    let reopened = Store::open(ROOT, o(&after));
    assert!(
        reopened.is_ok(),
        "a cleanly closed, undamaged store does not open after retention: {}",
        describe(&reopened)
    );
}

/// `Store::verify` does not check the catalog's "what must exist" against
/// the files: in the state of finding 5 (the catalog records segment 1 as
/// the channel's newest, the file is gone) verify reports nothing, while
/// the next open refuses the store as `Corrupt`. Breaks: "`Store::verify()`
/// reports the same conditions on a live store" (a verify that passes is
/// followed by an open that refuses).
#[test]
fn f12_verify_misses_a_missing_newest_segment() {
    let (after, store, o) = retention_took_the_newest_segment();
    let report = store.verify().unwrap();
    let clean = report.is_ok();
    let problems = format!("{:?}", report.problems);
    store.close().unwrap();
    let reopened = Store::open(ROOT, o(&after));
    assert!(
        !clean || reopened.is_ok(),
        "verify found no problem ({problems}) but the next open refuses: {}",
        describe(&reopened)
    );
}

/// The state of f5/f12: a store (on the returned storage) whose only
/// segment, the catalog's newest, retention has just unlinked.
fn retention_took_the_newest_segment() -> (SimStorage, Store, impl Fn(&SimStorage) -> Options) {
    let clock = std::sync::Arc::new(spool::ManualClock::new(1_000_000_000));
    let c2 = clock.clone();
    // Not `Never`: under `Never` a rolled segment waits for the next sync
    // to be sealed; under `Interval` it is sealed right after the roll.
    let o = move |sim: &SimStorage| {
        opts(sim)
            .clock(c2.clone())
            .sync_policy(SyncPolicy::Interval(Duration::from_secs(3600)))
            .limits(spool::Limits::default().max_age(Duration::from_secs(1)))
    };
    let sim = SimStorage::new();
    let store = Store::open(ROOT, o(&sim)).unwrap();
    let ch = store.channel("c").unwrap();
    ch.publish(&payload(1)).unwrap();
    store.sync().unwrap(); // A confirmed
                           // Fill A until the writer rolls into B (A is sealed at once: the
                           // simulated storage runs the background seal in the writer's thread).
    let a = last_segment(&sim, ROOT, 1);
    while last_segment(&sim, ROOT, 1) == a {
        ch.publish(&payload(ch.last_seq() + 1)).unwrap();
    }
    let last_in_a = ch.last_seq() - 1;
    // Power loss: no unsynced page, no unsynced directory change (B's
    // creation) survives.
    let after = sim.power_loss_choosing(0, 0);
    drop(ch);
    std::mem::forget(store);

    let store = Store::open(ROOT, o(&after)).expect("strict open after the power loss");
    let ch = store.open_channel("c").unwrap();
    assert_eq!(ch.last_seq(), last_in_a, "A holds what was durable");
    clock.set(100_000_000_000);
    store.compact_now().unwrap();
    assert!(!after.list_all().contains(&a), "retention unlinked A");
    drop(ch);
    (after, store, o)
}

// ----------------------------------------------------------------- finding 6

/// Seqs of channel `name` whose read returns `Error::Lost`.
fn lost_reads(store: &Store, name: &str) -> Vec<u64> {
    let ch = store.open_channel(name).unwrap();
    (ch.first_seq()..=ch.last_seq())
        .filter(|s| matches!(ch.get(*s), Err(Error::Lost { .. })))
        .collect()
}

fn reported_lost(store: &Store, name: &str) -> Vec<(u64, u64)> {
    store
        .recovery_report()
        .channels
        .iter()
        .filter(|c| c.name == name)
        .flat_map(|c| c.lost.iter().map(|l| (l.first, l.last)))
        .collect()
}

/// A repair cut short by a crash loses its report for good: the hole
/// frames it wrote before the crash are valid frames, so the next repair
/// finds nothing to report and a strict open succeeds, and the damaged
/// records read as `Error::Lost` with no open ever having said so. Here a
/// record of a cleanly closed store is damaged (strict refuses); the first
/// repair dies at its n-th storage operation (`crash_after_ops`), the
/// process image survives; then strict and repair open it. Breaks: repair
/// "reports exactly what was lost" (run again after a crash it reports
/// nothing), and strict never "opens successfully with less".
#[test]
fn f6_crash_during_repair_loses_the_loss_report() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "c", 200);
    store.close().unwrap();
    let seg = last_segment(&sim, ROOT, 1);
    let mut bytes = sim.read(&seg).unwrap();
    bytes[2000] ^= 0x10; // inside a record below the durable end
    sim.overwrite(&seg, &bytes).unwrap();
    // Without its index file the open scans the segment and sees it.
    sim.remove(seg.with_extension("idx")).unwrap();
    assert!(matches!(
        Store::open(ROOT, opts(&sim.process_crash())),
        Err(Error::Corrupt { .. })
    ));

    let mut findings = Vec::new();
    for n in 0..400 {
        let img = sim.process_crash();
        img.crash_after_ops(Some(n));
        if let Ok(s) = Store::open(ROOT, repair(&img)) {
            // The first n that lets repair finish: the sweep is done.
            assert!(!reported_lost(&s, "c").is_empty());
            std::mem::forget(s);
            break;
        }
        let crashed = img.process_crash();
        if let Ok(strict) = Store::open(ROOT, opts(&crashed.process_crash())) {
            let lost = lost_reads(&strict, "c");
            if !lost.is_empty() {
                findings.push(format!(
                    "crash at op {n}: strict opens, seqs {:?}..={:?} read Lost, report {:?}",
                    lost.first(),
                    lost.last(),
                    reported_lost(&strict, "c")
                ));
            }
            std::mem::forget(strict);
        }
        let again = Store::open(ROOT, repair(&crashed)).expect("second repair opens");
        let lost = lost_reads(&again, "c");
        let said = reported_lost(&again, "c");
        if lost.iter().any(|s| !said.iter().any(|(a, b)| a <= s && s <= b)) {
            findings.push(format!(
                "crash at op {n}: second repair reports {said:?}, reads Lost {lost:?}"
            ));
        }
        std::mem::forget(again);
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

// ----------------------------------------------------------------- finding 7

/// The open-time twin of finding 3. After a process crash a commit past
/// the subscribers log's durable watermark (late@150) and the channel
/// records it points at (101..=200) are only in the page cache. A repair
/// that rewrites the log (here because another, durable record is damaged)
/// writes late@150 into a new generation, synced and marked clean, while
/// the open leaves the channel's tail unsynced ("what the crash left past
/// the durable end is not made durable by the open"). A power loss right
/// after that open (the disk then holds the channel as it was durable, up
/// to 100) and the undamaged result is refused by strict open: the commit
/// is taken as a witness that 150 was durable. Breaks "Durability order"
/// and "repair then strict reopen must be clean".
#[test]
fn f7_open_time_log_rewrite_makes_a_never_durable_commit_durable() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "c", 100);
    let ch = store.channel("c").unwrap();
    let early = ch.subscribe("early", StartAt::First).unwrap();
    early.commit(50, b"e").unwrap();
    store.sync().unwrap();
    publish(&store, "c", 100); // 101..=200, not synced
    let late = ch.subscribe("late", StartAt::First).unwrap();
    late.commit(150, b"l").unwrap(); // not synced
                                     // What the disk holds of the channel (the rest is in the page cache).
    let seg = last_segment(&sim, ROOT, 1);
    let on_disk = sim.power_loss_choosing(0, 0).read(&seg).unwrap();
    let img = sim.process_crash();
    drop((early, late, ch));
    std::mem::forget(store);

    // Damage early's durable commit record so that repair rewrites the log.
    let log = p(ROOT, "subscribers");
    let mut bytes = img.read(&log).unwrap();
    let early_at = damage::sublog_records(&bytes)
        .into_iter()
        .find(|(_, r)| matches!(r, damage::SubRecord::Commit { entries, .. } if entries[0].name == "early" && entries[0].position == 50))
        .map(|(f, _)| f.offset)
        .unwrap();
    bytes[early_at + 30] ^= 0x01;
    img.overwrite(&log, &bytes).unwrap();
    let seg_before = img.read(&seg).unwrap();
    let repaired = Store::open(ROOT, repair(&img)).expect("repair opens");
    // Power loss right after the repair: what it synced is there; the
    // channel's tail, never written back, is not.
    let after = img.power_loss_choosing(0, 0);
    std::mem::forget(repaired);
    // The repair wrote nothing to the segment: its durable content is what
    // the disk held before the crash.
    assert_eq!(after.read(&seg).unwrap(), seg_before);
    after.overwrite(&seg, &on_disk).unwrap();

    let opened = Store::open(ROOT, opts(&after));
    assert!(
        opened.is_ok(),
        "strict open after repair + power loss (no new damage) failed: {}",
        describe(&opened)
    );
}

// ----------------------------------------------------------------- finding 8

/// After a process crash (same boot) that came between a roll and the
/// background seal, the tail chain is A (unsealed, the catalog's newest)
/// followed by B (written, unconfirmed). Damage to A's last record (past
/// its durable slot) makes `recover_link` treat it as a torn tail
/// ("records end before the next segment starts": `Link::Torn`), cut A
/// there and *delete B*, and strict open succeeds with 49 fewer messages
/// (only a "torn tail" in the report). On the same boot the page cache
/// holds all the process wrote and at most the frame being written is torn
/// *with nothing after it*; B's records after the bad frame prove damage
/// (the rule `look_past` applies inside one segment, but not across the
/// chain). Breaks: after a process crash strict returns what was written
/// or fails with `Corrupt`; here written records (and a whole file) are
/// cut without an error.
#[test]
fn f8_damage_in_an_unsealed_rolled_segment_deletes_the_next_one_on_the_same_boot() {
    let (img, segs) = unsealed_chain_with_damaged_last_record();
    match Store::open(ROOT, opts(&img)) {
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(store) => {
            let ch = store.open_channel("c").unwrap();
            panic!(
                "strict open after a process crash and damage to one record serves {} of the 120 messages \
                 written; B deleted: {}; report: {:?}",
                ch.last_seq(),
                !img.list_all().contains(segs.iter().max().unwrap()),
                store.recovery_report().channels[0]
            );
        }
    }
}

/// Finding 8 with `RecoveryMode::Repair`: the same store, repaired. Repair
/// must keep every record that validates; it deletes B (48 intact records,
/// never even set aside) and reports them as a torn tail, not as lost.
/// Breaks: repair "keeps every intact record, never writes over a record
/// that validates, reports exactly what was lost".
#[test]
fn f9_repair_deletes_intact_records_after_damage_in_an_unsealed_rolled_segment() {
    let (img, segs) = unsealed_chain_with_damaged_last_record();
    let store = Store::open(ROOT, repair(&img)).expect("repair opens");
    let ch = store.open_channel("c").unwrap();
    let b = segs.iter().max().unwrap();
    let lost = reported_lost(&store, "c");
    assert!(
        ch.last_seq() == 120 && img.list_all().contains(b),
        "repair serves to {} (of 120), B {} ({}), lost ranges reported: {lost:?}",
        ch.last_seq(),
        b.display(),
        if img.list_all().contains(b) { "kept" } else { "deleted" },
    );
}

/// The image of f8/f9: A (1..=72, unsealed, its last record damaged past
/// its durable slot) followed by B (73..=120), after a process crash
/// between the roll and A's seal.
fn unsealed_chain_with_damaged_last_record() -> (SimStorage, Vec<PathBuf>) {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    let ch = store.channel("c").unwrap();
    for s in 1..=10 {
        ch.publish(&payload(s)).unwrap();
    }
    store.sync().unwrap();
    let batch: Vec<Vec<u8>> = (0..110).map(|_| vec![5u8; 1000]).collect();
    // Find the crash point between the roll (inside the batch) and the
    // seal of A that the roll triggers.
    let mut found = None;
    for k in 0..40 {
        let img = sim.process_crash();
        let s2 = Store::open(ROOT, opts(&img)).unwrap();
        img.crash_after_ops(Some(k));
        let _ = s2.channel("c").unwrap().publish_batch(&batch);
        let crashed = img.process_crash();
        std::mem::forget(s2);
        let segs: Vec<PathBuf> = crashed
            .list_all()
            .into_iter()
            .filter(|x| x.starts_with(p(ROOT, "channels/1")) && x.extension().is_some_and(|e| e == "seg"))
            .collect();
        if segs.len() != 2 {
            continue;
        }
        // A was not sealed, and undamaged the store opens whole.
        let a = segs.iter().min().unwrap();
        let header = crashed.read(a).unwrap();
        let sealed = [64usize, 96].iter().any(|&o| header[o + 24] & 1 == 1);
        let probe = crashed.process_crash();
        let s3 = Store::open(ROOT, opts(&probe)).unwrap();
        let whole = s3.open_channel("c").unwrap().last_seq();
        std::mem::forget(s3);
        if !sealed && whole == 120 {
            found = Some((crashed, segs));
            break;
        }
    }
    std::mem::forget(store);
    let (img, segs) = found.expect("a crash point between roll and seal");
    let a = segs.iter().min().unwrap().clone();
    let mut bytes = img.read(&a).unwrap();
    let frames = damage::walk_frames(&bytes, damage::HEADER_LEN, 1);
    let last = *frames.last().unwrap();
    assert_eq!(last.seq, 72);
    bytes[last.offset + 40] ^= 0x01; // a payload byte of A's last record
    img.overwrite(&a, &bytes).unwrap();
    (img, segs)
}

// ---------------------------------------------------------------- finding 10

/// Repair does not make its decision durable when the *first* segment is
/// gone (deleted, emptied, or too short and set aside): it reports 1..=N
/// lost and serves from N+1, but writes no hole and leaves the catalog's
/// first retained seq at 1. After a clean close, the strict reopen refuses
/// ("first segment starts at N+1 but the catalog retains from 1"), and
/// every further repair reports the same loss again. Breaks: "repair then
/// strict reopen must be clean" (and repair run twice reports a loss that
/// the first one already accounted for).
#[test]
fn f10_repair_of_a_missing_first_segment_is_not_durable() {
    let sim = SimStorage::new();
    let o = |sim: &SimStorage| opts(sim).segment_size(4096);
    let store = Store::open(ROOT, o(&sim)).unwrap();
    publish(&store, "c", 120);
    store.close().unwrap();
    sim.remove(p(ROOT, "channels/1/00000000000000000001.seg")).unwrap();

    let repaired = Store::open(ROOT, o(&sim).recovery_mode(RecoveryMode::Repair)).expect("repair opens");
    let lost = reported_lost(&repaired, "c");
    assert_eq!(
        lost.first().map(|l| l.0),
        Some(1),
        "repair reports the first segment's seqs lost"
    );
    let first = repaired.open_channel("c").unwrap().first_seq();
    repaired.close().unwrap();

    let reopened = Store::open(ROOT, o(&sim));
    assert!(
        reopened.is_ok(),
        "strict reopen after a repair (that reported {lost:?} lost and served from {first}) and a clean close: {}",
        describe(&reopened)
    );
}

// ---------------------------------------------------------------- finding 11

/// Repair silently drops the whole newest segment of a store whose
/// process was killed. Under `SyncPolicy::Always` every publish is durable
/// when it returns; the catalog records the newest segment (confirmed)
/// but, the store never having closed, its durable seq only says "up to
/// the segment's base - 1". Delete (or empty, or zero) that newest segment
/// file: strict refuses (good), but repair opens with the channel ending
/// at the segment's base - 1 and reports *no* lost range (and no torn
/// tail): the durable messages base..=170 are gone without a word, and
/// their seqs will be handed out again. It does not record anything
/// either: the catalog still names the missing segment, so a strict
/// reopen after a clean close is `Corrupt` again. Breaks: repair "reports
/// exactly what was lost (message ranges per channel)"; "repair then
/// strict reopen must be clean".
#[test]
fn f11_repair_drops_a_missing_newest_segment_after_a_kill_without_reporting_it() {
    let sim = SimStorage::new();
    let o = |sim: &SimStorage| opts(sim).segment_size(4096).sync_policy(SyncPolicy::Always);
    let store = Store::open(ROOT, o(&sim)).unwrap();
    publish(&store, "c", 170);
    let killed = sim.process_crash(); // every message was durable
    std::mem::forget(store);
    let newest = last_segment(&killed, ROOT, 1);
    let base = damage::segment_base(&newest).unwrap();
    killed.remove(&newest).unwrap();
    assert!(matches!(
        Store::open(ROOT, o(&killed.process_crash())),
        Err(Error::Corrupt { .. })
    ));

    let repaired = Store::open(ROOT, o(&killed).recovery_mode(RecoveryMode::Repair)).expect("repair opens");
    let last = repaired.open_channel("c").unwrap().last_seq();
    let lost = reported_lost(&repaired, "c");
    let torn = repaired.recovery_report().channels[0].torn_tail.clone();
    assert!(
        last == 170 || lost.iter().any(|&(a, b)| a <= base && b >= last.max(base)),
        "repair serves 1..={last} of 170 durable messages; the missing newest segment started at {base}; \
         reported lost: {lost:?}, torn tail: {torn:?}"
    );
}

// ---------------------------------------------------------------- finding 13

/// The subscribers log has no same-boot rule. After a process crash (same
/// boot: the page cache holds every record written), a bad record past the
/// log's durable watermark is always taken for a torn tail, even when
/// valid records follow it: the later commits (s@30, s@40, written before
/// the kill) are cut and zeroed, and strict open succeeds with `s` back at
/// 10. The report has only the log's torn-tail offset; `subscribers.cut`,
/// which is meant to name each subscriber whose commit went with a torn
/// tail, is empty. Segments refuse the same situation (`look_past`).
/// Breaks: after a process crash strict returns what was written or fails
/// with `Corrupt`; never "a subscriber's commit older"; each cut listed.
#[test]
fn f13_damaged_commit_past_the_watermark_cuts_later_commits_on_the_same_boot() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    publish(&store, "c", 100);
    let ch = store.channel("c").unwrap();
    let s = ch.subscribe("s", StartAt::First).unwrap();
    s.commit(10, b"ten").unwrap();
    store.sync().unwrap();
    for pos in [20, 30, 40] {
        s.commit(pos, format!("at {pos}").as_bytes()).unwrap(); // written, not synced
    }
    let img = sim.process_crash();
    drop((s, ch));
    std::mem::forget(store);

    let log = p(ROOT, "subscribers");
    let mut bytes = img.read(&log).unwrap();
    let at20 = damage::sublog_records(&bytes)
        .into_iter()
        .find(|(_, r)| matches!(r, damage::SubRecord::Commit { entries, .. } if entries[0].position == 20))
        .map(|(f, _)| f.offset)
        .unwrap();
    bytes[at20 + 30] ^= 0x01;
    img.overwrite(&log, &bytes).unwrap();

    match Store::open(ROOT, opts(&img)) {
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(store) => {
            let ch = store.open_channel("c").unwrap();
            let s = ch.subscribe("s", StartAt::First).unwrap();
            panic!(
                "strict open after a process crash and damage to one commit record: s is at {:?} (40 was \
                 written); report: {:?}",
                s.committed(),
                store.recovery_report().subscribers
            );
        }
    }
}

// ---------------------------------------------------------------- finding 14

/// Retention records a first retained seq past the durable end. `max_age`
/// expires every message, the unsynced ones (101..=200) included, so the
/// compaction pass durably records first_seq = 201 in the catalog. A power
/// loss then takes the unsynced records: the channel recovers with its
/// records ending at 100 and first_seq 201 (first > last + 1). The writer
/// resumes at 101, below the first retained seq: the next 100 messages
/// published after the restart are acknowledged (and synced) but every
/// read of them is `OutOfRange`, iterators and new subscribers see
/// nothing. Breaks the basic contract (published + synced = readable);
/// strict open accepts an inconsistent catalog/segment state and silently
/// serves less than what is durable afterwards.
#[test]
fn f14_retention_past_the_durable_end_hides_new_messages_after_power_loss() {
    let clock = std::sync::Arc::new(spool::ManualClock::new(1_000_000_000));
    let o = |sim: &SimStorage| {
        opts(sim)
            .clock(clock.clone())
            .limits(spool::Limits::default().max_age(Duration::from_secs(1)))
    };
    let sim = SimStorage::new();
    let store = Store::open(ROOT, o(&sim)).unwrap();
    publish(&store, "c", 100);
    store.sync().unwrap();
    publish(&store, "c", 100); // 101..=200, not synced
    clock.set(20_000_000_000);
    store.compact_now().unwrap(); // first_seq 201, durable in the catalog
    let after = sim.power_loss_choosing(0, 0);
    std::mem::forget(store);

    let store = Store::open(ROOT, o(&after)).expect("strict open after the power loss");
    let ch = store.open_channel("c").unwrap();
    let (first, last) = (ch.first_seq(), ch.last_seq());
    let mut unreadable = Vec::new();
    for _ in 0..5 {
        let seq = ch.publish(b"after the restart").unwrap();
        ch.sync().unwrap();
        if ch.get(seq).is_err() {
            unreadable.push(seq);
        }
    }
    let sub = ch.subscribe("new", StartAt::First).unwrap();
    let delivered = sub.try_recv().unwrap().map(|m| m.seq());
    assert!(
        unreadable.is_empty() && delivered.is_some(),
        "after recovery first_seq {first}, last_seq {last}; messages published and synced after the restart \
         cannot be read: {unreadable:?} (a new subscriber from First gets {delivered:?})"
    );
}

// ---------------------------------------------------------------- finding 15

/// After the upgrade of a version-1 store, until the first sync of each
/// channel, the (now version-2) catalog records no newest segment and a
/// durable seq of 0 for it, and the next open is no longer "legacy": every
/// segment counts as unconfirmed, so one whose fixed header is damaged is
/// taken for "a creation cut by the crash" and deleted with every segment
/// after it. Here: the fixture (alpha: 300 durable messages in segments 1,
/// 120, 219; subscriber `reader` at 120) is opened once (upgrade), the
/// process dies before any sync, and a byte of segment 219's header is
/// damaged. Strict open succeeds, deletes 219.seg and serves alpha to 218:
/// 82 durable messages gone, reported only as a "torn tail". Breaks: strict
/// never opens with fewer messages after damage; never-durable data is the
/// only data that may be cut.
#[test]
fn f15_after_an_upgrade_a_damaged_old_segment_is_deleted_as_a_torn_creation() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let live = tempfile::tempdir().unwrap();
    damage::copy_dir(&fixture, live.path());
    let o = || {
        Options::default()
            .segment_size(4096)
            .index_interval(256)
            .sync_policy(SyncPolicy::Never)
            .compact_interval(Duration::from_secs(3600))
    };
    let store = Store::open(live.path(), o()).unwrap();
    assert_eq!(store.open_channel("alpha").unwrap().last_seq(), 300);
    // The process dies: what it left on disk is copied.
    let crashed = tempfile::tempdir().unwrap();
    damage::copy_dir(live.path(), crashed.path());
    std::mem::forget(store);
    let seg = crashed.path().join("channels/1/00000000000000000219.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[30] ^= 0x01; // inside the fixed header (base seq field)
    std::fs::write(&seg, &bytes).unwrap();

    match Store::open(crashed.path(), o()) {
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(store) => {
            let alpha = store.open_channel("alpha").unwrap();
            panic!(
                "strict open serves alpha to {} of 300 durable messages; 219.seg still there: {}; report: {:?}",
                alpha.last_seq(),
                seg.exists(),
                store.recovery_report().channels.iter().find(|c| c.name == "alpha")
            );
        }
    }
}

// ---------------------------------------------------------------- finding 16

/// Same family as finding 8, another code path (`recover`'s cut of
/// unconfirmed segments that are not `usable`): after a process crash on
/// the same boot, the newest segment B (created by a roll, not yet
/// confirmed: no sync since) has its fixed header damaged. On the same
/// boot the header was in the page cache from before B got its name, so an
/// unreadable header can only be damage; strict open nevertheless takes it
/// for "a creation cut by the crash", deletes B (written messages) and
/// succeeds with the channel ending where A ends. Breaks: after a process
/// crash strict returns what was written or fails with `Corrupt`.
#[test]
fn f16_damaged_header_of_an_unconfirmed_segment_is_deleted_on_the_same_boot() {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts(&sim)).unwrap();
    let ch = store.channel("c").unwrap();
    ch.publish(&payload(1)).unwrap();
    store.sync().unwrap();
    let a = last_segment(&sim, ROOT, 1);
    while last_segment(&sim, ROOT, 1) == a {
        ch.publish(&payload(ch.last_seq() + 1)).unwrap();
    }
    for _ in 0..20 {
        ch.publish(&payload(ch.last_seq() + 1)).unwrap();
    }
    let written = ch.last_seq();
    let img = sim.process_crash();
    drop(ch);
    std::mem::forget(store);
    let b = last_segment(&img, ROOT, 1);
    let mut bytes = img.read(&b).unwrap();
    bytes[30] ^= 0x01;
    img.overwrite(&b, &bytes).unwrap();

    match Store::open(ROOT, opts(&img)) {
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(store) => panic!(
            "strict open after a process crash serves to {} of {written} written messages; {} deleted: {}",
            store.open_channel("c").unwrap().last_seq(),
            b.display(),
            !img.list_all().contains(&b)
        ),
    }
}

// ---------------------------------------------------------------- finding 17

/// A race between `Log::sync_once` and a roll (src/log/sync.rs): the sync
/// seals what is queued (`settle`), *then* takes its snapshot of the
/// active segment without checking that nothing was queued meanwhile. When
/// a writer rolls from A to B in between, the sync confirms B (the catalog
/// then says "everything below B is durable"), msyncs only B, and reports
/// every seq through B's end durable, while A's records are neither
/// msynced nor sealed until the background seal gets to it. A power loss
/// in that window loses messages `sync()` acknowledged (the next open
/// reads them as `Corrupt`: "followed by another but was never sealed").
/// Breaks the durability promise of `sync` and the catalog invariant
/// "every segment below the newest is sealed".
///
/// Not deterministic (there is no hook to hold the window open): it runs
/// for `SPOOL_RACE_SECS` (default 3) and checks the invariant after every
/// sync. Before the fix, `SPOOL_RACE_SECS=20 cargo test --release --test
/// review_no_silent_loss f17` hit it in 3 of 12 runs (after 55 to ~1000
/// syncs).
#[test]
fn f17_sync_racing_a_roll_reports_an_unsealed_segment_durable() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sim = SimStorage::new();
    let o = opts(&sim).segment_size(4096);
    let store = Store::open("/r", o).unwrap();
    let ch = store.channel("c").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (ch, stop) = (ch.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = ch.publish(&[1u8; 900]);
            }
        })
    };
    let started = std::time::Instant::now();
    let mut found = None;
    let secs = std::env::var("SPOOL_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut syncs = 0u64;
    while found.is_none() && started.elapsed() < Duration::from_secs(secs) {
        syncs += 1;
        ch.sync().unwrap();
        let durable = ch.durable_seq();
        let disk = sim.power_loss_choosing(0, 0);
        let cat = damage::Cat::decode(&disk.read("/r/catalog").unwrap()).unwrap();
        let newest = cat.entries[0].newest_base;
        for f in disk.list_all() {
            let Some(base) = damage::segment_base(&f).filter(|b| *b < newest) else {
                continue;
            };
            let h = disk.read(&f).unwrap();
            if ![64usize, 96].iter().any(|&o| h[o + 24] & 1 == 1) {
                found = Some(format!(
                    "sync() returned with durable seq {durable}; on disk the catalog's newest segment is {newest} \
                     but segment {base} below it is not sealed"
                ));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    std::mem::forget(store);
    assert!(found.is_none(), "{}", found.unwrap_or_default());
    assert!(syncs > 10, "only {syncs} syncs ran");
}
