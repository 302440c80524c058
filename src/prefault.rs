//! The prefault thread: faults in segment pages a little ahead of the
//! writer, so appends copy into memory that is already mapped writable
//! instead of taking a page fault per fresh 4 KiB page.

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, IoOp, Result};
use crate::mmap::Region;

/// The thread's name.
pub(crate) const THREAD: &str = "spool-prefault";

/// How far ahead of the writer pages are faulted in.
pub(crate) const PREFAULT_AHEAD: usize = 4 << 20;
/// Granularity of prefault requests.
pub(crate) const PREFAULT_CHUNK: usize = 1 << 20;

pub(crate) enum Request {
    Populate(Arc<Region>, Range<usize>),
    Stop,
}

/// Handle to the named background thread.
pub(crate) struct Prefaulter {
    requests: Sender<Request>,
    handle: JoinHandle<()>,
}

impl Prefaulter {
    pub(crate) fn start() -> Result<Prefaulter> {
        let (requests, incoming) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || serve(&incoming))
            .map_err(|e| Error::io(IoOp::SpawnThread, THREAD, e))?;
        Ok(Prefaulter { requests, handle })
    }

    /// Where channels send their requests.
    pub(crate) fn sender(&self) -> Sender<Request> {
        self.requests.clone()
    }

    /// Stops and joins the thread; true if it had panicked.
    pub(crate) fn stop(self) -> bool {
        let _ = self.requests.send(Request::Stop);
        self.handle.join().is_err()
    }
}

fn serve(incoming: &Receiver<Request>) {
    while let Ok(Request::Populate(region, range)) = incoming.recv() {
        region.prefault(range);
    }
}

/// The writer side: which part of the active segment was requested.
#[derive(Default)]
pub(crate) struct PrefaultCursor {
    requested_to: usize,
}

impl PrefaultCursor {
    /// A cursor for a segment whose records end at `offset`.
    pub(crate) fn at(offset: usize) -> PrefaultCursor {
        PrefaultCursor { requested_to: offset }
    }

    /// Asks for the pages up to `PREFAULT_AHEAD` past `offset`, a chunk at a
    /// time. Cheap when nothing is due: one comparison.
    #[inline]
    pub(crate) fn advance(&mut self, sender: Option<&Sender<Request>>, region: &Arc<Region>, offset: usize) {
        let Some(sender) = sender else { return };
        while self.requested_to < (offset + PREFAULT_AHEAD).min(region.len()) {
            let end = (self.requested_to + PREFAULT_CHUNK).min(region.len());
            let _ = sender.send(Request::Populate(Arc::clone(region), self.requested_to..end));
            self.requested_to = end;
        }
    }
}
