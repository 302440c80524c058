//! Damage below the last sync point of a store whose process was killed.
//!
//! Each round runs a seeded workload on simulated storage (two channels,
//! one with a retention limit, plain subscribers committing with state, a
//! queue group acking), calls `Store::sync()` at a point, keeps writing
//! without syncing, and is killed (`SimStorage::process_crash`: everything
//! written survives, as after SIGKILL). Then ONE piece of data known
//! durable is damaged: a record at or below the channel's `durable_seq()`
//! at the sync, a segment holding only such records, a segment header, a
//! commit record made before the sync, the subscribers log, the catalog,
//! an index file. The contract:
//!
//! - strict open returns everything written (after a process crash nothing
//!   written may be missing) with damage found on read as `Corrupt`, or
//!   fails with `Error::Corrupt`; never Ok with fewer durable messages or
//!   an older commit;
//! - repair opens, keeps every record the damage left intact, and its
//!   report accounts for every message and commit that is missing.
//!
//! Environment: `SPOOL_SEED` (printed), `SPOOL_SIGKILL_DAMAGE_ROUNDS`
//! (default 150), `SPOOL_SIGKILL_DAMAGE_ROUND` (only that round),
//! `SPOOL_SIGKILL_DAMAGE_VERBOSE=1`.

mod common;
#[path = "common/damage.rs"]
mod damage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::Rng;
use damage::{observe, repair_diff, strict_diff, walk_frames, FrameLoc, Report, StoreView, SubView, HEADER_LEN};
use spool::sim::SimStorage;
use spool::{Error, Limits, ManualClock, Options, RecoveryMode, StartAt, Store, SyncPolicy};

const ROOT: &str = "/k";

fn opts(sim: &SimStorage) -> Options {
    Options::default()
        .segment_size(8192)
        .index_interval(256)
        .max_payload(1024)
        .sync_policy(SyncPolicy::Never)
        .compact_interval(Duration::from_secs(3600))
        .clock(Arc::new(ManualClock::new(1_700_000_000_000_000_000)))
        .simulated(sim)
}

fn payload(tag: u64, seq: u64) -> Vec<u8> {
    common::payload(tag, seq)
}

/// What the workload wrote and what of it was durable.
#[derive(Default, Debug)]
struct Model {
    /// Channel -> (id, tag, first retained, last written, durable at sync).
    channels: BTreeMap<String, (u64, u64, u64, u64, u64)>,
    /// (channel, subscriber) -> (latest position, latest state, position
    /// durable at the sync).
    subs: BTreeMap<(String, String), (u64, Vec<u8>, u64)>,
    /// States of commits made before the sync (durable).
    durable_states: Vec<Vec<u8>>,
}

/// Runs the workload and kills it; returns the crash image.
fn workload(rng: &mut Rng) -> (SimStorage, Model) {
    let sim = SimStorage::new();
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let store = Store::open(ROOT, opts(&sim).clock(Arc::new(clock.clone()))).unwrap();
    let p = store.channel("p").unwrap();
    let q = store.channel_with_limits("q", Limits::default().max_msgs(250)).unwrap();
    let s1 = p.subscribe("s1", StartAt::First).unwrap();
    let s2 = q.subscribe("s2", StartAt::First).unwrap();
    let w = q.queue_subscribe("w", StartAt::First).unwrap();
    let mut model = Model::default();
    let mut k = 0u64;
    let mut commits: BTreeMap<&str, (u64, Vec<u8>)> = BTreeMap::new();
    let mut phase = |n: u64, rng: &mut Rng, commits: &mut BTreeMap<&'static str, (u64, Vec<u8>)>, durable: bool| {
        for _ in 0..n {
            clock.advance(Duration::from_micros(1 + rng.below(2000)));
            let ch = if rng.below(3) == 0 { &q } else { &p };
            let tag = if ch.name() == "p" { 1 } else { 2 };
            let seq = ch.last_seq() + 1;
            assert_eq!(ch.publish(&payload(tag, seq)).unwrap(), seq);
            if rng.below(25) == 0 {
                k += 1;
                let (sub, ch, name) = if rng.below(2) == 0 {
                    (&s1, &p, "s1")
                } else {
                    (&s2, &q, "s2")
                };
                let prev = commits.get(name).map_or(0, |c| c.0);
                let pos = prev + rng.below(ch.last_seq() - prev + 1);
                let state = format!("{name}@{pos}#{k}").into_bytes();
                sub.commit(pos, &state).unwrap();
                if durable {
                    model.durable_states.push(state.clone());
                }
                commits.insert(name, (pos, state));
            }
            if rng.below(40) == 0 {
                if let Some(d) = w.try_recv().unwrap() {
                    w.ack(d.message().seq()).unwrap();
                }
            }
        }
    };
    phase(300 + rng.below(700), rng, &mut commits, true);
    if rng.below(2) == 0 {
        store.compact_now().unwrap();
    }
    phase(rng.below(100), rng, &mut commits, true);
    store.sync().unwrap();
    let durable_at_sync: BTreeMap<String, u64> = [(&p, "p"), (&q, "q")]
        .iter()
        .map(|(c, n)| (n.to_string(), c.durable_seq()))
        .collect();
    let durable_commits = commits.clone();
    let after_sync = if rng.below(2) == 0 {
        rng.below(30)
    } else {
        rng.below(400)
    };
    phase(after_sync, rng, &mut commits, false);
    for (ch, tag) in [(&p, 1), (&q, 2)] {
        model.channels.insert(
            ch.name().to_string(),
            (ch.id(), tag, ch.first_seq(), ch.last_seq(), durable_at_sync[ch.name()]),
        );
    }
    for (name, ch) in [("s1", "p"), ("s2", "q")] {
        let (pos, state) = commits.get(name).cloned().unwrap_or((0, Vec::new()));
        let durable = durable_commits.get(name).map_or(0, |c| c.0);
        model
            .subs
            .insert((ch.to_string(), name.to_string()), (pos, state, durable));
    }
    // Killed: no close, nothing more reaches the files.
    let image = sim.process_crash();
    drop((s1, s2, w, p, q));
    drop(store);
    (image, model)
}

/// A record of the crash image and where its frame is.
struct RecLoc {
    channel: String,
    seq: u64,
    path: PathBuf,
    frame: FrameLoc,
}

fn locate(image: &SimStorage, model: &Model) -> Vec<RecLoc> {
    let mut out = Vec::new();
    for (name, &(id, _, first, _, _)) in &model.channels {
        let dir = PathBuf::from(format!("{ROOT}/channels/{id}"));
        let mut segs: Vec<PathBuf> = image
            .list_all()
            .into_iter()
            .filter(|p| p.parent() == Some(&dir) && p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segs.sort();
        for seg in segs {
            let base = damage::segment_base(&seg).unwrap();
            let bytes = image.read(&seg).unwrap();
            for f in walk_frames(&bytes, HEADER_LEN, base)
                .into_iter()
                .filter(|f| f.seq >= first)
            {
                out.push(RecLoc {
                    channel: name.clone(),
                    seq: f.seq,
                    path: seg.clone(),
                    frame: f,
                });
            }
        }
    }
    out
}

/// Damages one piece of durable data in `sim`; returns what was done, or
/// `None` when the chosen kind has no candidate in this image.
fn damage_durable(sim: &SimStorage, model: &Model, recs: &[RecLoc], rng: &mut Rng) -> Option<(String, String)> {
    let durable: Vec<&RecLoc> = recs.iter().filter(|r| r.seq <= model.channels[&r.channel].4).collect();
    let write = |path: &Path, bytes: &[u8]| sim.overwrite(path, bytes).unwrap();
    let kind = rng.below(100);
    if kind < 35 {
        // A durable record: flip a bit, zero a span inside durable records,
        // or smash its header with 0xFF.
        let r = durable.get(rng.below(durable.len() as u64) as usize)?;
        let mut bytes = sim.read(&r.path).ok()?;
        let at = r.frame.offset + rng.below(r.frame.covered as u64) as usize;
        let how = [0, 1, 2, 2][rng.below(4) as usize];
        let what = match how {
            0 => {
                let bit = rng.below(8);
                bytes[at] ^= 1 << bit;
                format!("flipped bit {bit} at {at} in {}#{}", r.channel, r.seq)
            }
            1 => {
                // Up to the end of the last durable record of this file.
                let end = durable
                    .iter()
                    .filter(|d| d.path == r.path)
                    .map(|d| d.frame.offset + d.frame.covered)
                    .max()
                    .unwrap();
                let stop = (at + 1 + rng.below(600) as usize).min(end);
                bytes[at..stop].fill(0);
                format!("zeroed {at}..{stop} from {}#{}", r.channel, r.seq)
            }
            _ => {
                let o = r.frame.offset;
                bytes[o..o + damage::FRAME_HEADER_LEN].fill(0xFF);
                format!("0xFF over the frame header of {}#{} at {o}", r.channel, r.seq)
            }
        };
        write(&r.path, &bytes);
        return Some(("record".into(), format!("{}: {what}", r.path.display())));
    }
    if kind < 50 {
        // A segment all of whose records are durable (not the newest).
        let mut by_file: BTreeMap<&PathBuf, (bool, u64)> = BTreeMap::new();
        for r in recs {
            let e = by_file.entry(&r.path).or_insert((true, 0));
            e.0 &= r.seq <= model.channels[&r.channel].4;
            e.1 += 1;
        }
        let newest: Vec<&PathBuf> = model
            .channels
            .values()
            .filter_map(|c| {
                let dir = format!("{ROOT}/channels/{}/", c.0);
                by_file
                    .keys()
                    .filter(|p| p.to_str().unwrap().starts_with(&dir))
                    .max()
                    .copied()
            })
            .collect();
        let files: Vec<&PathBuf> = by_file
            .iter()
            .filter(|(p, (all, _))| *all && !newest.contains(p))
            .map(|(p, _)| *p)
            .collect();
        let path = files.get(rng.below(files.len() as u64) as usize)?;
        let bytes = sim.read(path).ok()?;
        let what = match rng.below(3) {
            0 => {
                sim.remove(path).unwrap();
                "deleted".to_string()
            }
            1 => {
                let cut = rng.below(bytes.len() as u64) as usize;
                write(path, &bytes[..cut]);
                format!("truncated to {cut}")
            }
            _ => {
                let mut b = bytes.clone();
                let end = 4096.min(b.len());
                b[..end].fill(0);
                write(path, &b);
                "zeroed page 0".to_string()
            }
        };
        return Some(("sealed segment".into(), format!("{}: {what}", path.display())));
    }
    if kind < 60 {
        // The header (fixed part or slots) of a segment holding durable
        // records.
        let how = rng.below(3);
        let candidates: Vec<&&RecLoc> = if how == 2 {
            // The newest segment of its channel: only its slots say how
            // far it is durable.
            durable
                .iter()
                .filter(|d| recs.iter().filter(|x| x.channel == d.channel).all(|x| x.path <= d.path))
                .collect()
        } else {
            durable.iter().collect()
        };
        let r = candidates.get(rng.below(candidates.len() as u64) as usize)?;
        let mut bytes = sim.read(&r.path).ok()?;
        let first_end = recs
            .iter()
            .filter(|x| x.path == r.path)
            .map(|x| x.frame.offset + x.frame.covered)
            .min()
            .unwrap_or(128);
        let (from, to) = match how {
            0 => (0, 64),
            1 => (64, 128),
            // Both slots and the first record: the watermark is gone and
            // the records seem to end at once.
            _ => (64, first_end),
        };
        let what = if to > 128 || rng.below(2) == 0 {
            bytes[from..to].fill(0);
            format!("zeroed {from}..{to}")
        } else {
            let at = from + rng.below((to - from) as u64) as usize;
            bytes[at] ^= 0x04;
            format!("flipped byte {at}")
        };
        write(&r.path, &bytes);
        return Some(("segment header".into(), format!("{}: {what}", r.path.display())));
    }
    if kind < 85 {
        // The subscribers log: a commit made before the sync, its header,
        // or the whole file.
        let path = PathBuf::from(format!("{ROOT}/subscribers"));
        let mut bytes = sim.read(&path).ok()?;
        let how = rng.below(4);
        let what = if how < 2 {
            let frames: Vec<FrameLoc> = damage::sublog_records(&bytes)
                .into_iter()
                .filter(|(_, rec)| match rec {
                    damage::SubRecord::Commit { state, .. } => model.durable_states.contains(state),
                    _ => false,
                })
                .map(|(f, _)| f)
                .collect();
            let f = frames.get(rng.below(frames.len() as u64) as usize)?;
            let at = f.offset + rng.below(f.covered as u64) as usize;
            if how == 0 {
                bytes[at] ^= 0x01;
                format!("flipped a bit of a durable commit record at {at}")
            } else {
                let stop = (at + 1 + rng.below(64) as usize).min(f.offset + f.covered);
                bytes[at..stop].fill(0);
                format!("zeroed {at}..{stop} in a durable commit record")
            }
        } else if how == 2 {
            bytes[..HEADER_LEN].fill(0);
            "zeroed its header".into()
        } else {
            sim.remove(&path).unwrap();
            return Some(("subscribers".into(), "deleted".into()));
        };
        write(&path, &bytes);
        return Some(("subscribers".into(), what));
    }
    if kind < 95 {
        let path = PathBuf::from(format!("{ROOT}/catalog"));
        let mut bytes = sim.read(&path).ok()?;
        let what = match rng.below(3) {
            0 => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 0x02;
                write(&path, &bytes);
                format!("flipped byte {at}")
            }
            1 => {
                let cut = rng.below(bytes.len() as u64) as usize;
                write(&path, &bytes[..cut]);
                format!("truncated to {cut}")
            }
            _ => {
                sim.remove(&path).unwrap();
                "deleted".into()
            }
        };
        return Some(("catalog".into(), what));
    }
    let idx: Vec<PathBuf> = sim
        .list_all()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    let path = idx.get(rng.below(idx.len() as u64) as usize)?;
    if rng.below(2) == 0 {
        sim.remove(path).unwrap();
        Some(("index".into(), format!("{}: deleted", path.display())))
    } else {
        let mut bytes = sim.read(path).ok()?;
        let at = rng.below(bytes.len().max(1) as u64) as usize;
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0x80;
        }
        write(path, &bytes);
        Some(("index".into(), format!("{}: flipped byte {at}", path.display())))
    }
}

/// Checks the undamaged crash image against what was written.
fn check_model(model: &Model, view: &StoreView) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, &(id, tag, first, last, _)) in &model.channels {
        let Some(ch) = view.channels.get(name) else {
            bad.push(format!("channel {name} gone"));
            continue;
        };
        if (ch.id, ch.first, ch.last) != (id, first, last) {
            bad.push(format!(
                "channel {name}: id {} serves {}..={} where {id} {first}..={last} was written",
                ch.id, ch.first, ch.last
            ));
        }
        let wrong = ch
            .msgs
            .iter()
            .filter(|(s, r)| **r != damage::Read::Ok(payload(tag, **s)))
            .count();
        if wrong > 0 {
            bad.push(format!("channel {name}: {wrong} messages differ from what was written"));
        }
    }
    for ((ch, sub), (pos, state, _)) in &model.subs {
        let got = view.channels.get(ch).and_then(|c| c.subs.get(sub));
        let want = SubView::Plain {
            position: *pos,
            state: state.clone(),
        };
        if got != Some(&want) {
            bad.push(format!("{ch}/{sub}: {got:?} where {want:?} was committed"));
        }
    }
    bad
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    strict_ok: u64,
    strict_lazy: u64,
    strict_refused: u64,
    repair_ok: u64,
    failed: u64,
}

#[test]
fn damage_below_sync_point_after_kill() {
    let seed = common::seed();
    let rounds: u64 = std::env::var("SPOOL_SIGKILL_DAMAGE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let only: Option<u64> = std::env::var("SPOOL_SIGKILL_DAMAGE_ROUND")
        .ok()
        .and_then(|v| v.parse().ok());
    let verbose = std::env::var("SPOOL_SIGKILL_DAMAGE_VERBOSE").is_ok_and(|v| v == "1");
    let list: Vec<u64> = only.map_or_else(|| (0..rounds).collect(), |n| vec![n]);
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut failures: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    let mut skipped = 0;
    for n in list {
        let mut rng = Rng(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        let (image, model) = workload(&mut rng);
        let recs = locate(&image, &model);
        // What the undamaged image serves (everything written).
        let expected = {
            let copy = image.process_crash();
            let store = Store::open(ROOT, opts(&copy)).expect("undamaged crash image opens");
            let v = observe(&store);
            drop(store);
            v
        };
        let mut round_fail: Vec<(String, String)> = Vec::new();
        for b in check_model(&model, &expected) {
            round_fail.push(("undamaged crash image differs from what was written".into(), b));
        }
        let damaged = image.process_crash();
        let Some((kind, what)) = damage_durable(&damaged, &model, &recs, &mut rng) else {
            skipped += 1;
            continue;
        };
        let t = tally.entry(kind.clone()).or_default();
        t.rounds += 1;
        // Strict.
        let strict_outcome = match Store::open(ROOT, opts(&damaged.process_crash())) {
            Err(Error::Corrupt { .. }) => {
                t.strict_refused += 1;
                "refused".to_string()
            }
            Err(e) => {
                round_fail.push(("strict: error other than Corrupt".into(), format!("{e:?}")));
                format!("error {e}")
            }
            Ok(store) => {
                let got = observe(&store);
                let report = Report::of(&store);
                drop(store);
                let (bad, lazy) = strict_diff(&expected, &got);
                if bad.is_empty() {
                    if lazy > 0 {
                        t.strict_lazy += 1;
                    } else {
                        t.strict_ok += 1;
                    }
                } else {
                    // Which of it was durable?
                    let durable_lost = model.channels.iter().any(|(name, c)| {
                        got.channels.get(name).is_none_or(|g| {
                            (c.2..=c.4).any(|s| {
                                !matches!(
                                    g.msgs.get(&s),
                                    Some(damage::Read::Ok(_)) | Some(damage::Read::Corrupt(_))
                                )
                            })
                        })
                    }) || model.subs.iter().any(|((ch, sub), s)| {
                        got.channels
                            .get(ch)
                            .and_then(|c| c.subs.get(sub))
                            .and_then(SubView::position)
                            .is_none_or(|p| p < s.2)
                    });
                    let cat = if durable_lost {
                        "strict: opened Ok with less DURABLE data"
                    } else {
                        "strict: opened Ok with less (written, unsynced) data"
                    };
                    round_fail.push((cat.into(), format!("{}; report {report:?}", bad.join("; "))));
                }
                format!("ok (lazy Corrupt {lazy})")
            }
        };
        // Repair.
        let repair_sim = damaged.process_crash();
        match Store::open(ROOT, opts(&repair_sim).recovery_mode(RecoveryMode::Repair)) {
            Err(e) => round_fail.push(("repair: refused".into(), damage::err_text(&e))),
            Ok(store) => {
                t.repair_ok += 1;
                let got = observe(&store);
                let report = Report::of(&store);
                drop(store);
                for line in repair_diff(&expected, &got, &report) {
                    round_fail.push((
                        "repair: report does not match".into(),
                        format!("{line}; report {report:?}"),
                    ));
                }
                // Records the damage left intact are served.
                let dropped: Vec<&RecLoc> = recs
                    .iter()
                    .filter(|r| {
                        let range = r.frame.offset..r.frame.offset + r.frame.covered;
                        let (a, b) = (image.read(&r.path).ok(), damaged.read(&r.path).ok());
                        let intact = matches!((&a, &b), (Some(a), Some(b)) if a.get(range.clone()) == b.get(range.clone()) && b.get(range.clone()).is_some());
                        intact
                            && got.channels.get(&r.channel).and_then(|c| c.msgs.get(&r.seq))
                                != expected.channels[&r.channel].msgs.get(&r.seq)
                    })
                    .collect();
                if let Some(r) = dropped.first() {
                    round_fail.push((
                        "repair: dropped intact records".into(),
                        format!(
                            "{} intact records not served, first {}#{} ({} at {})",
                            dropped.len(),
                            r.channel,
                            r.seq,
                            r.path.display(),
                            r.frame.offset
                        ),
                    ));
                }
            }
        }
        if verbose || only.is_some() {
            eprintln!("round {n}: {kind}: {what} -> strict {strict_outcome}");
            for (c, d) in &round_fail {
                eprintln!("    FAILURE {c}: {d}");
            }
        }
        if !round_fail.is_empty() {
            t.failed += 1;
        }
        let mut seen = Vec::new();
        for (cat, detail) in round_fail {
            if seen.contains(&cat) {
                continue;
            }
            seen.push(cat.clone());
            let e = failures.entry((kind.clone(), cat)).or_insert((0, String::new()));
            e.0 += 1;
            if e.1.is_empty() {
                let mut d = detail;
                d.truncate(900);
                e.1 = format!(
                    "SPOOL_SEED={seed} SPOOL_SIGKILL_DAMAGE_ROUND={n}: {what}; strict {strict_outcome}\n        {d}"
                );
            }
        }
    }
    let mut s =
        format!("damage below the sync point after a kill: SPOOL_SEED={seed} ({skipped} rounds without a candidate)\n");
    s += "damage kind: rounds | strict ok / lazy Corrupt / refused | repair ok | FAILED\n";
    for (k, t) in &tally {
        s += &format!(
            "  {k:<15} {:>4} | {:>4} {:>4} {:>4} | {:>4} | {:>4}\n",
            t.rounds, t.strict_ok, t.strict_lazy, t.strict_refused, t.repair_ok, t.failed
        );
    }
    for ((k, cat), (count, ex)) in &failures {
        s += &format!("  [{k}] {cat}: {count} round(s)\n      e.g. {ex}\n");
    }
    eprintln!("{s}");
    let failed: u64 = tally.values().map(|t| t.failed).sum();
    assert_eq!(failed, 0, "{failed} rounds failed; see above");
}
