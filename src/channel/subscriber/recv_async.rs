//! Async receive for subscribers: a future per message and a stream, woken
//! by publish through the channel's waker set (beside the condvar that
//! blocked receivers wait on), on any executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::stream::{FusedStream, Stream};

use super::Subscriber;
use crate::error::Result;
use crate::message::Message;
use crate::wakeup::{fence_after_register, Registration};

/// Rounds of "look, register, look again" one poll makes before it yields
/// (waking itself): a message the second look announces is normally taken
/// in the next round, so this only bounds a poll that keeps losing a race.
const ROUNDS: usize = 4;

impl Subscriber {
    /// Waits, without blocking the thread, for the next message: the async
    /// [`recv`](Self::recv). Works on any executor (the future is woken by
    /// the publish that makes a message available, by the channel's
    /// deletion or by the store's close).
    ///
    /// **Cancellation-safe**: the subscriber's position moves only in the
    /// poll that returns the message. Dropping the future before it
    /// completes (in a `select!`, on a timeout) loses and skips nothing: the
    /// next receive returns the same message.
    ///
    /// Errors as for `recv`: `Closed` once the store closed,
    /// `ChannelDeleted` once the channel was deleted.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// let ch = store.channel("events")?;
    /// let sub = ch.subscribe("audit", spool::StartAt::First)?;
    /// ch.publish(b"hello")?;
    /// let msg = futures::executor::block_on(sub.recv_async())?;
    /// assert_eq!(msg.payload(), b"hello");
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn recv_async(&self) -> Recv<'_> {
        Recv {
            sub: self,
            reg: Registration::default(),
        }
    }

    /// The subscriber's messages as a [`Stream`]: each item is a
    /// [`recv_async`](Self::recv_async). The stream yields an error once
    /// and then ends (`Closed`, `ChannelDeleted`, ...); calling `stream`
    /// again goes on from the same position.
    ///
    /// **Cancellation-safe**: the position moves only when the stream
    /// yields a message; dropping the stream, or a `next()` future of it,
    /// loses and skips nothing.
    ///
    /// ```
    /// use futures::StreamExt;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = spool::Store::open(dir.path(), spool::Options::default())?;
    /// let ch = store.channel("events")?;
    /// ch.publish_batch(&[b"a".as_slice(), b"b", b"c"])?;
    /// let sub = ch.subscribe("audit", spool::StartAt::First)?;
    /// let seqs: Vec<u64> = futures::executor::block_on(
    ///     sub.stream().take(3).map(|m| m.map(|m| m.seq())).collect::<Vec<_>>(),
    /// )
    /// .into_iter()
    /// .collect::<Result<_, _>>()?;
    /// assert_eq!(seqs, [1, 2, 3]);
    /// # Ok::<(), spool::Error>(())
    /// ```
    pub fn stream(&self) -> SubscriberStream<'_> {
        SubscriberStream {
            sub: self,
            reg: Registration::default(),
            ended: false,
        }
    }

    /// One poll of an async receive.
    fn poll_recv(&self, reg: &mut Registration, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        let log = &self.core.log;
        for _ in 0..ROUNDS {
            let next = {
                let taken = self.live().and_then(|mut st| match self.next_message(&mut st) {
                    Ok(Some(m)) => Ok(Ok(m)),
                    Ok(None) => Ok(Err(st.next)),
                    Err(e) => Err(e),
                });
                match taken {
                    Ok(Err(next)) => next,
                    Ok(Ok(m)) => {
                        log.arrivals.wakers.deregister(reg);
                        return Poll::Ready(Ok(m));
                    }
                    Err(e) => {
                        log.arrivals.wakers.deregister(reg);
                        return Poll::Ready(Err(e));
                    }
                }
            };
            log.arrivals.wakers.register(reg, cx.waker());
            fence_after_register();
            // A publish (or close, delete) after the look above either sees
            // the registration or is seen here.
            if log.last_seq() < next && log.check_live().is_ok() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The future of [`Subscriber::recv_async`]: the next message.
/// Cancellation-safe (see there).
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Recv<'a> {
    sub: &'a Subscriber,
    reg: Registration,
}

impl Future for Recv<'_> {
    type Output = Result<Message>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        let this = self.get_mut();
        this.sub.poll_recv(&mut this.reg, cx)
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        self.sub.core.log.arrivals.wakers.deregister(&mut self.reg);
    }
}

/// The stream of [`Subscriber::stream`]. Cancellation-safe (see there).
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct SubscriberStream<'a> {
    sub: &'a Subscriber,
    reg: Registration,
    ended: bool,
}

impl Stream for SubscriberStream<'_> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        this.sub.poll_recv(&mut this.reg, cx).map(|r| {
            this.ended = r.is_err();
            Some(r)
        })
    }
}

impl FusedStream for SubscriberStream<'_> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl Drop for SubscriberStream<'_> {
    fn drop(&mut self) {
        self.sub.core.log.arrivals.wakers.deregister(&mut self.reg);
    }
}
