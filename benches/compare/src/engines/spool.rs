//! spool itself: `SyncPolicy::Always` for the durable configuration (every
//! publish and commit durable before it returns), `Never` otherwise; the
//! publish-latency workload also opens it under `Interval(1 s)`.

use std::path::Path;

use crate::engine::{Engine, STATE};

pub struct Spool {
    store: spool::Store,
    ch: spool::Channel,
}

impl Spool {
    pub fn open(dir: &Path, sync: bool) -> Spool {
        let policy = if sync {
            spool::SyncPolicy::Always
        } else {
            spool::SyncPolicy::Never
        };
        Spool::open_with(dir, policy)
    }

    pub fn open_with(dir: &Path, policy: spool::SyncPolicy) -> Spool {
        let opts = spool::Options::default().sync_policy(policy);
        let store = spool::Store::open(dir, opts).expect("open");
        let ch = store.channel("bench").expect("channel");
        Spool { store, ch }
    }
}

impl Engine for Spool {
    fn append(&mut self, batch: &[&[u8]], _sync: bool) {
        self.ch.publish_batch(batch).expect("publish");
    }
    fn publish_one(&mut self, payload: &[u8]) {
        self.ch.publish(payload).expect("publish");
    }
    /// The owned iterator: what a user writes first.
    fn read_all(&mut self) -> usize {
        let mut total = 0;
        for m in self.ch.read_from(1).expect("read") {
            total += m.expect("message").payload().len();
        }
        total
    }
    /// The lending scan, `Messages::next_ref`.
    fn read_lending(&mut self) -> Option<usize> {
        let mut messages = self.ch.read_from(1).expect("read");
        let mut total = 0;
        while let Some(m) = messages.next_ref() {
            total += m.expect("message").payload().len();
        }
        Some(total)
    }
    fn last(&mut self) -> u64 {
        let last = self.ch.last_seq();
        assert_eq!(self.ch.get(last).expect("last message").seq(), last);
        last
    }
    fn consume(&mut self, count: usize, every: usize, _sync: bool) -> Option<usize> {
        let sub = self.ch.subscribe("consumer", spool::StartAt::First).expect("subscribe");
        let mut seen = 0;
        while seen < count {
            let m = sub.try_recv().expect("receive").expect("a message");
            seen += 1;
            if seen % every == 0 {
                sub.commit(m.seq(), &STATE).expect("commit");
            }
        }
        Some(seen)
    }
    fn close(self: Box<Self>) {
        let Spool { store, ch } = *self;
        drop(ch);
        store.close().expect("close");
    }
}
