//! What every engine under comparison implements.

use std::path::Path;

/// A 64-byte consumer state committed with each position.
pub const STATE: [u8; 64] = [7; 64];

/// One storage engine, opened on a directory it owns.
pub trait Engine {
    /// Appends one batch; with `sync`, durable before returning.
    fn append(&mut self, batch: &[&[u8]], sync: bool);
    /// Reads every message back; returns the payload bytes seen.
    fn read_all(&mut self) -> usize;
    /// The last message's sequence number (a read that proves the store is
    /// usable after an open).
    fn last(&mut self) -> u64;
    /// Consumes `count` messages from the consumer's committed position,
    /// committing the position and `STATE` atomically after every `every`
    /// messages, durably with `sync` (spool takes that from the policy it
    /// was opened with). `None` when the engine has no way to store a
    /// consumer position.
    fn consume(&mut self, count: usize, every: usize, sync: bool) -> Option<usize>;
}

/// The engines, by name, in table order.
pub const ENGINES: [&str; 8] = [
    "spool",
    "raw write+crc",
    "raw mmap+crc",
    "sqlite (rusqlite, WAL)",
    "redb",
    "fjall",
    "lmdb (heed)",
    "commitlog",
];

/// Whether `name` can make an append durable (commitlog has no fsync call:
/// its `flush` flushes the OS file object only).
pub fn can_sync(name: &str) -> bool {
    name != "commitlog"
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
