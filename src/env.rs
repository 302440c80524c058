//! What every part of an open store shares: options, storage, and the
//! store's write state (open, closing, failed).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::options::Options;
use crate::prefault::Request;
use crate::storage::Storage;
use crate::timer::Timer;

pub(crate) struct Env {
    pub(crate) root: PathBuf,
    pub(crate) opts: Options,
    pub(crate) storage: Storage,
    failure: OnceLock<Arc<Error>>,
    /// Set first thing by `close`: no write starts after it.
    closed: AtomicBool,
    /// Where writers ask for pages to be faulted in ahead of them.
    pub(crate) prefault: OnceLock<Sender<Request>>,
    /// The store's previous owner ran on this boot of the machine and
    /// finished opening it: nothing it wrote can be missing from the files.
    pub(crate) same_boot: bool,
    /// A repair was interrupted before it finished (its marker file is
    /// there): this repair reports the holes it finds as lost too, since
    /// the one that made them never got to say so.
    pub(crate) repair_resumed: bool,
    /// The background worker (seals, prepares segments); unset with the
    /// simulated storage, whose jobs run in the caller so crash tests stay
    /// deterministic.
    pub(crate) worker: OnceLock<Sender<Option<Job>>>,
    /// The store is attached read-only: every write and sync is refused
    /// with `Error::ReadOnly`, and nothing may write a byte.
    pub(crate) read_only: bool,
    /// The timer thread for futures with a deadline, started on first use.
    timer: Mutex<TimerSlot>,
}

/// Whether the timer thread runs.
enum TimerSlot {
    NotStarted,
    Running(Arc<Timer>),
    /// The store closed: no timer starts any more.
    Stopped,
}

/// Work for the background worker.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

impl Env {
    pub(crate) fn new(root: PathBuf, opts: Options, storage: Storage, same_boot: bool) -> Env {
        Env {
            read_only: opts.get_read_only(),
            same_boot,
            repair_resumed: false,
            root,
            opts,
            storage,
            failure: OnceLock::new(),
            closed: AtomicBool::new(false),
            prefault: OnceLock::new(),
            worker: OnceLock::new(),
            timer: Mutex::new(TimerSlot::NotStarted),
        }
    }

    /// The same, marking a repair that resumes an interrupted one.
    pub(crate) fn resuming_repair(self, resumed: bool) -> Env {
        Env {
            repair_resumed: resumed,
            ..self
        }
    }

    /// Runs `job` on the background worker, or here and now without one.
    /// Whether it ran here.
    pub(crate) fn background(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let Some(worker) = self.worker.get() else {
            job();
            return true;
        };
        match worker.send(Some(Box::new(job))) {
            Ok(()) => false,
            // The worker stopped (it panicked): the job runs here.
            Err(crossbeam_channel::SendError(job)) => {
                if let Some(job) = job {
                    job();
                }
                true
            }
        }
    }

    /// The timer thread, started if it is not running yet; `Closed` once
    /// the store closed.
    pub(crate) fn timer(&self) -> Result<Arc<Timer>> {
        let mut slot = self.timer.lock();
        match &*slot {
            TimerSlot::Running(t) => Ok(Arc::clone(t)),
            TimerSlot::Stopped => Err(Error::Closed),
            TimerSlot::NotStarted => {
                let t = Arc::new(Timer::start()?);
                *slot = TimerSlot::Running(Arc::clone(&t));
                Ok(t)
            }
        }
    }

    /// Stops the timer thread for good (the store closes); a panic in it
    /// becomes the store's failure.
    pub(crate) fn stop_timer(&self) {
        let slot = std::mem::replace(&mut *self.timer.lock(), TimerSlot::Stopped);
        if let TimerSlot::Running(t) = slot {
            if t.stop() {
                self.fail_panicked(crate::timer::THREAD);
            }
        }
    }

    /// Err when the store is closed or failed: the check before any write.
    #[inline]
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_failed()?;
        if self.read_only {
            return Err(self.read_only_error());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Err when the store failed: the check before a sync (which close
    /// still runs after it stopped accepting writes).
    #[inline]
    pub(crate) fn check_failed(&self) -> Result<()> {
        if self.read_only {
            // A sync (or anything else that writes) of a read-only store.
            return Err(self.read_only_error());
        }
        match self.failure.get() {
            Some(cause) => Err(Error::Failed {
                cause: Arc::clone(cause),
            }),
            None => Ok(()),
        }
    }

    /// What every write on a read-only store returns.
    pub(crate) fn read_only_error(&self) -> Error {
        Error::ReadOnly {
            path: self.root.clone(),
        }
    }

    /// Makes `err` the store's sticky failure (the first one wins) and
    /// returns the error every caller from now on sees.
    pub(crate) fn fail(&self, err: Error) -> Error {
        let cause = self.failure.get_or_init(|| Arc::new(err));
        Error::Failed {
            cause: Arc::clone(cause),
        }
    }

    /// Passes `r` through, making a failure at a durability point (a sync,
    /// a write into a mapped file) sticky: after it, nothing can be known
    /// durable until the store is reopened.
    pub(crate) fn sticky<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(e) if e.is_durability_failure() => Err(self.fail(e)),
            other => other,
        }
    }

    /// Poisons the store after a background thread panicked.
    pub(crate) fn fail_panicked(&self, thread: &'static str) -> Error {
        self.fail(Error::BackgroundPanic { thread })
    }

    pub(crate) fn failure(&self) -> Option<Arc<Error>> {
        self.failure.get().cloned()
    }

    /// Stops accepting writes (the first step of closing the store).
    pub(crate) fn stop_writes(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
