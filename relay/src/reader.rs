//! Reads the channel for the async relay loop.
//!
//! spool has no async receive yet, so a dedicated thread blocks in
//! [`spool::Subscriber::recv_timeout`] and hands batches of messages to the
//! relay through a bounded tokio channel. This module is the only place that
//! knows; when spool gains `Subscriber::recv_async` it becomes a thin
//! wrapper around that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// One message as the relay needs it: its seq and its payload, shared
/// without a copy (the bytes stay a view of the mapped segment).
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) seq: u64,
    pub(crate) payload: Bytes,
}

/// How long one blocking receive waits before checking whether to stop.
const POLL: Duration = Duration::from_millis(50);

/// A running reader; dropping it stops and joins the thread (within `POLL`).
pub(crate) struct Reader {
    rx: mpsc::Receiver<Result<Vec<Item>, spool::Error>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts reading `sub` from its next seq, in batches of at most
    /// `batch` messages, with at most `queued` batches waiting.
    pub(crate) fn start(sub: Arc<spool::Subscriber>, batch: usize, queued: usize) -> Result<Reader, std::io::Error> {
        let (tx, rx) = mpsc::channel(queued.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("spool-relay-reader".into())
            .spawn(move || read_loop(&sub, batch.max(1), &tx, &flag))?;
        Ok(Reader {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// The next batch if one is ready: `Err(true)` if none is, `Err(false)`
    /// once the thread has stopped.
    pub(crate) fn try_next(&mut self) -> Result<Result<Vec<Item>, spool::Error>, bool> {
        match self.rx.try_recv() {
            Ok(batch) => Ok(batch),
            Err(mpsc::error::TryRecvError::Empty) => Err(true),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(false),
        }
    }

    /// The next batch; `None` once the thread has stopped.
    pub(crate) async fn next(&mut self) -> Option<Result<Vec<Item>, spool::Error>> {
        self.rx.recv().await
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblocks a thread waiting for room in the channel.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn item(m: spool::Message) -> Item {
    let seq = m.seq();
    Item {
        seq,
        payload: Bytes::from_owner(m),
    }
}

fn read_loop(
    sub: &spool::Subscriber,
    batch: usize,
    tx: &mpsc::Sender<Result<Vec<Item>, spool::Error>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Acquire) {
        let first = match sub.recv_timeout(POLL) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut items = Vec::with_capacity(batch);
        items.push(item(first));
        let mut failed = None;
        while items.len() < batch {
            match sub.try_recv() {
                Ok(Some(m)) => items.push(item(m)),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if tx.blocking_send(Ok(items)).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = tx.blocking_send(Err(e));
            return;
        }
    }
}
