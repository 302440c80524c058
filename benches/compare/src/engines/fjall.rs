//! fjall: a write batch per message batch, `persist(SyncData)` when
//! syncing; consumer offsets in a second partition, written in the same
//! atomic batch.

use std::path::Path;

use crate::engine::{Engine, STATE};

pub struct Fjall {
    keyspace: fjall::Keyspace,
    log: fjall::PartitionHandle,
    offsets: fjall::PartitionHandle,
    next: u64,
}

impl Fjall {
    pub fn open(dir: &Path) -> Fjall {
        let keyspace = fjall::Config::new(dir.join("fjall")).open().expect("open");
        let log = keyspace
            .open_partition("log", fjall::PartitionCreateOptions::default())
            .expect("partition");
        let offsets = keyspace
            .open_partition("offsets", fjall::PartitionCreateOptions::default())
            .expect("partition");
        let mut fjall = Fjall {
            keyspace,
            log,
            offsets,
            next: 1,
        };
        fjall.next = fjall.last_or_zero() + 1;
        fjall
    }

    fn last_or_zero(&self) -> u64 {
        self.log.last_key_value().expect("last").map_or(0, |(k, _)| {
            u64::from_be_bytes(k.as_ref().try_into().expect("8-byte key"))
        })
    }

    fn persist(&self, sync: bool) {
        if sync {
            self.keyspace.persist(fjall::PersistMode::SyncData).expect("persist");
        }
    }
}

impl Engine for Fjall {
    fn append(&mut self, batch: &[&[u8]], sync: bool) {
        let mut b = self.keyspace.batch();
        for p in batch {
            b.insert(&self.log, self.next.to_be_bytes(), *p);
            self.next += 1;
        }
        b.commit().expect("commit");
        self.persist(sync);
    }
    fn read_all(&mut self) -> usize {
        self.log.iter().map(|kv| kv.expect("entry").1.len()).sum()
    }
    fn last(&mut self) -> u64 {
        self.last_or_zero()
    }
    fn consume(&mut self, count: usize, every: usize, sync: bool) -> Option<usize> {
        let (mut pos, mut seen) = (0u64, 0usize);
        let mut value = [0u8; 8 + 64];
        while seen < count {
            let end = pos + 1 + every as u64;
            for kv in self.log.range((pos + 1).to_be_bytes()..end.to_be_bytes()) {
                let (k, v) = kv.expect("entry");
                assert!(!v.is_empty());
                pos = u64::from_be_bytes(k.as_ref().try_into().expect("8-byte key"));
                seen += 1;
            }
            value[..8].copy_from_slice(&pos.to_be_bytes());
            value[8..].copy_from_slice(&STATE);
            let mut b = self.keyspace.batch();
            b.insert(&self.offsets, "consumer", value);
            b.commit().expect("commit");
            self.persist(sync);
        }
        Some(seen)
    }
}
