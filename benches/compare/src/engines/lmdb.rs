//! LMDB through heed: a write transaction per batch (APPEND puts), the
//! environment opened with NO_SYNC for the non-durable configuration;
//! consumer offsets in a second database, in the same transaction.

use std::path::Path;

use heed::byteorder::BE;
use heed::types::{Bytes, Str, U64};

use crate::engine::{Engine, STATE};

pub struct Lmdb {
    env: heed::Env,
    log: heed::Database<U64<BE>, Bytes>,
    offsets: heed::Database<Str, Bytes>,
    next: u64,
}

impl Lmdb {
    pub fn open(dir: &Path, sync: bool) -> Lmdb {
        let mut opts = heed::EnvOpenOptions::new();
        opts.map_size(8 << 30).max_dbs(2);
        if !sync {
            // SAFETY: only durability is relaxed; nothing else shares the env.
            unsafe { opts.flags(heed::EnvFlags::NO_SYNC) };
        }
        // SAFETY: the directory is private to this run and opened once.
        let env = unsafe { opts.open(dir) }.expect("open");
        let mut wtxn = env.write_txn().expect("txn");
        let log = env.create_database(&mut wtxn, Some("log")).expect("db");
        let offsets = env.create_database(&mut wtxn, Some("offsets")).expect("db");
        wtxn.commit().expect("commit");
        let mut lmdb = Lmdb {
            env,
            log,
            offsets,
            next: 1,
        };
        lmdb.next = lmdb.last_or_zero() + 1;
        lmdb
    }

    fn last_or_zero(&self) -> u64 {
        let rtxn = self.env.read_txn().expect("txn");
        self.log.last(&rtxn).expect("last").map_or(0, |(k, _)| k)
    }
}

impl Engine for Lmdb {
    fn append(&mut self, batch: &[&[u8]], _sync: bool) {
        let mut wtxn = self.env.write_txn().expect("txn");
        for p in batch {
            self.log
                .put_with_flags(&mut wtxn, heed::PutFlags::APPEND, &self.next, p)
                .expect("append");
            self.next += 1;
        }
        wtxn.commit().expect("commit");
    }
    fn read_all(&mut self) -> usize {
        let rtxn = self.env.read_txn().expect("txn");
        self.log
            .iter(&rtxn)
            .expect("iter")
            .map(|kv| kv.expect("entry").1.len())
            .sum()
    }
    fn last(&mut self) -> u64 {
        self.last_or_zero()
    }
    fn consume(&mut self, count: usize, every: usize, _sync: bool) -> Option<usize> {
        let (mut pos, mut seen) = (0u64, 0usize);
        let mut value = [0u8; 8 + 64];
        while seen < count {
            let mut wtxn = self.env.write_txn().expect("txn");
            let range = (pos + 1)..(pos + 1 + every as u64);
            for kv in self.log.range(&wtxn, &range).expect("range") {
                let (k, v) = kv.expect("entry");
                assert!(!v.is_empty());
                pos = k;
                seen += 1;
            }
            value[..8].copy_from_slice(&pos.to_be_bytes());
            value[8..].copy_from_slice(&STATE);
            self.offsets
                .put(&mut wtxn, "consumer", &value)
                .expect("commit position");
            wtxn.commit().expect("commit");
        }
        Some(seen)
    }
}
