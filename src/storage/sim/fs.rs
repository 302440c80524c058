//! The simulated file system's operations: what each storage call does to
//! the live namespace and file images.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Weak};

use super::{not_found, Inode, Live, Node, NsOp, SimInner, State};
use crate::error::{Error, IoOp, Result};
use crate::mmap::{HeapBuf, Region, RegionParts, SyncHook};
use crate::storage::LockGuard;

impl State {
    pub(super) fn file_id(&self, path: &Path) -> io::Result<u64> {
        match self.live.get(path) {
            Some(Node::File(id)) => Ok(*id),
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory")),
            None => Err(not_found(path)),
        }
    }

    pub(super) fn require_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if self.live.get(p) == Some(&Node::Dir) => Ok(()),
            _ => Err(not_found(path.parent().unwrap_or(path))),
        }
    }

    pub(super) fn put(&mut self, path: &Path, node: Node) {
        self.live.insert(path.to_path_buf(), node);
        self.pending.push(NsOp::Put(path.to_path_buf(), node));
    }

    /// Counts a mutating storage call; once the crash point is reached the
    /// process is "dead": this call and every later one fail and change
    /// nothing.
    pub(super) fn step(&mut self) -> io::Result<()> {
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            return Err(io::Error::other("simulated crash: the process died here"));
        }
        self.ops += 1;
        Ok(())
    }

    pub(super) fn count_sync(&mut self) -> io::Result<()> {
        self.step()?;
        let n = self.syncs;
        self.syncs += 1;
        if self.fail_sync_at == Some(n) {
            return Err(io::Error::other("simulated I/O error during sync"));
        }
        Ok(())
    }

    pub(super) fn used_space(&self) -> u64 {
        self.inodes.values().map(|i| i.live_len() as u64).sum()
    }

    pub(super) fn check_space(&self, growth: u64) -> io::Result<()> {
        match self.space_limit {
            Some(limit) if self.used_space().saturating_add(growth) > limit => {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn new_file(&mut self, path: &Path, data: Vec<u8>) -> io::Result<u64> {
        self.require_parent(path)?;
        self.check_space(data.len() as u64)?;
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            id,
            Inode {
                live: Live::Bytes(data),
                durable: Vec::new(),
            },
        );
        self.put(path, Node::File(id));
        Ok(id)
    }
}

impl SimInner {
    pub(crate) fn unlock(&self, path: &Path) {
        self.state.lock().locks.remove(path);
    }

    pub(crate) fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            match st.live.get(p) {
                Some(Node::Dir) => break,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file is in the way"))
                }
                None => missing.push(p.to_path_buf()),
            }
            cur = p.parent();
        }
        for p in missing.into_iter().rev() {
            st.put(&p, Node::Dir);
        }
        Ok(())
    }

    pub(crate) fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        if st.live.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        Ok(st
            .live
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    pub(crate) fn exists(&self, path: &Path) -> bool {
        self.state.lock().live.contains_key(path)
    }

    pub(crate) fn is_dir(&self, path: &Path) -> bool {
        self.state.lock().live.get(path) == Some(&Node::Dir)
    }

    pub(crate) fn boot_id(&self) -> u128 {
        self.state.lock().boot_id
    }

    pub(crate) fn file_id(&self, path: &Path) -> io::Result<(u64, u64)> {
        let st = self.state.lock();
        Ok((1, st.file_id(path)?))
    }

    pub(crate) fn read_file(&self, path: &Path, max: u64) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        let inode = st.inodes.get(&st.file_id(path)?).ok_or_else(|| not_found(path))?;
        if inode.live_len() as u64 > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file larger than expected"));
        }
        Ok(inode.live_bytes())
    }

    pub(crate) fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        let inode = st.inodes.get(&st.file_id(path)?).ok_or_else(|| not_found(path))?;
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= inode.live_len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        Ok(match &inode.live {
            Live::Bytes(b) => b[start..end].to_vec(),
            Live::Mapped(buf) => buf.copy_out(start..end),
        })
    }

    pub(crate) fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        match st.file_id(path) {
            Ok(id) => {
                let old = st.inodes.get(&id).map_or(0, |i| i.live_len()) as u64;
                st.check_space((data.len() as u64).saturating_sub(old))?;
                let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
                if let Live::Mapped(buf) = &inode.live {
                    if Arc::strong_count(buf) > 1 {
                        return Err(io::Error::other("simulated file is mapped"));
                    }
                }
                inode.live = Live::Bytes(data.to_vec());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => st.new_file(path, data.to_vec()).map(|_| ()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let id = st.file_id(path)?;
        st.count_sync()?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        inode.durable = inode.live_bytes();
        Ok(())
    }

    /// The simulation keeps no extents: everything from `from` may be data.
    pub(crate) fn data_ranges(&self, path: &Path, from: u64) -> io::Result<Vec<(u64, u64)>> {
        let len = self.file_len(path)?;
        Ok(if from < len { vec![(from, len)] } else { Vec::new() })
    }

    pub(crate) fn write_at(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        let end = at
            .checked_add(data.len())
            .ok_or_else(|| io::Error::other("offset overflow"))?;
        let id = match st.file_id(path) {
            Ok(id) => id,
            Err(e) if e.kind() == io::ErrorKind::NotFound => st.new_file(path, Vec::new())?,
            Err(e) => return Err(e),
        };
        let old = st.inodes.get(&id).map_or(0, |i| i.live_len());
        st.check_space((end as u64).saturating_sub(old as u64))?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        if let Live::Mapped(_) = &inode.live {
            return Err(io::Error::other("simulated file is mapped"));
        }
        let mut bytes = inode.live_bytes();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[at..end].copy_from_slice(data);
        inode.live = Live::Bytes(bytes);
        Ok(())
    }

    pub(crate) fn extend_file(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        let id = st.file_id(path)?;
        let old = st.inodes.get(&id).map_or(0, |i| i.live_len()) as u64;
        if old >= len {
            return Ok(());
        }
        st.check_space(len - old)?;
        st.count_sync()?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        if let Live::Mapped(_) = &inode.live {
            return Err(io::Error::other("simulated file is mapped"));
        }
        let mut bytes = inode.live_bytes();
        bytes.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        inode.durable = bytes.clone();
        inode.live = Live::Bytes(bytes);
        Ok(())
    }

    pub(crate) fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.live.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        st.count_sync()?;
        if let Some(last) = st.pending.iter().rposition(|op| op.touches(path)) {
            let ops: Vec<NsOp> = st.pending.drain(..=last).collect();
            for op in &ops {
                op.apply(&mut st.durable);
            }
        }
        Ok(())
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        let node = *st.live.get(from).ok_or_else(|| not_found(from))?;
        st.require_parent(to)?;
        st.live.remove(from);
        st.live.insert(to.to_path_buf(), node);
        st.pending.push(NsOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        st.file_id(path)?;
        st.live.remove(path);
        st.pending.push(NsOp::Remove(path.to_path_buf()));
        Ok(())
    }

    pub(crate) fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.step()?;
        if st.live.get(path) != Some(&Node::Dir) {
            return Err(not_found(path));
        }
        if st.live.keys().any(|p| p.parent() == Some(path)) {
            return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, "directory not empty"));
        }
        st.live.remove(path);
        st.pending.push(NsOp::Remove(path.to_path_buf()));
        Ok(())
    }

    pub(crate) fn file_len(&self, path: &Path) -> io::Result<u64> {
        let st = self.state.lock();
        let inode = st.inodes.get(&st.file_id(path)?).ok_or_else(|| not_found(path))?;
        Ok(inode.live_len() as u64)
    }

    pub(crate) fn create_region(
        self: &Arc<Self>,
        path: &Path,
        len: u64,
        records_start: usize,
    ) -> io::Result<RegionParts> {
        {
            let mut st = self.state.lock();
            st.step()?;
            if st.live.contains_key(path) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
            }
            let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            st.new_file(path, vec![0u8; len])?;
        }
        self.open_region(path, records_start)
    }

    pub(crate) fn open_region(self: &Arc<Self>, path: &Path, records_start: usize) -> io::Result<RegionParts> {
        let mut st = self.state.lock();
        let id = st.file_id(path)?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        let buf = match &inode.live {
            Live::Mapped(buf) => Arc::clone(buf),
            Live::Bytes(bytes) => {
                let buf = HeapBuf::new(bytes.clone());
                inode.live = Live::Mapped(Arc::clone(&buf));
                buf
            }
        };
        let weak: Weak<SimInner> = Arc::downgrade(self);
        let hook: SyncHook = Arc::new(move |buf: &HeapBuf, range: Range<usize>| {
            let Some(inner) = weak.upgrade() else {
                return Err(io::Error::other("simulated storage dropped"));
            };
            let mut st = inner.state.lock();
            st.count_sync()?;
            if let Some(inode) = st.inodes.get_mut(&id) {
                // msync also makes the file's size durable (datasync).
                inode.durable.resize(buf.len(), 0);
                let bytes = buf.copy_out(range.clone());
                if let Some(dst) = inode.durable.get_mut(range.start..range.start + bytes.len()) {
                    dst.copy_from_slice(&bytes);
                }
            }
            Ok(())
        });
        Region::map_heap(buf, records_start, hook)
    }

    pub(crate) fn open_region_readonly(
        &self,
        path: &Path,
        records_start: usize,
        published: usize,
    ) -> io::Result<Arc<Region>> {
        let mut st = self.state.lock();
        let id = st.file_id(path)?;
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        let buf = match &inode.live {
            Live::Mapped(buf) => Arc::clone(buf),
            Live::Bytes(bytes) => {
                let buf = HeapBuf::new(bytes.clone());
                inode.live = Live::Mapped(Arc::clone(&buf));
                buf
            }
        };
        Region::map_heap_readonly(buf, records_start, published)
    }

    pub(crate) fn lock(self: &Arc<Self>, path: &Path) -> Result<(LockGuard, String)> {
        {
            let mut st = self.state.lock();
            if !st.locks.insert(path.to_path_buf()) {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    holder_pid: Some(std::process::id()),
                });
            }
        }
        let previous = self
            .read_file(path, 4096)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        // As the real lock: the previous owner's lines are replaced by this
        // owner's pid at once (its boot line follows once the open is done).
        self.write_file(path, format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| Error::io(IoOp::Lock, path, e))?;
        Ok((LockGuard::Sim(Arc::clone(self), path.to_path_buf()), previous))
    }
}
