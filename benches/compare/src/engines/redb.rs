//! redb: a write transaction per batch, `Durability::Immediate` when
//! syncing and `None` otherwise; consumer offsets in a second table.

use std::path::Path;

use redb::ReadableTable;

use crate::engine::{Engine, STATE};

const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
const OFFSETS: redb::TableDefinition<&str, (u64, &[u8])> = redb::TableDefinition::new("offsets");

pub struct Redb {
    db: redb::Database,
    next: u64,
}

impl Redb {
    pub fn open(dir: &Path) -> Redb {
        let db = redb::Database::create(dir.join("db.redb")).expect("create");
        let mut redb = Redb { db, next: 1 };
        redb.next = redb.last_or_zero() + 1;
        redb
    }

    fn last_or_zero(&self) -> u64 {
        let tx = self.db.begin_read().expect("begin");
        match tx.open_table(LOG) {
            Ok(table) => table.last().expect("last").map_or(0, |(k, _)| k.value()),
            Err(_) => 0,
        }
    }

    fn durability(sync: bool) -> redb::Durability {
        if sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        }
    }
}

impl Engine for Redb {
    fn append(&mut self, batch: &[&[u8]], sync: bool) {
        let mut tx = self.db.begin_write().expect("begin");
        tx.set_durability(Self::durability(sync));
        {
            let mut table = tx.open_table(LOG).expect("table");
            for p in batch {
                table.insert(self.next, *p).expect("insert");
                self.next += 1;
            }
        }
        tx.commit().expect("commit");
    }
    fn read_all(&mut self) -> usize {
        let tx = self.db.begin_read().expect("begin");
        let table = tx.open_table(LOG).expect("table");
        table
            .iter()
            .expect("iter")
            .map(|kv| kv.expect("entry").1.value().len())
            .sum()
    }
    fn last(&mut self) -> u64 {
        // Zero when nothing survived (`Durability::None` commits are lost
        // in a crash).
        self.last_or_zero()
    }
    fn consume(&mut self, count: usize, every: usize, sync: bool) -> Option<usize> {
        let (mut pos, mut seen) = (0u64, 0usize);
        while seen < count {
            let mut tx = self.db.begin_write().expect("begin");
            tx.set_durability(Self::durability(sync));
            {
                let log = tx.open_table(LOG).expect("table");
                for kv in log.range(pos + 1..pos + 1 + every as u64).expect("range") {
                    let (k, v) = kv.expect("entry");
                    assert!(!v.value().is_empty());
                    pos = k.value();
                    seen += 1;
                }
                let mut offsets = tx.open_table(OFFSETS).expect("table");
                offsets.insert("consumer", (pos, &STATE[..])).expect("commit position");
            }
            tx.commit().expect("commit");
        }
        Some(seen)
    }
}
