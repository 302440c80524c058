//! Building the subscribers' durable state at open from what the scan of
//! the log found (see `recover`), once the channels are recovered: torn
//! commits cut, repair's losses reported, the log rewritten when it must be.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::file::LogFile;
use super::generation::{write_generation, Generation};
use super::recover::{LogScan, Source};
use super::{apply, top, Durable, LogState, SubKey, Subscriptions};
use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::Result;
use crate::format::sublog::{encode_body, LogRecord, LOG_FILE};
use crate::group_commit::GroupCommit;
use crate::report::{SubscriberLoss, SubscribersRecovery};

impl Subscriptions {
    /// Builds the durable state from the log as `scan` found it, once the
    /// channels are recovered (`last_seqs`: last seq of each live channel
    /// id). Records past the log's durable watermark that point past their
    /// channel's end are a torn tail and are cut; anything repair lost is
    /// reported. The log is rewritten when it must be (format upgrade,
    /// repair, an unrecorded generation).
    pub(crate) fn open(
        env: Arc<Env>,
        catalog: Arc<Catalog>,
        scan: LogScan,
        last_seqs: &HashMap<u64, u64>,
        report: &mut SubscribersRecovery,
    ) -> Result<Arc<Subscriptions>> {
        let storage = &env.storage;
        storage.remove_file(&env.root.join(format!("{LOG_FILE}.tmp")))?;
        let mut durable: HashMap<SubKey, Durable> = HashMap::new();
        // What a rewrite keeps: the records up to the cut, as numbered.
        let mut kept: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let mut cut: Option<(usize, u64)> = None;
        let mut cut_names: Vec<(u64, String, u64)> = Vec::new();
        for s in scan.records {
            if cut.is_some() {
                // Commits cut with the tail: said per subscriber below.
                if let LogRecord::Commit { entries, .. } = &s.record {
                    cut_names.extend(entries.iter().map(|e| (e.channel_id, e.name.clone(), s.recno)));
                }
                continue;
            }
            let beyond = match &s.record {
                LogRecord::Commit { entries, .. } => entries
                    .iter()
                    .any(|e| last_seqs.get(&e.channel_id).is_some_and(|last| top(e) > *last)),
                LogRecord::Remove { .. } | LogRecord::Watermark { .. } => false,
            };
            if beyond && s.recno >= scan.durable_before {
                // Never durable, and its channel lost the messages it points
                // at in the same crash: the tail ends here.
                cut = Some((s.offset, s.recno));
                if let LogRecord::Commit { entries, .. } = &s.record {
                    cut_names.extend(entries.iter().map(|e| (e.channel_id, e.name.clone(), s.recno)));
                }
                continue;
            }
            if scan.rewrite {
                kept.push((s.recno, s.timestamp, encode_body(&s.record)));
            }
            apply(&mut durable, s.recno, s.timestamp, s.record);
        }
        cut_names.sort();
        cut_names.dedup_by(|a, b| (a.0, &a.1) == (b.0, &b.1));
        for (id, name, recno) in cut_names {
            if !last_seqs.contains_key(&id) {
                continue;
            }
            let now = durable.get(&(id, name.clone())).map(|d| d.position);
            report.cut.push(SubscriberLoss {
                channel_id: id,
                name,
                reverted_to: now,
                detail: format!(
                    "its commit in record {recno} of the subscribers log was never durable and was cut with the torn tail (a channel lost, in the same crash, messages a commit there points at)"
                ),
            });
        }
        durable.retain(|(id, _), _| last_seqs.contains_key(id));
        // Repair: a durable position past its channel's end (the channel
        // lost more than it can prove) is clamped and reported.
        for ((id, name), d) in durable.iter_mut() {
            let last = last_seqs.get(id).copied().unwrap_or(0);
            if d.position > last || d.acked_above.iter().any(|r| r.1 > last) {
                report.lost.push(SubscriberLoss {
                    channel_id: *id,
                    name: name.clone(),
                    reverted_to: Some(last.min(d.position)),
                    detail: format!("committed position {} is past the channel's end {last}", d.position),
                });
                d.position = d.position.min(last);
                d.acked_above.retain(|r| r.1 <= last);
                d.meta.clamp(last);
            }
        }
        for damage in &scan.damage {
            // Names the damaged bytes still hold (their checksum failed, so
            // only a hint: kept when they name a live channel, for a
            // subscriber that is gone now).
            let named: Vec<(u64, String)> = match &damage.hint {
                Some(LogRecord::Commit { entries, .. }) => {
                    entries.iter().map(|e| (e.channel_id, e.name.clone())).collect()
                }
                Some(LogRecord::Remove { channel_id, name }) => vec![(*channel_id, name.clone())],
                Some(LogRecord::Watermark { .. }) => Vec::new(),
                None => Vec::new(),
            };
            let named: Vec<(u64, String)> = named
                .into_iter()
                .filter(|(id, name)| last_seqs.contains_key(id) && !durable.contains_key(&(*id, name.clone())))
                .collect();
            if damage.first <= damage.last {
                // Whose commits were there is not known for sure: everyone
                // whose latest commit is older than the damage may have
                // been reverted.
                for ((id, name), d) in &durable {
                    if d.recno < damage.first {
                        report.lost.push(SubscriberLoss {
                            channel_id: *id,
                            name: name.clone(),
                            reverted_to: Some(d.position),
                            detail: format!(
                                "records {}..={} of the subscribers log (offset {}) are damaged ({}); a later commit of this subscriber may have been there",
                                damage.first, damage.last, damage.offset, damage.detail
                            ),
                        });
                    }
                }
                report.lost.push(SubscriberLoss {
                    channel_id: 0,
                    name: String::new(),
                    reverted_to: None,
                    detail: format!(
                        "records {}..={} of the subscribers log are damaged ({}); subscribers whose only commits were there are gone",
                        damage.first.min(damage.last),
                        damage.last,
                        damage.detail
                    ),
                });
            }
            for (id, name) in named {
                report.lost.push(SubscriberLoss {
                    channel_id: id,
                    name,
                    reverted_to: None,
                    detail: format!(
                        "its commit in damaged record {} is lost ({})",
                        damage.first, damage.detail
                    ),
                });
            }
        }
        let mut rewrite = scan.rewrite;
        let file = match scan.source {
            Source::V2 {
                header,
                seed,
                end,
                next_record,
                newest,
                torn_at,
            } if !rewrite => {
                let (end, next_record) = match cut {
                    Some((offset, recno)) => (offset, recno),
                    None => (end, next_record),
                };
                let mut file = LogFile::open(storage, &scan.path, header, seed, end, next_record, newest)?;
                let torn = cut.map(|c| c.0).or(torn_at);
                if let Some(at) = torn {
                    if file.zero_from(end)? {
                        report.torn_tail = Some(at as u64);
                    }
                }
                Some(file)
            }
            Source::V1 { torn_at } => {
                report.torn_tail = torn_at;
                rewrite = true;
                None
            }
            _ => {
                rewrite = true;
                None
            }
        };
        let path = env.root.join(LOG_FILE);
        let (file, durable_before) = match file {
            Some(f) => {
                let before = scan.durable_before.min(f.next_record);
                (f, before)
            }
            None => {
                debug_assert!(rewrite);
                // What was durable stays durable, what was not waits for the
                // next sync (see `generation`).
                let next_record = kept.last().map_or(1, |k| k.0 + 1);
                let before = scan.durable_before.min(next_record);
                let mut next = Generation::split(&path, std::mem::take(&mut kept), before)?;
                for (key, d) in &durable {
                    if d.recno < before {
                        next.durable.insert(key.clone(), d.clone());
                    }
                }
                // Clamped as the latest commits were above (repair only).
                next.durable.retain(|(id, _), d| match last_seqs.get(id) {
                    Some(&last) => {
                        d.position = d.position.min(last);
                        d.acked_above.retain(|r| r.1 <= last);
                        d.meta.clamp(last);
                        true
                    }
                    None => false,
                });
                let f = write_generation(&env, &catalog, &path, &next, 0, None)?;
                let durable_before = before.min(f.next_record);
                (f, durable_before)
            }
        };
        Ok(Arc::new(Subscriptions {
            path,
            commit: GroupCommit::new(durable_before.saturating_sub(1)),
            dirty: AtomicBool::new(file.next_record > durable_before),
            durable: Mutex::new(durable),
            in_use: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
            log: Mutex::new(LogState {
                file,
                rewritten_at: Instant::now() - Duration::from_secs(3600),
            }),
            env,
            catalog,
        }))
    }
}
