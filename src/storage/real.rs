//! Real files: std::fs for metadata and small files, memmap2 for segments.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::Path;

use super::LockGuard;
use crate::error::{Error, Result};
use crate::mmap::{preallocate, Region, RegionParts};

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RealStorage;

fn usize_len(len: u64) -> io::Result<usize> {
    usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))
}

impl RealStorage {
    pub(crate) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
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

    pub(crate) fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        fs::write(path, data)
    }

    pub(crate) fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_data()
    }

    pub(crate) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    pub(crate) fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    pub(crate) fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    pub(crate) fn create_region(&self, path: &Path, len: u64, records_start: usize) -> io::Result<RegionParts> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        preallocate(&file, len)?;
        Region::map_file(file, usize_len(len)?, records_start)
    }

    pub(crate) fn open_region(&self, path: &Path, records_start: usize) -> io::Result<RegionParts> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        Region::map_file(file, usize_len(len)?, records_start)
    }

    pub(crate) fn lock(&self, path: &Path) -> Result<LockGuard> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder_pid = Read::by_ref(&mut file)
                    .take(32)
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    holder_pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        // The pid is only for the message a second opener sees.
        file.set_len(0)
            .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| Error::io("write lock file", path, e))?;
        Ok(LockGuard::Real(file))
    }
}
