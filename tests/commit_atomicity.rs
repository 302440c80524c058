//! Subscriber commits under power loss: position and state always from one
//! commit, multi-subscriber commits all-or-nothing, never behind the last
//! durable commit, never ahead of the durable log.

mod common;

use common::{open_sim, seed, small, Rng};
use spool::sim::SimStorage;
use spool::{Options, StartAt, Store, SyncPolicy};

const CHANNELS: [&str; 2] = ["a", "b"];

/// Every commit made, in order: which subscriber got which position. A
/// commit's state is its index in this history.
#[derive(Default)]
struct History {
    commits: Vec<Vec<(usize, u64)>>,
    /// Index of the last commit known durable.
    durable: Option<usize>,
}

impl History {
    /// The position subscriber `s` must have if the log kept commits
    /// `..=upto`.
    fn position_after(&self, s: usize, upto: Option<usize>) -> u64 {
        let Some(k) = upto else { return 0 };
        self.commits[..=k]
            .iter()
            .rev()
            .find_map(|c| c.iter().find(|(who, _)| *who == s).map(|(_, p)| *p))
            .unwrap_or(0)
    }
}

fn state_index(state: &[u8]) -> Option<usize> {
    (!state.is_empty()).then(|| u64::from_le_bytes(state.try_into().unwrap()) as usize)
}

fn check(store: &Store, history: &mut History, context: &str) {
    common::assert_verified(store, context);
    let mut found = Vec::new();
    for (s, name) in CHANNELS.iter().enumerate() {
        let ch = store.channel(name).unwrap();
        let sub = ch.subscribe("sub", StartAt::First).unwrap();
        let (pos, state) = sub.committed();
        assert!(
            pos <= ch.last_seq(),
            "{context}: position {pos} ahead of the log {}",
            ch.last_seq()
        );
        // A commit that survived in the subscribers log's unsynced tail may
        // point into the channel's recovered, not yet synced tail: both are
        // made durable by the next sync, channel first.
        ch.sync().unwrap();
        assert!(pos <= ch.durable_seq());
        found.push((s, pos, state_index(&state)));
    }
    let upto = found.iter().filter_map(|f| f.2).max();
    if let Some(d) = history.durable {
        assert!(
            upto.is_some_and(|u| u >= d),
            "{context}: lost durable commit {d}, log kept {upto:?}"
        );
    }
    for (s, pos, idx) in &found {
        let want = history.position_after(*s, upto);
        assert_eq!(
            *pos, want,
            "{context}: subscriber {s} has a position from another commit"
        );
        if let Some(i) = idx {
            assert!(
                history.commits[*i].iter().any(|(who, p)| who == s && p == pos),
                "{context}: state and position from different commits"
            );
        }
    }
    history.commits.truncate(upto.map_or(0, |u| u + 1));
    history.durable = upto;
}

fn run(seed: u64, steps: usize, opts: Options) {
    let always = opts.get_sync_policy() == SyncPolicy::Always;
    let mut rng = Rng(seed);
    let mut sim = SimStorage::new();
    let mut history = History::default();
    let mut store = open_sim(&sim, opts.clone()).unwrap();
    for step in 0..steps {
        let context = format!("seed {seed} step {step}");
        let chans: Vec<_> = CHANNELS.iter().map(|n| store.channel(n).unwrap()).collect();
        let subs: Vec<_> = chans
            .iter()
            .map(|c| c.subscribe("sub", StartAt::First).unwrap())
            .collect();
        let next_index = history.commits.len() as u64;
        match rng.below(10) {
            0..=3 => {
                let c = rng.below(2) as usize;
                let n = 1 + rng.below(20);
                let batch: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 30]).collect();
                chans[c].publish_batch(&batch).unwrap();
            }
            4..=5 => {
                let s = rng.below(2) as usize;
                let (cur, _) = subs[s].committed();
                let last = chans[s].last_seq();
                if last > cur {
                    let pos = cur + 1 + rng.below(last - cur);
                    subs[s].commit(pos, &next_index.to_le_bytes()).unwrap();
                    history.commits.push(vec![(s, pos)]);
                    if always {
                        history.durable = Some(next_index as usize);
                    }
                }
            }
            6..=7 => {
                let mut pair = Vec::new();
                for (s, sub) in subs.iter().enumerate() {
                    let (cur, _) = sub.committed();
                    let last = chans[s].last_seq();
                    pair.push((s, cur + rng.below(last - cur + 1)));
                }
                let refs: Vec<(&spool::Subscriber, u64)> = pair.iter().map(|(s, p)| (&subs[*s], *p)).collect();
                store.commit_all(&refs, &next_index.to_le_bytes()).unwrap();
                history.commits.push(pair);
                if always {
                    history.durable = Some(next_index as usize);
                }
            }
            8 => {
                store.sync().unwrap();
                history.durable = history.commits.len().checked_sub(1).or(history.durable);
            }
            _ => {
                let after = sim.power_loss(rng.next());
                drop(subs);
                drop(chans);
                drop(store);
                let recovered = open_sim(&after, opts.clone()).unwrap_or_else(|e| panic!("{context}: {e}"));
                check(&recovered, &mut history, &context);
                drop(recovered);
                sim = after;
                store = open_sim(&sim, opts.clone()).unwrap();
            }
        }
    }
}

#[test]
fn commits_survive_power_loss_with_sync_always() {
    let base = seed();
    for i in 0..25 {
        run(
            base.wrapping_add(i),
            80,
            small(16 << 10).sync_policy(SyncPolicy::Always),
        );
    }
}

#[test]
fn commits_survive_power_loss_with_explicit_syncs() {
    let base = seed();
    for i in 0..25 {
        run(base.wrapping_add(500 + i), 80, small(16 << 10));
    }
}

/// A commit made durable by a sync (`Always`) and damaged after a power
/// loss is found even though the log's header slot was not rewritten: the
/// watermark record a later sync appended vouches for it.
#[test]
fn damaged_durable_commit_is_found_through_a_later_watermark() {
    use spool::sim::SimStorage;
    use spool::{Error, Options, StartAt, Store, SyncPolicy};
    let sim = SimStorage::new();
    let opts = |sim: &SimStorage| Options::default().sync_policy(SyncPolicy::Always).simulated(sim);
    let store = Store::open("/w", opts(&sim)).unwrap();
    let ch = store.channel("c").unwrap();
    for _ in 0..50 {
        ch.publish(b"m").unwrap();
    }
    let sub = ch.subscribe("s", StartAt::First).unwrap();
    for pos in 1..=6u64 {
        sub.commit(pos * 5, format!("state at {}", pos * 5).as_bytes()).unwrap();
    }
    let image = sim.power_loss(3);
    drop((sub, ch));
    std::mem::forget(store);
    // Flip a byte in the state of the commit at 15 (durable: `Always`).
    let mut bytes = image.read("/w/subscribers").unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"state at 15")
        .expect("the commit at 15");
    bytes[at + 3] ^= 0x20;
    image.overwrite("/w/subscribers", &bytes).unwrap();
    match Store::open("/w", opts(&image)) {
        Err(Error::Corrupt { detail, .. }) => assert!(detail.contains("watermark"), "{detail}"),
        Err(e) => panic!("{e}"),
        Ok(store) => {
            let s = store.channel("c").unwrap().subscribe("s", StartAt::First).unwrap();
            panic!("opened with s at {:?}", s.committed());
        }
    }
}
