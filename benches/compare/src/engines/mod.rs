//! One module per engine under comparison.

pub mod commitlog;
pub mod fjall;
pub mod lmdb;
pub mod raw;
pub mod redb;
pub mod spool;
pub mod sqlite;
