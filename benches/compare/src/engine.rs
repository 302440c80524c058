//! What every engine under comparison implements.

use std::path::Path;

/// A 64-byte consumer state committed with each position.
pub const STATE: [u8; 64] = [7; 64];

/// One storage engine, opened on a directory it owns.
pub trait Engine {
    /// Appends one batch; with `sync`, durable before returning.
    fn append(&mut self, batch: &[&[u8]], sync: bool);
    /// Appends one message through the engine's single-message call,
    /// without a sync of its own.
    fn publish_one(&mut self, payload: &[u8]) {
        self.append(&[payload], false);
    }
    /// Reads every message back the way the engine's users would first
    /// write it; returns the payload bytes seen.
    fn read_all(&mut self) -> usize;
    /// Reads every message back through a lending scan (no per-message
    /// allocation or reference count), where the engine has one apart from
    /// `read_all`.
    fn read_lending(&mut self) -> Option<usize> {
        None
    }
    /// The last message's sequence number (a read that proves the store is
    /// usable after an open).
    fn last(&mut self) -> u64;
    /// Consumes `count` messages from the consumer's committed position,
    /// committing the position and `STATE` atomically after every `every`
    /// messages, durably with `sync` (spool takes that from the policy it
    /// was opened with). `None` when the engine has no way to store a
    /// consumer position.
    fn consume(&mut self, count: usize, every: usize, sync: bool) -> Option<usize>;
    /// Closes the engine the way its documentation says to.
    fn close(self: Box<Self>) {}
}

/// An engine under comparison: the name in the table and CSV, and the short
/// id accepted on the command line (the name is accepted too).
pub struct EngineInfo {
    pub id: &'static str,
    pub name: &'static str,
}

/// The engines, in table order.
pub const ENGINES: [EngineInfo; 8] = [
    EngineInfo {
        id: "spool",
        name: "spool",
    },
    EngineInfo {
        id: "raw-write",
        name: "raw write+crc",
    },
    EngineInfo {
        id: "raw-mmap",
        name: "raw mmap+crc",
    },
    EngineInfo {
        id: "sqlite",
        name: "sqlite (rusqlite, WAL)",
    },
    EngineInfo {
        id: "redb",
        name: "redb",
    },
    EngineInfo {
        id: "fjall",
        name: "fjall",
    },
    EngineInfo {
        id: "lmdb",
        name: "lmdb (heed)",
    },
    EngineInfo {
        id: "commitlog",
        name: "commitlog",
    },
];

/// Whether `name` can make an append durable (commitlog has no fsync call:
/// its `flush` flushes the OS file object only).
pub fn can_sync(name: &str) -> bool {
    name != "commitlog"
}

/// Whether `name` has a place for a consumer's position (the raw mmap
/// baseline and commitlog do not).
pub fn can_consume(name: &str) -> bool {
    !matches!(name, "raw mmap+crc" | "commitlog")
}

/// Opens (creating or recovering) engine `name` in `dir`; `sync` selects
/// the durable configuration where an engine has one.
pub fn open(name: &str, dir: &Path, sync: bool) -> Box<dyn Engine> {
    use crate::engines::*;
    match name {
        "spool" => Box::new(spool::Spool::open(dir, sync)),
        "raw write+crc" => Box::new(raw::RawWrite::open(dir)),
        "raw mmap+crc" => Box::new(raw::RawMmap::open(dir)),
        "sqlite (rusqlite, WAL)" => Box::new(sqlite::Sqlite::open(dir, sync)),
        "redb" => Box::new(redb::Redb::open(dir)),
        "fjall" => Box::new(fjall::Fjall::open(dir)),
        "lmdb (heed)" => Box::new(lmdb::Lmdb::open(dir, sync)),
        "commitlog" => Box::new(commitlog::Commitlog::open(dir)),
        other => panic!("unknown engine {other}"),
    }
}
