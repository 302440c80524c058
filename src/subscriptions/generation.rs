//! Rewriting the subscribers log into its next generation, without making
//! anything durable that was not: the commits that were durable (records
//! numbered below the durable watermark) become one record per record they
//! came from, numbered so that they end right below the watermark, and the
//! records past it follow unchanged, with their own numbers, not claimed by
//! the new file's slot. So a commit whose channel data is not durable yet
//! never becomes durable by a rewrite (the next sync makes its channel
//! durable first), and a committer waiting for its record number waits for
//! that sync, not for the rewrite.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::file::{LogFile, TailItem};
use super::{apply, Durable, SubKey};
use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::frame::frame_len;
use crate::format::sublog::{
    decode_body, encode_body, log_seed, LogHeader, LogRecord, Position, LOG_FILE, V2_HEADER_LEN,
};

/// Smallest log file: a store with a few subscribers stays small on disk.
const MIN_CAPACITY: usize = 64 << 10;
/// Largest log file the capacity rule picks by itself.
const MAX_CAPACITY: usize = 1 << 30;

/// What the next generation holds.
pub(super) struct Generation {
    /// The state the durable records give (each subscriber's latest durable
    /// commit, with the number of the record it came from).
    pub durable: HashMap<SubKey, Durable>,
    /// Records numbered below this were durable.
    pub durable_before: u64,
    /// The records past the watermark, in order: (number, commit time,
    /// body); they keep their numbers.
    pub tail: Vec<(u64, u64, Vec<u8>)>,
}

impl Generation {
    /// Splits the records of a log (number, commit time, body) at the
    /// durable watermark `durable_before`.
    pub(super) fn split(path: &Path, records: Vec<(u64, u64, Vec<u8>)>, durable_before: u64) -> Result<Generation> {
        let mut durable = HashMap::new();
        let mut tail = Vec::new();
        for (recno, timestamp, body) in records {
            if recno < durable_before {
                let rec = decode_body(&body).ok_or_else(|| {
                    Error::corrupt(
                        path,
                        0,
                        format!("record {recno} has a valid checksum but does not parse"),
                    )
                })?;
                apply(&mut durable, recno, timestamp, rec);
            } else {
                tail.push((recno, timestamp, body));
            }
        }
        Ok(Generation {
            durable,
            durable_before,
            tail,
        })
    }
}

/// The tail as it is written: each record that still holds some
/// subscriber's latest action (a later record of the same subscriber
/// supersedes an earlier one; a `commit_all` record stays whole), holes for
/// the others and for numbers missing, so every record keeps its number.
fn compact_tail(tail: &[(u64, u64, Vec<u8>)], from: u64) -> Vec<TailItem> {
    let keys = |body: &[u8]| -> Vec<SubKey> {
        match decode_body(body) {
            Some(LogRecord::Commit { entries, .. }) => entries.into_iter().map(|e| (e.channel_id, e.name)).collect(),
            Some(LogRecord::Remove { channel_id, name }) => vec![(channel_id, name)],
            Some(LogRecord::Watermark { .. }) | None => Vec::new(),
        }
    };
    let mut last: HashMap<SubKey, usize> = HashMap::new();
    for (i, (_, _, body)) in tail.iter().enumerate() {
        for k in keys(body) {
            last.insert(k, i);
        }
    }
    let mut out = Vec::new();
    let mut next = from;
    let mut hole: Option<(u64, u64)> = None;
    for (i, (recno, ts, body)) in tail.iter().enumerate() {
        if *recno > next {
            hole = Some(hole.map_or((next, recno - 1), |(f, _)| (f, recno - 1)));
        }
        let latest = keys(body).iter().any(|k| last.get(k) == Some(&i));
        if latest {
            if let Some((f, l)) = hole.take() {
                out.push(TailItem::Hole(f, l));
            }
            out.push(TailItem::Record(*ts, body.clone()));
        } else {
            hole = Some(hole.map_or((*recno, *recno), |(f, _)| (f, *recno)));
        }
        next = recno + 1;
    }
    if let Some((f, l)) = hole {
        out.push(TailItem::Hole(f, l));
    }
    out
}

/// The durable state as records: one per record it came from (entries of a
/// `commit_all` stay together, with their one state), oldest first, with
/// their commit times. Subscribers of channels the catalog no longer has
/// are left out.
fn durable_records(durable: &HashMap<SubKey, Durable>, live: impl Fn(u64) -> bool) -> Vec<(u64, Vec<u8>)> {
    let mut by_record: BTreeMap<u64, Vec<(&SubKey, &Durable)>> = BTreeMap::new();
    for (key, d) in durable.iter().filter(|(k, _)| live(k.0)) {
        by_record.entry(d.recno).or_default().push((key, d));
    }
    by_record
        .into_values()
        .filter_map(|mut subs| {
            subs.sort_by(|a, b| a.0.cmp(b.0));
            let (_, first) = *subs.first()?;
            let entries = subs
                .iter()
                .map(|(key, d)| Position {
                    channel_id: key.0,
                    name: key.1.clone(),
                    kind: d.kind,
                    position: d.position,
                    acked_above: d.acked_above.clone(),
                    meta: d.meta.clone(),
                })
                .collect();
            let record = LogRecord::Commit {
                entries,
                state: Arc::clone(&first.state),
            };
            Some((first.committed_at, encode_body(&record)))
        })
        .collect()
}

/// Writes the next generation of the log (see the module docs): a temp
/// file, written and msynced, renamed over the log, the directory synced,
/// then the catalog records the generation. Sized for the records plus
/// `extra` bytes of body, four times over (at least 64 KiB), and at least
/// twice `grow` (the size of a file that filled up less than a second
/// after it was written).
pub(super) fn write_generation(
    env: &Env,
    catalog: &Catalog,
    path: &Path,
    next: &Generation,
    extra: usize,
    grow: Option<usize>,
) -> Result<LogFile> {
    let data = catalog.snapshot();
    let live = |id: u64| data.channels.values().any(|e| e.id == id);
    let durable = durable_records(&next.durable, live);
    // The durable records end right below the watermark, so that the tail
    // keeps its numbers (there is room: each came from a distinct record
    // numbered below it).
    let first_record = next.durable_before.saturating_sub(durable.len() as u64).max(1);
    let tail = compact_tail(&next.tail, first_record + durable.len() as u64);
    let tail_bytes: usize = tail
        .iter()
        .map(|t| match t {
            TailItem::Record(_, b) => frame_len(b.len()),
            TailItem::Hole(..) => frame_len(0),
        })
        .sum();
    let bytes: usize = durable.iter().map(|(_, b)| frame_len(b.len())).sum::<usize>() + tail_bytes + frame_len(extra);
    let mut capacity = (V2_HEADER_LEN + 4 * bytes)
        .next_power_of_two()
        .clamp(MIN_CAPACITY, MAX_CAPACITY);
    if let Some(old) = grow {
        capacity = capacity.max(old.saturating_mul(2)).min(MAX_CAPACITY);
    }
    capacity = capacity.max((V2_HEADER_LEN + bytes).next_power_of_two());
    let header = LogHeader {
        generation: data.subs_generation + 1,
        file_len: capacity as u64,
        first_record,
        store_id: data.store_id,
    };
    let tmp = env.root.join(format!("{LOG_FILE}.tmp"));
    let seed = log_seed(header.store_id, header.generation);
    let mut file = LogFile::create(&env.storage, &tmp, header, seed, &durable, &tail)?;
    env.storage.rename(&tmp, path)?;
    env.storage.sync_dir(&env.root)?;
    file.path = path.to_path_buf();
    catalog.update(|c| {
        let changed = c.subs_generation != header.generation;
        c.subs_generation = header.generation;
        Ok(changed)
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sublog::SubKind;

    fn durable(recno: u64, position: u64, state: &Arc<[u8]>) -> Durable {
        Durable {
            kind: SubKind::Plain,
            position,
            acked_above: Vec::new(),
            meta: Default::default(),
            state: Arc::clone(state),
            committed_at: recno * 10,
            recno,
        }
    }

    /// Subscribers committed together stay in one record with their one
    /// state; each record the state came from gives one record, oldest first.
    #[test]
    fn durable_records_keep_commits_together() {
        let (a, b): (Arc<[u8]>, Arc<[u8]>) = (Arc::from(&b"a"[..]), Arc::from(&b"b"[..]));
        let mut state = HashMap::new();
        state.insert((1, "x".to_string()), durable(7, 70, &a));
        state.insert((2, "y".to_string()), durable(7, 71, &a));
        state.insert((1, "z".to_string()), durable(3, 30, &b));
        state.insert((9, "gone".to_string()), durable(5, 50, &b));
        let records = durable_records(&state, |id| id != 9);
        let decoded: Vec<LogRecord> = records.iter().map(|(_, b)| decode_body(b).expect("decodes")).collect();
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), [30, 70]);
        match &decoded[1] {
            LogRecord::Commit { entries, state } => {
                assert_eq!(entries.iter().map(|e| e.position).collect::<Vec<_>>(), [70, 71]);
                assert_eq!(&state[..], b"a");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decoded.len(), 2, "the deleted channel's subscriber is left out");
    }
}
