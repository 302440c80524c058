//! Opening a channel's segments after a clean close or any crash.
//!
//! Strict mode reads only what it must: the last segment is scanned past the
//! end its index file covers (from its first record without one); sealed
//! segments are opened lazily on first read, read-only, and trusted through
//! their seal slot, their records validated as they are read. Repair mode
//! (only ever inside `Store::open`) scans everything and replaces damaged
//! spans with hole frames; what it finds goes into the recovery report.
//!
//! `open`: mapping a segment, its header, slots and index file.
//! `scan`: walking records, repairing damage, zeroing a torn tail.
//! `active`: the last segment, where the writer resumes.
//!
//! This module never unwraps, never indexes without a bound check, and never
//! allocates from a length read from a file.

mod active;
mod open;
mod scan;

use std::path::Path;
use std::sync::Arc;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::segment::{index_file_name, parse_index_name, parse_segment_name, segment_file_name};
use crate::options::RecoveryMode;
use crate::report::{ChannelRecovery, LostRange};

use super::state::Active;
use super::table::SegmentEntry;
use active::{recover_last, Last};

pub(crate) use open::open_sealed;
pub(crate) use open::read_slot;
pub(crate) use scan::needs_index_entry;

/// A recovered channel log, ready to become a `Log`.
pub(super) struct Recovered {
    pub entries: Vec<Arc<SegmentEntry>>,
    pub active: Option<Active>,
    pub next_seq: u64,
    pub last_timestamp: u64,
    pub first_seq: u64,
    pub report: ChannelRecovery,
}

/// Opens one channel directory: cleans leftovers, drops segments wholly
/// below `first_seq`, recovers the last segment.
pub(super) fn recover(env: &Env, dir: &Path, name: &str, channel_id: u64, first_seq: u64) -> Result<Recovered> {
    let storage = &env.storage;
    let mut report = ChannelRecovery {
        name: name.to_string(),
        id: channel_id,
        ..ChannelRecovery::default()
    };
    if !storage.exists(dir) {
        // The catalog was written but the directory not yet created.
        storage.create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent)?;
        }
    }
    let names = storage.list_dir(dir)?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    bases.sort_unstable();
    let mut removed_any = false;
    for n in &names {
        let orphan_index = parse_index_name(n).is_some_and(|b| !bases.contains(&b));
        if n.ends_with(".tmp") || orphan_index {
            storage.remove_file(&dir.join(n))?;
            report.removed_files.push(dir.join(n));
            removed_any = true;
        }
    }
    // Segments whose successor starts at or below first_seq hold nothing
    // retained; they may be back after a crash during retention.
    while bases.len() > 1 && bases.get(1).is_some_and(|&next| next <= first_seq) {
        let base = bases.remove(0);
        for file in [segment_file_name(base), index_file_name(base)] {
            storage.remove_file(&dir.join(&file))?;
            report.removed_files.push(dir.join(file));
        }
        removed_any = true;
    }
    if removed_any {
        storage.sync_dir(dir)?;
    }
    let mut first = first_seq;
    if let Some(first_base) = bases.first() {
        if *first_base > first_seq {
            let path = dir.join(segment_file_name(*first_base));
            if env.opts.get_recovery_mode() != RecoveryMode::Repair {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("first segment starts at {first_base} but the catalog retains from {first_seq}: segment files are missing"),
                ));
            }
            report.lost.push(LostRange {
                first: first_seq,
                last: first_base - 1,
                path,
                offset: 0,
            });
            first = *first_base;
        }
    }
    let mut entries = Vec::with_capacity(bases.len());
    let mut recovered = Recovered {
        entries: Vec::new(),
        active: None,
        next_seq: first,
        last_timestamp: 0,
        first_seq: first,
        report: ChannelRecovery::default(),
    };
    let count = bases.len();
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(segment_file_name(base));
        let next_base = bases.get(i + 1).copied();
        if i + 1 == count {
            let (seg, last) = recover_last(env, channel_id, base, &path, &mut report)?;
            let entry = SegmentEntry::opened(seg);
            match last {
                Last::Active {
                    active,
                    next_seq,
                    last_timestamp,
                } => {
                    recovered.active = Some(active);
                    recovered.next_seq = next_seq;
                    recovered.last_timestamp = last_timestamp;
                }
                Last::Sealed(seal) => {
                    entry.set_seal(seal);
                    recovered.next_seq = seal.next_seq;
                    recovered.last_timestamp = seal.last_timestamp;
                }
            }
            entries.push(entry);
        } else {
            if env.opts.get_recovery_mode() == RecoveryMode::Repair {
                // Scanned and repaired now; opened again lazily, read-only,
                // like any other sealed segment.
                open::repair_sealed(env, channel_id, base, &path, next_base, &mut report)?;
            }
            entries.push(SegmentEntry::closed(base, path));
        }
    }
    recovered.entries = entries;
    recovered.report = report;
    Ok(recovered)
}
