//! Real files: std::fs for metadata and small files, memmap2 for segments.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;

use super::LockGuard;
use crate::error::{Error, IoOp, Result};
use crate::mmap::{preallocate, Region, RegionParts};

/// The real file system. A read-only one (a store attached read-only)
/// refuses every call that could change a file: a bug there is an error,
/// never a write into a store another process owns.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RealStorage {
    read_only: bool,
}

fn usize_len(len: u64) -> io::Result<usize> {
    usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))
}

impl RealStorage {
    /// The same file system, refusing every change.
    pub(crate) fn read_only() -> RealStorage {
        RealStorage { read_only: true }
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::other("refused: the store is open read-only"));
        }
        Ok(())
    }

    pub(crate) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.writable()?;
        fs::create_dir_all(path)
    }

    pub(crate) fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    pub(crate) fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    pub(crate) fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    pub(crate) fn boot_id(&self) -> u128 {
        static BOOT: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
        *BOOT.get_or_init(|| {
            // "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; 0 (never trusted) when
            // it cannot be read.
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .and_then(|s| u128::from_str_radix(&s.trim().replace('-', ""), 16).ok())
                .unwrap_or(0)
        })
    }

    pub(crate) fn file_id(&self, path: &Path) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path)?;
        Ok((m.dev(), m.ino()))
    }

    pub(crate) fn read_file(&self, path: &Path, max: u64) -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {len} bytes, more than the {max} expected"),
            ));
        }
        let mut data = Vec::with_capacity(usize_len(len)?);
        file.take(max).read_to_end(&mut data)?;
        Ok(data)
    }

    pub(crate) fn read_file_into(&self, path: &Path, max: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file is {len} bytes, more than the {max} expected"),
            ));
        }
        buf.reserve(usize_len(len)?);
        file.take(max).read_to_end(buf)?;
        Ok(())
    }

    pub(crate) fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        File::open(path)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    pub(crate) fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.writable()?;
        fs::write(path, data)
    }

    pub(crate) fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.writable()?;
        File::open(path)?.sync_data()
    }

    pub(crate) fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        self.writable()?;
        use std::os::unix::fs::FileExt;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?
            .write_all_at(data, offset)
    }

    pub(crate) fn extend_file(&self, path: &Path, len: u64) -> io::Result<()> {
        self.writable()?;
        let file = OpenOptions::new().write(true).open(path)?;
        if file.metadata()?.len() < len {
            file.set_len(len)?;
            file.sync_all()?;
        }
        Ok(())
    }

    pub(crate) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.writable()?;
        File::open(path)?.sync_all()
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.writable()?;
        fs::rename(from, to)
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.writable()?;
        fs::remove_file(path)
    }

    pub(crate) fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.writable()?;
        fs::remove_dir(path)
    }

    pub(crate) fn data_ranges(&self, path: &Path, from: u64) -> io::Result<Vec<(u64, u64)>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        crate::mmap::data_ranges(&file, from, len)
    }

    pub(crate) fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    pub(crate) fn create_region(&self, path: &Path, len: u64, records_start: usize) -> io::Result<RegionParts> {
        self.writable()?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        preallocate(&file, len)?;
        Region::map_file(file, usize_len(len)?, records_start)
    }

    pub(crate) fn open_region(&self, path: &Path, records_start: usize) -> io::Result<RegionParts> {
        self.writable()?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        Region::map_file(file, usize_len(len)?, records_start)
    }

    pub(crate) fn open_region_readonly(
        &self,
        path: &Path,
        records_start: usize,
        published: usize,
    ) -> io::Result<std::sync::Arc<Region>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Region::map_file_readonly(&file, usize_len(len)?, records_start, published)
    }

    pub(crate) fn lock(&self, path: &Path) -> Result<(LockGuard, String)> {
        self.writable().map_err(|e| Error::io(IoOp::Lock, path, e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(IoOp::Lock, path, e))?;
        // Held locks are keyed by the canonical path, so two spellings of
        // one store directory are one lock.
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut waited = Duration::ZERO;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut buf = [0u8; 64];
                    let holder_pid = file
                        .read_at(&mut buf, 0)
                        .ok()
                        .and_then(|n| std::str::from_utf8(buf.get(..n)?).ok())
                        .and_then(|text| text.lines().next()?.trim().parse().ok());
                    // Our pid, but no store of this process holds the lock: a
                    // child forked (by any thread) while we held it still has
                    // the descriptor until it execs or exits. Wait for that
                    // rather than report a lock nobody really holds.
                    let transient = holder_pid == Some(std::process::id()) && !is_held(&key);
                    if transient && waited < FORKED_LOCK_WAIT {
                        std::thread::sleep(Duration::from_millis(1));
                        waited += Duration::from_millis(1);
                        continue;
                    }
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        holder_pid,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(IoOp::Lock, path, e)),
            }
        }
        // What the previous owner left (its pid and boot), then ours.
        let mut previous = String::new();
        let _ = (&file).read_to_string(&mut previous);
        file.set_len(0)
            .and_then(|_| file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0))
            .map_err(|e| Error::io(IoOp::Lock, path, e))?;
        HELD.lock().push(key.clone());
        Ok((LockGuard::Real(file, key), previous))
    }
}

/// How long an open waits for a lock that only a forked, not yet exec'd
/// child of this process can be holding.
const FORKED_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Lock files held by stores open in this process.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn is_held(path: &Path) -> bool {
    HELD.lock().iter().any(|p| p == path)
}

/// Called when a lock guard is dropped.
pub(crate) fn forget_held(path: &Path) {
    let mut held = HELD.lock();
    if let Some(i) = held.iter().position(|p| p == path) {
        held.swap_remove(i);
    }
}
