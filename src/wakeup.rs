//! Wake-ups for blocked receivers and pending futures: publishers (and
//! acks, closes, deletes, syncs) wake them, without a cost when nobody
//! waits.
//!
//! Both kinds of waiter use the same handshake with the side that changes
//! the state: the waiter first makes itself visible (a counter, a waker in
//! the set), then issues a SeqCst fence and checks the state again; the
//! changer stores the new state, issues a SeqCst fence and then looks for
//! waiters. Whichever fence comes second in the single total order of SeqCst
//! operations sees the other side's store: either the waiter sees the new
//! state (and does not sleep), or the changer sees the waiter (and wakes it).
//! When nobody waits, a change costs one fence and one relaxed load.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Blocked receivers and pending receive futures of one channel wait here.
#[derive(Default)]
pub(crate) struct Arrivals {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
    /// Receive futures of every subscriber and queue member of the channel.
    pub(crate) wakers: WakerSet,
}

impl Arrivals {
    /// Wakes every waiter (after a publish, an ack, a close or a delete).
    #[inline]
    pub(crate) fn wake(&self) {
        // Pairs with the fence in `wait_until` (and in `WakerSet::register`'s
        // caller): either the waiter sees the new state, or we see the waiter.
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) > 0 {
            let _g = self.lock.lock();
            self.cond.notify_all();
        }
        self.wakers.wake_all_fenced();
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

/// Wakers of pending futures, each woken once by the next `wake_all` (the
/// future registers again when it is polled and still has to wait).
///
/// A future holds a [`Registration`]: the key of its waker here, so that
/// polling again replaces the waker instead of adding one, and dropping the
/// future removes it.
#[derive(Default)]
pub(crate) struct WakerSet {
    /// `slots.wakers.len()`, readable without the lock (changed under it).
    registered: AtomicUsize,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Keys are never reused, so a stale key can never remove another
    /// future's waker.
    next_key: u64,
    wakers: HashMap<u64, Waker>,
}

/// A future's place in a [`WakerSet`] (see there).
#[derive(Debug, Default)]
pub(crate) struct Registration {
    key: Option<u64>,
}

impl WakerSet {
    /// Registers (or refreshes) `waker` under `reg`. The caller then issues
    /// a SeqCst fence ([`fence_after_register`]) and checks its condition
    /// again before returning `Pending`.
    pub(crate) fn register(&self, reg: &mut Registration, waker: &Waker) {
        let mut slots = self.slots.lock();
        if let Some(key) = reg.key {
            if let Some(w) = slots.wakers.get_mut(&key) {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                return;
            }
        }
        let key = slots.next_key;
        slots.next_key += 1;
        slots.wakers.insert(key, waker.clone());
        reg.key = Some(key);
        self.registered.store(slots.wakers.len(), Ordering::Relaxed);
    }

    /// Removes `reg`'s waker, if it is still there (a dropped or finished
    /// future).
    pub(crate) fn deregister(&self, reg: &mut Registration) {
        let Some(key) = reg.key.take() else { return };
        if self.registered.load(Ordering::Relaxed) == 0 {
            // Already woken (a wake empties the set); nothing to remove.
            return;
        }
        let mut slots = self.slots.lock();
        if slots.wakers.remove(&key).is_some() {
            self.registered.store(slots.wakers.len(), Ordering::Relaxed);
        }
    }

    /// Wakes (and removes) every registered waker. The caller has issued a
    /// SeqCst fence after its change of state.
    #[inline]
    pub(crate) fn wake_all_fenced(&self) {
        if self.registered.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.wake_registered();
    }

    /// As [`wake_all_fenced`](Self::wake_all_fenced), fencing first.
    #[inline]
    pub(crate) fn wake_all(&self) {
        fence(Ordering::SeqCst);
        self.wake_all_fenced();
    }

    #[cold]
    fn wake_registered(&self) {
        let wakers: Vec<Waker> = {
            let mut slots = self.slots.lock();
            self.registered.store(0, Ordering::Relaxed);
            slots.wakers.drain().map(|(_, w)| w).collect()
        };
        // Outside the lock: a waker may run arbitrary executor code.
        for w in wakers {
            w.wake();
        }
    }
}

/// The fence a future issues after registering its waker and before it
/// checks its condition again (see the module docs).
#[inline]
pub(crate) fn fence_after_register() {
    fence(Ordering::SeqCst);
}
