//! Waiting for a channel to grow, and what a channel takes on disk: for
//! readers that are not subscribers (tools, a store attached read-only).

use std::time::{Duration, Instant};

use super::Channel;
use crate::error::Result;

impl Channel {
    /// Blocks until the channel holds message `seq` (its last seq reaches
    /// it) or `timeout` passes; returns whether it does. Woken by publish,
    /// and on a store attached read-only by the follower thread when it
    /// finds new messages. Returns early (with `Ok(false)`) when the
    /// channel was deleted or the store closed: the next read says which.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = spool::Store::open(dir.path(), spool::Options::default()).unwrap();
    /// use std::time::Duration;
    /// let ch = store.channel("events")?;
    /// assert!(!ch.wait_for(1, Duration::from_millis(1))?);
    /// ch.publish(b"now")?;
    /// assert!(ch.wait_for(1, Duration::from_secs(1))?);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> Result<bool> {
        let log = &self.core.log;
        let deadline = Instant::now() + timeout;
        let ready = || log.last_seq() >= seq || log.check_readable().is_err();
        log.arrivals.wait_until(ready, Some(deadline));
        Ok(log.last_seq() >= seq)
    }

    /// Bytes the channel's files take (segments, including their
    /// preallocated, unwritten part, and index files), as their lengths
    /// say. `Io` when the directory cannot be listed; `Closed` once the
    /// store closed.
    pub fn disk_usage(&self) -> Result<u64> {
        let log = &self.core.log;
        if log.env().is_closed() {
            return Err(crate::Error::Closed);
        }
        let storage = &log.env().storage;
        let dir = log.dir();
        if storage.probe(dir)?.is_none() {
            return Ok(0);
        }
        Ok(storage
            .list_dir(dir)?
            .iter()
            .map(|name| storage.file_len(&dir.join(name)).unwrap_or(0))
            .sum())
    }

    /// Timestamp of the last message (ns since the Unix epoch; 0 when the
    /// channel never had one).
    pub fn last_timestamp(&self) -> u64 {
        self.core.log.last_timestamp()
    }
}
