//! Crash points of the queue-group writes: delivery leases, acks, terms,
//! naks that give a message up into the dead-letter channel, syncs and
//! reopens, under `SyncPolicy::Always`. Every workload of up to two
//! operations after a prefix that leaves messages out, delivered and
//! nakked, and a seeded sample of three-operation ones; the process dies
//! at every storage call, and for each crash point every choice of dirty
//! pages (all subsets up to 2^5, sampled beyond) with and without the
//! unsynced namespace changes is recovered twice (the second open changes
//! no byte). Checked: acked and terminated messages are never handed out
//! again, the counters are kept, every dead letter is there once and its
//! message is never handed out again, `dead_lettered()` counts the letters;
//! after a crash of the process alone (every page kept) every message
//! comes back with at least its true delivery count and at most one more.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{open_sim, Rng};
use spool::sim::SimStorage;
use spool::{DeadLetter, Options, QueueMember, QueueOptions, StartAt, Store, SyncPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Recv,
    Ack,
    Nak,
    Term,
    Sync,
    Reopen,
}

const OPS: [Op; 6] = [Op::Recv, Op::Ack, Op::Nak, Op::Term, Op::Sync, Op::Reopen];
const MAX: u32 = 2;

fn opts() -> Options {
    Options::default()
        .segment_size(4096)
        .index_interval(256)
        .sync_policy(SyncPolicy::Always)
        .compact_interval(Duration::from_secs(3600))
}

fn join(store: &Store) -> spool::Result<QueueMember> {
    let dead = store.channel("dead")?;
    let o = QueueOptions::default()
        .ack_wait(Duration::from_secs(3600))
        .max_in_flight(100)
        .max_deliveries(MAX)
        .dead_letter(&dead);
    store.channel("a")?.queue_subscribe_with("g", StartAt::First, o)
}

#[derive(Clone, Debug, Default)]
struct Model {
    /// Acked or terminated, durably.
    acked: BTreeSet<u64>,
    /// The op cut by the crash may have acked this.
    acked_maybe: Option<u64>,
    terminated: u64,
    /// True delivery counts.
    counts: BTreeMap<u64, u32>,
    /// In flight to the member, lowest first.
    held: BTreeSet<u64>,
}

struct World {
    sim: SimStorage,
    store: Store,
    member: Option<QueueMember>,
}

fn setup() -> (World, Model) {
    let sim = SimStorage::new();
    let store = open_sim(&sim, opts()).unwrap();
    let a = store.channel("a").unwrap();
    for i in 1..=6u64 {
        a.publish(&i.to_le_bytes()).unwrap();
    }
    let member = join(&store).unwrap();
    let mut m = Model::default();
    // 1: delivered and nakked once; 2: delivered and held.
    for _ in 0..2 {
        let d = member.try_recv().unwrap().unwrap();
        *m.counts.entry(d.seq()).or_default() += 1;
        if d.seq() == 1 && m.counts[&1] == 1 {
            member.nak(1).unwrap();
        } else {
            m.held.insert(d.seq());
        }
    }
    let member = Some(member);
    (World { sim, store, member }, m)
}

fn run(op: Op, w: &mut World, m: &mut Model) -> bool {
    if w.member.is_none() {
        match join(&w.store) {
            Ok(mem) => {
                // A new instance: what was held comes back.
                m.held.clear();
                w.member = Some(mem);
            }
            Err(_) => return false,
        }
    }
    let Some(member) = w.member.as_ref() else { return false };
    let result: spool::Result<()> = match op {
        Op::Recv => member.try_recv().map(|d| {
            if let Some(d) = d {
                *m.counts.entry(d.seq()).or_default() += 1;
                m.held.insert(d.seq());
            }
        }),
        Op::Ack | Op::Term => match m.held.first().copied() {
            None => Ok(()),
            Some(seq) => {
                m.acked_maybe = Some(seq);
                let r = if op == Op::Ack {
                    member.ack(seq)
                } else {
                    member.term(seq)
                };
                r.map(|()| {
                    m.held.remove(&seq);
                    m.acked.insert(seq);
                    m.terminated += u64::from(op == Op::Term);
                })
            }
        },
        Op::Nak => match m.held.first().copied() {
            None => Ok(()),
            Some(seq) => member.nak(seq).map(|()| {
                m.held.remove(&seq);
            }),
        },
        Op::Sync => w.store.sync(),
        Op::Reopen => {
            w.member = None;
            let replaced = std::mem::replace(&mut w.store, open_sim(&SimStorage::new(), opts()).unwrap());
            drop(replaced);
            open_sim(&w.sim, opts()).map(|s| {
                w.store = s;
                m.held.clear();
            })
        }
    };
    match result {
        Ok(()) => {
            m.acked_maybe = None;
            true
        }
        Err(_) => false,
    }
}

fn check(store: &Store, m: &Model, process_crash: bool, ctx: &str) {
    common::assert_verified(store, ctx);
    let dead = store.channel("dead").unwrap();
    let mut letters: BTreeMap<u64, usize> = BTreeMap::new();
    for msg in dead.read_from(1).unwrap() {
        let l = DeadLetter::from_message(msg.unwrap()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            l.delivery_count() >= MAX,
            "{ctx}: given up after {}",
            l.delivery_count()
        );
        *letters.entry(l.seq()).or_default() += 1;
    }
    assert!(letters.values().all(|n| *n == 1), "{ctx}: a letter twice: {letters:?}");
    let member = join(store).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(member.terminated() >= m.terminated, "{ctx}: terminated lost");
    let mut handed = Vec::new();
    while let Some(d) = member.try_recv().unwrap() {
        handed.push((d.seq(), d.delivery_count()));
    }
    if std::env::var("SPOOL_CRASH_DEBUG").is_ok() {
        eprintln!("{ctx}: model {m:?} handed {handed:?}");
    }
    // Giving up happens while receiving: the letters are all there now.
    let mut letters_now = 0;
    for msg in dead.read_from(1).unwrap() {
        let l = DeadLetter::from_message(msg.unwrap()).unwrap();
        letters_now += 1;
        assert!(
            !handed.iter().any(|(s, _)| *s == l.seq()),
            "{ctx}: {} handed out with its dead letter there",
            l.seq()
        );
    }
    assert_eq!(
        member.dead_lettered(),
        letters_now,
        "{ctx}: dead_lettered counts the letters"
    );
    for (seq, count) in &handed {
        assert!(
            !m.acked.contains(seq) || m.acked_maybe == Some(*seq),
            "{ctx}: acked {seq} handed out again"
        );
        if process_crash {
            let truth = m.counts.get(seq).copied().unwrap_or(0) + 1;
            assert!(
                *count >= truth && *count <= truth + 1,
                "{ctx}: {seq} delivered as {count}, truly {truth}"
            );
        }
    }
}

fn snapshot(sim: &SimStorage) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    sim.list_all()
        .into_iter()
        .filter(|p| !p.ends_with("LOCK"))
        .filter_map(|p| sim.read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn explore(workload: &[Op], rng: &mut Rng) -> usize {
    let calls = {
        let (mut w, mut m) = setup();
        let start = w.sim.ops();
        for op in workload {
            assert!(run(*op, &mut w, &mut m), "{workload:?} fails without a crash");
        }
        w.sim.ops() - start
    };
    let mut states = 0;
    for crash_at in 0..=calls {
        let (mut w, mut m) = setup();
        w.sim.crash_after_ops(Some(crash_at));
        for op in workload {
            if !run(*op, &mut w, &mut m) {
                break;
            }
        }
        let (pages, ns_ops) = w.sim.dirty();
        let all = if pages >= 64 { u64::MAX } else { (1u64 << pages) - 1 };
        let mut masks: Vec<u64> = if pages <= 5 {
            (0..=all).collect()
        } else {
            (0..8).map(|_| rng.next() & all).collect()
        };
        masks.push(all);
        for mask in masks {
            for keep_ns in [0, ns_ops] {
                let image = w.sim.power_loss_choosing(mask, keep_ns);
                let ctx =
                    format!("{workload:?} crash at {crash_at}/{calls}, pages {mask:#b}/{pages}, ns {keep_ns}/{ns_ops}");
                let first = open_sim(&image, opts()).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let process_crash = mask == all && keep_ns == ns_ops && pages <= 64;
                check(&first, &m, process_crash, &ctx);
                drop(first);
                let before = snapshot(&image);
                drop(open_sim(&image, opts()).unwrap());
                assert_eq!(before, snapshot(&image), "{ctx}: the second recovery changed bytes");
                states += 1;
            }
        }
        w.member = None;
    }
    states
}

#[test]
fn every_crash_point_of_queue_workloads() {
    let mut rng = Rng(common::seed());
    let mut workloads: Vec<Vec<Op>> = OPS.iter().map(|o| vec![*o]).collect();
    for a in OPS {
        for b in OPS {
            workloads.push(vec![a, b]);
            for c in OPS {
                if rng.below(1000) < 80 {
                    workloads.push(vec![a, b, c]);
                }
            }
        }
    }
    let mut states = 0;
    for w in &workloads {
        states += explore(w, &mut rng);
    }
    eprintln!("{} workloads, {states} crash states recovered twice", workloads.len());
    assert!(states > workloads.len());
}
