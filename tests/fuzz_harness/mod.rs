//! The fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` and by
//! `tests/fuzz_replay.rs`, which runs them on the committed regression
//! inputs and on seeded random inputs in ordinary `cargo test`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use spool::sim::SimStorage;
use spool::{Error, Limits, Options, RecoveryMode, StartAt, Store, SyncPolicy};

pub const ROOT: &str = "/fz";

fn opts() -> Options {
    Options::default()
        .segment_size(4096)
        .index_interval(128)
        .sync_policy(SyncPolicy::Always)
        .compact_interval(Duration::from_secs(3600))
}

/// The payload of `seq` in the channel incarnation `id`: a reused seq or a
/// resurrected channel would show different bytes.
pub fn payload(id: u64, seq: u64) -> Vec<u8> {
    let len = ((seq * 31 + id * 7) % 120) as usize;
    (0..len).map(|i| (seq as usize * 13 + i + id as usize) as u8).collect()
}

// ---------------------------------------------------------------- open_files

/// The store every `open_files` input damages: two channels, several
/// segments, index files, subscribers.
pub fn base_store() -> SimStorage {
    let sim = SimStorage::new();
    let store = Store::open(ROOT, opts().simulated(&sim)).expect("base store");
    for name in ["c", "d"] {
        let ch = store.channel(name).expect("channel");
        for seq in 1..=120 {
            ch.publish(&payload(ch.id(), seq)).expect("publish");
        }
        let sub = ch.subscribe("s", StartAt::First).expect("subscribe");
        sub.commit(60, b"state").expect("commit");
    }
    store.close().expect("close");
    sim.process_crash()
}

/// Messages per channel and the commit of subscriber `s` in the base store.
const BASE_MSGS: u64 = 120;
const BASE_COMMIT: (u64, &[u8]) = (60, b"state");

/// Damages one file of the cleanly closed base store, then opens it strict
/// and repair. Strict either refuses with `Corrupt` or serves everything
/// the base store held: each message (or a `Corrupt` error when that very
/// read meets the damage, never a wrong or missing message, never an early
/// end), both channels, the subscriber's commit. Repair always opens (one
/// damaged file never leaves nothing to read) and serves everything except
/// what its report says is lost.
pub fn open_files(data: &[u8]) {
    // Built once; each input damages a fresh copy.
    static BASE: std::sync::OnceLock<SimStorage> = std::sync::OnceLock::new();
    let sim = BASE.get_or_init(base_store).process_crash();
    let files: Vec<_> = sim.list_all().into_iter().filter(|p| sim.read(p).is_ok()).collect();
    let mut u = Unstructured::new(data);
    let (Ok(pick), Ok(how)) = (u.arbitrary::<u8>(), u.arbitrary::<u8>()) else {
        return;
    };
    let target = &files[pick as usize % files.len()];
    let original = sim.read(target).unwrap_or_default();
    let other = sim.read(&files[(pick as usize + 1) % files.len()]).unwrap_or_default();
    let at = u.arbitrary::<u32>().unwrap_or(0) as usize;
    let damaged: Option<Vec<u8>> = match how % 8 {
        0 => Some(u.bytes(u.len()).unwrap_or(&[]).to_vec()),
        1 => Some(original[..at % (original.len() + 1)].to_vec()),
        2 => {
            let mut b = original.clone();
            if !b.is_empty() {
                let i = at % b.len();
                b[i] ^= 1 << (at % 8);
            }
            Some(b)
        }
        3 => {
            let mut b = original.clone();
            b.resize(b.len() + at % 9000, 0);
            Some(b)
        }
        4 => {
            let mut b = original.clone();
            b.extend_from_slice(u.bytes(u.len()).unwrap_or(&[]));
            Some(b)
        }
        5 => {
            // A page spliced in from another file.
            let mut b = original.clone();
            let page = 4096;
            if b.len() >= page && other.len() >= page {
                let dst = (at % (b.len() / page)) * page;
                let src = ((at / 7) % (other.len() / page)) * page;
                b[dst..dst + page].copy_from_slice(&other[src..src + page]);
            }
            Some(b)
        }
        6 => None,
        _ => Some(other.clone()),
    };
    let what = format!(
        "{} {}",
        target.display(),
        match &damaged {
            None => "deleted".to_string(),
            Some(b) => format!(
                "rewritten ({} -> {} bytes, damage {})",
                original.len(),
                b.len(),
                how % 8
            ),
        }
    );
    match damaged {
        Some(bytes) => {
            let _ = sim.overwrite(target, &bytes);
        }
        None => {
            let _ = sim.remove(target);
        }
    }
    match Store::open(ROOT, opts().simulated(&sim.process_crash())) {
        Ok(store) => check_served(&store, None, &what),
        Err(Error::Corrupt { .. }) => {}
        Err(e) => panic!("{what}: strict open failed with an error other than Corrupt: {e}"),
    }
    let repaired = Store::open(
        ROOT,
        opts()
            .recovery_mode(RecoveryMode::Repair)
            .simulated(&sim.process_crash()),
    )
    .unwrap_or_else(|e| panic!("{what}: repair refused: {e}"));
    let report = repaired.recovery_report().clone();
    check_served(&repaired, Some(&report), &what);
}

/// Checks that `store` serves everything the base store held: what
/// `repair` says is lost aside, or (strict, `None`) reads that fail with
/// `Corrupt` where they meet damage.
fn check_served(store: &Store, repair: Option<&spool::RecoveryReport>, what: &str) {
    let mode = if repair.is_some() { "repair" } else { "strict" };
    assert_eq!(store.channel_names(), ["c", "d"], "{what}: {mode}: channels");
    for name in ["c", "d"] {
        let ch = store.open_channel(name).expect("listed channel opens");
        let lost: Vec<(u64, u64)> = repair
            .and_then(|r| r.channel(name))
            .map(|c| c.lost.iter().map(|l| (l.first, l.last)).collect())
            .unwrap_or_default();
        let is_lost = |seq: u64| lost.iter().any(|&(a, b)| a <= seq && seq <= b);
        assert_eq!(
            ch.last_seq(),
            BASE_MSGS,
            "{what}: {mode}: {name} last seq (lost {lost:?})"
        );
        // Repair may start the channel after a lost range at its start.
        let first = ch.first_seq();
        assert!(
            (1..first).all(is_lost),
            "{what}: {mode}: {name} first seq {first} (lost {lost:?})"
        );
        let mut readable = Vec::new();
        for seq in first..=BASE_MSGS {
            match ch.get(seq) {
                Ok(m) => {
                    assert_eq!(
                        m.payload(),
                        payload(ch.id(), seq),
                        "{what}: {mode}: {name} seq {seq} wrong bytes"
                    );
                    assert!(
                        !is_lost(seq),
                        "{what}: {mode}: {name} seq {seq} served but reported lost"
                    );
                    readable.push(seq);
                }
                Err(Error::Lost { .. }) if is_lost(seq) => {}
                Err(Error::Corrupt { .. }) if repair.is_none() => {}
                Err(e) => panic!("{what}: {mode}: {name} seq {seq}: {e} (lost {lost:?})"),
            }
        }
        // Reading in order delivers every readable message (passing over
        // lost ones) or stops with an error: never a silent early end.
        let mut iter = ch.read_from(first).expect("read_from(first)");
        let mut got = Vec::new();
        let mut failed = false;
        for m in iter.by_ref() {
            match m {
                Ok(m) => got.push(m.seq()),
                // One error per range a repair removed; reading goes on.
                Err(Error::Lost { first_lost, .. }) if is_lost(first_lost) => {}
                Err(_) if repair.is_none() => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("{what}: {mode}: {name} iteration: {e}"),
            }
        }
        if !failed {
            assert_eq!(got, readable, "{what}: {mode}: {name} iteration");
        }
        // The subscriber's commit survives, or repair says what became of it.
        let reported = repair.is_some_and(|r| {
            r.subscribers
                .lost
                .iter()
                .any(|l| (l.channel_id == ch.id() && l.name == "s") || (l.name.is_empty() && l.reverted_to.is_none()))
        });
        let sub = ch.subscribe("s", StartAt::First).expect("subscribe");
        let (pos, state) = sub.committed();
        if (pos, &state[..]) != BASE_COMMIT {
            assert!(
                reported,
                "{what}: {mode}: {name}/s committed ({pos}, {state:?}), not in the report"
            );
        }
        let mut last = pos;
        loop {
            match sub.try_recv() {
                Ok(Some(m)) => {
                    assert_eq!(
                        m.payload(),
                        payload(ch.id(), m.seq()),
                        "{what}: {mode}: {name}/s delivery"
                    );
                    last = m.seq();
                }
                Ok(None) => {
                    let want = readable.iter().copied().filter(|s| *s > pos).max().unwrap_or(pos);
                    assert_eq!(
                        last.max(pos),
                        want.max(pos),
                        "{what}: {mode}: {name}/s try_recv ended early"
                    );
                    break;
                }
                Err(Error::Corrupt { .. }) if repair.is_none() => break,
                Err(e) => panic!("{what}: {mode}: {name}/s try_recv: {e}"),
            }
        }
    }
    let verified = store.verify().expect("verify runs");
    if repair.is_some() {
        assert!(
            verified.is_ok(),
            "{what}: verify after repair: {:#?}",
            verified.problems
        );
    }
}

// ---------------------------------------------------------------- ops_crash

/// One step of an `ops_crash` workload.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum FuzzOp {
    Publish {
        chan: u8,
    },
    Batch {
        chan: u8,
        n: u8,
    },
    Sync,
    Commit {
        chan: u8,
        ahead: u8,
    },
    MultiCommit,
    Ack {
        chan: u8,
    },
    Create {
        chan: u8,
    },
    Delete {
        chan: u8,
    },
    Compact,
    Reopen,
    /// The simulated process dies at its `calls`-th storage call from now.
    CrashSoon {
        calls: u8,
    },
    /// Power cut now (seeded), then recovery.
    PowerCut {
        seed: u64,
    },
}

/// A workload for `ops_crash`.
#[derive(Arbitrary, Debug, Clone)]
pub struct OpsInput {
    pub ops: Vec<FuzzOp>,
}

const NAMES: [&str; 3] = ["x", "y", "z"];

/// What acknowledged operations promise (SyncPolicy::Always: acked =
/// durable) about one channel incarnation.
#[derive(Clone, Debug, Default)]
struct ChanModel {
    id: u64,
    acked: u64,
    maybe: u64,
    first_at_least: u64,
    sub: u64,
    sub_maybe: Option<u64>,
    floor: u64,
}

#[derive(Debug, Default)]
struct Model {
    /// Live channels by name; `None`: a create or delete was cut by a crash.
    chans: BTreeMap<&'static str, Option<ChanModel>>,
    /// Ids of deleted incarnations: never to be seen again.
    dead: Vec<u64>,
}

fn chan(i: u8) -> &'static str {
    NAMES[i as usize % NAMES.len()]
}

/// Runs one op; false when the (simulated) process has died.
fn step(op: FuzzOp, sim: &SimStorage, store: &mut Option<Store>, m: &mut Model) -> bool {
    let Some(st) = store.as_ref() else { return false };
    let ok = match op {
        FuzzOp::Publish { chan: c } | FuzzOp::Batch { chan: c, .. } => {
            let n = match op {
                FuzzOp::Batch { n, .. } => u64::from(n % 20) + 1,
                _ => 1,
            };
            let Some(Some(cm)) = m.chans.get_mut(chan(c)) else {
                return true;
            };
            let Ok(ch) = st.open_channel(chan(c)) else { return false };
            cm.maybe = n;
            let batch: Vec<Vec<u8>> = (cm.acked + 1..=cm.acked + n).map(|s| payload(cm.id, s)).collect();
            let r = ch.publish_batch(&batch).is_ok();
            if r {
                cm.acked += n;
                cm.maybe = 0;
            }
            r
        }
        FuzzOp::Sync => st.sync().is_ok(),
        FuzzOp::Commit { chan: c, ahead } => {
            let Some(Some(cm)) = m.chans.get_mut(chan(c)) else {
                return true;
            };
            let Ok(ch) = st.open_channel(chan(c)) else { return false };
            let to = cm.acked.min(cm.sub + u64::from(ahead % 10));
            cm.sub_maybe = Some(to);
            let r = ch
                .subscribe("s", StartAt::First)
                .and_then(|s| s.commit(to, &to.to_le_bytes()));
            match r {
                Ok(()) => {
                    cm.sub = to;
                    cm.sub_maybe = None;
                    true
                }
                Err(Error::CommitBehind { .. }) => true,
                Err(_) => false,
            }
        }
        FuzzOp::MultiCommit => {
            let live: Vec<&'static str> = m.chans.iter().filter(|(_, c)| c.is_some()).map(|(n, _)| *n).collect();
            if live.len() < 2 {
                return true;
            }
            let (Ok(a), Ok(b)) = (st.open_channel(live[0]), st.open_channel(live[1])) else {
                return false;
            };
            let (Ok(sa), Ok(sb)) = (a.subscribe("s", StartAt::First), b.subscribe("s", StartAt::First)) else {
                return false;
            };
            let ta = m.chans[live[0]].as_ref().map_or(0, |c| c.acked);
            let tb = m.chans[live[1]].as_ref().map_or(0, |c| c.acked);
            if let Some(Some(c)) = m.chans.get_mut(live[0]) {
                c.sub_maybe = Some(ta);
            }
            if let Some(Some(c)) = m.chans.get_mut(live[1]) {
                c.sub_maybe = Some(tb);
            }
            let r = st.commit_all(&[(&sa, ta), (&sb, tb)], &ta.to_le_bytes());
            let done = |m: &mut Model, name: &str, to: u64| {
                if let Some(Some(c)) = m.chans.get_mut(name) {
                    c.sub = to;
                    c.sub_maybe = None;
                }
            };
            match r {
                Ok(()) => {
                    done(m, live[0], ta);
                    done(m, live[1], tb);
                    true
                }
                Err(Error::CommitBehind { .. }) => true,
                Err(_) => false,
            }
        }
        FuzzOp::Ack { chan: c } => {
            let Some(Some(cm)) = m.chans.get_mut(chan(c)) else {
                return true;
            };
            let Ok(ch) = st.open_channel(chan(c)) else { return false };
            let r = ch.queue_subscribe("g", StartAt::First).and_then(|g| {
                if let Some(d) = g.try_recv()? {
                    g.ack(d.seq())?;
                    cm.floor = cm.floor.max(g.ack_floor());
                }
                Ok(())
            });
            r.is_ok()
        }
        FuzzOp::Create { chan: c } => {
            let name = chan(c);
            if m.chans.contains_key(name) {
                return true;
            }
            m.chans.insert(name, None);
            match st.channel_with_limits(name, Limits::default().max_msgs(30)) {
                Ok(ch) => {
                    m.chans.insert(
                        name,
                        Some(ChanModel {
                            id: ch.id(),
                            first_at_least: 1,
                            ..Default::default()
                        }),
                    );
                    true
                }
                Err(_) => false,
            }
        }
        FuzzOp::Delete { chan: c } => {
            let name = chan(c);
            let Some(Some(cm)) = m.chans.get(name).cloned() else {
                return true;
            };
            m.chans.insert(name, None);
            match st.delete_channel(name) {
                Ok(()) => {
                    // Only an acknowledged delete is final; one cut by a
                    // crash may or may not have happened.
                    m.dead.push(cm.id);
                    m.chans.remove(name);
                    true
                }
                Err(_) => false,
            }
        }
        FuzzOp::Compact => {
            let r = st.compact_now().is_ok();
            if r {
                for c in m.chans.values_mut().flatten() {
                    c.first_at_least = c.first_at_least.max((c.acked + 1).saturating_sub(30));
                }
            }
            r
        }
        FuzzOp::Reopen => {
            *store = None;
            match Store::open(ROOT, opts().simulated(sim)) {
                Ok(s) => {
                    *store = Some(s);
                    true
                }
                Err(_) => false,
            }
        }
        FuzzOp::CrashSoon { calls } => {
            sim.crash_after_ops(Some(u64::from(calls % 16)));
            true
        }
        FuzzOp::PowerCut { .. } => true,
    };
    ok
}

fn check(store: &Store, m: &mut Model, ctx: &str) {
    let report = store.verify().expect("verify runs");
    assert!(report.is_ok(), "{ctx}: {:#?}", report.problems);
    let names = store.channel_names();
    for (name, cm) in m.chans.clone() {
        let exists = names.iter().any(|n| n == name);
        let Some(cm) = cm else {
            // A create or delete was cut: either outcome, adopt what is there.
            if exists {
                let ch = store.open_channel(name).expect("listed channel opens");
                m.chans.insert(
                    name,
                    Some(ChanModel {
                        id: ch.id(),
                        acked: ch.last_seq(),
                        first_at_least: ch.first_seq(),
                        sub: 0,
                        ..Default::default()
                    }),
                );
                if let Ok(s) = ch.subscribe("s", StartAt::First) {
                    let p = s.committed().0;
                    if let Some(Some(c)) = m.chans.get_mut(name) {
                        c.sub = p;
                    }
                }
            } else {
                m.chans.remove(name);
            }
            continue;
        };
        assert!(exists, "{ctx}: channel {name} lost");
        let ch = store.open_channel(name).expect("channel opens");
        assert_eq!(ch.id(), cm.id, "{ctx}: {name} is another incarnation");
        assert!(
            ch.first_seq() >= cm.first_at_least.max(1),
            "{ctx}: {name} first seq went back"
        );
        assert!(ch.last_seq() >= cm.acked, "{ctx}: {name} lost acknowledged messages");
        assert!(
            ch.last_seq() <= cm.acked + cm.maybe,
            "{ctx}: {name} has messages never written"
        );
        for msg in ch.read_from(1).expect("read") {
            let msg = msg.expect("message");
            assert!(msg.seq() >= ch.first_seq());
            assert_eq!(
                msg.payload(),
                payload(cm.id, msg.seq()).as_slice(),
                "{ctx}: {name} seq {}",
                msg.seq()
            );
        }
        let s = ch.subscribe("s", StartAt::First).expect("subscribe");
        let (pos, state) = s.committed();
        // An empty state is a subscriber's creation record (the harness
        // always commits a non-empty state); the check itself may have just
        // created it.
        let created = state.is_empty() && cm.sub == 0;
        assert!(
            pos == cm.sub || Some(pos) == cm.sub_maybe || created,
            "{ctx}: {name} subscriber at {pos}, model {} / {:?}",
            cm.sub,
            cm.sub_maybe
        );
        assert!(pos <= ch.last_seq(), "{ctx}: {name} subscriber past the log");
        let g = ch.queue_subscribe("g", StartAt::First).expect("group");
        assert!(g.ack_floor() >= cm.floor, "{ctx}: {name} ack floor went back");
        let new = ChanModel {
            acked: ch.last_seq(),
            maybe: 0,
            sub: pos,
            sub_maybe: None,
            floor: g.ack_floor(),
            first_at_least: ch.first_seq(),
            ..cm
        };
        m.chans.insert(name, Some(new));
    }
    for name in names {
        let ch = store.open_channel(&name).expect("listed channel opens");
        assert!(
            !m.dead.contains(&ch.id()),
            "{ctx}: deleted incarnation {} of {name} resurrected",
            ch.id()
        );
    }
}

/// Runs a workload with crashes and power cuts on the simulated backend,
/// checking the contracts after every recovery.
pub fn ops_crash(input: &OpsInput) {
    let mut sim = SimStorage::new();
    let mut model = Model::default();
    let mut store = Store::open(ROOT, opts().simulated(&sim)).ok();
    for (i, op) in input.ops.iter().take(64).enumerate() {
        let alive = step(*op, &sim, &mut store, &mut model);
        let cut = matches!(op, FuzzOp::PowerCut { .. }) || !alive;
        if cut {
            let seed = match op {
                FuzzOp::PowerCut { seed } => *seed,
                _ => i as u64,
            };
            let image = sim.power_loss(seed);
            drop(store.take());
            let ctx = format!("op {i} {op:?}");
            let recovered =
                Store::open(ROOT, opts().simulated(&image)).unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
            check(&recovered, &mut model, &ctx);
            drop(recovered);
            sim = image;
            store = Store::open(ROOT, opts().simulated(&sim)).ok();
        }
    }
}
