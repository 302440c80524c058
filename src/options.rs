//! Store-wide configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::format::frame::{FRAME_HEADER_LEN, MAX_LEN};
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::limits::Limits;
use crate::storage::sim::SimStorage;
use crate::storage::{RealStorage, Storage};

/// When written messages become durable (survive power loss).
///
/// Whatever the policy, a message is *written* once `publish` returns: it is
/// in the page cache and survives a crash of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// spool never syncs on its own; call `Channel::sync` or `Store::sync`.
    Never,
    /// A background flusher thread syncs every channel with new data at this
    /// interval. A power loss can cost at most about one interval of data.
    Interval(Duration),
    /// `publish` returns only once its message is durable. Concurrent
    /// publishers on one channel share one sync (group commit).
    Always,
}

/// What `Store::open` does when it finds damage in data known to be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Refuse to open (or to read the damaged record) with `Error::Corrupt`.
    Strict,
    /// Scan every segment, replace each damaged record span by a marker that
    /// reads as `Error::Lost`, keep every valid record after it, and report
    /// what was lost in `Store::recovery_report`. Open time is then
    /// proportional to the store's size.
    Repair,
}

/// Store-wide options. Start from `Options::default()` and adjust:
///
/// ```
/// use spool::{Options, SyncPolicy};
/// let opts = Options::default()
///     .segment_size(16 << 20)
///     .sync_policy(SyncPolicy::Always);
/// assert_eq!(opts.get_segment_size(), 16 << 20);
/// ```
#[derive(Clone)]
pub struct Options {
    segment_size: u64,
    index_interval: u32,
    /// `None`: the default, capped to what one segment holds.
    max_payload: Option<u32>,
    sync: SyncPolicy,
    recovery: RecoveryMode,
    limits: Limits,
    max_state: usize,
    compact_interval: Duration,
    clock: Arc<dyn Clock>,
    storage: Storage,
    create_if_missing: bool,
    read_only: bool,
    poll_interval: Duration,
}

/// Default interval at which a read-only store looks for what the owner
/// wrote: 10 ms.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Default interval of the compaction thread's passes: 1 s.
pub const DEFAULT_COMPACT_INTERVAL: Duration = Duration::from_secs(1);

/// Default maximum number of durable subscribers (and queue groups) per
/// channel.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1000;
/// Default maximum size of a subscriber's committed state: 1 MiB.
pub const DEFAULT_MAX_STATE: usize = 1 << 20;

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default index interval: one index entry per 1 KiB of records. A random
/// `get` walks at most this far from an entry (each frame header walked is
/// a dependent memory load); the index costs 16 bytes per entry, in memory
/// while its segment is open and in its index file (1 MiB per 64 MiB).
pub const DEFAULT_INDEX_INTERVAL: u32 = 1024;
/// Default maximum payload: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;
/// Segments are addressed with 32-bit offsets inside the index.
pub const MAX_SEGMENT_SIZE: u64 = u32::MAX as u64 - 7;
/// Smallest accepted segment size.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

impl Default for Options {
    /// Defaults: 64 MiB segments, an index entry every 4 KiB, payloads up to
    /// 1 MiB (capped to what a segment holds), `SyncPolicy::Interval(1 s)`, `RecoveryMode::Strict`, real files.
    fn default() -> Self {
        Options {
            segment_size: DEFAULT_SEGMENT_SIZE,
            index_interval: DEFAULT_INDEX_INTERVAL,
            max_payload: None,
            sync: SyncPolicy::Interval(Duration::from_secs(1)),
            recovery: RecoveryMode::Strict,
            limits: Limits::default().max_subscribers(DEFAULT_MAX_SUBSCRIBERS),
            max_state: DEFAULT_MAX_STATE,
            compact_interval: DEFAULT_COMPACT_INTERVAL,
            clock: Arc::new(SystemClock),
            storage: Storage::Real(RealStorage::default()),
            create_if_missing: true,
            read_only: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("segment_size", &self.segment_size)
            .field("index_interval", &self.index_interval)
            .field("max_payload", &self.max_payload)
            .field("sync", &self.sync)
            .field("recovery", &self.recovery)
            .field("limits", &self.limits)
            .field("max_state", &self.max_state)
            .field("compact_interval", &self.compact_interval)
            .field("clock", &self.clock)
            .field("storage", &self.storage)
            .field("create_if_missing", &self.create_if_missing)
            .field("read_only", &self.read_only)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl Options {
    /// Size of each segment file in bytes (preallocated when the segment is
    /// created). Between 4 KiB and 4 GiB - 8; must hold at least one message
    /// of `max_payload` bytes.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// One sparse-index entry per this many bytes of records (at least 64).
    /// Smaller means faster lookups and a larger index.
    pub fn index_interval(mut self, bytes: u32) -> Self {
        self.index_interval = bytes;
        self
    }

    /// Largest accepted payload in bytes. Default: 1 MiB, or less when the
    /// segment size cannot hold a 1 MiB message.
    pub fn max_payload(mut self, bytes: u32) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// When data becomes durable; see [`SyncPolicy`].
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// What to do with damage in durable data; see [`RecoveryMode`].
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery = mode;
        self
    }

    /// Most durable subscribers (plain and queue groups) per channel, for
    /// channels that do not set their own; `TooManySubscribers` past it.
    /// Shorthand for the `max_subscribers` field of [`Options::limits`].
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.limits.max_subscribers = Some(n);
        self
    }

    /// Store-wide default limits, for what a channel does not set itself
    /// (replaces all defaults, including `max_subscribers`, 1000 by
    /// default).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How often the compaction thread enforces limits (default 1 s;
    /// `Store::compact_now` runs a pass at once).
    pub fn compact_interval(mut self, every: Duration) -> Self {
        self.compact_interval = every;
        self
    }

    /// The clock for message timestamps, `max_age` and `max_inactivity`
    /// (default: the system clock). See [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whether `Store::open` may create a store (default `true`): with
    /// `false`, a missing directory, or one that holds no store yet, is
    /// [`Error::NotAStore`](crate::Error::NotAStore) instead of a new,
    /// empty store. Tools that inspect or repair an existing store use it,
    /// so that a mistyped path is an error, not a new store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use spool::{Error, Options, Store};
    /// let missing = dir.path().join("typo");
    /// let opened = Store::open(&missing, Options::default().create_if_missing(false));
    /// assert!(matches!(opened, Err(Error::NotAStore { .. })));
    /// assert!(!missing.exists(), "nothing was created");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Opens the store read-only (default `false`): see
    /// [`Store::open_read_only`](crate::Store::open_read_only), which is
    /// `Store::open` with this set. Implies `create_if_missing(false)`;
    /// the sync policy, recovery mode and limits are then unused.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How often a read-only store looks for new messages, new segments
    /// and catalog changes of the store's owner (default 10 ms,
    /// [`DEFAULT_POLL_INTERVAL`]): a message the owner publishes is seen
    /// within about this long. Unused by an owning store.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Whether an open may create the store.
    pub fn get_create_if_missing(&self) -> bool {
        self.create_if_missing && !self.read_only
    }

    /// Whether the store is opened read-only.
    pub fn get_read_only(&self) -> bool {
        self.read_only
    }

    /// The poll interval of a read-only store.
    pub fn get_poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The store-wide default limits.
    pub fn get_limits(&self) -> Limits {
        self.limits
    }

    /// The compaction interval.
    pub fn get_compact_interval(&self) -> Duration {
        self.compact_interval
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Largest subscriber state a commit accepts, in bytes (at most
    /// 64 MiB); `StateTooLarge` past it.
    pub fn max_state(mut self, bytes: usize) -> Self {
        self.max_state = bytes;
        self
    }

    /// The configured state limit.
    pub fn get_max_state(&self) -> usize {
        self.max_state
    }

    /// Run on a simulated file system instead of real files, for crash
    /// testing (see [`SimStorage`]). The path given to `Store::open` is then
    /// a path inside the simulation.
    pub fn simulated(mut self, sim: &SimStorage) -> Self {
        self.storage = Storage::simulated(sim);
        self
    }

    /// The configured segment size.
    pub fn get_segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The configured index interval.
    pub fn get_index_interval(&self) -> u32 {
        self.index_interval
    }

    /// The maximum payload in effect.
    pub fn get_max_payload(&self) -> u32 {
        self.max_payload.unwrap_or_else(|| {
            let room = self
                .segment_size
                .saturating_sub((SEGMENT_HEADER_LEN + FRAME_HEADER_LEN) as u64);
            u32::try_from(room).unwrap_or(u32::MAX).min(DEFAULT_MAX_PAYLOAD)
        })
    }

    /// The configured sync policy.
    pub fn get_sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    /// The configured recovery mode.
    pub fn get_recovery_mode(&self) -> RecoveryMode {
        self.recovery
    }

    pub(crate) fn storage_backend(&self) -> &Storage {
        &self.storage
    }

    /// Checks every value; called by `Store::open`.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::invalid_option(
                "segment_size",
                format!(
                    "{} bytes is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}",
                    self.segment_size
                ),
            ));
        }
        if self.index_interval < 64 {
            return Err(Error::invalid_option(
                "index_interval",
                format!("{} bytes is below the minimum of 64", self.index_interval),
            ));
        }
        let room = self.segment_size - SEGMENT_HEADER_LEN as u64 - FRAME_HEADER_LEN as u64;
        let max_payload = self.get_max_payload();
        if u64::from(max_payload) > room || max_payload > MAX_LEN {
            return Err(Error::invalid_option(
                "max_payload",
                format!(
                    "{} bytes does not fit in a segment of {} bytes (at most {} with this segment size)",
                    max_payload,
                    self.segment_size,
                    room.min(u64::from(MAX_LEN))
                ),
            ));
        }
        self.limits.validate()?;
        if self.read_only && self.poll_interval.is_zero() {
            return Err(Error::invalid_option("poll_interval", "must be more than zero"));
        }
        if self.compact_interval.is_zero() {
            return Err(Error::invalid_option("compact_interval", "must be more than zero"));
        }
        if self.max_state > 64 << 20 {
            return Err(Error::invalid_option(
                "max_state",
                format!("{} bytes is above the supported 64 MiB", self.max_state),
            ));
        }
        if let SyncPolicy::Interval(d) = self.sync {
            if d.is_zero() {
                return Err(Error::invalid_option(
                    "sync_policy",
                    "Interval(0) would sync continuously; use SyncPolicy::Always instead",
                ));
            }
        }
        Ok(())
    }
}
