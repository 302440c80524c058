//! The one place that touches files. Two backends: real files (std::fs and
//! memmap2) and a simulated file system for crash testing (`sim`).

mod real;
pub mod sim;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoOp, Result};
use crate::mmap::{Region, RegionParts};

pub(crate) use real::RealStorage;
use sim::SimStorage;

/// A storage backend. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    Real(RealStorage),
    Sim(Arc<sim::SimInner>),
}

/// Held while a store is open; dropping it releases the lock.
pub(crate) enum LockGuard {
    /// The locked file (the lock lives as long as it is open) and its path
    /// in the process's list of held locks.
    Real(#[allow(dead_code)] std::fs::File, PathBuf),
    Sim(Arc<sim::SimInner>, PathBuf),
}

impl LockGuard {
    /// Replaces what the lock file says (for the next opener).
    pub(crate) fn record(&self, text: &str) -> Result<()> {
        match self {
            LockGuard::Real(file, path) => {
                use std::os::unix::fs::FileExt;
                file.set_len(0)
                    .and_then(|()| file.write_all_at(text.as_bytes(), 0))
                    .map_err(|e| Error::io(IoOp::Lock, path, e))
            }
            LockGuard::Sim(inner, path) => inner
                .write_file(path, text.as_bytes())
                .map_err(|e| Error::io(IoOp::Lock, path, e)),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        match self {
            LockGuard::Sim(inner, path) => inner.unlock(path),
            LockGuard::Real(_, path) => real::forget_held(path),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Storage::Real($s) => $e,
            Storage::Sim($s) => $e,
        }
    };
}

impl Storage {
    pub(crate) fn simulated(sim: &SimStorage) -> Self {
        Storage::Sim(sim.inner())
    }

    /// The same storage, refusing every change (a store attached
    /// read-only). The simulated storage is returned as it is: its tests
    /// compare images instead.
    pub(crate) fn read_only_view(&self) -> Storage {
        match self {
            Storage::Real(_) => Storage::Real(RealStorage::read_only()),
            Storage::Sim(s) => Storage::Sim(Arc::clone(s)),
        }
    }

    /// Whether `path` exists and is a directory: `None` when it does not
    /// exist, an error when it cannot be told (no permission).
    pub(crate) fn probe(&self, path: &Path) -> Result<Option<bool>> {
        match self {
            Storage::Real(_) => match std::fs::metadata(path) {
                Ok(m) => Ok(Some(m.is_dir())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(IoOp::Stat, path, e)),
            },
            Storage::Sim(s) => Ok(s.exists(path).then(|| s.is_dir(path))),
        }
    }

    pub(crate) fn create_dir_all(&self, path: &Path) -> Result<()> {
        dispatch!(self, s => s.create_dir_all(path)).map_err(|e| Error::io(IoOp::CreateDir, path, e))
    }

    /// Names of the entries of a directory, sorted.
    pub(crate) fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let mut names = dispatch!(self, s => s.list_dir(path)).map_err(|e| Error::io(IoOp::ListDir, path, e))?;
        names.sort();
        Ok(names)
    }

    pub(crate) fn exists(&self, path: &Path) -> bool {
        dispatch!(self, s => s.exists(path))
    }

    /// An id of the running boot of the machine (Linux's boot_id; the
    /// simulated storage's changes at each simulated power loss): page-cache
    /// contents written under one boot id are still there under the same.
    pub(crate) fn boot_id(&self) -> u128 {
        dispatch!(self, s => s.boot_id())
    }

    /// The identity of a file (device and inode), which a copy of it does
    /// not share.
    pub(crate) fn file_id(&self, path: &Path) -> Result<(u64, u64)> {
        dispatch!(self, s => s.file_id(path)).map_err(|e| Error::io(IoOp::Stat, path, e))
    }

    /// Whether `path` is a directory (not following a missing path).
    pub(crate) fn is_dir(&self, path: &Path) -> bool {
        dispatch!(self, s => s.is_dir(path))
    }

    /// Whole content of a small file (catalog, index). Refuses files larger
    /// than `max` bytes rather than allocating for them.
    pub(crate) fn read_file(&self, path: &Path, max: u64) -> Result<Vec<u8>> {
        dispatch!(self, s => s.read_file(path, max)).map_err(|e| Error::io(IoOp::Read, path, e))
    }

    /// As [`read_file`](Self::read_file), into `buf` (replacing what it
    /// held): a caller reading many large files reuses one buffer instead
    /// of faulting in fresh memory for each.
    pub(crate) fn read_file_into(&self, path: &Path, max: u64, buf: &mut Vec<u8>) -> Result<()> {
        buf.clear();
        match self {
            Storage::Real(s) => s.read_file_into(path, max, buf),
            Storage::Sim(s) => s.read_file(path, max).map(|data| buf.extend_from_slice(&data)),
        }
        .map_err(|e| Error::io(IoOp::Read, path, e))
    }

    /// `len` bytes at `offset` of a file; `UnexpectedEof` if it is shorter.
    pub(crate) fn read_at(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
        dispatch!(self, s => s.read_at(path, offset, len)).map_err(|e| Error::io(IoOp::Read, path, e))
    }

    /// Creates or truncates `path` and writes `data` (not synced).
    pub(crate) fn write_file(&self, path: &Path, data: &[u8]) -> Result<()> {
        dispatch!(self, s => s.write_file(path, data)).map_err(|e| Error::io(IoOp::Write, path, e))
    }

    /// Writes `data` at `offset` of `path` (created if missing), without
    /// truncating it (not synced).
    pub(crate) fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> Result<()> {
        dispatch!(self, s => s.write_at(path, offset, data)).map_err(|e| Error::io(IoOp::Write, path, e))
    }

    /// fdatasync of a file's data and size.
    pub(crate) fn sync_file(&self, path: &Path) -> Result<()> {
        dispatch!(self, s => s.sync_file(path)).map_err(|e| Error::io(IoOp::SyncFile, path, e))
    }

    /// fsync of a directory, making creates, renames and deletes in it durable.
    pub(crate) fn sync_dir(&self, path: &Path) -> Result<()> {
        dispatch!(self, s => s.sync_dir(path)).map_err(|e| Error::io(IoOp::SyncDir, path, e))
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        dispatch!(self, s => s.rename(from, to)).map_err(|e| Error::io(IoOp::Rename, from, e))
    }

    pub(crate) fn remove_file(&self, path: &Path) -> Result<()> {
        match dispatch!(self, s => s.remove_file(path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(|e| Error::io(IoOp::Remove, path, e)),
        }
    }

    /// Removes an empty directory.
    pub(crate) fn remove_dir(&self, path: &Path) -> Result<()> {
        match dispatch!(self, s => s.remove_dir(path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(|e| Error::io(IoOp::RemoveDir, path, e)),
        }
    }

    /// Extends a file with zeros to `len` bytes (never shortens it), made
    /// durable (repair of a segment shortened outside spool).
    pub(crate) fn extend_file(&self, path: &Path, len: u64) -> Result<()> {
        dispatch!(self, s => s.extend_file(path, len)).map_err(|e| Error::io(IoOp::Truncate, path, e))
    }

    /// The ranges of a file from `from` on that may hold anything but
    /// zeros (see `mmap::data_ranges`).
    pub(crate) fn data_ranges(&self, path: &Path, from: u64) -> Result<Vec<(u64, u64)>> {
        dispatch!(self, s => s.data_ranges(path, from)).map_err(|e| Error::io(IoOp::Stat, path, e))
    }

    /// Length of a file in bytes.
    pub(crate) fn file_len(&self, path: &Path) -> Result<u64> {
        dispatch!(self, s => s.file_len(path)).map_err(|e| Error::io(IoOp::Stat, path, e))
    }

    /// Creates a new file of `len` bytes with its blocks reserved, mapped.
    pub(crate) fn create_region(&self, path: &Path, len: u64, records_start: usize) -> Result<RegionParts> {
        dispatch!(self, s => s.create_region(path, len, records_start)).map_err(|e| Error::io(IoOp::Create, path, e))
    }

    /// Maps an existing file over its whole length.
    pub(crate) fn open_region(&self, path: &Path, records_start: usize) -> Result<RegionParts> {
        dispatch!(self, s => s.open_region(path, records_start)).map_err(|e| Error::io(IoOp::Map, path, e))
    }

    /// Maps an existing file read-only over its whole length, readable in
    /// `[records_start, published)`.
    pub(crate) fn open_region_readonly(
        &self,
        path: &Path,
        records_start: usize,
        published: usize,
    ) -> Result<Arc<Region>> {
        dispatch!(self, s => s.open_region_readonly(path, records_start, published))
            .map_err(|e| Error::io(IoOp::Map, path, e))
    }

    /// Takes the exclusive lock at `path`, writing our pid into it; returns
    /// what the previous owner had written there.
    /// Renames `path` aside to a free name `<path>.damaged` (or
    /// `.damaged.N`), for repair, which never deletes what it cannot use;
    /// returns the new name.
    pub(crate) fn set_aside(&self, path: &Path) -> Result<PathBuf> {
        let mut target = PathBuf::from(format!("{}.damaged", path.display()));
        let mut n = 1;
        while self.exists(&target) {
            target = PathBuf::from(format!("{}.damaged.{n}", path.display()));
            n += 1;
        }
        self.rename(path, &target)?;
        Ok(target)
    }

    pub(crate) fn lock(&self, path: &Path) -> Result<(LockGuard, String)> {
        match self {
            Storage::Real(s) => s.lock(path),
            Storage::Sim(s) => s.lock(path),
        }
    }
}
