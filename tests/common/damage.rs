//! Helpers for the damage tests (`damage_findings`, `damage_sweep`,
//! `damage_sigkill`): the documented on-disk layouts of docs/format.md as
//! far as a test needs them to aim damage (frames, the subscribers log, the
//! catalog), copying and snapshotting store directories, and an
//! observation of everything a store serves through the public API,
//! compared with a pristine one.
//!
//! Included with `#[path = "common/damage.rs"] mod damage;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spool::{Error, QueueOptions, StartAt, Store};

pub const PAGE: usize = 4096;
/// Segment and subscribers-log header: records start here.
pub const HEADER_LEN: usize = 128;
pub const FRAME_HEADER_LEN: usize = 24;
const HOLE_FLAG: u32 = 1 << 31;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

// ------------------------------------------------------------------ frames

/// One record frame found in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLoc {
    pub offset: usize,
    /// Bytes the CRC covers (header + payload; the padding is not covered).
    pub covered: usize,
    /// Bytes the frame takes, padding included.
    pub span: usize,
    pub seq: u64,
    pub timestamp: u64,
    pub payload_len: usize,
}

/// Walks the frames of a pristine segment or subscribers log from `start`,
/// expecting contiguous seqs from `first_seq`; stops at the first frame
/// that does not fit or does not carry the expected seq. (No CRC check:
/// this locates records in files known to be intact.)
pub fn walk_frames(bytes: &[u8], start: usize, first_seq: u64) -> Vec<FrameLoc> {
    let mut out = Vec::new();
    let mut at = start;
    let mut expected = first_seq;
    while let (Some(len), Some(seq), Some(ts)) = (u32_at(bytes, at), u64_at(bytes, at + 8), u64_at(bytes, at + 16)) {
        if len & HOLE_FLAG != 0 || seq != expected || seq == 0 {
            break;
        }
        let payload_len = len as usize;
        let covered = FRAME_HEADER_LEN + payload_len;
        let span = (covered + 7) & !7;
        if at + span > bytes.len() {
            break;
        }
        out.push(FrameLoc {
            offset: at,
            covered,
            span,
            seq,
            timestamp: ts,
            payload_len,
        });
        at += span;
        expected += 1;
    }
    out
}

/// The base seq of a segment file name (`<base:020>.seg`).
pub fn segment_base(path: &Path) -> Option<u64> {
    if path.extension()? != "seg" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

// ------------------------------------------------------ subscribers log

/// One subscriber's position in a commit record of the subscribers log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubEntry {
    pub channel_id: u64,
    pub name: String,
    pub queue: bool,
    pub position: u64,
    pub acked_above: Vec<(u64, u64)>,
}

/// A record of the subscribers log (docs/format.md, "Subscribers log").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubRecord {
    Commit { entries: Vec<SubEntry>, state: Vec<u8> },
    Remove { channel_id: u64, name: String },
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn name(&mut self) -> Option<String> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

pub fn decode_sub_body(body: &[u8]) -> Option<SubRecord> {
    let mut r = Reader { b: body, at: 0 };
    match r.u8()? {
        1 => {
            let n = r.u16()?;
            let mut entries = Vec::new();
            for _ in 0..n {
                let channel_id = r.u64()?;
                let name = r.name()?;
                // 0 plain, 1 queue group, 2 queue group with its delivery
                // state (skipped here).
                let kind = r.u8()?;
                let queue = kind >= 1;
                let position = r.u64()?;
                let ranges = r.u32()? as usize;
                if ranges > body.len() {
                    return None;
                }
                let mut acked_above = Vec::new();
                for _ in 0..ranges {
                    acked_above.push((r.u64()?, r.u64()?));
                }
                if kind == 2 {
                    r.take(32)?;
                    let counts = r.u32()? as usize;
                    r.take(counts.checked_mul(12)?)?;
                }
                entries.push(SubEntry {
                    channel_id,
                    name,
                    queue,
                    position,
                    acked_above,
                });
            }
            let len = r.u32()? as usize;
            let state = r.take(len)?.to_vec();
            Some(SubRecord::Commit { entries, state })
        }
        2 => Some(SubRecord::Remove {
            channel_id: r.u64()?,
            name: r.name()?,
        }),
        _ => None,
    }
}

/// The records of a pristine subscribers log (format 2), with their
/// frames.
pub fn sublog_records(bytes: &[u8]) -> Vec<(FrameLoc, SubRecord)> {
    let Some(first) = u64_at(bytes, 32) else {
        return Vec::new();
    };
    walk_frames(bytes, HEADER_LEN, first)
        .into_iter()
        .filter_map(|f| {
            let body = bytes.get(f.offset + FRAME_HEADER_LEN..f.offset + f.covered)?;
            Some((f, decode_sub_body(body)?))
        })
        .collect()
}

/// For each live subscriber (channel id, name): the frame of its latest
/// commit in a pristine subscribers log.
pub fn latest_commits(bytes: &[u8]) -> BTreeMap<(u64, String), FrameLoc> {
    let mut latest = BTreeMap::new();
    for (f, rec) in sublog_records(bytes) {
        match rec {
            SubRecord::Commit { entries, .. } => {
                for e in entries {
                    latest.insert((e.channel_id, e.name), f);
                }
            }
            SubRecord::Remove { channel_id, name } => {
                latest.remove(&(channel_id, name));
            }
        }
    }
    latest
}

// ---------------------------------------------------------------- catalog

/// One channel entry of a format-2 catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatEntry {
    pub id: u64,
    pub first_seq: u64,
    /// Mask byte and the five limit fields, as stored.
    pub limits: Vec<u8>,
    pub newest_base: u64,
    pub durable_seq: u64,
    pub name: String,
}

/// A format-2 catalog, decoded without validation beyond its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cat {
    pub next_id: u64,
    pub store_id: u128,
    pub subs_generation: u64,
    pub entries: Vec<CatEntry>,
}

const CAT_MAGIC: &[u8; 8] = b"SPOOLCAT";
const LIMITS_LEN: usize = 1 + 5 * 8;

impl Cat {
    pub fn decode(bytes: &[u8]) -> Option<Cat> {
        let body = bytes.get(..bytes.len().checked_sub(4)?)?;
        let mut r = Reader { b: body, at: 0 };
        if r.take(8)? != CAT_MAGIC || r.u16()? != 2 {
            return None;
        }
        r.u16()?;
        let count = r.u32()?;
        let next_id = r.u64()?;
        let store_id = u128::from_le_bytes(r.take(16)?.try_into().ok()?);
        let subs_generation = r.u64()?;
        let mut entries = Vec::new();
        for _ in 0..count {
            entries.push(CatEntry {
                id: r.u64()?,
                first_seq: r.u64()?,
                limits: r.take(LIMITS_LEN)?.to_vec(),
                newest_base: r.u64()?,
                durable_seq: r.u64()?,
                name: r.name()?,
            });
        }
        Some(Cat {
            next_id,
            store_id,
            subs_generation,
            entries,
        })
    }

    /// Encodes with a valid checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(CAT_MAGIC);
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.next_id.to_le_bytes());
        out.extend_from_slice(&self.store_id.to_le_bytes());
        out.extend_from_slice(&self.subs_generation.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id.to_le_bytes());
            out.extend_from_slice(&e.first_seq.to_le_bytes());
            out.extend_from_slice(&e.limits);
            out.extend_from_slice(&e.newest_base.to_le_bytes());
            out.extend_from_slice(&e.durable_seq.to_le_bytes());
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

// ------------------------------------------------------------ directories

/// Copies the directory tree `src` to `dst` (created).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A file or directory of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
}

/// Every file (with its bytes) and directory under `root`, by relative
/// path.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.insert(rel, Node::Dir);
                walk(root, &p, out);
            } else if let Ok(b) = fs::read(&p) {
                out.insert(rel, Node::File(b));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Whether `bytes[range]` of file `rel` is the same in both snapshots (a
/// file in both, long enough in both).
pub fn same_bytes(
    a: &BTreeMap<PathBuf, Node>,
    b: &BTreeMap<PathBuf, Node>,
    rel: &Path,
    range: std::ops::Range<usize>,
) -> bool {
    match (a.get(rel), b.get(rel)) {
        (Some(Node::File(x)), Some(Node::File(y))) => match (x.get(range.clone()), y.get(range)) {
            (Some(p), Some(q)) => p == q,
            _ => false,
        },
        _ => false,
    }
}

// ------------------------------------------------------------ observation

/// What one `Channel::get` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Ok(Vec<u8>),
    Corrupt(String),
    Lost,
    OutOfRange,
    Other(String),
}

impl Read {
    pub fn short(&self) -> String {
        match self {
            Read::Ok(b) => format!("Ok({} bytes)", b.len()),
            Read::Corrupt(d) => format!("Corrupt({d})"),
            Read::Lost => "Lost".into(),
            Read::OutOfRange => "OutOfRange".into(),
            Read::Other(e) => format!("Err({e})"),
        }
    }
}

fn read_of(r: spool::Result<spool::Message>) -> Read {
    match r {
        Ok(m) => Read::Ok(m.payload().to_vec()),
        Err(Error::Corrupt { path, offset, detail }) => Read::Corrupt(format!("{}@{offset}: {detail}", path.display())),
        Err(Error::Lost { .. }) => Read::Lost,
        Err(Error::OutOfRange { .. }) => Read::OutOfRange,
        Err(e) => Read::Other(e.to_string()),
    }
}

/// A durable subscriber or queue group as the public API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubView {
    Plain {
        position: u64,
        state: Vec<u8>,
    },
    /// The ack floor and the first deliveries a new member gets (they show
    /// the acked seqs above the floor), and the error that ended them.
    Queue {
        floor: u64,
        next: Vec<u64>,
        error: Option<String>,
    },
    Error(String),
}

impl SubView {
    /// The committed position (ack floor for a queue group).
    pub fn position(&self) -> Option<u64> {
        match self {
            SubView::Plain { position, .. } => Some(*position),
            SubView::Queue { floor, .. } => Some(*floor),
            SubView::Error(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChanView {
    pub id: u64,
    pub first: u64,
    pub last: u64,
    /// `get` of every seq in `first..=last` (capped).
    pub msgs: BTreeMap<u64, Read>,
    pub subs: BTreeMap<String, SubView>,
    /// One iteration with `read_from(first)`.
    pub iter: Walk,
    /// Each plain subscriber's `try_recv` loop from its position.
    pub recv: BTreeMap<String, Walk>,
}

/// What reading a channel in order (an iterator, or a subscriber's
/// `try_recv` loop) delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Messages delivered.
    pub count: u64,
    /// Seq of the last message delivered (0: none).
    pub last: u64,
    /// `Lost` errors passed over (iterator only).
    pub lost: u64,
    /// The error that ended it ("Corrupt: ..." for `Corrupt`).
    pub error: Option<String>,
    /// First delivered seq whose bytes differ from what `get` returned.
    pub mismatch: Option<u64>,
}

fn err_kind(e: &Error) -> String {
    match e {
        Error::Corrupt { .. } => format!("Corrupt: {e}"),
        e => e.to_string(),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreView {
    pub channels: BTreeMap<String, ChanView>,
}

/// How many deliveries of a queue group are observed.
pub const QUEUE_PEEK: usize = 24;
/// Most messages read per channel (a damaged store may claim absurd ranges).
pub const READ_CAP: u64 = 200_000;

/// Reads everything the store serves: every channel's range and messages,
/// every durable subscriber's committed position and state, every queue
/// group's floor and first deliveries. Subscribes only to names the channel
/// lists (subscribing creates a missing subscriber). Writes nothing but what
/// opening a handle writes.
pub fn observe(store: &Store) -> StoreView {
    let mut view = StoreView::default();
    for name in store.channel_names() {
        let ch = match store.open_channel(&name) {
            Ok(ch) => ch,
            Err(e) => {
                view.channels.insert(
                    name,
                    ChanView {
                        id: 0,
                        first: 0,
                        last: 0,
                        msgs: BTreeMap::new(),
                        subs: [("<open_channel>".to_string(), SubView::Error(e.to_string()))].into(),
                        iter: Walk::default(),
                        recv: BTreeMap::new(),
                    },
                );
                continue;
            }
        };
        let (first, last) = (ch.first_seq(), ch.last_seq());
        let mut msgs = BTreeMap::new();
        let mut seq = first;
        while seq <= last && seq - first < READ_CAP {
            msgs.insert(seq, read_of(ch.get(seq)));
            seq += 1;
        }
        let mut iter = Walk::default();
        match ch.read_from(first) {
            Err(e) => iter.error = Some(err_kind(&e)),
            Ok(it) => {
                for m in it.take(READ_CAP as usize) {
                    match m {
                        Ok(m) => {
                            iter.count += 1;
                            iter.last = m.seq();
                            if iter.mismatch.is_none() && msgs.get(&m.seq()) != Some(&Read::Ok(m.payload().to_vec())) {
                                iter.mismatch = Some(m.seq());
                            }
                        }
                        Err(Error::Lost { .. }) => iter.lost += 1,
                        Err(e) => {
                            iter.error = Some(err_kind(&e));
                            break;
                        }
                    }
                }
            }
        }
        let mut subs = BTreeMap::new();
        let mut recv = BTreeMap::new();
        for sub in ch.subscriber_names() {
            let v = match ch.subscribe(&sub, StartAt::First) {
                Ok(s) => {
                    let (position, state) = s.committed();
                    let mut w = Walk::default();
                    while w.count < READ_CAP {
                        match s.try_recv() {
                            Ok(Some(m)) => {
                                w.count += 1;
                                w.last = m.seq();
                                if w.mismatch.is_none() && msgs.get(&m.seq()) != Some(&Read::Ok(m.payload().to_vec())) {
                                    w.mismatch = Some(m.seq());
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                w.error = Some(err_kind(&e));
                                break;
                            }
                        }
                    }
                    recv.insert(sub.clone(), w);
                    SubView::Plain {
                        position,
                        state: state.to_vec(),
                    }
                }
                Err(Error::SubscriberKind { .. }) => {
                    let opts = QueueOptions::default()
                        .ack_wait(Duration::from_secs(3600))
                        .max_in_flight(1000);
                    match ch.queue_subscribe_with(&sub, StartAt::First, opts) {
                        Ok(m) => {
                            let floor = m.ack_floor();
                            let mut next = Vec::new();
                            let mut error = None;
                            while next.len() < QUEUE_PEEK {
                                match m.try_recv() {
                                    Ok(Some(d)) => next.push(d.message().seq()),
                                    Ok(None) => break,
                                    Err(e) => {
                                        error = Some(match e {
                                            Error::Corrupt { .. } => format!("Corrupt: {e}"),
                                            e => e.to_string(),
                                        });
                                        break;
                                    }
                                }
                            }
                            SubView::Queue { floor, next, error }
                        }
                        Err(e) => SubView::Error(e.to_string()),
                    }
                }
                Err(e) => SubView::Error(e.to_string()),
            };
            subs.insert(sub, v);
        }
        view.channels.insert(
            name,
            ChanView {
                id: ch.id(),
                first,
                last,
                msgs,
                subs,
                iter,
                recv,
            },
        );
    }
    view
}

// ------------------------------------------------------------- comparison

/// Compares what a strict open served with the pristine view. Returns
/// (differences that lose or change data, reads that failed with
/// `Corrupt`). An open that is not silent about damage has no entry in the
/// first list.
pub fn strict_diff(pristine: &StoreView, got: &StoreView) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut corrupt = 0;
    for (name, p) in &pristine.channels {
        let Some(g) = got.channels.get(name) else {
            bad.push(format!("channel {name:?} is gone"));
            continue;
        };
        if g.id != p.id {
            bad.push(format!("channel {name:?} has id {} instead of {}", g.id, p.id));
        }
        if (g.first, g.last) != (p.first, p.last) {
            bad.push(format!(
                "channel {name:?} serves {}..={} instead of {}..={}",
                g.first, g.last, p.first, p.last
            ));
        }
        let (mut wrong, mut errors) = (Vec::new(), Vec::new());
        for (seq, pr) in &p.msgs {
            let gr = g.msgs.get(seq).cloned().unwrap_or(Read::OutOfRange);
            match &gr {
                r if r == pr => {}
                Read::Corrupt(_) => corrupt += 1,
                Read::Other(e) => errors.push((*seq, e.clone())),
                other => wrong.push((*seq, other.short())),
            }
        }
        for (seq, gr) in &g.msgs {
            if !p.msgs.contains_key(seq) && !matches!(gr, Read::Corrupt(_)) {
                wrong.push((*seq, format!("extra {}", gr.short())));
            }
        }
        if !errors.is_empty() {
            bad.push(format!(
                "channel {name:?}: {} reads fail with an error other than Corrupt, first {:?}",
                errors.len(),
                errors[0]
            ));
        }
        if !wrong.is_empty() {
            bad.push(format!(
                "channel {name:?}: {} messages missing or different, first {:?}, last {:?}",
                wrong.len(),
                wrong.first().unwrap(),
                wrong.last().unwrap()
            ));
        }
        let walks = std::iter::once(("iteration".to_string(), &p.iter, Some(&g.iter))).chain(
            p.recv
                .iter()
                .map(|(sub, w)| (format!("subscriber {sub}'s try_recv"), w, g.recv.get(sub))),
        );
        for (what, pw, gw) in walks {
            let Some(gw) = gw else { continue };
            if let Some(seq) = gw.mismatch {
                bad.push(format!("channel {name:?}: {what} delivered wrong bytes at {seq}"));
            }
            match &gw.error {
                Some(e) if e.starts_with("Corrupt") => corrupt += 1,
                Some(e) => bad.push(format!(
                    "channel {name:?}: {what} fails with an error other than Corrupt at {}: {e}",
                    gw.last + 1
                )),
                None if (gw.count, gw.last) != (pw.count, pw.last) => bad.push(format!(
                    "channel {name:?}: {what} silently ends after {} messages at seq {} (pristine: {} messages to {})",
                    gw.count, gw.last, pw.count, pw.last
                )),
                None => {}
            }
        }
        for (sub, pv) in &p.subs {
            match g.subs.get(sub) {
                None => bad.push(format!("subscriber {name}/{sub} is gone (was {pv:?})")),
                Some(gv) if gv == pv => {}
                Some(SubView::Queue {
                    floor,
                    next,
                    error: Some(e),
                }) => match pv {
                    SubView::Queue {
                        floor: pf, next: pn, ..
                    } if pf == floor && pn.starts_with(next) => {
                        if e.starts_with("Corrupt") {
                            corrupt += 1;
                        } else {
                            bad.push(format!(
                                "queue group {name}/{sub}: a delivery fails with an error other than Corrupt: {e}"
                            ));
                        }
                    }
                    _ => bad.push(format!(
                        "queue group {name}/{sub}: {pv:?} became floor {floor} next {next:?} ({e})"
                    )),
                },
                Some(gv) => bad.push(format!("subscriber {name}/{sub}: {} became {}", brief(pv), brief(gv))),
            }
        }
        for sub in g.subs.keys().filter(|s| !p.subs.contains_key(*s)) {
            bad.push(format!("subscriber {name}/{sub} appeared"));
        }
    }
    for name in got.channels.keys().filter(|n| !pristine.channels.contains_key(*n)) {
        bad.push(format!("channel {name:?} appeared"));
    }
    (bad, corrupt)
}

/// A short text for a subscriber view.
pub fn brief(v: &SubView) -> String {
    match v {
        SubView::Plain { position, state } => format!("({position}, {:?})", String::from_utf8_lossy(state)),
        SubView::Queue { floor, next, error } => {
            let shown: Vec<u64> = next.iter().copied().take(6).collect();
            format!(
                "queue(floor {floor}, next {shown:?}{})",
                error.as_ref().map(|e| format!(", {e}")).unwrap_or_default()
            )
        }
        SubView::Error(e) => format!("error({e})"),
    }
}

/// What `Store::recovery_report` says, in plain data (the report's type is
/// not nameable from outside the crate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Lost ranges by channel name.
    pub lost: BTreeMap<String, Vec<(u64, u64)>>,
    /// Channels with a torn tail cut: (channel, file, offset).
    pub torn: Vec<(String, PathBuf, u64)>,
    /// Subscribers log torn tail offset.
    pub subs_torn: Option<u64>,
    /// (channel id, name, reverted_to, detail).
    pub sub_lost: Vec<(u64, String, Option<u64>, String)>,
    pub catalog_restored: Option<String>,
}

impl Report {
    pub fn of(store: &Store) -> Report {
        let r = store.recovery_report();
        Report {
            lost: r
                .channels
                .iter()
                .map(|c| (c.name.clone(), c.lost.iter().map(|l| (l.first, l.last)).collect()))
                .collect(),
            torn: r
                .channels
                .iter()
                .filter_map(|c| c.torn_tail.clone().map(|(p, o)| (c.name.clone(), p, o)))
                .collect(),
            subs_torn: r.subscribers.torn_tail,
            // Commits cut with a torn tail count as accounted for too.
            sub_lost: r
                .subscribers
                .lost
                .iter()
                .chain(&r.subscribers.cut)
                .map(|l| (l.channel_id, l.name.clone(), l.reverted_to, l.detail.clone()))
                .collect(),
            catalog_restored: r.catalog_restored.clone(),
        }
    }

    pub fn lost_anything(&self) -> bool {
        self.lost.values().any(|v| !v.is_empty()) || !self.sub_lost.is_empty() || self.catalog_restored.is_some()
    }
}

/// Checks a repaired store's view and report against the pristine view:
/// every difference must be accounted for by the report. Returns the
/// problems found (empty: the report matches).
pub fn repair_diff(pristine: &StoreView, got: &StoreView, report: &Report) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, p) in &pristine.channels {
        let Some(g) = got.channels.get(name) else {
            bad.push(format!("repair: channel {name:?} is gone"));
            continue;
        };
        if g.id != p.id {
            bad.push(format!("repair: channel {name:?} has id {} instead of {}", g.id, p.id));
        }
        let lost: Vec<(u64, u64)> = report.lost.get(name).cloned().unwrap_or_default();
        let in_lost = |s: u64| lost.iter().any(|&(a, b)| a <= s && s <= b);
        if g.last < p.last {
            bad.push(format!(
                "repair: channel {name:?} ends at {} before the pristine end {} (those seqs would be handed out again)",
                g.last, p.last
            ));
        }
        if g.first < p.first {
            bad.push(format!(
                "repair: channel {name:?} serves from {} below the retained first {}",
                g.first, p.first
            ));
        }
        let (mut unreported, mut corrupt, mut wrong, mut over) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (seq, pr) in &p.msgs {
            let gr = if *seq < g.first || *seq > g.last {
                Read::OutOfRange
            } else {
                g.msgs.get(seq).cloned().unwrap_or(Read::OutOfRange)
            };
            if &gr == pr {
                if in_lost(*seq) {
                    over.push(*seq);
                }
                continue;
            }
            match &gr {
                Read::Ok(_) => wrong.push(*seq),
                Read::Corrupt(_) => corrupt.push(*seq),
                _ => {}
            }
            if !in_lost(*seq) {
                unreported.push((*seq, gr.short()));
            }
        }
        let extra: Vec<u64> = g
            .msgs
            .iter()
            .filter(|(s, r)| !p.msgs.contains_key(s) && matches!(r, Read::Ok(_)))
            .map(|(s, _)| *s)
            .collect();
        if !unreported.is_empty() {
            bad.push(format!(
                "repair: channel {name:?}: {} missing seqs not in a reported lost range {lost:?}: first {:?}, last {:?}",
                unreported.len(),
                unreported.first().unwrap(),
                unreported.last().unwrap()
            ));
        }
        if !corrupt.is_empty() {
            bad.push(format!(
                "repair: channel {name:?}: {} reads still Corrupt after repair (first seq {})",
                corrupt.len(),
                corrupt[0]
            ));
        }
        if !wrong.is_empty() {
            bad.push(format!(
                "repair: channel {name:?}: {} seqs serve wrong bytes (first {})",
                wrong.len(),
                wrong[0]
            ));
        }
        if !over.is_empty() {
            bad.push(format!(
                "repair: channel {name:?}: {} seqs reported lost but readable (first {})",
                over.len(),
                over[0]
            ));
        }
        if !extra.is_empty() {
            bad.push(format!(
                "repair: channel {name:?}: {} extra messages served (first {})",
                extra.len(),
                extra[0]
            ));
        }
        // Reading in order delivers every readable message, passing over
        // lost ones.
        let readable: Vec<u64> = g
            .msgs
            .iter()
            .filter(|(_, r)| matches!(r, Read::Ok(_)))
            .map(|(s, _)| *s)
            .collect();
        let walks = std::iter::once(("iteration".to_string(), 0, &g.iter)).chain(g.recv.iter().map(|(sub, w)| {
            let from = g.subs.get(sub).and_then(SubView::position).unwrap_or(0);
            (format!("subscriber {sub}'s try_recv"), from, w)
        }));
        for (what, from, w) in walks {
            let want: Vec<u64> = readable.iter().copied().filter(|s| *s > from).collect();
            let want_last = want.last().copied().unwrap_or(0);
            if let Some(e) = &w.error {
                bad.push(format!(
                    "repair: channel {name:?}: {what} fails after repair at {}: {e}",
                    w.last + 1
                ));
            } else if (w.count, w.last) != (want.len() as u64, want_last) || w.mismatch.is_some() {
                bad.push(format!(
                    "repair: channel {name:?}: {what} delivered {} messages to {} (mismatch {:?}) where {} are readable to {want_last}",
                    w.count,
                    w.last,
                    w.mismatch,
                    want.len()
                ));
            }
        }
        // A queue group's deliveries skip seqs a repair lost: compare the
        // floor and the deliveries outside lost ranges.
        let equivalent = |pv: &SubView, gv: &SubView| match (pv, gv) {
            (
                SubView::Queue {
                    floor: pf, next: pn, ..
                },
                SubView::Queue {
                    floor: gf,
                    next: gn,
                    error: None,
                },
            ) => {
                let a: Vec<u64> = pn.iter().copied().filter(|s| !in_lost(*s)).collect();
                let b: Vec<u64> = gn.iter().copied().filter(|s| !in_lost(*s)).collect();
                let k = a.len().min(b.len());
                pf == gf && a[..k] == b[..k]
            }
            _ => pv == gv,
        };
        for (sub, pv) in &p.subs {
            let gv = g.subs.get(sub);
            if gv.is_some_and(|gv| equivalent(pv, gv)) {
                continue;
            }
            let now = gv.and_then(SubView::position);
            let entries: Vec<_> = report.sub_lost.iter().filter(|l| l.0 == p.id && &l.1 == sub).collect();
            let anonymous = report.sub_lost.iter().any(|l| l.1.is_empty() && l.2.is_none());
            let what = format!("{} became {}", brief(pv), gv.map_or("gone".to_string(), brief));
            if entries.is_empty() {
                if gv.is_none() && anonymous {
                    continue;
                }
                bad.push(format!(
                    "repair: subscriber {name}/{sub}: {what}, not in subscribers.lost"
                ));
            } else if !entries.iter().any(|l| l.2 == now) {
                let said: Vec<Option<u64>> = entries.iter().map(|l| l.2).collect();
                bad.push(format!(
                    "repair: subscriber {name}/{sub}: {what}, but the report says reverted_to {said:?}"
                ));
            }
        }
        for sub in g.subs.keys().filter(|s| !p.subs.contains_key(*s)) {
            bad.push(format!("repair: subscriber {name}/{sub} appeared"));
        }
    }
    for name in got.channels.keys().filter(|n| !pristine.channels.contains_key(*n)) {
        bad.push(format!("repair: channel {name:?} appeared"));
    }
    bad
}

/// A short text for an open error.
pub fn err_text(e: &Error) -> String {
    match e {
        Error::Corrupt { path, offset, detail } => format!("Corrupt {}@{offset}: {detail}", path.display()),
        e => format!("{e:?}"),
    }
}
