//! The relay loop: start-up checks and reconciliation, pipelined publishing
//! with in-order acks, commits, retries.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::connection::State;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::Subject;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::msg_id::{IdPrefix, MsgId};
use crate::reader::{Item, Reader};
use crate::state::RelayState;
use crate::status::{Phase, RelayStatus};
use crate::{OnTooLarge, Ownership, Relay, RelayError, RelayOptions, StreamSpec};

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// The first wait after a transient failure; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How often a relay waiting for the connection looks again.
const CONNECTION_POLL: Duration = Duration::from_millis(50);
/// Messages the reader hands over at once.
const READ_BATCH: usize = 256;

enum Ack {
    Sent(AckFuture),
    /// The publish failed before it was sent; the error is raised when the
    /// entry reaches the front.
    Failed(Option<PublishError>),
}

struct InFlight {
    item: Item,
    ack: Ack,
}

/// What a failed publish means for the relay.
enum Failure {
    TooLarge(String),
    WrongLastSequence(String),
    Transient(String),
}

fn classify(e: &PublishError) -> Failure {
    let text = e.to_string();
    let lower = text.to_lowercase();
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => Failure::TooLarge(text),
        PublishErrorKind::WrongLastSequence => Failure::WrongLastSequence(text),
        _ if lower.contains("exceeds maximum") || lower.contains("maximum payload") => Failure::TooLarge(text),
        _ if lower.contains("wrong last sequence") => Failure::WrongLastSequence(text),
        _ => Failure::Transient(text),
    }
}

enum Event {
    Shutdown,
    Ack(Result<PublishAck, PublishError>),
    Batch(Option<Result<Vec<Item>, spool::Error>>),
    Committed(Result<Result<u64, spool::Error>, tokio::task::JoinError>),
    Resume,
    Tick,
}

struct Engine {
    channel: spool::Channel,
    sub: Arc<spool::Subscriber>,
    sub_name: String,
    js: async_nats::jetstream::Context,
    stream: Stream,
    stream_name: String,
    subject: Subject,
    ids: IdPrefix,
    me: MsgId,
    opts: RelayOptions,
    record: Option<spool::Channel>,

    /// Every seq up to here is acknowledged (or skipped and recorded).
    acked: u64,
    /// The state that goes with `acked`.
    state: RelayState,
    committed: u64,
    commit_task: Option<JoinHandle<Result<u64, spool::Error>>>,
    last_commit: Instant,

    /// Published, in channel order, awaiting their acks.
    inflight: VecDeque<InFlight>,
    /// Entries of `inflight` actually sent (they each take a stream seq).
    sent: u64,
    /// Read, not yet published (or to be published again), in order.
    pending: VecDeque<Item>,
    reader: Option<Reader>,
    reader_done: bool,

    /// No publishing before this (backoff after a failure).
    resume_at: Option<Instant>,
    backoff: Duration,
    /// After a failure: one message at a time until one is acknowledged.
    probing: bool,

    status: watch::Sender<RelayStatus>,
    /// The client's connect count when last looked at.
    connects: u64,
    relayed: u64,
    resent: u64,
    taken_over: u64,
    retries: u64,
    last_error: Option<(SystemTime, String)>,
    rate_window: VecDeque<(Instant, u64)>,
}

pub(crate) async fn run<F: Future<Output = ()>>(relay: Relay, shutdown: F) -> Result<RelayStatus, RelayError> {
    let status = relay.status.clone();
    let mut engine = match Engine::start(relay).await {
        Ok(engine) => engine,
        Err(e) => {
            status.send_modify(|s| {
                s.phase = Phase::Stopped;
                s.last_error = Some((SystemTime::now(), e.to_string()));
            });
            return Err(e);
        }
    };
    let result = engine.main_loop(shutdown).await;
    let finished = engine.finish().await;
    let result = result.and(finished);
    if let Err(e) = &result {
        engine.last_error = Some((SystemTime::now(), e.to_string()));
    }
    engine.publish_status(Phase::Stopped);
    result.map(|()| engine.status.borrow().clone())
}

async fn front(inflight: &mut VecDeque<InFlight>) -> Result<PublishAck, PublishError> {
    match inflight.front_mut() {
        Some(InFlight { ack: Ack::Sent(f), .. }) => f.as_mut().await,
        Some(InFlight {
            ack: Ack::Failed(e), ..
        }) => Err(e.take().unwrap_or_else(|| PublishError::new(PublishErrorKind::Other))),
        None => std::future::pending().await,
    }
}

async fn commit_done(
    task: &mut Option<JoinHandle<Result<u64, spool::Error>>>,
) -> Result<Result<u64, spool::Error>, tokio::task::JoinError> {
    match task.as_mut() {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn next_batch(reader: &mut Option<Reader>) -> Option<Result<Vec<Item>, spool::Error>> {
    match reader.as_mut() {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn message_id(headers: Option<&async_nats::HeaderMap>) -> Option<String> {
    headers?.get(NATS_MESSAGE_ID).map(|v| v.as_str().to_string())
}

impl Engine {
    async fn start(relay: Relay) -> Result<Engine, RelayError> {
        let Relay {
            channel,
            store_id,
            js,
            subject,
            opts,
            status,
        } = relay;
        status.send_modify(|s| s.phase = Phase::Starting);
        let (stream, stream_name) = resolve_stream(&js, &subject, &opts.stream).await?;
        let info = stream.cached_info().clone();
        if info.config.duplicate_window < opts.min_duplicate_window {
            return Err(RelayError::DuplicateWindowTooShort {
                stream: stream_name,
                window: info.config.duplicate_window,
                required: opts.min_duplicate_window,
            });
        }
        let sub_name = opts.name.clone().unwrap_or_else(|| format!("relay-{stream_name}"));
        let sub = {
            let channel = channel.clone();
            let name = sub_name.clone();
            let start = opts.start;
            blocking(move || channel.subscribe(&name, start)).await??
        };
        let sub = Arc::new(sub);
        let record = match &opts.on_too_large {
            OnTooLarge::Stop => None,
            OnTooLarge::SkipAndRecord(record) => Some(record.clone()),
        };
        let (committed, blob) = sub.committed();
        let state = RelayState::decode(&blob)?;
        let me = MsgId {
            store: store_id,
            channel: channel.id(),
            seq: 0,
        };
        let mut engine = Engine {
            ids: IdPrefix::new(store_id, channel.id()),
            me,
            channel,
            sub,
            sub_name,
            js,
            stream,
            stream_name: stream_name.clone(),
            subject: Subject::from(subject),
            opts,
            record,
            acked: committed,
            state: state.clone().unwrap_or_default(),
            committed,
            commit_task: None,
            last_commit: Instant::now(),
            inflight: VecDeque::new(),
            sent: 0,
            pending: VecDeque::new(),
            reader: None,
            reader_done: false,
            resume_at: None,
            backoff: FIRST_BACKOFF,
            probing: false,
            status,
            connects: 0,
            relayed: 0,
            resent: 0,
            taken_over: 0,
            retries: 0,
            last_error: None,
            rate_window: VecDeque::new(),
        };
        match state {
            None => {
                // A new subscriber: anchor it at the stream's end before
                // publishing anything (see state.rs).
                engine.state = RelayState {
                    stream_seq: info.state.last_sequence,
                    seq_at_stream_seq: 0,
                    skipped: 0,
                    stream: stream_name,
                };
                engine.commit_now().await?;
            }
            Some(s) if s.stream != stream_name => {
                return Err(RelayError::OtherStream {
                    state_stream: s.stream,
                    stream: stream_name,
                    subscriber: engine.sub_name.clone(),
                });
            }
            Some(_) => {
                if engine.opts.ownership == Ownership::Exclusive {
                    engine.reconcile_at_start(info.state.last_sequence).await?;
                }
            }
        }
        let reader = Reader::start(Arc::clone(&engine.sub), READ_BATCH, 4)
            .map_err(|e| RelayError::Task(format!("starting the reader thread: {e}")))?;
        engine.reader = Some(reader);
        engine.connects = engine.js.client().statistics().connects.load(Relaxed);
        engine.publish_status(Phase::Running);
        Ok(engine)
    }

    /// Takes over what the relay published after its last commit (a crash
    /// between an ack and the commit): every stream message after the
    /// committed stream sequence must be this relay's, in channel order.
    async fn reconcile_at_start(&mut self, stream_last: u64) -> Result<(), RelayError> {
        let s = self.state.stream_seq;
        if stream_last < s {
            return Err(self.stream_behind(stream_last));
        }
        if s > 0 && self.state.seq_at_stream_seq > 0 {
            if let Some(found) = self.message_at(s).await? {
                let expected = MsgId {
                    seq: self.state.seq_at_stream_seq,
                    ..self.me
                };
                if found.as_deref().and_then(MsgId::parse) != Some(expected) {
                    return Err(RelayError::UnexpectedMessage {
                        stream: self.stream_name.clone(),
                        stream_seq: s,
                        found: found.unwrap_or_else(|| "no message id".into()),
                        expected: expected.to_string(),
                        hint: "the stream no longer holds what the relay stored there: was it recreated?",
                    });
                }
            }
        }
        let last_seq = self.channel.last_seq();
        let mut taken = None;
        for q in s + 1..=stream_last {
            let Some(found) = self.message_at(q).await? else {
                continue; // deleted from the stream meanwhile
            };
            let id = found.as_deref().and_then(MsgId::parse);
            let after = taken.map_or(self.acked, |(_, seq)| seq);
            match id {
                Some(id) if id.same_channel(&self.me) && id.seq > after && id.seq <= last_seq => {
                    taken = Some((q, id.seq));
                    self.taken_over += 1;
                }
                _ => {
                    return Err(self.foreign(q, found, after + 1));
                }
            }
        }
        if let Some((q, seq)) = taken {
            self.acked = seq;
            self.state.stream_seq = q;
            self.state.seq_at_stream_seq = seq;
            self.commit_now().await?;
        } else if stream_last > s {
            // Only deleted messages after the committed sequence.
            self.state.stream_seq = stream_last;
            self.commit_now().await?;
        }
        Ok(())
    }

    /// After a `WrongLastSequence`: the stream's tail after the last
    /// acknowledged sequence must be the next messages of this relay, in
    /// order (sent before a lost connection and stored without their ack
    /// reaching the relay); they count as acknowledged.
    async fn reconcile_running(&mut self) -> Result<(), RelayError> {
        let stream_last = self.stream_last().await?;
        let s = self.state.stream_seq;
        if stream_last < s {
            return Err(self.stream_behind(stream_last));
        }
        // The relay's items in order: in flight first, then pending.
        let mut order: VecDeque<Item> = self
            .inflight
            .drain(..)
            .map(|e| e.item)
            .chain(self.pending.drain(..))
            .collect();
        self.sent = 0;
        let mut result = Ok(());
        for q in s + 1..=stream_last {
            let found = match self.message_at(q).await {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let id = found.as_deref().and_then(MsgId::parse);
            let next = order.front().map(|i| i.seq);
            match (id, next) {
                (Some(id), Some(next)) if id.same_channel(&self.me) && id.seq == next => {
                    order.pop_front();
                    self.ack_one(next, q);
                    self.taken_over += 1;
                }
                _ => {
                    result = Err(self.foreign(q, found, next.unwrap_or(self.acked + 1)));
                    break;
                }
            }
        }
        self.pending = order;
        result
    }

    fn stream_behind(&self, stream_last: u64) -> RelayError {
        RelayError::StreamBehind {
            stream: self.stream_name.clone(),
            stream_last,
            committed: self.state.stream_seq,
            subscriber: self.sub_name.clone(),
        }
    }

    fn foreign(&self, q: u64, found: Option<String>, expected_seq: u64) -> RelayError {
        RelayError::UnexpectedMessage {
            stream: self.stream_name.clone(),
            stream_seq: q,
            found: found.unwrap_or_else(|| "no message id".into()),
            expected: MsgId {
                seq: expected_seq,
                ..self.me
            }
            .to_string(),
            hint: "another publisher writes to the stream; give the relay a stream of its own or use Ownership::Shared",
        }
    }

    async fn stream_last(&mut self) -> Result<u64, RelayError> {
        let info = self
            .stream
            .info()
            .await
            .map_err(|e| RelayError::nats(format!("stream {} info", self.stream_name), e))?;
        Ok(info.state.last_sequence)
    }

    /// The `Nats-Msg-Id` of the stream message at `q`: `None` if there is
    /// no such message (deleted, or removed by the stream's limits),
    /// `Some(None)` if it has no id.
    async fn message_at(&mut self, q: u64) -> Result<Option<Option<String>>, RelayError> {
        match self.stream.get_raw_message(q).await {
            Ok(m) => Ok(Some(message_id(Some(&m.headers)))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(RelayError::nats(
                format!("reading stream {} sequence {q}", self.stream_name),
                e,
            )),
        }
    }

    async fn main_loop<F: Future<Output = ()>>(&mut self, shutdown: F) -> Result<(), RelayError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(self.opts.status_interval.min(self.opts.commit_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = Instant::now();
        loop {
            // Housekeeping on every turn, so that a steady flow of acks
            // cannot starve it.
            self.refill()?;
            self.check_reconnect();
            if last_status.elapsed() >= self.opts.status_interval {
                last_status = Instant::now();
                self.housekeeping();
            }
            self.fill().await;
            self.maybe_commit();
            let room = self.pending.len() < self.opts.max_in_flight;
            let event = tokio::select! {
                biased;
                () = &mut shutdown => Event::Shutdown,
                r = commit_done(&mut self.commit_task), if self.commit_task.is_some() => Event::Committed(r),
                r = front(&mut self.inflight), if !self.inflight.is_empty() => Event::Ack(r),
                b = next_batch(&mut self.reader), if room && !self.reader_done => Event::Batch(b),
                () = sleep_until(self.resume_at), if self.resume_at.is_some() => Event::Resume,
                _ = tick.tick() => Event::Tick,
            };
            match event {
                Event::Shutdown => return self.drain().await,
                Event::Committed(r) => self.committed(r)?,
                Event::Ack(r) => self.on_ack(r).await?,
                Event::Batch(Some(Ok(items))) => self.pending.extend(items),
                Event::Batch(Some(Err(e))) => return Err(e.into()),
                Event::Batch(None) => self.reader_done = true,
                Event::Resume => self.resume_at = None,
                Event::Tick => {}
            }
        }
    }

    /// Takes what the reader has ready, up to a window's worth pending.
    fn refill(&mut self) -> Result<(), RelayError> {
        while self.pending.len() < self.opts.max_in_flight && !self.reader_done {
            let Some(reader) = self.reader.as_mut() else {
                break;
            };
            match reader.try_next() {
                Ok(Ok(items)) => self.pending.extend(items),
                Ok(Err(e)) => return Err(e.into()),
                Err(true) => break,
                Err(false) => self.reader_done = true,
            }
        }
        Ok(())
    }

    /// A reconnect (noticed through the client's connect count) loses the
    /// acks of everything sent before it: send that again at once rather
    /// than wait for each ack to time out.
    fn check_reconnect(&mut self) {
        let connects = self.js.client().statistics().connects.load(Relaxed);
        if connects != self.connects {
            self.connects = connects;
            if !self.inflight.is_empty() {
                self.note_error("reconnected to the NATS server".into());
                self.retries += 1;
                self.restart(false);
            }
        }
    }

    /// Every status interval: notice a lost connection, refresh the status.
    fn housekeeping(&mut self) {
        if !self.connected() && !self.inflight.is_empty() {
            // Acks of what was sent on a lost connection never come: send
            // it again once connected.
            self.transient("disconnected from the NATS server".into());
        }
        if self.resume_at.is_some() && self.resume_at.is_some_and(|t| t <= Instant::now()) {
            self.resume_at = None;
        }
        let phase = if self.resume_at.is_some() || self.probing {
            Phase::Retrying
        } else {
            Phase::Running
        };
        self.publish_status(phase);
    }

    fn connected(&self) -> bool {
        self.js.client().connection_state() == State::Connected
    }

    /// Publishes pending messages while the window has room.
    async fn fill(&mut self) {
        if self.resume_at.is_some() || self.pending.is_empty() {
            return;
        }
        if !self.connected() {
            self.resume_at = Some(Instant::now() + CONNECTION_POLL);
            return;
        }
        let window = if self.probing { 1 } else { self.opts.max_in_flight };
        while self.inflight.len() < window {
            // Nothing goes out after a message that could not be sent: it
            // is resolved (retried, skipped or fatal) at the front first.
            if matches!(
                self.inflight.back(),
                Some(InFlight {
                    ack: Ack::Failed(_),
                    ..
                })
            ) {
                break;
            }
            let Some(item) = self.pending.pop_front() else {
                break;
            };
            let mut publish = PublishMessage::build()
                .payload(item.payload.clone())
                .message_id(self.ids.id(item.seq));
            if self.opts.ownership == Ownership::Exclusive {
                publish = publish.expected_last_sequence(self.state.stream_seq + self.sent);
            }
            let ack = match self.js.send_publish(self.subject.clone(), publish).await {
                Ok(ack) => {
                    self.sent += 1;
                    Ack::Sent(ack.into_future())
                }
                Err(e) => Ack::Failed(Some(e)),
            };
            self.inflight.push_back(InFlight { item, ack });
        }
    }

    async fn on_ack(&mut self, r: Result<PublishAck, PublishError>) -> Result<(), RelayError> {
        match r {
            Ok(ack) => self.on_success(ack),
            Err(e) => match classify(&e) {
                Failure::TooLarge(detail) => self.too_large(detail).await,
                Failure::WrongLastSequence(detail) if self.opts.ownership == Ownership::Exclusive => {
                    let before = self.acked;
                    self.reconcile_running().await?;
                    if self.acked == before {
                        // Nothing of the relay's was there: refused for a
                        // reason that may pass; back off rather than spin.
                        self.transient(detail);
                    } else {
                        self.note_error(detail);
                        self.restart(false);
                    }
                    Ok(())
                }
                Failure::WrongLastSequence(detail) | Failure::Transient(detail) => {
                    self.transient(detail);
                    Ok(())
                }
            },
        }
    }

    fn on_success(&mut self, ack: PublishAck) -> Result<(), RelayError> {
        let Some(entry) = self.inflight.pop_front() else {
            return Ok(());
        };
        self.sent = self.sent.saturating_sub(1);
        let expected = self.state.stream_seq + 1;
        if self.opts.ownership == Ownership::Exclusive && ack.sequence != expected {
            if ack.duplicate && ack.sequence < expected {
                // A resend of a message stored before this relay's anchor
                // (its subscriber was removed and created again): stored
                // once, and takes no new sequence, so what follows was sent
                // with expectations one too high.
                self.acked = entry.item.seq;
                self.relayed += 1;
                self.restart(false);
                self.probing = false;
                return Ok(());
            }
            return Err(RelayError::UnexpectedMessage {
                stream: self.stream_name.clone(),
                stream_seq: ack.sequence,
                found: self.ids.id(entry.item.seq),
                expected: format!("it at sequence {expected}"),
                hint: "JetStream stored the message out of place; another publisher writes to the stream?",
            });
        }
        self.ack_one(entry.item.seq, ack.sequence);
        self.probing = false;
        self.backoff = FIRST_BACKOFF;
        Ok(())
    }

    fn ack_one(&mut self, seq: u64, stream_seq: u64) {
        self.acked = seq;
        self.state.stream_seq = stream_seq;
        self.state.seq_at_stream_seq = seq;
        self.relayed += 1;
    }

    async fn too_large(&mut self, detail: String) -> Result<(), RelayError> {
        let Some(entry) = self.inflight.pop_front() else {
            return Ok(());
        };
        let was_sent = matches!(entry.ack, Ack::Sent(_));
        if was_sent {
            self.sent = self.sent.saturating_sub(1);
        }
        let Some(record) = self.record.clone() else {
            // Stop: what follows stays unsent or unacknowledged, and the
            // position stays just before this message.
            return Err(RelayError::TooLarge {
                channel: self.channel.name().to_string(),
                seq: entry.item.seq,
                size: entry.item.payload.len(),
                detail,
                position: self.acked,
            });
        };
        let mut rec = Vec::with_capacity(24);
        rec.extend_from_slice(&self.channel.id().to_le_bytes());
        rec.extend_from_slice(&entry.item.seq.to_le_bytes());
        rec.extend_from_slice(&(entry.item.payload.len() as u64).to_le_bytes());
        blocking(move || record.publish(&rec).and_then(|_| record.sync())).await??;
        self.acked = entry.item.seq;
        self.state.skipped += 1;
        self.note_error(format!("skipped message {} as too large: {detail}", entry.item.seq));
        if was_sent && self.opts.ownership == Ownership::Exclusive {
            // What follows was sent expecting this one in the stream.
            self.restart(false);
        }
        Ok(())
    }

    fn note_error(&mut self, text: String) {
        self.last_error = Some((SystemTime::now(), text));
    }

    /// A transient failure: everything unacknowledged is sent again after a
    /// backoff, one message first.
    fn transient(&mut self, detail: String) {
        self.note_error(detail);
        self.retries += 1;
        self.restart(true);
        self.publish_status(Phase::Retrying);
    }

    /// Moves everything in flight back to the front of `pending`.
    fn restart(&mut self, backoff: bool) {
        while let Some(entry) = self.inflight.pop_back() {
            self.pending.push_front(entry.item);
            self.resent += 1;
        }
        self.sent = 0;
        self.probing = true;
        if backoff {
            self.resume_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
        }
    }

    fn maybe_commit(&mut self) {
        if self.commit_task.is_some() || self.acked == self.committed {
            return;
        }
        let due = self.acked - self.committed >= self.opts.commit_every
            || self.last_commit.elapsed() >= self.opts.commit_interval;
        if due {
            self.start_commit();
        }
    }

    fn start_commit(&mut self) {
        let sub = Arc::clone(&self.sub);
        let (pos, blob) = (self.acked, self.state.encode());
        self.commit_task = Some(tokio::task::spawn_blocking(move || {
            sub.commit(pos, &blob).map(|()| pos)
        }));
        self.last_commit = Instant::now();
    }

    fn committed(&mut self, r: Result<Result<u64, spool::Error>, tokio::task::JoinError>) -> Result<(), RelayError> {
        self.commit_task = None;
        match r {
            Ok(Ok(pos)) => {
                self.committed = pos;
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(RelayError::Task(e.to_string())),
        }
    }

    /// Commits the current position and state now (waiting for a commit in
    /// progress first).
    async fn commit_now(&mut self) -> Result<(), RelayError> {
        if self.commit_task.is_some() {
            let r = commit_done(&mut self.commit_task).await;
            self.committed(r)?;
        }
        self.start_commit();
        let r = commit_done(&mut self.commit_task).await;
        self.committed(r)
    }

    /// Graceful stop: no new publishes; the acks in flight are awaited (each
    /// bounded by the context's ack timeout).
    async fn drain(&mut self) -> Result<(), RelayError> {
        self.reader = None;
        while !self.inflight.is_empty() {
            let r = front(&mut self.inflight).await;
            match r {
                Ok(ack) => self.on_success(ack)?,
                Err(e) => {
                    self.note_error(e.to_string());
                    break;
                }
            }
        }
        Ok(())
    }

    /// On every exit: stop the reader, commit what was acknowledged.
    async fn finish(&mut self) -> Result<(), RelayError> {
        self.reader = None;
        self.inflight.clear();
        if self.commit_task.is_some() || self.acked != self.committed {
            self.commit_now().await?;
        }
        Ok(())
    }

    fn publish_status(&mut self, phase: Phase) {
        let now = Instant::now();
        self.rate_window.push_back((now, self.relayed));
        while self.rate_window.len() > 2 && now.duration_since(self.rate_window[1].0) >= Duration::from_secs(1) {
            self.rate_window.pop_front();
        }
        let rate = match (self.rate_window.front(), self.rate_window.back()) {
            (Some(&(t0, r0)), Some(&(t1, r1))) if t1 > t0 => (r1 - r0) as f64 / (t1 - t0).as_secs_f64(),
            _ => 0.0,
        };
        let channel_last_seq = self.channel.last_seq();
        let status = RelayStatus {
            phase,
            channel_last_seq,
            acked: self.acked,
            committed: self.committed,
            lag: channel_last_seq.saturating_sub(self.acked),
            stream_seq: self.state.stream_seq,
            rate,
            in_flight: self.inflight.len(),
            relayed: self.relayed,
            resent: self.resent,
            taken_over: self.taken_over,
            skipped: self.state.skipped,
            retries: self.retries,
            connected: self.connected(),
            last_error: self.last_error.clone(),
        };
        self.status.send_replace(status);
    }
}

/// Finds the stream and checks that it captures the subject.
async fn resolve_stream(
    js: &async_nats::jetstream::Context,
    subject: &str,
    spec: &StreamSpec,
) -> Result<(Stream, String), RelayError> {
    let by_subject = js.stream_by_subject(subject).await;
    let capturing = match &by_subject {
        Ok(name) => Some(name.clone()),
        Err(_) => None,
    };
    let stream = match spec {
        StreamSpec::BySubject => match &capturing {
            Some(name) => js
                .get_stream(name)
                .await
                .map_err(|e| RelayError::nats(format!("getting stream {name}"), e))?,
            None => {
                return Err(match by_subject {
                    Err(e) if e.kind() != async_nats::jetstream::context::GetStreamByNameErrorKind::NotFound => {
                        RelayError::nats(format!("looking up the stream of {subject}"), e)
                    }
                    _ => RelayError::SubjectNotInStream {
                        subject: subject.to_string(),
                        stream: String::new(),
                        found: None,
                    },
                })
            }
        },
        StreamSpec::Require(name) => js
            .get_stream(name)
            .await
            .map_err(|e| RelayError::nats(format!("getting stream {name}"), e))?,
        StreamSpec::Create(config) => {
            let stream = js
                .get_or_create_stream((**config).clone())
                .await
                .map_err(|e| RelayError::nats(format!("creating stream {}", config.name), e))?;
            // Created just now: the lookup by subject before it found nothing.
            let capturing = js.stream_by_subject(subject).await.ok();
            let name = stream.cached_info().config.name.clone();
            if capturing.as_deref() != Some(name.as_str()) {
                return Err(RelayError::SubjectNotInStream {
                    subject: subject.to_string(),
                    stream: name,
                    found: capturing,
                });
            }
            return Ok((stream, name));
        }
    };
    let name = stream.cached_info().config.name.clone();
    if capturing.as_deref() != Some(name.as_str()) {
        return Err(RelayError::SubjectNotInStream {
            subject: subject.to_string(),
            stream: name,
            found: capturing,
        });
    }
    Ok((stream, name))
}

/// Runs blocking spool work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, RelayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RelayError::Task(e.to_string()))
}
