//! Exhaustive crash points for short workloads. Every workload of up to
//! two operations and a seeded sample of three-operation ones (all of them
//! under `SPOOL_CRASH_DEPTH=3`, which also widens the page enumeration to
//! 2^10) runs once per storage call with the simulated process
//! dying at that call; for each crash point every choice of dirty pages
//! (old or new; all subsets up to 2^6, sampled beyond) and of surviving
//! namespace changes is recovered twice: the second open must change no
//! byte, and both must satisfy the model. `verify()` runs every time.

mod common;

use std::time::Duration;

use common::{open_sim, Rng};
use spool::sim::SimStorage;
use spool::{Limits, Options, QueueOptions, StartAt, Store, SyncPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Publish,
    Batch,
    Sync,
    Commit,
    MultiCommit,
    Ack,
    CreateB,
    DeleteB,
    Compact,
    Reopen,
}

const OPS: [Op; 10] = [
    Op::Publish,
    Op::Batch,
    Op::Sync,
    Op::Commit,
    Op::MultiCommit,
    Op::Ack,
    Op::CreateB,
    Op::DeleteB,
    Op::Compact,
    Op::Reopen,
];

fn opts() -> Options {
    Options::default()
        .segment_size(4096)
        .index_interval(256)
        .sync_policy(SyncPolicy::Always)
        .compact_interval(Duration::from_secs(3600))
}

fn payload(seq: u64) -> Vec<u8> {
    vec![(seq % 251) as u8; (seq % 90) as usize + 10]
}

/// What acknowledged operations promise (SyncPolicy::Always: acked =
/// durable), and what the operation cut by the crash might have done.
#[derive(Clone, Debug, Default)]
struct Model {
    a_len: u64,
    a_maybe: u64,
    first_at_least: u64,
    s_pos: u64,
    s_maybe: Option<u64>,
    b_exists: Option<bool>,
    t_pos: Option<u64>,
    t_maybe: Option<u64>,
    floor: u64,
    floor_maybe: Option<u64>,
}

fn setup() -> (SimStorage, Store, Model) {
    let sim = SimStorage::new();
    let store = open_sim(&sim, opts()).unwrap();
    let a = store.channel_with_limits("a", Limits::default().max_msgs(45)).unwrap();
    for seq in 1..=50 {
        a.publish(&payload(seq)).unwrap();
    }
    store.compact_now().unwrap();
    let s = a.subscribe("s", StartAt::First).unwrap();
    s.commit(10, &10u64.to_le_bytes()).unwrap();
    let b = store.channel("b").unwrap();
    b.publish_batch(&[b"b1", b"b2", b"b3"]).unwrap();
    let t = b.subscribe("t", StartAt::First).unwrap();
    t.commit(1, &1u64.to_le_bytes()).unwrap();
    drop((s, t));
    let model = Model {
        a_len: 50,
        first_at_least: 6,
        s_pos: 10,
        b_exists: Some(true),
        t_pos: Some(1),
        ..Model::default()
    };
    (sim, store, model)
}

/// Runs `op`; on success updates the model. On failure (the crash) records
/// what the op may have done and returns false.
fn run(op: Op, sim: &SimStorage, store: &mut Store, m: &mut Model) -> bool {
    let a = match store.channel("a") {
        Ok(a) => a,
        Err(_) => return false,
    };
    let result: spool::Result<()> = match op {
        Op::Publish => {
            m.a_maybe = 1;
            a.publish(&payload(m.a_len + 1)).map(|_| m.a_len += 1)
        }
        Op::Batch => {
            m.a_maybe = 5;
            let batch: Vec<Vec<u8>> = (m.a_len + 1..=m.a_len + 5).map(payload).collect();
            a.publish_batch(&batch).map(|_| m.a_len += 5)
        }
        Op::Sync => store.sync(),
        Op::Commit => {
            let to = m.a_len.min(m.s_pos + 7);
            m.s_maybe = Some(to);
            a.subscribe("s", StartAt::First)
                .and_then(|s| s.commit(to, &to.to_le_bytes()))
                .map(|_| m.s_pos = to)
        }
        Op::MultiCommit => match (store.open_channel("b"), m.b_exists) {
            (Ok(b), Some(true)) => {
                let (to_s, to_t) = (m.a_len.min(m.s_pos + 3), b.last_seq());
                m.s_maybe = Some(to_s);
                m.t_maybe = Some(to_t);
                let subs = a
                    .subscribe("s", StartAt::First)
                    .and_then(|s| Ok((s, b.subscribe("t", StartAt::First)?)));
                subs.and_then(|(s, t)| {
                    // One state naming both positions: the check can tell
                    // that both came from this one commit.
                    let mut state = to_s.to_le_bytes().to_vec();
                    state.extend_from_slice(&to_t.to_le_bytes());
                    store.commit_all(&[(&s, to_s), (&t, to_t)], &state)
                })
                .map(|_| {
                    m.s_pos = to_s;
                    m.t_pos = Some(to_t);
                })
            }
            _ => Ok(()),
        },
        Op::Ack => {
            let opts = QueueOptions::default()
                .ack_wait(Duration::from_secs(60))
                .max_in_flight(1);
            a.queue_subscribe_with("g", StartAt::First, opts).and_then(|g| {
                let Some(d) = g.try_recv()? else { return Ok(()) };
                m.floor_maybe = Some(d.seq());
                g.ack(d.seq()).map(|_| m.floor = m.floor.max(d.seq()))
            })
        }
        Op::CreateB => {
            if m.b_exists == Some(true) {
                Ok(())
            } else {
                m.b_exists = None;
                store.channel("b").map(|_| {
                    m.b_exists = Some(true);
                    m.t_pos = None;
                })
            }
        }
        Op::DeleteB => {
            if m.b_exists == Some(false) {
                Ok(())
            } else {
                m.b_exists = None;
                // Its subscriber goes with it, whichever way the crash falls.
                m.t_pos = None;
                store.delete_channel("b").map(|_| m.b_exists = Some(false))
            }
        }
        Op::Compact => {
            let want = (m.a_len + 1).saturating_sub(45).max(m.first_at_least);
            store.compact_now().map(|_| m.first_at_least = want)
        }
        Op::Reopen => {
            drop(a);
            let replaced = std::mem::replace(store, open_sim(&SimStorage::new(), opts()).unwrap());
            drop(replaced);
            match open_sim(sim, opts()) {
                Ok(s) => {
                    *store = s;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => {
            m.a_maybe = 0;
            m.s_maybe = None;
            m.t_maybe = None;
            m.floor_maybe = None;
            true
        }
        Err(_) => false,
    }
}

fn decode(state: &[u8]) -> Option<u64> {
    state.try_into().ok().map(u64::from_le_bytes)
}

/// A multi-commit's state: (position of s, position of t).
fn decode_pair(state: &[u8]) -> Option<(u64, u64)> {
    (state.len() == 16).then(|| (decode(&state[..8]).unwrap_or(0), decode(&state[8..]).unwrap_or(0)))
}

fn check(store: &Store, m: &Model, ctx: &str) {
    common::assert_verified(store, ctx);
    let a = store.open_channel("a").unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(
        a.first_seq() >= m.first_at_least,
        "{ctx}: first {} < {}",
        a.first_seq(),
        m.first_at_least
    );
    assert!(
        a.last_seq() >= m.a_len,
        "{ctx}: acknowledged messages lost ({} < {})",
        a.last_seq(),
        m.a_len
    );
    assert!(a.last_seq() <= m.a_len + m.a_maybe, "{ctx}: messages never written");
    for msg in a.read_from(1).unwrap() {
        let msg = msg.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(msg.seq() >= a.first_seq(), "{ctx}: below the first seq");
        assert_eq!(msg.payload(), payload(msg.seq()).as_slice(), "{ctx}: seq {}", msg.seq());
    }
    let s = a.subscribe("s", StartAt::First).unwrap();
    let (pos, state) = s.committed();
    assert!(
        pos == m.s_pos || Some(pos) == m.s_maybe,
        "{ctx}: s at {pos}, model {} / {:?}",
        m.s_pos,
        m.s_maybe
    );
    assert!(pos <= a.last_seq(), "{ctx}: position past the log");
    if let Some(v) = decode(&state) {
        assert_eq!(v, pos, "{ctx}: state from another commit");
    }
    let b_exists = store.channel_names().contains(&"b".to_string());
    if let Some(known) = m.b_exists {
        assert_eq!(b_exists, known, "{ctx}: channel b existence");
    }
    if let (true, Some(t_pos)) = (b_exists, m.t_pos) {
        let b = store.open_channel("b").unwrap();
        let t = b.subscribe("t", StartAt::First).unwrap();
        let (got, t_state) = t.committed();
        assert!(
            got == t_pos || Some(got) == m.t_maybe,
            "{ctx}: t at {got}, model {t_pos} / {:?}",
            m.t_maybe
        );
        // Atomicity: a multi-commit is seen by both or by neither.
        let (s_pair, t_pair) = (decode_pair(&state), decode_pair(&t_state));
        if let Some((ps, pt)) = s_pair {
            assert_eq!((pos, got), (ps, pt), "{ctx}: s saw a multi-commit t did not");
            assert_eq!(t_pair, s_pair, "{ctx}: states from different commits");
        }
        if let Some((ps, pt)) = t_pair {
            // s may have committed alone since; it cannot be behind.
            assert!(got == pt && pos >= ps, "{ctx}: t saw a multi-commit s did not");
        }
    }
    if m.floor > 0 {
        let g = a.queue_subscribe("g", StartAt::First).unwrap();
        let floor = g.ack_floor();
        assert!(
            floor >= m.floor || Some(floor) == m.floor_maybe,
            "{ctx}: ack floor {floor} < {}",
            m.floor
        );
    }
}

fn snapshot(sim: &SimStorage) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    sim.list_all()
        .into_iter()
        .filter(|p| !p.ends_with("LOCK"))
        .filter_map(|p| sim.read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn explore(workload: &[Op], max_exhaustive_pages: usize, rng: &mut Rng) -> usize {
    // Count the storage calls the workload makes.
    let calls = {
        let (sim, mut store, mut m) = setup();
        let start = sim.ops();
        for op in workload {
            assert!(run(*op, &sim, &mut store, &mut m), "{workload:?} fails without a crash");
        }
        if std::env::var("SPOOL_CRASH_DEBUG").is_ok() {
            eprintln!("model after {workload:?}: {m:?}");
        }
        sim.ops() - start
    };
    let mut states = 0;
    for crash_at in 0..=calls {
        let (sim, mut store, mut m) = setup();
        sim.crash_after_ops(Some(crash_at));
        for op in workload {
            if !run(*op, &sim, &mut store, &mut m) {
                break;
            }
        }
        let (pages, ns_ops) = sim.dirty();
        let masks: Vec<u64> = if pages <= max_exhaustive_pages {
            (0..1u64 << pages).collect()
        } else {
            (0..16).map(|_| rng.next()).collect()
        };
        for mask in masks {
            for keep_ns in [0, ns_ops] {
                let image = sim.power_loss_choosing(mask, keep_ns);
                let ctx = format!(
                    "{workload:?} crash at call {crash_at}/{calls}, pages {mask:#b}/{pages}, ns {keep_ns}/{ns_ops}"
                );
                let first = open_sim(&image, opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                check(&first, &m, &ctx);
                drop(first);
                let before = snapshot(&image);
                let second = open_sim(&image, opts()).unwrap();
                drop(second);
                assert_eq!(before, snapshot(&image), "{ctx}: the second recovery changed bytes");
                states += 1;
            }
        }
        drop(store);
    }
    states
}

#[test]
fn every_crash_point_of_short_workloads() {
    let depth: usize = std::env::var("SPOOL_CRASH_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(2);
    let pages = if depth >= 3 { 10 } else { 6 };
    let mut rng = Rng(common::seed());
    let mut workloads: Vec<Vec<Op>> = OPS.iter().map(|o| vec![*o]).collect();
    for a in OPS {
        for b in OPS {
            workloads.push(vec![a, b]);
            for c in OPS {
                // Every 3-op workload at depth 3; a seeded sample of 60 by
                // default, to stay within a minute of `cargo test`.
                if depth >= 3 || rng.below(1000) < 60 {
                    workloads.push(vec![a, b, c]);
                }
            }
        }
    }
    let mut states = 0;
    if let Ok(only) = std::env::var("SPOOL_CRASH_DEBUG") {
        workloads.retain(|w| format!("{w:?}") == only);
    }
    for w in &workloads {
        states += explore(w, pages, &mut rng);
    }
    eprintln!("{} workloads, {states} crash states recovered twice", workloads.len());
    assert!(states > workloads.len());
}
