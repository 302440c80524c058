//! The segments at the end of a channel that a crash may have left
//! unsealed: from the catalog's newest segment on (every segment when the
//! catalog records none). The writer rolls on without waiting for a seal,
//! so after a crash a segment followed by another may be unsealed. Walked
//! in order, each such "link" either continues into the next one (its
//! records end exactly where the next segment starts: it is sealed now,
//! after the catalog records it), or ends the log (a torn tail: the
//! segments after it hold nothing durable, since a segment's records are
//! made durable only after every segment before it is sealed, and are
//! removed).

use std::path::Path;
use std::sync::Arc;

use super::super::state::{Active, Sealing};
use super::open::{open_rw, OpenedRw};
use super::scan::{scan, Known, ScanStart};
use crate::catalog::Catalog;
use crate::env::Env;
use crate::error::{Error, IoOp, Result};
use crate::format::segment::{Slot, SEGMENT_HEADER_LEN};
use crate::index::Coverage;
use crate::report::ChannelRecovery;

/// What became of a segment followed by another one.
pub(super) enum Link {
    /// Sealed (it was, or now is): the next segment continues it.
    Sealed(Slot),
    /// Sealed, and repaired (repair mode) as any sealed segment: opened
    /// lazily like one; `gap`: seqs it can no longer hold before the next
    /// segment, for a gap segment.
    Repaired { gap: Option<(u64, u64)> },
    /// Unsealed, and its records end exactly where the next segment
    /// starts: it waits for its seal (the next sync seals it first), as if
    /// the writer had just rolled away from it. Nothing is written at open.
    Pending(Sealing),
    /// Its records end before the next segment starts: it is the last
    /// segment now, and every later one must go.
    Torn,
}

/// Recovers the segment at `base`, followed by one at `next_base`, when it
/// may be unsealed (see the module docs). `confirmed`: the catalog records
/// it (or a later one). `known_newest`: the catalog records a newest
/// segment at all.
#[allow(clippy::too_many_arguments)]
pub(super) fn recover_link(
    env: &Env,
    catalog: Option<&Catalog>,
    channel_id: u64,
    base: u64,
    path: &Path,
    next_base: u64,
    durable_seq: u64,
    confirmed: bool,
    known_newest: bool,
    report: &mut ChannelRecovery,
) -> Result<Link> {
    let OpenedRw {
        seg,
        mut records,
        slots,
        slot,
    } = open_rw(env, channel_id, base, path)?;
    if let Some(seal) = slot.filter(|s| s.sealed) {
        if known_newest && !confirmed {
            // Sealed means confirmed first: the catalog is older than it.
            return Err(Error::corrupt(
                path,
                0,
                "this segment is sealed but the catalog does not record it (an older copy of the catalog?)",
            ));
        }
        if seal.next_seq == next_base {
            if env.opts.get_recovery_mode() == crate::options::RecoveryMode::Repair {
                // Sealed before the crash, so checked like any sealed
                // segment: damage below its seal is durable data lost.
                drop((seg, records, slots));
                let fixed = super::repair::repair_sealed(env, channel_id, base, path, Some(next_base), report)?;
                return Ok(Link::Repaired { gap: fixed.gap });
            }
            return Ok(Link::Sealed(seal));
        }
        if seal.next_seq > next_base || confirmed && next_base <= durable_seq {
            return Err(Error::corrupt(
                path,
                crate::format::segment::SLOT_OFFSETS[0] as u64,
                format!(
                    "seal says the next segment starts at {}, but it starts at {next_base} (a segment file is missing or foreign)",
                    seal.next_seq
                ),
            ));
        }
        // The next segment does not continue this one and holds nothing
        // durable: the tail ends here.
        return Ok(Link::Torn);
    }
    // A confirmed segment with no valid slot is damaged (see `recover_last`).
    let header_lost = slot.is_none() && confirmed;
    if header_lost && env.opts.get_recovery_mode() != crate::options::RecoveryMode::Repair {
        return Err(super::active::header_lost_error(path));
    }
    let repair = env.opts.get_recovery_mode() == crate::options::RecoveryMode::Repair;
    let durable = slot.unwrap_or_else(|| Slot::empty(base));
    let known = Known {
        look_past: super::active::look_past(env, header_lost),
        ..Known::new(durable, durable_seq)
    };
    // Its index file (the final live checkpoint written after the roll, on
    // this boot) spares the scan of what it covers.
    let assisted = if repair {
        Err(seg)
    } else {
        super::active::scan_after_index(env, channel_id, seg, &mut records, known)
    };
    let (seg, scanned) = match assisted {
        Ok(found) => found,
        Err(seg) => {
            let limit = seg.region.len();
            let scanned = scan(
                env,
                &seg,
                &mut records,
                known,
                limit,
                ScanStart::first_record(base),
                report,
            )?;
            seg.trust_up_to(scanned.end);
            (seg, scanned)
        }
    };
    if scanned.next_seq != next_base {
        if scanned.next_seq > next_base {
            return Err(Error::corrupt(
                path,
                scanned.end as u64,
                format!(
                    "records run to seq {}, past the next segment's first seq {next_base}",
                    scanned.next_seq - 1
                ),
            ));
        }
        if env.same_boot {
            // The writer rolls only once every record of a segment is
            // written, and after a process crash the page cache still
            // holds them all: records ending early are damage.
            if !repair {
                return Err(Error::corrupt(
                    path,
                    scanned.end as u64,
                    format!(
                        "records end at seq {} but the next segment starts at {next_base}; after a process crash \
                         nothing can be missing between them: the segment is damaged",
                        scanned.next_seq
                    ),
                ));
            }
            drop((seg, records, slots));
            let fixed = super::repair::repair_sealed(env, channel_id, base, path, Some(next_base), report)?;
            return Ok(Link::Repaired { gap: fixed.gap });
        }
        return Ok(Link::Torn);
    }
    // The writer rolled here.
    let end = scanned.end;
    let mut slots = super::open::ensure_slot(&seg, slots, slot)?;
    if !repair {
        // Sealed by the next sync, like a segment the writer just left.
        records.publish(end).map_err(Error::io_at(IoOp::WriteRecords, path))?;
        let active = Active::new(Arc::new(seg), records, slots, end, confirmed);
        return Ok(Link::Pending(Sealing {
            active,
            next_seq: next_base,
            last_timestamp: scanned.last_timestamp,
        }));
    }
    // Repair seals it now, after the catalog records it.
    if let Some(catalog) = catalog.filter(|_| !confirmed) {
        seg.sync_created(env)?;
        catalog.confirm_segment(channel_id, base)?;
    }
    seg.region.sync(0..end).map_err(Error::io_at(IoOp::SyncMapping, path))?;
    let seal = Slot {
        durable_end: end as u64,
        next_seq: next_base,
        last_timestamp: scanned.last_timestamp,
        sealed: true,
        ..Slot::empty(base)
    };
    slots.write(seg.seed, path, seal)?;
    seg.region
        .sync(0..SEGMENT_HEADER_LEN)
        .map_err(Error::io_at(IoOp::SyncMapping, path))?;
    report.resealed.push(path.to_path_buf());
    let cov = Coverage {
        end,
        next_seq: next_base,
        last_timestamp: scanned.last_timestamp,
    };
    let _ = seg.write_index_file(&env.storage, channel_id, cov);
    Ok(Link::Sealed(seal))
}

/// Whether an unconfirmed segment file is whole enough to read: not a
/// directory, long enough, its fixed header valid and its own. One that is
/// not never held anything durable (its creation was never made durable):
/// the tail ends before it.
pub(super) fn usable(env: &Env, channel_id: u64, base: u64, path: &Path) -> bool {
    use crate::format::frame::FRAME_HEADER_LEN;
    use crate::format::segment::{FixedHeader, FIXED_LEN};
    let storage = &env.storage;
    if storage.is_dir(path) {
        return false;
    }
    let Ok(len) = storage.file_len(path) else { return false };
    if len < (SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64 {
        return false;
    }
    storage
        .read_at(path, 0, FIXED_LEN)
        .ok()
        .and_then(|b| FixedHeader::decode(&b).ok())
        .is_some_and(|h| h.channel_id == channel_id && h.base_seq == base && h.segment_len == len)
}
