//! Wake-ups for blocked receivers: publishers (and acks, closes, deletes)
//! wake them, without a cost when nobody waits.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Blocked receivers of one channel wait here.
#[derive(Default)]
pub(crate) struct Arrivals {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Arrivals {
    /// Wakes every waiter (after a publish, an ack, a close or a delete).
    #[inline]
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `wait_until`: either the waiter sees the
        // new state, or we see the waiter.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.lock.lock();
            self.cond.notify_all();
        }
    }

    /// Blocks until `ready()` holds, a wake-up, or `deadline`. Returns
    /// false on timeout.
    pub(crate) fn wait_until(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let mut g = self.lock.lock();
        let mut timed_out = false;
        if !ready() {
            match deadline {
                Some(d) => timed_out = self.cond.wait_until(&mut g, d).timed_out(),
                None => self.cond.wait(&mut g),
            }
        }
        drop(g);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        !timed_out
    }
}
