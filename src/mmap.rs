//! Memory regions that segments live in: a shared file mapping (real
//! storage) or a heap buffer (simulated storage). This is the only module
//! with `unsafe`.
//!
//! Soundness rests on one discipline, enforced by the types here rather than
//! by callers: a region has a *header zone* `[0, records_start)` and a
//! *records zone* `[records_start, len)`. Each zone has exactly one write
//! token, created with the region. Bytes of the records zone below the
//! published length are immutable; anyone may read them. Bytes at or above it
//! are written and read only through the records token (`&mut` for writes),
//! and the header zone only through the header token. So no `&[u8]` handed
//! out ever aliases a byte that is being written.
//!
//! The records token of a file-backed region can also write *through the
//! file* (`pwrite(2)`) instead of through the mapping: the page cache is the
//! same, so readers of the mapping see the bytes, but pages dirtied by
//! `pwrite` are written back block by block, while a page stored to through
//! a mapping takes a write-protect fault after every writeback and is then
//! written back whole. A writer that syncs after every append uses it.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions, MmapRaw};
use parking_lot::Mutex;

/// Called by a heap region's `sync`: the simulated storage copies the range
/// into the file's durable image (or fails, under fault injection).
pub(crate) type SyncHook = Arc<dyn Fn(&HeapBuf, Range<usize>) -> io::Result<()> + Send + Sync>;

enum Backing {
    /// A read-write shared mapping, written through the region's tokens.
    Map(MmapRaw),
    /// A read-only mapping (PROT_READ): a sealed segment, or a file of a
    /// store another process owns. It has no tokens; it is held only to
    /// keep the mapping alive.
    MapReadOnly(#[allow(dead_code)] Mmap),
    /// A simulated file's live image; `on_sync` is `None` for a read-only
    /// view.
    Heap {
        buf: Arc<HeapBuf>,
        on_sync: Option<SyncHook>,
    },
}

/// A fixed-size byte region; never resized, never unmapped while referenced.
pub(crate) struct Region {
    ptr: *mut u8,
    len: usize,
    records_start: usize,
    published: AtomicUsize,
    backing: Backing,
}

// SAFETY: `ptr` points into `backing` (a mapping or heap allocation), which
// the region owns and which stays at the same address until the region is
// dropped. Cross-thread access follows the zone/token discipline in the
// module docs: writes only through the unique `&mut` tokens, to bytes no
// shared slice covers, and publication through `published` with
// Release/Acquire, so sharing the region between threads is data-race free.
unsafe impl Send for Region {}
// SAFETY: see the `Send` impl above; `&Region` only hands out slices of
// published (immutable) bytes.
unsafe impl Sync for Region {}

/// Write access to the header zone `[0, records_start)`.
pub(crate) struct HeaderToken {
    region: Arc<Region>,
}

/// Write access to the records zone at and above the published length.
pub(crate) struct RecordsToken {
    region: Arc<Region>,
    /// The mapped file, for writing through it; `None` for heap regions.
    file: Option<File>,
    /// Writes are staged and flushed with `pwrite` rather than stored
    /// through the mapping.
    write_through: bool,
    /// Staged bytes, contiguous from `staged_at`, not yet in the file.
    staged: Vec<u8>,
    staged_at: usize,
}

/// A write-through token flushes its staged bytes at least this often, so a
/// huge batch does not buffer without bound.
pub(crate) const MAX_STAGED: usize = 1 << 20;

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len)
            .field("records_start", &self.records_start)
            .field("published", &self.published.load(Ordering::Relaxed))
            .finish()
    }
}

/// The three handles a new region comes with.
pub(crate) type RegionParts = (Arc<Region>, HeaderToken, RecordsToken);

impl Region {
    /// Maps `len` bytes of `file` read-write and shared. The file must be at
    /// least `len` bytes long: spool never maps past a file's end.
    pub(crate) fn map_file(file: File, len: usize, records_start: usize) -> io::Result<RegionParts> {
        let file_len = file.metadata()?.len();
        if (file_len as u128) < len as u128 || len == 0 || records_start > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to map {len} bytes of a {file_len}-byte file"),
            ));
        }
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        let ptr = map.as_mut_ptr();
        Ok(Self::parts(ptr, len, records_start, Backing::Map(map), Some(file)))
    }

    /// Maps `len` bytes of `file` read-only, with `[records_start,
    /// published)` readable: a region no token can write. The file must be
    /// at least `len` bytes long.
    pub(crate) fn map_file_readonly(
        file: &File,
        len: usize,
        records_start: usize,
        published: usize,
    ) -> io::Result<Arc<Region>> {
        let file_len = file.metadata()?.len();
        if (file_len as u128) < len as u128 || len == 0 || records_start > published || published > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to map {len} bytes of a {file_len}-byte file up to {published}"),
            ));
        }
        // SAFETY: a read-only shared mapping of a file at least `len` bytes
        // long; spool never truncates a mapped file, and the bytes handed out
        // (below `published`) are never written again by any spool process
        // (docs/safety.md, sections 1 and 2).
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        let ptr = map.as_ptr().cast_mut();
        Ok(Arc::new(Region {
            ptr,
            len,
            records_start,
            published: AtomicUsize::new(published),
            backing: Backing::MapReadOnly(map),
        }))
    }

    /// A read-only view of a simulated file's live image, readable in
    /// `[records_start, published)`.
    pub(crate) fn map_heap_readonly(
        buf: Arc<HeapBuf>,
        records_start: usize,
        published: usize,
    ) -> io::Result<Arc<Region>> {
        let len = buf.len;
        if len == 0 || records_start > published || published > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot view that range of the file",
            ));
        }
        Ok(Arc::new(Region {
            ptr: buf.ptr,
            len,
            records_start,
            published: AtomicUsize::new(published),
            backing: Backing::Heap { buf, on_sync: None },
        }))
    }

    /// Wraps a simulated file's live buffer.
    pub(crate) fn map_heap(buf: Arc<HeapBuf>, records_start: usize, on_sync: SyncHook) -> io::Result<RegionParts> {
        let len = buf.len;
        if len == 0 || records_start > len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map an empty file"));
        }
        let ptr = buf.ptr;
        Ok(Self::parts(
            ptr,
            len,
            records_start,
            Backing::Heap {
                buf,
                on_sync: Some(on_sync),
            },
            None,
        ))
    }

    fn parts(ptr: *mut u8, len: usize, records_start: usize, backing: Backing, file: Option<File>) -> RegionParts {
        let region = Arc::new(Region {
            ptr,
            len,
            records_start,
            published: AtomicUsize::new(records_start),
            backing,
        });
        (
            Arc::clone(&region),
            HeaderToken {
                region: Arc::clone(&region),
            },
            RecordsToken {
                region,
                file,
                write_through: false,
                staged: Vec::new(),
                staged_at: records_start,
            },
        )
    }

    /// Length of the region in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// End of the published (immutable, readable) bytes.
    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// Published bytes `[off, off + len)`, or `None` when any of them is not
    /// published.
    #[inline]
    pub(crate) fn read_published(&self, off: usize, len: usize) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        if off < self.records_start || end > self.published() {
            return None;
        }
        // SAFETY: the range is inside the region and below the published
        // length, so no token writes it while this borrow of `self` lives.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) })
    }

    /// Moves the readable end of a region no token writes (a read-only
    /// mapping or view) forward to `end`, after the caller validated the
    /// bytes below it: a store attached read-only follows what its owner
    /// appends. Never moves it back; refused for writable regions, whose
    /// records token alone publishes.
    pub(crate) fn advance_published(&self, end: usize) -> io::Result<()> {
        let writable = matches!(self.backing, Backing::Map(_) | Backing::Heap { on_sync: Some(_), .. });
        if writable || end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot publish up to {end} in this region"),
            ));
        }
        // Release: a reader that loads the new end (Acquire) then reads
        // below it sees bytes at least as new as the validation saw. The
        // bytes themselves were validated through `pread`, never through a
        // slice of this mapping, and the owner never writes a record it
        // has written (docs/safety.md, section 9).
        self.published.fetch_max(end, Ordering::Release);
        Ok(())
    }

    /// Makes `range` durable: msync(MS_SYNC) for a mapping, a copy into the
    /// durable image for a simulated file.
    pub(crate) fn sync(&self, range: Range<usize>) -> io::Result<()> {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        match &self.backing {
            Backing::Map(map) => map.flush_range(start, end - start),
            // Nothing was written through a read-only view.
            Backing::MapReadOnly(_) | Backing::Heap { on_sync: None, .. } => Ok(()),
            Backing::Heap {
                buf,
                on_sync: Some(on_sync),
            } => on_sync(buf, start..end),
        }
    }

    /// Drops this process's page-table entries for `range` of a shared file
    /// mapping (MADV_DONTNEED) before the range is msynced: the msync then
    /// finds no writable entry to clean, so it sends no TLB-flush
    /// interrupt per page to the writer's core (on this kernel those
    /// interrupts cost a single-message writer a third of its time while a
    /// full segment was sealed). The bytes stay in the page cache, dirty
    /// until written back; a later read faults the same page in again.
    pub(crate) fn drop_page_entries(&self, range: Range<usize>) {
        // Whole pages only (madvise wants an aligned start).
        let end = range.end.min(self.len);
        let start = range.start.next_multiple_of(4096).min(end);
        if let Backing::Map(map) = &self.backing {
            // SAFETY: the mapping is MAP_SHARED of a file (`Backing::Map`),
            // so MADV_DONTNEED only unmaps: the contents live in the page
            // cache and every later access, by a reader holding a slice of
            // this region or anyone else, faults in those same bytes. The
            // range is inside the mapping (clamped to `self.len`).
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }

    /// Faults in `range` writable ahead of the writer (MADV_POPULATE_WRITE),
    /// so appends do not take a page fault per fresh page. Best effort:
    /// kernels without it (before 5.14) just fault on first write.
    pub(crate) fn prefault(&self, range: Range<usize>) {
        // In steps: each call holds the process's mmap lock for reading
        // while it zero-fills pages, and a mapping being made meanwhile (a
        // new segment) waits for it with every page fault queued behind:
        // short steps keep the writer's stalls short.
        const STEP: usize = 256 << 10;
        let end = range.end.min(self.len);
        let mut at = range.start.min(end);
        if let Backing::Map(map) = &self.backing {
            while at < end {
                let len = STEP.min(end - at);
                let _ = map.advise_range(memmap2::Advice::PopulateWrite, at, len);
                at += len;
            }
        }
    }

    fn check(&self, off: usize, len: usize, zone: Range<usize>) -> io::Result<()> {
        match off.checked_add(len) {
            Some(end) if off >= zone.start && end <= zone.end => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("access {off}+{len} outside {zone:?}"),
            )),
        }
    }

    /// Copies `data` to `off`. Callers hold the token for the zone and have
    /// checked the range with `check`.
    fn copy_in(&self, off: usize, data: &[u8]) {
        let _guard = match &self.backing {
            Backing::Heap { buf, .. } => Some(buf.lock.lock()),
            Backing::Map(_) | Backing::MapReadOnly(_) => None,
        };
        // SAFETY: the caller checked `off + data.len() <= len`; the target
        // bytes are in the zone of the caller's `&mut` token, which no shared
        // slice covers; `data` cannot overlap them for the same reason.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) }
    }

    fn fill_zero(&self, off: usize, len: usize) {
        let _guard = match &self.backing {
            Backing::Heap { buf, .. } => Some(buf.lock.lock()),
            Backing::Map(_) | Backing::MapReadOnly(_) => None,
        };
        // SAFETY: as in `copy_in`: checked range, exclusive zone.
        unsafe { std::ptr::write_bytes(self.ptr.add(off), 0, len) }
    }

    /// Any bytes of the region, for a token holder.
    fn token_read(&self, off: usize, len: usize) -> &[u8] {
        // SAFETY: callers checked the range; the token's `&self` borrow
        // excludes its `&mut` writes for the slice's lifetime, and other
        // zones' writers never touch these bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }
}

impl HeaderToken {
    /// Header-zone bytes `[off, off + len)`.
    pub(crate) fn read(&self, off: usize, len: usize) -> io::Result<&[u8]> {
        let r = &self.region;
        r.check(off, len, 0..r.records_start)?;
        Ok(r.token_read(off, len))
    }

    /// Writes header-zone bytes.
    pub(crate) fn write(&mut self, off: usize, data: &[u8]) -> io::Result<()> {
        let r = &self.region;
        r.check(off, data.len(), 0..r.records_start)?;
        r.copy_in(off, data);
        Ok(())
    }

    /// The region this token writes.
    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }
}

impl RecordsToken {
    /// Records-zone bytes, published or not.
    pub(crate) fn read(&self, off: usize, len: usize) -> io::Result<&[u8]> {
        let r = &self.region;
        r.check(off, len, r.records_start..r.len)?;
        if !self.staged.is_empty() {
            // The mapping would show the bytes as they were before staging.
            return Err(io::Error::other("read of a region with staged writes"));
        }
        Ok(r.token_read(off, len))
    }

    /// Switches writing through the file on or off, after writing any staged
    /// bytes (a heap region has no file and always stores through memory).
    /// Cheap when nothing is staged.
    pub(crate) fn set_write_through(&mut self, on: bool) -> io::Result<()> {
        self.flush()?;
        self.write_through = on && self.file.is_some();
        Ok(())
    }

    /// Writes unpublished bytes through the mapping (after any staged
    /// bytes, so they land in order); published bytes are immutable.
    pub(crate) fn write(&mut self, off: usize, data: &[u8]) -> io::Result<()> {
        self.flush()?;
        let r = &self.region;
        r.check(off, data.len(), r.published.load(Ordering::Relaxed)..r.len)?;
        r.copy_in(off, data);
        Ok(())
    }

    /// Writes `head` then `body` at `off`, then zeros up to `frame_len`: a
    /// record frame, with one range check and (when writing through) one
    /// staging step. Through the mapping the padding is left as it is (the
    /// bytes past the records are zero).
    #[inline]
    pub(crate) fn write_frame(&mut self, off: usize, head: &[u8], body: &[u8], frame_len: usize) -> io::Result<()> {
        let r = &self.region;
        let len = head.len() + body.len();
        r.check(off, frame_len.max(len), r.published.load(Ordering::Relaxed)..r.len)?;
        if !self.write_through {
            r.copy_in(off, head);
            r.copy_in(off + head.len(), body);
            return Ok(());
        }
        if self.staged_at + self.staged.len() != off {
            self.flush()?;
            self.staged_at = off;
        }
        self.staged.extend_from_slice(head);
        self.staged.extend_from_slice(body);
        self.staged.resize(self.staged.len() + frame_len.saturating_sub(len), 0);
        if self.staged.len() >= MAX_STAGED {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes staged bytes to the file.
    fn flush(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if let Some(file) = &self.file {
            file.write_all_at(&self.staged, self.staged_at as u64)?;
        }
        self.staged_at += self.staged.len();
        self.staged.clear();
        Ok(())
    }

    /// Zeroes unpublished bytes.
    pub(crate) fn zero(&mut self, off: usize, len: usize) -> io::Result<()> {
        self.flush()?;
        let r = &self.region;
        r.check(off, len, r.published.load(Ordering::Relaxed)..r.len)?;
        r.fill_zero(off, len);
        Ok(())
    }

    /// Makes `[records_start, end)` readable by everyone (Release), after
    /// writing any staged bytes to the file.
    #[inline]
    pub(crate) fn publish(&mut self, end: usize) -> io::Result<()> {
        self.flush()?;
        let r = &self.region;
        r.check(r.records_start, end - r.records_start.min(end), r.records_start..r.len)?;
        if end < r.published.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "published length cannot shrink",
            ));
        }
        r.published.store(end, Ordering::Release);
        Ok(())
    }

    /// The region this token writes.
    pub(crate) fn region(&self) -> &Arc<Region> {
        &self.region
    }
}

/// The live image of a simulated file: a fixed-size heap allocation that
/// regions point into. Writes take `lock` so that snapshots taken by the
/// simulated storage never race with them.
pub(crate) struct HeapBuf {
    ptr: *mut u8,
    len: usize,
    lock: Mutex<()>,
}

// SAFETY: the allocation is owned by the HeapBuf and freed only in Drop;
// mutation goes only through `Region` (token discipline, under `lock`).
unsafe impl Send for HeapBuf {}
// SAFETY: see `Send`; snapshots copy under `lock`.
unsafe impl Sync for HeapBuf {}

impl HeapBuf {
    /// A buffer holding `data`.
    pub(crate) fn new(data: Vec<u8>) -> Arc<HeapBuf> {
        let boxed: Box<[u8]> = data.into_boxed_slice();
        let len = boxed.len();
        let ptr = Box::into_raw(boxed) as *mut u8;
        Arc::new(HeapBuf {
            ptr,
            len,
            lock: Mutex::new(()),
        })
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A copy of `range` (clamped to the buffer), taken under the write lock.
    pub(crate) fn copy_out(&self, range: Range<usize>) -> Vec<u8> {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        let _guard = self.lock.lock();
        // SAFETY: `start..end` is inside the allocation; writers hold `lock`.
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), end - start) }.to_vec()
    }
}

impl Drop for HeapBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice in
        // `new` and are freed exactly once, here.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

/// Reserves disk blocks for `[0, len)` of `file` so that a full disk fails
/// here, with an error, rather than as SIGBUS on a later write through a
/// mapping of a sparse file.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: posix_fallocate only reads its integer arguments; the fd is
    // valid for the duration of the call because `file` is borrowed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate support: fall back to a sparse file;
        // safety.md documents the residual SIGBUS risk on those.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len as u64),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// The ranges of `[from, len)` of `file` that may hold data, as the file
/// system reports them (`SEEK_DATA`/`SEEK_HOLE`): holes and unwritten
/// extents without pages in the page cache read as zeros and are left out.
/// A file system that cannot tell reports everything as data.
pub(crate) fn data_ranges(file: &File, from: u64, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut at = from;
    let fd = file.as_raw_fd();
    while at < len {
        let Ok(off) = libc::off_t::try_from(at) else { break };
        // SAFETY: lseek only reads its integer arguments; the fd is valid
        // for the duration of the call because `file` is borrowed.
        let start = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if start < 0 {
            match io::Error::last_os_error().raw_os_error() {
                // No data at or after `at`.
                Some(libc::ENXIO) => break,
                // Not supported: everything may be data.
                _ => {
                    out.push((at, len));
                    break;
                }
            }
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        let (start, end) = (start as u64, if end < 0 { len } else { (end as u64).min(len) });
        if end <= start {
            break;
        }
        out.push((start, end));
        at = end;
    }
    Ok(out)
}
