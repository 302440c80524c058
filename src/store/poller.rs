//! The follower thread of a store attached read-only (`spool-follower`):
//! every poll interval it looks at what the owner wrote (catalog, records,
//! segments), and now and then at the subscribers log.

use std::sync::Weak;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::StoreShared;
use crate::error::{Error, IoOp, Result};

pub(crate) const THREAD: &str = "spool-follower";

/// How often the subscribers log is read again (it is read whole).
const SUBSCRIBERS_EVERY: Duration = Duration::from_secs(1);

/// Handle to the thread.
pub(crate) struct Poller {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Poller {
    pub(crate) fn start(store: Weak<StoreShared>, every: Duration) -> Result<Poller> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let handle = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || poll_loop(&store, every, &stopped))
            .map_err(|e| Error::io(IoOp::SpawnThread, THREAD, e))?;
        Ok(Poller { stop, handle })
    }

    /// Stops and joins the thread.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

fn poll_loop(store: &Weak<StoreShared>, every: Duration, stopped: &Receiver<()>) {
    let mut subscribers_read = Instant::now();
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(store) = store.upgrade() else { return };
        let subscribers = subscribers_read.elapsed() >= SUBSCRIBERS_EVERY;
        if subscribers {
            subscribers_read = Instant::now();
        }
        // A failed look (a file the owner is replacing, a store removed
        // under us) is tried again at the next poll; `Store::refresh`
        // returns the error to a caller who asks.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.refresh(subscribers)));
    }
}
