//! The seeded damage sweep. A base store (3 channels with several segments
//! each, two subscribers committing with state, a plain subscriber that
//! never committed, a queue group with acks, one retention limit that has
//! trimmed) is built once and closed cleanly, and what it serves is
//! recorded. Each round copies it, damages ONE file or directory in one
//! way, and opens one copy strictly and another with
//! `RecoveryMode::Repair`:
//!
//! - strict: either `Error::Corrupt`, or an open that serves exactly the
//!   pristine store (reads that fail with `Corrupt` are accepted: damage
//!   found lazily is not silent). Fewer messages, an older commit, a
//!   missing subscriber or a wrong byte = FAILURE "opened Ok with less".
//! - repair: must open (one damaged file always leaves something
//!   readable), and its `recovery_report()` must account for every
//!   difference from the pristine store: missing seqs inside reported lost
//!   ranges, reverted or missing subscribers in `subscribers.lost` with the
//!   position they reverted to, a restored catalog in `catalog_restored`.
//! - neither open may drop or overwrite a record whose bytes the damage
//!   left intact (same file, same offset, same bytes).
//!
//! Environment: `SPOOL_SEED` (printed), `SPOOL_SWEEP_ROUNDS` (default 300),
//! `SPOOL_SWEEP_ROUND` (run only that round, to reproduce one),
//! `SPOOL_SWEEP_VERBOSE=1` (a line per round), `SPOOL_SWEEP_SUMMARY` (where
//! the summary is written; default `<target tmp>/damage_sweep_summary.txt`).

mod common;
#[path = "common/damage.rs"]
mod damage;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Rng;
use damage::{
    observe, repair_diff, same_bytes, snapshot, strict_diff, FrameLoc, Node, Report, StoreView, SubView, PAGE,
};
use spool::{Error, Limits, ManualClock, Options, RecoveryMode, StartAt, Store, SyncPolicy};

const SEGMENT_SIZE: u64 = 8192;

fn opts() -> Options {
    Options::default()
        .segment_size(SEGMENT_SIZE)
        .index_interval(256)
        .max_payload(1024)
        .sync_policy(SyncPolicy::Never)
        .compact_interval(Duration::from_secs(3600))
        .clock(Arc::new(ManualClock::new(1_700_000_000_000_000_000)))
}

fn payload(tag: u64, seq: u64) -> Vec<u8> {
    common::payload(tag, seq)
}

// ------------------------------------------------------------------ base

/// A record of the pristine store and where its frame is.
struct RecLoc {
    channel: String,
    seq: u64,
    rel: PathBuf,
    frame: FrameLoc,
}

struct Base {
    dir: tempfile::TempDir,
    pristine: StoreView,
    snap: BTreeMap<PathBuf, Node>,
    records: Vec<RecLoc>,
    /// Latest commit frame of each subscriber in `subscribers`, by
    /// (channel name, subscriber name).
    commits: BTreeMap<(String, String), FrameLoc>,
    /// Where the records of each segment / the subscribers log end.
    used: BTreeMap<PathBuf, usize>,
    /// Frame offsets of each segment / the subscribers log.
    boundaries: BTreeMap<PathBuf, Vec<usize>>,
}

fn build_base() -> Base {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let o = opts().clock(Arc::new(clock.clone()));
    {
        let store = Store::open(dir.path(), o).unwrap();
        let a = store.channel("a").unwrap();
        let b = store.channel_with_limits("b", Limits::default().max_msgs(300)).unwrap();
        let c = store.channel("c").unwrap();
        let alpha = a.subscribe("alpha", StartAt::First).unwrap();
        let beta = b.subscribe("beta", StartAt::First).unwrap();
        let workers = c.queue_subscribe("workers", StartAt::First).unwrap();
        for seq in 1..=1000u64 {
            clock.advance(Duration::from_millis(1));
            a.publish(&payload(1, seq)).unwrap();
            if seq <= 600 {
                b.publish(&payload(2, seq)).unwrap();
            }
            if seq <= 400 {
                c.publish(&payload(3, seq)).unwrap();
            }
            match seq {
                60 => drop(c.subscribe("gamma", StartAt::Seq(50)).unwrap()),
                100 => alpha.commit(100, b"alpha at 100").unwrap(),
                350 => beta.commit(350, b"beta at 350").unwrap(),
                400 => {
                    let mut got = Vec::new();
                    for _ in 0..40 {
                        got.push(workers.try_recv().unwrap().unwrap().message().seq());
                    }
                    for s in got.into_iter().filter(|s| *s <= 30 || [35, 37, 39].contains(s)) {
                        workers.ack(s).unwrap();
                    }
                }
                450 => beta.commit(450, b"beta at 450").unwrap(),
                500 => alpha.commit(500, b"alpha at 500").unwrap(),
                900 => alpha.commit(900, b"nine hundred").unwrap(),
                950 => store
                    .commit_all(&[(&alpha, 950), (&beta, 500)], b"both at once")
                    .unwrap(),
                _ => {}
            }
        }
        store.sync().unwrap();
        store.compact_now().unwrap();
        assert_eq!(b.first_seq(), 301, "retention trimmed b");
        beta.commit(520, b"beta at 520").unwrap();
        drop((alpha, beta, workers, a, b, c));
        store.close().unwrap();
    }
    // What the pristine store serves, from a copy.
    let pristine = {
        let copy = tempfile::tempdir().unwrap();
        damage::copy_dir(dir.path(), copy.path());
        let store = Store::open(copy.path(), opts()).expect("pristine copy opens");
        let v = observe(&store);
        assert!(!Report::of(&store).lost_anything(), "a clean store reports nothing");
        store.close().unwrap();
        v
    };
    assert_eq!(
        pristine.channels["a"].subs["alpha"],
        SubView::Plain {
            position: 950,
            state: b"both at once".to_vec()
        }
    );
    assert_eq!(
        pristine.channels["b"].subs["beta"],
        SubView::Plain {
            position: 520,
            state: b"beta at 520".to_vec()
        }
    );
    assert_eq!(pristine.channels["c"].subs["gamma"].position(), Some(49));
    match &pristine.channels["c"].subs["workers"] {
        SubView::Queue { floor, next, error } => {
            assert_eq!((*floor, error), (30, &None));
            assert_eq!(&next[..6], &[31, 32, 33, 34, 36, 38]);
        }
        other => panic!("workers: {other:?}"),
    }
    for (name, first, last) in [("a", 1, 1000), ("b", 301, 600), ("c", 1, 400)] {
        let ch = &pristine.channels[name];
        assert_eq!((ch.first, ch.last), (first, last), "{name}");
        assert!(ch.msgs.values().all(|r| matches!(r, damage::Read::Ok(_))), "{name}");
    }

    let snap = snapshot(dir.path());
    let by_id: BTreeMap<u64, String> = pristine.channels.iter().map(|(n, c)| (c.id, n.clone())).collect();
    let mut records = Vec::new();
    let mut used = BTreeMap::new();
    let mut boundaries = BTreeMap::new();
    for (rel, node) in &snap {
        let Node::File(bytes) = node else { continue };
        if let Some(base) = damage::segment_base(rel) {
            let id: u64 = rel
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let channel = by_id[&id].clone();
            let frames = damage::walk_frames(bytes, damage::HEADER_LEN, base);
            used.insert(
                rel.clone(),
                frames.last().map_or(damage::HEADER_LEN, |f| f.offset + f.span),
            );
            boundaries.insert(rel.clone(), frames.iter().map(|f| f.offset).collect());
            let first = pristine.channels[&channel].first;
            for f in frames.into_iter().filter(|f| f.seq >= first) {
                records.push(RecLoc {
                    channel: channel.clone(),
                    seq: f.seq,
                    rel: rel.clone(),
                    frame: f,
                });
            }
        }
    }
    for (name, ch) in &pristine.channels {
        let n = records.iter().filter(|r| &r.channel == name).count() as u64;
        assert_eq!(n, ch.last - ch.first + 1, "every record of {name} located");
    }
    let Some(Node::File(log)) = snap.get(Path::new("subscribers")) else {
        panic!("no subscribers log")
    };
    let recs = damage::sublog_records(log);
    used.insert(
        PathBuf::from("subscribers"),
        recs.last().map_or(damage::HEADER_LEN, |(f, _)| f.offset + f.span),
    );
    boundaries.insert(
        PathBuf::from("subscribers"),
        recs.iter().map(|(f, _)| f.offset).collect(),
    );
    let commits = damage::latest_commits(log)
        .into_iter()
        .map(|((id, sub), f)| ((by_id[&id].clone(), sub), f))
        .collect::<BTreeMap<_, _>>();
    assert_eq!(commits.len(), 4, "latest commits located: {commits:?}");
    Base {
        dir,
        pristine,
        snap,
        records,
        commits,
        used,
        boundaries,
    }
}

// ---------------------------------------------------------------- damage

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    SealedSegment,
    LastSegment,
    Index,
    Catalog,
    CatalogBak,
    Subscribers,
    Lock,
    ChannelDir,
    ChannelsDir,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Damage {
    BitFlip,
    ZeroPage,
    FfPage,
    ZeroRange,
    Truncate,
    ExtendZeros,
    ExtendRandom,
    Delete,
    SwapSegments,
    ReplaceByDir,
    RemoveDir,
    EmptyDir,
}

const FILE_DAMAGE: [Damage; 9] = [
    Damage::BitFlip,
    Damage::ZeroPage,
    Damage::FfPage,
    Damage::ZeroRange,
    Damage::Truncate,
    Damage::ExtendZeros,
    Damage::ExtendRandom,
    Damage::Delete,
    Damage::ReplaceByDir,
];

fn classify(base: &Base, rel: &Path, node: &Node) -> Option<Target> {
    let name = rel.to_str()?;
    Some(match (name, node) {
        ("LOCK", _) => Target::Lock,
        ("catalog", _) => Target::Catalog,
        ("catalog.bak", _) => Target::CatalogBak,
        ("subscribers", _) => Target::Subscribers,
        ("channels", Node::Dir) => Target::ChannelsDir,
        (_, Node::Dir) => Target::ChannelDir,
        _ if rel.extension()? == "idx" => Target::Index,
        _ if rel.extension()? == "seg" => {
            let dir = rel.parent()?;
            let last = base
                .snap
                .keys()
                .filter(|p| p.parent() == Some(dir) && p.extension().is_some_and(|e| e == "seg"))
                .max()?;
            if last == rel {
                Target::LastSegment
            } else {
                Target::SealedSegment
            }
        }
        _ => return None,
    })
}

/// Picks what to damage: a target kind (weighted), then one of its files.
fn pick_target(base: &Base, rng: &mut Rng) -> (Target, PathBuf) {
    const WEIGHTS: [(Target, u64); 9] = [
        (Target::SealedSegment, 24),
        (Target::LastSegment, 14),
        (Target::Index, 10),
        (Target::Catalog, 8),
        (Target::CatalogBak, 5),
        (Target::Subscribers, 20),
        (Target::Lock, 3),
        (Target::ChannelDir, 10),
        (Target::ChannelsDir, 3),
    ];
    let total: u64 = WEIGHTS.iter().map(|w| w.1).sum();
    let mut pick = rng.below(total);
    let kind = WEIGHTS
        .iter()
        .find(|(_, w)| {
            if pick < *w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .unwrap()
        .0;
    let candidates: Vec<&PathBuf> = base
        .snap
        .iter()
        .filter(|(rel, node)| classify(base, rel, node) == Some(kind))
        .map(|(rel, _)| rel)
        .collect();
    assert!(!candidates.is_empty(), "no file of kind {kind:?}");
    (kind, candidates[rng.below(candidates.len() as u64) as usize].clone())
}

fn pick_damage(target: Target, rng: &mut Rng) -> Damage {
    let choices: Vec<Damage> = match target {
        Target::ChannelDir | Target::ChannelsDir => vec![Damage::RemoveDir, Damage::EmptyDir],
        Target::SealedSegment | Target::LastSegment => {
            let mut v = FILE_DAMAGE.to_vec();
            v.push(Damage::SwapSegments);
            v
        }
        _ => FILE_DAMAGE.to_vec(),
    };
    choices[rng.below(choices.len() as u64) as usize]
}

/// A position in a file: half the time among the bytes in use (records),
/// otherwise anywhere.
fn position(base: &Base, rel: &Path, len: usize, rng: &mut Rng) -> usize {
    let used = base.used.get(rel).copied().unwrap_or(len).clamp(1, len.max(1));
    if rng.below(2) == 0 {
        rng.below(used as u64) as usize
    } else {
        rng.below(len.max(1) as u64) as usize
    }
}

/// Applies the damage to the copy at `root`; returns what was done.
fn apply(base: &Base, root: &Path, rel: &Path, damage: Damage, rng: &mut Rng) -> String {
    let path = root.join(rel);
    let mut bytes = fs::read(&path).unwrap_or_default();
    let len = bytes.len();
    let write = |b: &[u8]| fs::write(&path, b).unwrap();
    match damage {
        Damage::BitFlip => {
            if len == 0 {
                return "bit flip in an empty file (no-op)".into();
            }
            let at = position(base, rel, len, rng);
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            write(&bytes);
            format!("flipped bit {bit} of byte {at}")
        }
        Damage::ZeroPage | Damage::FfPage => {
            let pages = len.div_ceil(PAGE).max(1);
            let page = if rng.below(2) == 0 {
                position(base, rel, len, rng) / PAGE
            } else {
                rng.below(pages as u64) as usize
            };
            let end = ((page + 1) * PAGE).min(len);
            let fill = if damage == Damage::ZeroPage { 0 } else { 0xFF };
            if page * PAGE < end {
                bytes[page * PAGE..end].fill(fill);
            }
            write(&bytes);
            format!("filled page {page} ({}..{end}) with {fill:#04x}", page * PAGE)
        }
        Damage::ZeroRange => {
            if len == 0 {
                return "zeroed nothing (empty file)".into();
            }
            let at = position(base, rel, len, rng);
            let end = (at + 1 + rng.below(512) as usize).min(len);
            bytes[at..end].fill(0);
            write(&bytes);
            format!("zeroed {at}..{end}")
        }
        Damage::Truncate => {
            let cut = match base.boundaries.get(rel) {
                Some(b) if !b.is_empty() && rng.below(3) == 0 => b[rng.below(b.len() as u64) as usize],
                _ => rng.below(len.max(1) as u64) as usize,
            };
            write(&bytes[..cut.min(len)]);
            format!("truncated to {cut} of {len} bytes")
        }
        Damage::ExtendZeros | Damage::ExtendRandom => {
            let n = 1 + rng.below(9000) as usize;
            let random = damage == Damage::ExtendRandom;
            bytes.extend((0..n).map(|_| if random { rng.next() as u8 } else { 0 }));
            write(&bytes);
            format!("extended by {n} {} bytes", if random { "random" } else { "zero" })
        }
        Damage::Delete => {
            fs::remove_file(&path).unwrap();
            "deleted".into()
        }
        Damage::ReplaceByDir => {
            fs::remove_file(&path).unwrap();
            fs::create_dir(&path).unwrap();
            "replaced by an empty directory".into()
        }
        Damage::SwapSegments => {
            let dir = path.parent().unwrap();
            let others: Vec<PathBuf> = common_segments(dir).into_iter().filter(|p| p != &path).collect();
            if others.is_empty() {
                fs::remove_file(&path).unwrap();
                return "deleted (no other segment to swap with)".into();
            }
            let other = &others[rng.below(others.len() as u64) as usize];
            let tmp = path.with_extension("swapping");
            fs::rename(&path, &tmp).unwrap();
            fs::rename(other, &path).unwrap();
            fs::rename(&tmp, other).unwrap();
            format!("swapped with {}", other.file_name().unwrap().to_string_lossy())
        }
        Damage::RemoveDir => {
            fs::remove_dir_all(&path).unwrap();
            "directory removed".into()
        }
        Damage::EmptyDir => {
            for e in fs::read_dir(&path).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    fs::remove_dir_all(p).unwrap();
                } else {
                    fs::remove_file(p).unwrap();
                }
            }
            "directory emptied".into()
        }
    }
}

fn common_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------- rounds

#[derive(Default)]
struct Round {
    target: Option<Target>,
    damage: Option<Damage>,
    file: PathBuf,
    what: String,
    strict: &'static str,
    strict_detail: String,
    lazy: usize,
    repair: &'static str,
    failures: Vec<(String, String)>,
}

fn fail(r: &mut Round, category: &str, detail: impl Into<String>) {
    r.failures.push((category.to_string(), detail.into()));
}

/// A short category for a repair-report problem line.
fn repair_category(line: &str) -> &'static str {
    const KEYS: [(&str, &str); 14] = [
        ("fails after repair", "repair: reading in order fails"),
        ("are readable to", "repair: reading in order skips readable messages"),
        ("not in a reported lost range", "repair: message loss not reported"),
        ("still Corrupt", "repair: reads still Corrupt"),
        ("wrong bytes", "repair: wrong bytes served"),
        ("reported lost but readable", "repair: loss over-reported"),
        ("extra messages", "repair: extra messages served"),
        ("before the pristine end", "repair: channel ends early (seqs reused)"),
        ("below the retained first", "repair: serves below first_seq"),
        ("not in subscribers.lost", "repair: subscriber revert not reported"),
        ("the report says reverted_to", "repair: wrong reverted_to"),
        ("appeared", "repair: phantom channel/subscriber"),
        ("is gone", "repair: channel gone"),
        ("has id", "repair: channel id changed"),
    ];
    KEYS.iter()
        .find(|(k, _)| line.contains(k))
        .map_or("repair: other mismatch", |(_, c)| c)
}

/// Records intact in the damaged image: same file, same offset, same
/// bytes as in the pristine store.
fn intact_records<'a>(base: &'a Base, damaged: &BTreeMap<PathBuf, Node>) -> Vec<&'a RecLoc> {
    base.records
        .iter()
        .filter(|r| {
            same_bytes(
                &base.snap,
                damaged,
                &r.rel,
                r.frame.offset..r.frame.offset + r.frame.covered,
            )
        })
        .collect()
}

fn overwritten<'a>(
    intact: &[&'a RecLoc],
    before: &BTreeMap<PathBuf, Node>,
    after: &BTreeMap<PathBuf, Node>,
) -> Vec<&'a RecLoc> {
    intact
        .iter()
        .filter(|r| !same_bytes(before, after, &r.rel, r.frame.offset..r.frame.offset + r.frame.covered))
        .copied()
        .collect()
}

fn run_round(base: &Base, seed: u64, round: u64, scratch: &Path) -> Round {
    let mut rng = Rng(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17));
    rng.next();
    let (target, rel) = pick_target(base, &mut rng);
    let damage = pick_damage(target, &mut rng);
    let mut r = Round {
        target: Some(target),
        damage: Some(damage),
        file: rel.clone(),
        ..Round::default()
    };
    let strict_dir = scratch.join(format!("r{round}-strict"));
    let repair_dir = scratch.join(format!("r{round}-repair"));
    damage::copy_dir(base.dir.path(), &strict_dir);
    r.what = apply(base, &strict_dir, &rel, damage, &mut rng);
    let damaged = snapshot(&strict_dir);
    damage::copy_dir(&strict_dir, &repair_dir);
    let intact = intact_records(base, &damaged);
    let sublog_rel = Path::new("subscribers");

    // ---- strict
    match Store::open(&strict_dir, opts()) {
        Err(Error::Corrupt { path, offset, detail }) => {
            r.strict = "refused";
            r.strict_detail = format!("Corrupt {}@{offset}: {detail}", path.display());
        }
        Err(e) => {
            r.strict = "other error";
            r.strict_detail = format!("{e:?}");
            fail(&mut r, "strict: error other than Corrupt", format!("{e:?}"));
        }
        Ok(store) => {
            let got = observe(&store);
            let report = Report::of(&store);
            let (bad, lazy) = strict_diff(&base.pristine, &got);
            // Damage a read runs into is damage `verify` reports.
            if lazy > 0 {
                match store.verify() {
                    Ok(v) if v.is_ok() => fail(
                        &mut r,
                        "verify: reports nothing where reads fail with Corrupt",
                        format!("{lazy} reads Corrupt; verify notes {:?}", v.notes),
                    ),
                    Ok(_) => {}
                    Err(e) => fail(&mut r, "verify: fails to run", format!("{e:?}")),
                }
            }
            store.close().ok();
            r.lazy = lazy;
            if bad.is_empty() {
                r.strict = if lazy > 0 { "ok, lazy Corrupt" } else { "ok, equal" };
            } else if bad.iter().all(|b| b.contains("other than Corrupt")) {
                r.strict = "ok, lazy other error";
                fail(&mut r, "strict: reads fail with a non-Corrupt error", bad.join("; "));
            } else {
                r.strict = "ok WITH LESS";
                fail(
                    &mut r,
                    "strict: opened Ok with less",
                    format!("{}; report {:?}", bad.join("; "), report),
                );
            }
        }
    }
    let after = snapshot(&strict_dir);
    if r.strict == "refused" {
        // A refusing open changes no data (the operator's next step is a
        // repair of the same files). LOCK holds the pid; removing derived
        // files (indexes, temp files) and creating directories is cleanup.
        let derived = |p: &Path| p.extension().is_some_and(|e| e == "idx" || e == "tmp");
        let changed: Vec<String> = damaged
            .keys()
            .chain(after.keys())
            .filter(|p| p.as_path() != Path::new("LOCK") && !derived(p))
            .filter(|p| damaged.get(*p) != after.get(*p))
            .filter(|p| damaged.contains_key(*p) || after.get(*p) != Some(&Node::Dir))
            .map(|p| p.display().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !changed.is_empty() {
            let detail = format!("changed: {changed:?}; {}", r.strict_detail);
            fail(&mut r, "strict: refused after changing files", detail);
        }
    }
    let gone = overwritten(&intact, &damaged, &after);
    if let Some(first) = gone.first() {
        fail(
            &mut r,
            "strict: overwrote intact records on disk",
            format!(
                "{} intact records overwritten, first {}#{} in {} at {}",
                gone.len(),
                first.channel,
                first.seq,
                first.rel.display(),
                first.frame.offset
            ),
        );
    }

    // ---- repair
    match Store::open(&repair_dir, opts().recovery_mode(RecoveryMode::Repair)) {
        Err(e) => {
            r.repair = "refused";
            fail(&mut r, "repair: refused", damage::err_text(&e));
        }
        Ok(store) => {
            let got = observe(&store);
            let report = Report::of(&store);
            store.close().ok();
            r.repair = "ok";
            for line in repair_diff(&base.pristine, &got, &report) {
                fail(&mut r, repair_category(&line), format!("{line}; report {report:?}"));
            }
            // Queue groups: a delivery that fails after repair.
            for (name, ch) in &got.channels {
                for (sub, v) in &ch.subs {
                    if let SubView::Queue { error: Some(e), .. } = v {
                        fail(&mut r, "repair: queue delivery fails", format!("{name}/{sub}: {e}"));
                    }
                }
            }
            // Intact records must be served.
            let dropped: Vec<&&RecLoc> = intact
                .iter()
                .filter(|rec| {
                    let pr = &base.pristine.channels[&rec.channel].msgs[&rec.seq];
                    got.channels.get(&rec.channel).and_then(|c| c.msgs.get(&rec.seq)) != Some(pr)
                })
                .collect();
            if let Some(first) = dropped.first() {
                fail(
                    &mut r,
                    "repair: dropped intact records",
                    format!(
                        "{} intact records not served, first {}#{} ({} at {}) reads {}",
                        dropped.len(),
                        first.channel,
                        first.seq,
                        first.rel.display(),
                        first.frame.offset,
                        got.channels
                            .get(&first.channel)
                            .and_then(|c| c.msgs.get(&first.seq))
                            .map_or("OutOfRange".into(), |x| x.short())
                    ),
                );
            }
            // Intact latest commits must be kept.
            for ((chan, sub), f) in &base.commits {
                if !same_bytes(&base.snap, &damaged, sublog_rel, f.offset..f.offset + f.covered) {
                    continue;
                }
                let pv = &base.pristine.channels[chan].subs[sub];
                let gv = got.channels.get(chan).and_then(|c| c.subs.get(sub));
                let same = match (pv, gv) {
                    (SubView::Plain { .. }, Some(g)) => g == pv,
                    (SubView::Queue { floor, .. }, Some(g)) => g.position() == Some(*floor),
                    _ => false,
                };
                if !same {
                    fail(
                        &mut r,
                        "repair: dropped an intact commit",
                        format!(
                            "{chan}/{sub}: latest commit intact at offset {}, {} became {}",
                            f.offset,
                            damage::brief(pv),
                            gv.map_or("gone".into(), damage::brief)
                        ),
                    );
                }
            }
            // The catalog.
            let catalog_changed = damaged.get(Path::new("catalog")) != base.snap.get(Path::new("catalog"));
            match (catalog_changed, &report.catalog_restored) {
                (true, None) => {
                    let what = r.what.clone();
                    fail(&mut r, "repair: catalog damage not reported", what);
                }
                (false, Some(why)) => fail(&mut r, "repair: catalog restored though intact", why.clone()),
                _ => {}
            }
        }
    }
    let after = snapshot(&repair_dir);
    let gone = overwritten(&intact, &damaged, &after);
    if let Some(first) = gone.first() {
        fail(
            &mut r,
            "repair: overwrote intact records on disk",
            format!(
                "{} intact records overwritten, first {}#{} in {} at {}",
                gone.len(),
                first.channel,
                first.seq,
                first.rel.display(),
                first.frame.offset
            ),
        );
    }
    let _ = fs::remove_dir_all(&strict_dir);
    let _ = fs::remove_dir_all(&repair_dir);
    r
}

// --------------------------------------------------------------- summary

#[derive(Default)]
struct Cell {
    rounds: u64,
    strict_equal: u64,
    strict_lazy: u64,
    strict_refused: u64,
    strict_other: u64,
    strict_less: u64,
    repair_ok: u64,
    repair_refused: u64,
    failed: u64,
}

fn summary(seed: u64, rounds: &[(u64, Round)], elapsed: Duration) -> (String, usize) {
    let mut cells: BTreeMap<(Target, Damage), Cell> = BTreeMap::new();
    // (target, damage, category) -> (count, first example)
    let mut failures: BTreeMap<(Target, Damage, String), (u64, String)> = BTreeMap::new();
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed_rounds = 0;
    for (n, r) in rounds {
        let key = (r.target.unwrap(), r.damage.unwrap());
        let c = cells.entry(key).or_default();
        c.rounds += 1;
        match r.strict {
            "ok, equal" => c.strict_equal += 1,
            "ok, lazy Corrupt" => c.strict_lazy += 1,
            "refused" => c.strict_refused += 1,
            "other error" | "ok, lazy other error" => c.strict_other += 1,
            _ => c.strict_less += 1,
        }
        if r.repair == "ok" {
            c.repair_ok += 1;
        } else {
            c.repair_refused += 1;
        }
        if !r.failures.is_empty() {
            c.failed += 1;
            failed_rounds += 1;
        }
        let mut seen = Vec::new();
        for (cat, detail) in &r.failures {
            if seen.contains(cat) {
                continue;
            }
            seen.push(cat.clone());
            *by_category.entry(cat.clone()).or_default() += 1;
            if cat == "repair: refused" {
                let reason = detail.split(": ").last().unwrap_or(detail).to_string();
                *refusals.entry(reason).or_default() += 1;
            }
            let e = failures
                .entry((key.0, key.1, cat.clone()))
                .or_insert_with(|| (0, String::new()));
            e.0 += 1;
            if e.1.is_empty() {
                let mut d = detail.clone();
                d.truncate(900);
                e.1 = format!(
                    "SPOOL_SEED={seed} SPOOL_SWEEP_ROUND={n}: {} {}; strict: {} {}\n        {d}",
                    r.file.display(),
                    r.what,
                    r.strict,
                    r.strict_detail
                );
            }
        }
    }
    let mut s = String::new();
    let total = rounds.len();
    let sum = |f: fn(&Cell) -> u64| cells.values().map(f).sum::<u64>();
    let _ = writeln!(
        s,
        "damage sweep: SPOOL_SEED={seed}, {total} rounds in {:.1} s",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "strict: ok-equal {}, ok-lazy-Corrupt {}, refused(Corrupt) {}, non-Corrupt error (open or read) {}, OK WITH LESS {}",
        sum(|c| c.strict_equal),
        sum(|c| c.strict_lazy),
        sum(|c| c.strict_refused),
        sum(|c| c.strict_other),
        sum(|c| c.strict_less)
    );
    let _ = writeln!(
        s,
        "repair: ok {}, refused {}; rounds with a FAILURE: {failed_rounds}",
        sum(|c| c.repair_ok),
        sum(|c| c.repair_refused)
    );
    let _ = writeln!(
        s,
        "\nby (file kind, damage): rounds | strict eq/lazy/refused/other/LESS | repair ok/refused | FAILED"
    );
    for ((t, d), c) in &cells {
        let _ = writeln!(
            s,
            "  {:<14} {:<13} {:>4} | {:>3} {:>3} {:>3} {:>3} {:>3} | {:>3} {:>3} | {:>3}",
            format!("{t:?}"),
            format!("{d:?}"),
            c.rounds,
            c.strict_equal,
            c.strict_lazy,
            c.strict_refused,
            c.strict_other,
            c.strict_less,
            c.repair_ok,
            c.repair_refused,
            c.failed
        );
    }
    if !by_category.is_empty() {
        let _ = writeln!(s, "\nFAILURES by category (rounds):");
        for (cat, n) in &by_category {
            let _ = writeln!(s, "  {n:>4}  {cat}");
        }
        if !refusals.is_empty() {
            let _ = writeln!(s, "\nrepair refusals by reason:");
            for (why, n) in &refusals {
                let _ = writeln!(s, "  {n:>4}  {why}");
            }
        }
        let _ = writeln!(s, "\nFAILURES by (file kind, damage, category), first example each:");
        for ((t, d, cat), (n, ex)) in &failures {
            let _ = writeln!(s, "  [{t:?} / {d:?}] {cat}: {n} round(s)\n      e.g. {ex}");
        }
    }
    (s, failed_rounds)
}

#[test]
fn damage_sweep() {
    let seed = common::seed();
    let rounds: u64 = std::env::var("SPOOL_SWEEP_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let only: Option<u64> = std::env::var("SPOOL_SWEEP_ROUND").ok().and_then(|v| v.parse().ok());
    let verbose = std::env::var("SPOOL_SWEEP_VERBOSE").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let base = build_base();
    let scratch = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    let list: Vec<u64> = match only {
        Some(n) => vec![n],
        None => (0..rounds).collect(),
    };
    for n in list {
        let r = run_round(&base, seed, n, scratch.path());
        if verbose || only.is_some() {
            eprintln!(
                "round {n}: {:?}/{:?} {} {} -> strict {} {} (lazy {}), repair {}",
                r.target.unwrap(),
                r.damage.unwrap(),
                r.file.display(),
                r.what,
                r.strict,
                r.strict_detail,
                r.lazy,
                r.repair
            );
            for (c, d) in &r.failures {
                eprintln!("    FAILURE {c}: {d}");
            }
        }
        results.push((n, r));
    }
    let (text, failed) = summary(seed, &results, started.elapsed());
    eprintln!("{text}");
    let out = std::env::var("SPOOL_SWEEP_SUMMARY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_TARGET_TMPDIR")).join("damage_sweep_summary.txt"));
    if fs::write(&out, &text).is_ok() {
        eprintln!("summary written to {}", out.display());
    }
    assert_eq!(
        failed,
        0,
        "{failed} of {} rounds failed; see the summary above",
        results.len()
    );
}
