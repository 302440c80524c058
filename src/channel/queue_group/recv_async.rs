//! Async receive for queue members: a future per delivery and a stream.
//! Woken by publishes, acks and departures of other members through the
//! channel's waker set, and at the next ack deadline by the store's timer
//! thread (a redelivery needs no publish).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::stream::{FusedStream, Stream};

use super::{Delivery, QueueMember};
use crate::error::Result;
use crate::timer::{Timer, TimerEntry};
use crate::wakeup::{fence_after_register, Registration};

/// See `subscriber::recv_async::ROUNDS`.
const ROUNDS: usize = 4;

/// What a pending receive holds: its waker's place in the channel's set
/// and, while a message is in flight, in the timer.
#[derive(Debug, Default)]
struct Waits {
    reg: Registration,
    timer: Option<(Arc<Timer>, TimerEntry)>,
}

impl QueueMember {
    /// Waits, without blocking the thread, for the next message for this
    /// member (new, or redelivered after `ack_wait`): the async
    /// [`recv`](Self::recv). Works on any executor.
    ///
    /// **Cancellation-safe**: a message is handed to the member (and its
    /// ack deadline starts) only in the poll that returns it. Dropping the
    /// future before it completes hands out nothing, so nothing waits for
    /// a redelivery because of it.
    ///
    /// Errors as for `recv`: `Closed` once the store closed,
    /// `ChannelDeleted` once the channel was deleted.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// let jobs = store.channel("jobs")?;
    /// let worker = jobs.queue_subscribe("workers", spool::StartAt::First)?;
    /// jobs.publish(b"resize 42")?;
    /// let job = futures::executor::block_on(worker.recv_async())?;
    /// assert_eq!((job.payload(), job.delivery_count()), (&b"resize 42"[..], 1));
    /// worker.ack(job.seq())?;
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn recv_async(&self) -> RecvDelivery<'_> {
        RecvDelivery {
            member: self,
            waits: Waits::default(),
        }
    }

    /// The member's deliveries as a [`Stream`]: each item is a
    /// [`recv_async`](Self::recv_async). It yields an error once and then
    /// ends; calling `stream` again goes on.
    ///
    /// **Cancellation-safe**: a message is handed out only when the stream
    /// yields it; dropping the stream, or a `next()` future of it, hands
    /// out nothing.
    pub fn stream(&self) -> DeliveryStream<'_> {
        DeliveryStream {
            member: self,
            waits: Waits::default(),
            ended: false,
        }
    }

    /// One poll of an async receive.
    fn poll_recv(&self, waits: &mut Waits, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        let core = &self.group.core;
        let log = &core.log;
        for _ in 0..ROUNDS {
            let taken = log.check_live().and_then(|()| self.take(Instant::now()));
            let wait = match taken {
                Ok((None, wait)) => wait,
                Ok((Some(d), _)) => {
                    self.forget(waits);
                    return Poll::Ready(Ok(d));
                }
                Err(e) => {
                    self.forget(waits);
                    return Poll::Ready(Err(e));
                }
            };
            log.arrivals.wakers.register(&mut waits.reg, cx.waker());
            match wait.expiry {
                Some(at) => {
                    if waits.timer.is_none() {
                        match log.env().timer() {
                            Ok(timer) => waits.timer = Some((timer, TimerEntry::default())),
                            Err(e) => {
                                self.forget(waits);
                                return Poll::Ready(Err(e));
                            }
                        }
                    }
                    if let Some((timer, entry)) = waits.timer.as_mut() {
                        if !timer.schedule(entry, at, cx.waker()) {
                            // The store is closing: the next round sees it.
                            continue;
                        }
                    }
                }
                None => {
                    if let Some((timer, entry)) = waits.timer.as_mut() {
                        timer.cancel(entry);
                    }
                }
            }
            fence_after_register();
            // A publish, ack, departure, close or delete after `take` either
            // sees the registration or is seen here.
            let changed = self.group.changes.load(Ordering::Relaxed) != wait.changes;
            let expired = wait.expiry.is_some_and(|at| Instant::now() >= at);
            if log.last_seq() < wait.next_new && !changed && !expired && log.check_live().is_ok() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Removes a finished or dropped receive's wakers.
    fn forget(&self, waits: &mut Waits) {
        self.group.core.log.arrivals.wakers.deregister(&mut waits.reg);
        if let Some((timer, mut entry)) = waits.timer.take() {
            timer.cancel(&mut entry);
        }
    }
}

/// The future of [`QueueMember::recv_async`]: the next delivery.
/// Cancellation-safe (see there).
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct RecvDelivery<'a> {
    member: &'a QueueMember,
    waits: Waits,
}

impl Future for RecvDelivery<'_> {
    type Output = Result<Delivery>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        let this = self.get_mut();
        this.member.poll_recv(&mut this.waits, cx)
    }
}

impl Drop for RecvDelivery<'_> {
    fn drop(&mut self) {
        self.member.forget(&mut self.waits);
    }
}

/// The stream of [`QueueMember::stream`]. Cancellation-safe (see there).
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct DeliveryStream<'a> {
    member: &'a QueueMember,
    waits: Waits,
    ended: bool,
}

impl Stream for DeliveryStream<'_> {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        this.member.poll_recv(&mut this.waits, cx).map(|r| {
            this.ended = r.is_err();
            Some(r)
        })
    }
}

impl FusedStream for DeliveryStream<'_> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl Drop for DeliveryStream<'_> {
    fn drop(&mut self) {
        self.member.forget(&mut self.waits);
    }
}
