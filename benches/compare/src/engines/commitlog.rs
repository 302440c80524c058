//! The commitlog crate: segmented log with an mmap'd index, appends of a
//! `MessageBuf` per batch. It has no fsync call (its `flush` flushes the OS
//! file object only), so it runs only the non-durable workloads, and no
//! consumer-offset store.

use std::path::Path;

use commitlog::message::{MessageBuf, MessageSet};

use crate::engine::Engine;

pub struct Commitlog {
    log: commitlog::CommitLog,
}

impl Commitlog {
    pub fn open(dir: &Path) -> Commitlog {
        let mut opts = commitlog::LogOptions::new(dir.join("commitlog"));
        opts.segment_max_bytes(64 << 20);
        Commitlog {
            log: commitlog::CommitLog::new(opts).expect("open"),
        }
    }
}

impl Engine for Commitlog {
    fn append(&mut self, batch: &[&[u8]], _sync: bool) {
        let mut buf = MessageBuf::default();
        for p in batch {
            buf.push(p).expect("push");
        }
        self.log.append(&mut buf).expect("append");
    }
    fn read_all(&mut self) -> usize {
        let (mut next, mut total) = (0, 0);
        loop {
            let buf = self
                .log
                .read(next, commitlog::ReadLimit::max_bytes(1 << 20))
                .expect("read");
            if buf.is_empty() {
                return total;
            }
            for m in buf.iter() {
                total += m.payload().len();
                next = m.offset() + 1;
            }
        }
    }
    fn last(&mut self) -> u64 {
        self.log.last_offset().map_or(0, |o| o + 1)
    }
    fn consume(&mut self, _count: usize, _every: usize, _sync: bool) -> Option<usize> {
        None
    }
}
