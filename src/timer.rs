//! The timer thread: wakes futures at a deadline, for the one wait that a
//! publish cannot end (a queue member with nothing new to receive waits
//! for an unacked message's `ack_wait` to run out). spool depends on no
//! runtime, so it cannot borrow the executor's timer.
//!
//! Started by the first future that needs it, stopped (and joined) when
//! the store closes; a store whose async queue members never wait for a
//! redelivery never starts it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, IoOp, Result};

/// The thread's name.
pub(crate) const THREAD: &str = "spool-timer";

/// Handle to the thread.
pub(crate) struct Timer {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    st: Mutex<State>,
    cond: Condvar,
}

#[derive(Default)]
struct State {
    /// By deadline, then a key that is never reused.
    entries: BTreeMap<(Instant, u64), Waker>,
    next_key: u64,
    stopped: bool,
}

/// A future's place in the timer.
#[derive(Debug, Default)]
pub(crate) struct TimerEntry {
    key: Option<(Instant, u64)>,
}

impl Timer {
    pub(crate) fn start() -> Result<Timer> {
        let shared = Arc::new(Shared::default());
        let handle = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(THREAD.into())
                .spawn(move || run(&shared))
                .map_err(|e| Error::io(IoOp::SpawnThread, THREAD, e))?
        };
        Ok(Timer {
            shared,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Wakes `waker` at `at` (replacing what `entry` held). Returns false,
    /// scheduling nothing, once the timer stopped.
    pub(crate) fn schedule(&self, entry: &mut TimerEntry, at: Instant, waker: &Waker) -> bool {
        let mut st = self.shared.st.lock();
        if st.stopped {
            return false;
        }
        if let Some(key) = entry.key {
            if key.0 == at {
                if let Some(w) = st.entries.get_mut(&key) {
                    if !w.will_wake(waker) {
                        w.clone_from(waker);
                    }
                    return true;
                }
            }
            st.entries.remove(&key);
        }
        let key = (at, st.next_key);
        st.next_key += 1;
        st.entries.insert(key, waker.clone());
        entry.key = Some(key);
        let earliest = st.entries.keys().next() == Some(&key);
        drop(st);
        if earliest {
            self.shared.cond.notify_one();
        }
        true
    }

    /// Removes `entry`'s deadline (a finished or dropped future).
    pub(crate) fn cancel(&self, entry: &mut TimerEntry) {
        if let Some(key) = entry.key.take() {
            self.shared.st.lock().entries.remove(&key);
        }
    }

    /// Stops and joins the thread, waking every future still scheduled.
    /// True if the thread panicked.
    pub(crate) fn stop(&self) -> bool {
        let wakers: Vec<Waker> = {
            let mut st = self.shared.st.lock();
            st.stopped = true;
            std::mem::take(&mut st.entries).into_values().collect()
        };
        self.shared.cond.notify_one();
        for w in wakers {
            w.wake();
        }
        match self.handle.lock().take() {
            Some(h) => h.join().is_err(),
            None => false,
        }
    }
}

fn run(shared: &Shared) {
    let mut st = shared.st.lock();
    loop {
        if st.stopped {
            return;
        }
        let now = Instant::now();
        let due: Vec<(Instant, u64)> = st.entries.range(..=(now, u64::MAX)).map(|(k, _)| *k).collect();
        if !due.is_empty() {
            let wakers: Vec<Waker> = due.iter().filter_map(|k| st.entries.remove(k)).collect();
            // Outside the lock: a waker may run executor code.
            drop(st);
            for w in wakers {
                w.wake();
            }
            st = shared.st.lock();
            continue;
        }
        match st.entries.keys().next().map(|k| k.0) {
            Some(at) => {
                shared.cond.wait_until(&mut st, at);
            }
            None => shared.cond.wait(&mut st),
        }
    }
}
