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
mod chain;
mod open;
mod repair;
mod scan;

use std::path::Path;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::format::catalog::ChannelEntry;
use crate::format::segment::{index_file_name, parse_index_name, parse_segment_name, segment_file_name};
use crate::options::RecoveryMode;
use crate::report::{ChannelRecovery, LostRange};

use super::state::{Active, Sealing};
use super::table::SegmentEntry;
use active::{recover_last, Last};

pub(crate) use open::open_sealed;
pub(crate) use open::read_slot;
pub(super) use open::{fixed_header_problem, read_header};
pub(crate) use scan::needs_index_entry;

/// A recovered channel log, ready to become a `Log`.
pub(super) struct Recovered {
    pub entries: Vec<Arc<SegmentEntry>>,
    pub active: Option<Active>,
    pub next_seq: u64,
    pub last_timestamp: u64,
    pub first_seq: u64,
    /// Every seq up to this one is durable.
    pub durable_seq: u64,
    pub report: ChannelRecovery,
    /// Segments before the last one left unsealed by a crash, in order:
    /// they wait for their seal like segments the writer rolled away from.
    pub pending: Vec<Sealing>,
}

/// Opens one channel directory: cleans leftovers, drops segments wholly
/// below the first retained seq, checks that every file the catalog says
/// exists does, recovers the last segment. `floor` is a seq known durable
/// from elsewhere (a durable subscriber commit); with the catalog's durable
/// seq it is the least the channel must hold.
pub(super) fn recover(
    env: &Env,
    catalog: &Catalog,
    dir: &Path,
    name: &str,
    entry: &ChannelEntry,
    floor: u64,
    legacy: bool,
) -> Result<Recovered> {
    let storage = &env.storage;
    let channel_id = entry.id;
    let first_seq = entry.first_seq;
    let repair = env.opts.get_recovery_mode() == RecoveryMode::Repair;
    let mut durable_seq = entry.durable_seq.max(floor);
    let mut report = ChannelRecovery {
        name: name.to_string(),
        id: channel_id,
        ..ChannelRecovery::default()
    };
    if !storage.exists(dir) {
        if (entry.newest_base > 0 || durable_seq >= first_seq) && !repair {
            return Err(Error::corrupt(
                dir,
                0,
                format!("the channel's directory is missing, but the catalog (or a subscriber commit) says messages up to {durable_seq} were durable"),
            ));
        }
        // The catalog was written but the directory not yet created (or a
        // repair starts the channel again).
        storage.create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent)?;
        }
    }
    if repair {
        repair::repair_layout(env, dir, channel_id, &mut report)?;
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
    if newest_missing(entry, &bases) {
        if !repair {
            return Err(Error::corrupt(
                dir.join(segment_file_name(entry.newest_base)),
                0,
                "this segment file is missing, but the catalog records it as the channel's newest durable segment",
            ));
        }
        // How many of its messages were durable is unknown; at least its
        // first seq is never handed out again, and is reported lost.
        durable_seq = durable_seq.max(entry.newest_base);
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
            // Made durable, so that a strict open after this repair finds the
            // channel as the repair left it.
            catalog.update(|c| {
                Ok(match c.by_id_mut(channel_id) {
                    Some(e) if e.first_seq < first => {
                        e.first_seq = first;
                        true
                    }
                    _ => false,
                })
            })?;
        }
    }
    let mut entries = Vec::with_capacity(bases.len());
    let mut recovered = Recovered {
        entries: Vec::new(),
        active: None,
        next_seq: first,
        last_timestamp: 0,
        first_seq: first,
        durable_seq: first - 1,
        report: ChannelRecovery::default(),
        pending: Vec::new(),
    };
    // The tail that a crash may have left unsealed: from the catalog's
    // newest segment on (every segment when it records none; only the last
    // one in a store of format version 1, whose writer sealed before it
    // rolled).
    let known_newest = entry.newest_base > 0;
    let tail_from = if known_newest {
        bases
            .iter()
            .position(|&b| b >= entry.newest_base)
            .unwrap_or(bases.len())
    } else if legacy {
        bases.len().saturating_sub(1)
    } else {
        0
    };
    // A segment above the newest on record holds nothing durable: one that
    // cannot even be read (its creation was cut by the crash) ends the
    // tail, with every segment after it.
    let unconfirmed = |b: u64| !legacy && (!known_newest || b > entry.newest_base);
    let unusable = bases
        .iter()
        .position(|&b| unconfirmed(b) && !chain::usable(env, channel_id, b, &dir.join(segment_file_name(b))));
    // On the same boot a segment file has its header from before it got its
    // name (the page cache keeps it through a process crash): one that
    // cannot be read is damaged, not a creation the crash cut.
    let unusable = match unusable {
        Some(i) if env.same_boot => {
            let path = dir.join(segment_file_name(bases[i]));
            if !repair {
                return Err(Error::corrupt(
                    &path,
                    0,
                    "the segment's header cannot be read; after a process crash it cannot be a creation cut short: damaged",
                ));
            }
            // Repair rewrites the header (see `open_rw`).
            None
        }
        other => other,
    };
    if let Some(cut) = unusable {
        for later in bases.split_off(cut) {
            for file in [segment_file_name(later), index_file_name(later)] {
                let path = dir.join(&file);
                if storage.is_dir(&path) {
                    // Never ours to remove: set aside by repair, refused by strict.
                    return Err(Error::corrupt(
                        &path,
                        0,
                        "a directory is where this segment file should be",
                    ));
                }
                storage.remove_file(&path)?;
                report.removed_files.push(path);
            }
            report.torn_tail.get_or_insert((dir.join(segment_file_name(later)), 0));
        }
        storage.sync_dir(dir)?;
    }
    let mut i = 0;
    while i < bases.len() {
        let base = bases[i];
        let path = dir.join(segment_file_name(base));
        let next_base = bases.get(i + 1).copied();
        let confirmed = known_newest && base <= entry.newest_base;
        match next_base {
            None => {
                let (seg, last) = recover_last(env, channel_id, base, &path, durable_seq, confirmed, &mut report)?;
                let entry = SegmentEntry::opened(seg);
                match last {
                    Last::Active {
                        active,
                        next_seq,
                        last_timestamp,
                        durable_next,
                    } => {
                        recovered.active = Some(active);
                        recovered.next_seq = next_seq;
                        recovered.last_timestamp = last_timestamp;
                        recovered.durable_seq = durable_next.saturating_sub(1);
                    }
                    Last::Sealed(seal) => {
                        entry.set_seal(seal);
                        recovered.next_seq = seal.next_seq;
                        recovered.last_timestamp = seal.last_timestamp;
                        recovered.durable_seq = seal.next_seq - 1;
                    }
                }
                entries.push(entry);
            }
            Some(next) if i >= tail_from => {
                let link = chain::recover_link(
                    env,
                    Some(catalog),
                    channel_id,
                    base,
                    &path,
                    next,
                    durable_seq,
                    confirmed,
                    known_newest,
                    &mut report,
                )?;
                match link {
                    chain::Link::Sealed(seal) => {
                        let e = SegmentEntry::closed(base, path);
                        e.set_seal(seal);
                        entries.push(e);
                    }
                    chain::Link::Pending(sealing) => {
                        entries.push(SegmentEntry::opened(Arc::clone(&sealing.active.seg)));
                        recovered.pending.push(sealing);
                    }
                    chain::Link::Repaired { gap } => {
                        entries.push(SegmentEntry::closed(base, path));
                        if let Some((first, last)) = gap {
                            let gap = repair::make_gap_segment(env, dir, channel_id, first, last, 0, &mut report)?;
                            entries.push(SegmentEntry::closed(first, gap));
                        }
                    }
                    chain::Link::Torn => {
                        // The segments after this one never held anything
                        // durable: the tail ends here.
                        for later in bases.split_off(i + 1) {
                            for file in [segment_file_name(later), index_file_name(later)] {
                                storage.remove_file(&dir.join(&file))?;
                                report.removed_files.push(dir.join(file));
                            }
                        }
                        storage.sync_dir(dir)?;
                        report.torn_tail = Some((dir.join(segment_file_name(next)), 0));
                        continue;
                    }
                }
            }
            Some(next) => {
                entries.push(SegmentEntry::closed(base, path.clone()));
                if repair {
                    // Scanned and repaired now; opened again lazily,
                    // read-only, like any other sealed segment.
                    let fixed = repair::repair_sealed(env, channel_id, base, &path, Some(next), &mut report)?;
                    if let Some((first, last)) = fixed.gap {
                        let gap = repair::make_gap_segment(env, dir, channel_id, first, last, 0, &mut report)?;
                        entries.push(SegmentEntry::closed(first, gap));
                    }
                }
            }
        }
        i += 1;
    }
    recovered.entries = entries;
    if legacy {
        // A store of format version 1 made every segment durable when it
        // made it (and sealed all but the last): the catalog now records the
        // newest, so a later open tells a damaged one from a cut creation.
        if let Some(last) = recovered.entries.last() {
            catalog.confirm_segment(channel_id, last.base)?;
        }
    }
    if let Some(first) = recovered.pending.first() {
        // Nothing past the first unsealed segment's durable part is known
        // durable: a sync seals the waiting segments first.
        let link_durable = first.active.durable_next().saturating_sub(1);
        recovered.durable_seq = recovered.durable_seq.min(link_durable.max(durable_seq));
    }
    let last = recovered.next_seq - 1;
    if last < durable_seq && durable_seq >= first {
        let why = format!(
            "the channel's records end at seq {last}, but seq {durable_seq} was durable (recorded in the catalog, or pointed at by a durable subscriber commit): segment data is missing"
        );
        if !repair {
            let path = recovered
                .entries
                .last()
                .map_or_else(|| dir.to_path_buf(), |e| e.path.clone());
            return Err(Error::corrupt(path, 0, why));
        }
        extend_with_hole(
            env,
            catalog,
            dir,
            channel_id,
            &mut recovered,
            durable_seq,
            Some(&mut report),
        )?;
    }
    if recovered.next_seq < entry.first_seq {
        // Retention recorded a first retained seq past the records: they
        // had expired, were not durable yet, and a power loss took them.
        // The writer continues at the first retained seq, so that no seq
        // below it is ever handed out again (nothing is lost: the expired
        // seqs read as `OutOfRange`, as before the crash).
        extend_with_hole(env, catalog, dir, channel_id, &mut recovered, entry.first_seq - 1, None)?;
    }
    recovered.report = report;
    Ok(recovered)
}

/// Whether the catalog's newest segment is missing for no good reason:
/// retention removes a segment (the newest too) only once every record in
/// it is below the first retained seq, and never one after a segment it
/// keeps.
pub(crate) fn newest_missing(entry: &ChannelEntry, bases: &[u64]) -> bool {
    let newest = entry.newest_base;
    let trimmed = entry.first_seq > newest && bases.iter().all(|&b| b > newest);
    newest > 0 && !bases.contains(&newest) && !trimmed
}

/// Repair: the channel must reach `through` but its records end
/// earlier. Seals what is there and starts a segment whose first frame is a
/// hole over the missing range (reads of it return `Error::Lost`, or
/// `OutOfRange` below the first retained seq), so that no seq that may
/// have been seen is ever handed out again; the segment is on record in
/// the catalog before the hole is durable. `report`: where the range is
/// reported lost (`None`: seqs retention had expired).
fn extend_with_hole(
    env: &Env,
    catalog: &Catalog,
    dir: &Path,
    channel_id: u64,
    recovered: &mut Recovered,
    through: u64,
    report: Option<&mut ChannelRecovery>,
) -> Result<()> {
    use crate::format::frame::{encode_hole, FRAME_HEADER_LEN};
    use crate::format::segment::SEGMENT_HEADER_LEN;
    use crate::options::MIN_SEGMENT_SIZE;
    use crate::segment::Segment;

    // In order: the segments waiting for their seal, then the last one.
    for mut pending in std::mem::take(&mut recovered.pending) {
        if !pending.active.confirmed {
            pending.active.seg.sync_created(env)?;
            catalog.confirm_segment(channel_id, pending.active.seg.base)?;
        }
        let seal = pending.active.seal(pending.next_seq, pending.last_timestamp)?;
        if let Some(entry) = recovered.entries.iter().find(|e| e.base == pending.active.seg.base) {
            entry.set_seal(seal);
        }
    }
    let first_lost = recovered.next_seq;
    if let Some(mut active) = recovered.active.take() {
        if !active.confirmed {
            active.seg.sync_created(env)?;
            catalog.confirm_segment(channel_id, active.seg.base)?;
        }
        let seal = active.seal(recovered.next_seq, recovered.last_timestamp)?;
        if let Some(entry) = recovered.entries.last() {
            entry.set_seal(seal);
        }
    }
    let created = Segment::create_durable(env, dir, channel_id, first_lost, MIN_SEGMENT_SIZE)?;
    catalog.confirm_segment(channel_id, first_lost)?;
    let seg = Arc::new(created.segment);
    let mut records = created.records;
    let hole = encode_hole(seg.seed, first_lost, through, FRAME_HEADER_LEN)
        .ok_or_else(|| Error::corrupt(&seg.path, 0, "cannot write a hole marker"))?;
    let end = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN;
    let io = Error::io_at(crate::error::IoOp::WriteRecords, &seg.path);
    records
        .write(SEGMENT_HEADER_LEN, &hole)
        .and_then(|()| records.publish(end))
        .map_err(io)?;
    seg.trust_up_to(end);
    seg.region
        .sync(0..end)
        .map_err(Error::io_at(crate::error::IoOp::SyncMapping, &seg.path))?;
    if let Some(report) = report {
        report.lost.push(LostRange {
            first: first_lost,
            last: through,
            path: seg.path.clone(),
            offset: SEGMENT_HEADER_LEN as u64,
        });
    }
    let slots = created.slots;
    let mut active = Active::new(Arc::clone(&seg), records, slots, end, true);
    active.record_synced(end, through + 1, recovered.last_timestamp)?;
    recovered.entries.push(SegmentEntry::opened(seg));
    recovered.active = Some(active);
    recovered.next_seq = through + 1;
    recovered.durable_seq = through;
    Ok(())
}
