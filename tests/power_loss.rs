//! Random workloads on simulated storage, cut by power losses at random
//! points; every recovery must yield an exact prefix holding everything
//! durable, and a second recovery must change nothing.

mod common;

use common::{open_sim, payload, read_all, seed, small, Rng};
use spool::sim::SimStorage;
use spool::{Options, SyncPolicy};

/// What the test knows was published and made durable, per channel.
#[derive(Default, Clone)]
struct Model {
    written: Vec<Vec<u8>>,
    durable: usize,
}

const CHANNELS: [&str; 2] = ["a", "b"];

fn check_and_adopt(store: &spool::Store, models: &mut [Model], context: &str) {
    common::assert_verified(store, context);
    for (name, model) in CHANNELS.iter().zip(models.iter_mut()) {
        let got = read_all(store, name);
        assert!(
            got.len() >= model.durable,
            "{context}: channel {name} lost durable messages: {} < {}",
            got.len(),
            model.durable
        );
        assert!(
            got.len() <= model.written.len(),
            "{context}: {name} has messages never written"
        );
        for (i, (seq, p)) in got.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "{context}: {name} has a hole");
            assert_eq!(p, &model.written[i], "{context}: {name} seq {seq} differs");
        }
        model.written.truncate(got.len());
        model.durable = got.len();
    }
}

fn snapshot(sim: &SimStorage) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    sim.list_all()
        .into_iter()
        .filter_map(|p| sim.read(&p).ok().map(|b| (p, b)))
        .filter(|(p, _)| !p.ends_with("LOCK"))
        .collect()
}

fn run(seed: u64, steps: usize, opts: Options) {
    let mut rng = Rng(seed);
    let mut sim = SimStorage::new();
    let mut models = vec![Model::default(); CHANNELS.len()];
    let mut store = open_sim(&sim, opts.clone()).unwrap();
    let mut crashes = 0;
    for step in 0..steps {
        let c = rng.below(CHANNELS.len() as u64) as usize;
        let ch = store.channel(CHANNELS[c]).unwrap();
        let model = &mut models[c];
        match rng.below(100) {
            0..=49 => {
                let seq = model.written.len() as u64 + 1;
                let p = payload(c as u64, seq + rng.below(3));
                assert_eq!(ch.publish(&p).unwrap(), seq);
                model.written.push(p);
            }
            50..=69 => {
                let n = 1 + rng.below(40);
                let first = model.written.len() as u64 + 1;
                let batch: Vec<Vec<u8>> = (first..first + n).map(|s| payload(7, s)).collect();
                assert_eq!(ch.publish_batch(&batch).unwrap(), first..=first + n - 1);
                model.written.extend(batch);
            }
            70..=84 => {
                ch.sync().unwrap();
                model.durable = model.written.len();
            }
            _ => {
                crashes += 1;
                let context = format!("seed {seed} step {step} crash {crashes}");
                let after = sim.power_loss(rng.next());
                drop(ch);
                drop(store);
                let recovered = open_sim(&after, opts.clone()).unwrap_or_else(|e| panic!("{context}: {e}"));
                check_and_adopt(&recovered, &mut models, &context);
                recovered.close().unwrap();
                let first = snapshot(&after);
                let again = open_sim(&after, opts.clone()).unwrap();
                check_and_adopt(&again, &mut models, &format!("{context} (second open)"));
                again.close().unwrap();
                assert_eq!(first, snapshot(&after), "{context}: reopening changed bytes");
                sim = after;
                store = open_sim(&sim, opts.clone()).unwrap();
            }
        }
    }
    assert!(crashes > 0);
}

#[test]
fn random_workloads_survive_power_loss() {
    let base = seed();
    for i in 0..40 {
        run(base.wrapping_add(i), 200, small(16 << 10));
    }
}

#[test]
fn power_loss_with_sync_always() {
    let base = seed();
    for i in 0..10 {
        run(
            base.wrapping_add(1000 + i),
            120,
            small(16 << 10).sync_policy(SyncPolicy::Always),
        );
    }
}
