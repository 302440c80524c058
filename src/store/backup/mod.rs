//! Online backups: a consistent copy of a store while it is written.
//!
//! A backup first takes a *cut*: for every channel, the segment files and
//! how much of each holds the channel at one instant, and every
//! subscriber's latest commit at that instant (never past its channel's
//! end). An owning store freezes every channel's writer for the moment it
//! takes to note that (microseconds). A store attached read-only cannot
//! stop the owner: it reads the subscribers log first, then looks at every
//! channel until two looks in a row agree (so at the moment between them
//! every channel had exactly that end), or settles for the last look.
//!
//! Then the files are copied: sealed segments (never written again) are
//! hard-linked when the destination is on the same file system, else
//! copied; the segment a channel ends in, and segments whose seal is not on
//! disk yet, are copied up to the cut and given a slot that says where
//! their records end (a seal, or a clean mark for the last one). The
//! subscribers log is written anew from the cut's commits, and the catalog
//! last, so a copy cut short is not a store.

mod copy;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Store, StoreShared};
use crate::error::{Error, IoOp, Result};
use crate::format::catalog::{CatalogData, ChannelEntry};
use crate::log::LogCut;
use crate::report::{BackupReport, Progress};
use crate::subscriptions::{Durable, SubKey};
use copy::write_copy;

/// How long a read-only backup looks for a moment when no channel moves.
const SETTLE_TIME: Duration = Duration::from_millis(500);

/// Every channel and subscriber at one instant.
pub(super) struct Cut {
    pub(super) data: CatalogData,
    pub(super) channels: Vec<(String, ChannelEntry, LogCut)>,
    pub(super) subscribers: Vec<(SubKey, Durable)>,
    /// Whether every channel's end is known at one instant (always for an
    /// owning store; for a read-only one when a moment without appends
    /// was found).
    pub(super) instant: bool,
}

impl Store {
    /// Writes a consistent copy of the store into `dest` (a new or empty
    /// directory) while the store keeps being written, and returns what it
    /// copied. Works on an owning store and on one attached read-only
    /// ([`Store::open_read_only`]), so another process can back up a store
    /// an application owns.
    ///
    /// The copy is a store as of one instant: every channel is an exact
    /// prefix of the original (contiguous seqs, identical payloads,
    /// timestamps and limits), and every subscriber and queue group has the
    /// position and state of a commit that existed at that instant, never
    /// past its channel's copied end. An owning store stops its writers for
    /// the microseconds it takes to note every channel's end. A read-only
    /// store cannot stop the owner: it reads the subscribers first, then the
    /// channels' ends until two looks in a row agree; when the owner
    /// publishes without a pause for half a second it takes the last look,
    /// where each channel's end is of its own instant, all within one look
    /// (`BackupReport::one_instant` says which). If retention removes a
    /// segment before it is copied, the copy starts after it, as if
    /// retention had run on the copy too.
    ///
    /// Sealed segments are hard-linked when `dest` is on the same file
    /// system (they are never written again), else copied; the rest is
    /// copied. Everything is synced before this returns; the catalog is
    /// written last, so an interrupted backup is not a store.
    ///
    /// The copy keeps the store id and every channel id: a copy taken
    /// before a channel was deleted and created again holds the old
    /// incarnation's id, never the new one's, so their messages can never
    /// be taken for each other. A copy that is opened and written to while
    /// the original goes on is a fork: both then hand out the same seqs.
    ///
    /// Errors: `InvalidOption` when `dest` exists and is not an empty
    /// directory, or lies inside the store; `Io`; `ChannelDeleted`-like
    /// failures are reported as `Io` when a channel is deleted during the
    /// copy (run it again).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use spool::{Options, StartAt, Store};
    /// let store = Store::open(dir.path().join("live"), Options::default())?;
    /// let orders = store.channel("orders")?;
    /// orders.publish_batch(&[b"a".as_slice(), b"b", b"c"])?;
    /// orders.subscribe("billing", StartAt::First)?.commit(2, b"state")?;
    ///
    /// let report = store.backup_to(dir.path().join("copy"))?;
    /// assert_eq!(report.messages, 3);
    ///
    /// let copy = Store::open(dir.path().join("copy"), Options::default())?;
    /// assert_eq!(copy.store_id(), store.store_id());
    /// let orders_copy = copy.open_channel("orders")?;
    /// assert_eq!((orders_copy.id(), orders_copy.last_seq()), (orders.id(), 3));
    /// assert_eq!(orders_copy.subscribe("billing", StartAt::First)?.committed().0, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        self.backup_to_with_progress(dest, |_| {})
    }

    /// [`backup_to`](Self::backup_to), telling `progress` how many bytes of
    /// segment files were linked or copied so far (after each file).
    pub fn backup_to_with_progress(
        &self,
        dest: impl AsRef<Path>,
        mut progress: impl FnMut(Progress),
    ) -> Result<BackupReport> {
        let dest = dest.as_ref();
        self.shared.check_backup_dest(dest)?;
        let cut = if self.shared.env.read_only {
            self.shared.cut_following()?
        } else {
            self.shared.cut_owning()
        };
        write_copy(&self.shared.env.storage, dest, &cut, &mut progress)
    }
}

impl StoreShared {
    fn check_backup_dest(&self, dest: &Path) -> Result<()> {
        let invalid = |reason: String| Error::invalid_option("dest", reason);
        if dest.as_os_str().is_empty() {
            return Err(invalid("the backup destination is empty".into()));
        }
        match fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(invalid(format!(
                        "{} is not empty; back up into a new or empty directory",
                        dest.display()
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(IoOp::ListDir, dest, e)),
        }
        let root = fs::canonicalize(&self.env.root).unwrap_or_else(|_| self.env.root.clone());
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let inside = fs::canonicalize(parent).is_ok_and(|p| p.starts_with(&root));
        if inside {
            return Err(invalid(format!(
                "{} is inside the store; back up to another directory",
                dest.display()
            )));
        }
        Ok(())
    }

    /// The cut of an owning store: every channel's writer held while its
    /// end is noted, then the subscribers' latest commits (each points at
    /// most at its channel's end, which cannot move meanwhile).
    fn cut_owning(&self) -> Cut {
        let _lifecycle = self.lifecycle.lock();
        let data = self.catalog.snapshot();
        let mut cores = self.channel_list();
        cores.sort_by_key(|c| c.id());
        let frozen: Vec<_> = cores.iter().map(|c| c.log.freeze()).collect();
        let cuts: Vec<LogCut> = frozen.iter().map(|f| f.cut()).collect();
        let subscribers = self.subs.snapshot();
        drop(frozen);
        assemble(
            data,
            cores.iter().map(|c| c.name().to_string()).zip(cuts),
            subscribers,
            true,
        )
    }

    /// The cut of a store attached read-only: the subscribers first, then
    /// the channels until two looks agree (see the module docs).
    fn cut_following(&self) -> Result<Cut> {
        let _one = self.lifecycle.lock();
        self.subs.reload()?;
        let subscribers = self.subs.snapshot();
        let ends = || -> Vec<(u64, u64, u64)> {
            let mut v: Vec<_> = self
                .channel_list()
                .iter()
                .map(|c| (c.id(), c.log.first_seq(), c.log.last_seq()))
                .collect();
            v.sort_unstable();
            v
        };
        self.refresh_locked(false)?;
        let mut last = ends();
        let started = Instant::now();
        let mut instant = false;
        while started.elapsed() < SETTLE_TIME {
            self.refresh_locked(false)?;
            let now = ends();
            if now == last {
                instant = true;
                break;
            }
            last = now;
        }
        let data = self.catalog.snapshot();
        let mut cores = self.channel_list();
        cores.sort_by_key(|c| c.id());
        let cuts: Vec<LogCut> = cores.iter().map(|c| c.log.freeze().cut()).collect();
        Ok(assemble(
            data,
            cores.iter().map(|c| c.name().to_string()).zip(cuts),
            subscribers,
            instant,
        ))
    }
}

/// Puts a cut together: the catalog entries of the channels cut, and the
/// commits of their subscribers.
fn assemble(
    data: CatalogData,
    cuts: impl Iterator<Item = (String, LogCut)>,
    subscribers: HashMap<SubKey, Durable>,
    instant: bool,
) -> Cut {
    let channels: Vec<(String, ChannelEntry, LogCut)> = cuts
        .filter_map(|(name, cut)| {
            let entry = data.channels.get(&name).filter(|e| e.id == cut.id)?.clone();
            Some((name, entry, cut))
        })
        .collect();
    let mut subscribers: Vec<(SubKey, Durable)> = subscribers
        .into_iter()
        .filter(|((id, _), _)| channels.iter().any(|(_, _, c)| c.id == *id))
        .collect();
    subscribers.sort_by(|a, b| a.0.cmp(&b.0));
    Cut {
        data,
        channels,
        subscribers,
        instant,
    }
}
