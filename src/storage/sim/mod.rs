//! A simulated file system for crash testing: spool's own crash tests run
//! on it, and so can your application's (open a store with
//! [`Options::simulated`](crate::Options::simulated)).
//!
//! Every file has a *live* image (what the running process sees) and a
//! *durable* image (what survived the last sync). Namespace changes (create,
//! rename, remove) are queued until a directory sync commits them in order.
//! [`SimStorage::power_loss`] produces the file system a machine could boot
//! with after a power cut: each 4 KiB page that differs between the live and
//! durable image independently keeps its old bytes, its new bytes, or a torn
//! mix of 512-byte sectors; a size change that was not synced may be lost; a
//! random prefix of the unsynced namespace changes survives.
//!
//! ```
//! use spool::{sim::SimStorage, Options, Store, SyncPolicy};
//! let sim = SimStorage::new();
//! let opts = Options::default().simulated(&sim).segment_size(1 << 16).sync_policy(SyncPolicy::Never);
//! let store = Store::open("/db", opts.clone())?;
//! let ch = store.channel("c")?;
//! ch.publish(b"durable")?;
//! ch.sync()?;
//! ch.publish(b"maybe")?;
//! let after = sim.power_loss(7);   // the store above keeps running on `sim`
//! let store = Store::open("/db", opts.simulated(&after))?;
//! assert!(store.channel("c")?.last_seq() >= 1);
//! # Ok::<(), spool::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::mmap::HeapBuf;

mod fs;

const PAGE: usize = 4096;
const SECTOR: usize = 512;

/// A simulated file system; clones share it.
#[derive(Clone)]
pub struct SimStorage {
    inner: Arc<SimInner>,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Default for SimStorage {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Clone, Debug)]
enum NsOp {
    Put(PathBuf, Node),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl NsOp {
    fn touches(&self, dir: &Path) -> bool {
        let parent_is = |p: &PathBuf| p.parent() == Some(dir);
        match self {
            NsOp::Put(p, _) | NsOp::Remove(p) => parent_is(p),
            NsOp::Rename(a, b) => parent_is(a) || parent_is(b),
        }
    }

    fn apply(&self, ns: &mut BTreeMap<PathBuf, Node>) {
        match self {
            NsOp::Put(p, n) => {
                ns.insert(p.clone(), *n);
            }
            NsOp::Remove(p) => {
                ns.remove(p);
            }
            NsOp::Rename(a, b) => {
                if let Some(n) = ns.remove(a) {
                    ns.insert(b.clone(), n);
                }
            }
        }
    }
}

enum Live {
    Bytes(Vec<u8>),
    Mapped(Arc<HeapBuf>),
}

struct Inode {
    live: Live,
    durable: Vec<u8>,
}

impl Inode {
    fn live_bytes(&self) -> Vec<u8> {
        match &self.live {
            Live::Bytes(b) => b.clone(),
            Live::Mapped(buf) => buf.copy_out(0..buf.len()),
        }
    }

    fn live_len(&self) -> usize {
        match &self.live {
            Live::Bytes(b) => b.len(),
            Live::Mapped(buf) => buf.len(),
        }
    }
}

#[derive(Default)]
struct State {
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    pending: Vec<NsOp>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    locks: HashSet<PathBuf>,
    syncs: u64,
    fail_sync_at: Option<u64>,
    /// Mutating storage calls made so far.
    ops: u64,
    /// The call at which the simulated process dies.
    crash_at: Option<u64>,
    space_limit: Option<u64>,
    /// The simulated machine's boot: kept by a process crash, new after a
    /// power loss.
    boot_id: u128,
}

/// Shared state of a [`SimStorage`].
pub(crate) struct SimInner {
    state: Mutex<State>,
}

impl fmt::Debug for SimInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SimStorage")
            .field("files", &st.live.len())
            .field("pending_namespace_ops", &st.pending.len())
            .finish()
    }
}

/// A boot id no simulated machine had before.
fn new_boot_id() -> u128 {
    static BOOTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    u128::from(BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) << 64 | 0x5157
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

/// SplitMix64: a small deterministic generator, so a seed reproduces a crash.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

impl SimStorage {
    /// An empty simulated file system.
    pub fn new() -> Self {
        let mut st = State {
            boot_id: new_boot_id(),
            ..State::default()
        };
        st.live.insert(PathBuf::from("/"), Node::Dir);
        st.durable.insert(PathBuf::from("/"), Node::Dir);
        SimStorage {
            inner: Arc::new(SimInner { state: Mutex::new(st) }),
        }
    }

    pub(crate) fn inner(&self) -> Arc<SimInner> {
        Arc::clone(&self.inner)
    }

    /// The file system after a power cut at this instant, chosen by `seed`.
    /// This storage is left untouched (a store running on it keeps going).
    pub fn power_loss(&self, seed: u64) -> SimStorage {
        let mut rng = Rng(seed);
        let st = self.inner.state.lock();
        let mut ns = st.durable.clone();
        let keep = rng.below(st.pending.len() as u64 + 1) as usize;
        for op in st.pending.iter().take(keep) {
            op.apply(&mut ns);
        }
        let mut images = HashMap::new();
        for node in ns.values() {
            if let Node::File(id) = node {
                if let Some(inode) = st.inodes.get(id) {
                    images.insert(*id, crash_image(&inode.durable, &inode.live_bytes(), &mut rng));
                }
            }
        }
        Self::booted(ns, images, st.next_inode, new_boot_id())
    }

    /// A file system that starts from `ns` and these file contents, all
    /// durable, on a machine running boot `boot_id`.
    fn booted(
        ns: BTreeMap<PathBuf, Node>,
        images: HashMap<u64, Vec<u8>>,
        next_inode: u64,
        boot_id: u128,
    ) -> SimStorage {
        let inodes = images
            .into_iter()
            .map(|(id, image)| {
                let inode = Inode {
                    live: Live::Bytes(image.clone()),
                    durable: image,
                };
                (id, inode)
            })
            .collect();
        let state = State {
            live: ns.clone(),
            durable: ns,
            inodes,
            next_inode,
            boot_id,
            ..State::default()
        };
        SimStorage {
            inner: Arc::new(SimInner {
                state: Mutex::new(state),
            }),
        }
    }

    /// The file system after the process died but the machine kept running:
    /// everything written (the live image and every namespace change)
    /// survives, as the page cache does after SIGKILL.
    pub fn process_crash(&self) -> SimStorage {
        let st = self.inner.state.lock();
        let images = st.inodes.iter().map(|(id, inode)| (*id, inode.live_bytes())).collect();
        // The machine kept running: same boot, the page cache intact.
        Self::booted(st.live.clone(), images, st.next_inode, st.boot_id)
    }

    /// Makes the `n`-th sync from now (0 = the next one) fail with an I/O
    /// error; `None` clears it.
    pub fn fail_sync_after(&self, n: Option<u64>) {
        let mut st = self.inner.state.lock();
        st.fail_sync_at = n.map(|n| st.syncs + n);
    }

    /// Kills the simulated process at its `n`-th mutating storage call from
    /// now (0 = the next one): that call and all later ones fail without
    /// effect, as if the process had died just before it. Use with
    /// [`power_loss`](Self::power_loss) or
    /// [`power_loss_choosing`](Self::power_loss_choosing) to explore crash
    /// points. `None` revives it.
    pub fn crash_after_ops(&self, n: Option<u64>) {
        let mut st = self.inner.state.lock();
        st.crash_at = n.map(|n| st.ops + n);
    }

    /// Mutating storage calls made so far.
    pub fn ops(&self) -> u64 {
        self.inner.state.lock().ops
    }

    /// How many 4 KiB pages differ between the live and durable images, and
    /// how many namespace changes are not yet durable: the choices a power
    /// loss makes.
    pub fn dirty(&self) -> (usize, usize) {
        let st = self.inner.state.lock();
        let mut pages = 0;
        for inode in st.inodes.values() {
            let (old, new) = (&inode.durable, inode.live_bytes());
            let len = old.len().max(new.len());
            for page in (0..len).step_by(PAGE) {
                let end = (page + PAGE).min(len);
                let differs = page_differs(old, &new, page..end);
                pages += usize::from(differs);
            }
        }
        (pages, st.pending.len())
    }

    /// A power loss with explicit choices instead of random ones: dirty page
    /// `i` (in the order `dirty` counts them) keeps its new bytes if bit `i`
    /// of `new_pages` is set, its old bytes otherwise; the first
    /// `namespace_ops` unsynced namespace changes survive. A file whose size
    /// changed keeps its new size.
    pub fn power_loss_choosing(&self, new_pages: u64, namespace_ops: usize) -> SimStorage {
        let st = self.inner.state.lock();
        let mut ns = st.durable.clone();
        for op in st.pending.iter().take(namespace_ops) {
            op.apply(&mut ns);
        }
        let mut bit = 0u32;
        let mut images = HashMap::new();
        // Same iteration order as `dirty`.
        for (id, inode) in &st.inodes {
            let (old, new) = (&inode.durable, inode.live_bytes());
            let len = new.len();
            let mut out = vec![0u8; len];
            for page in (0..len.max(old.len())).step_by(PAGE) {
                let end = (page + PAGE).min(len.max(old.len()));
                let differs = page_differs(old, &new, page..end);
                let take_new = !differs || (bit < 64 && new_pages & (1 << bit) != 0);
                if differs {
                    bit += 1;
                }
                let stop = end.min(len);
                if page < stop {
                    let src: &[u8] = if take_new { &new } else { old };
                    let have = stop.min(src.len());
                    if page < have {
                        out[page..have].copy_from_slice(&src[page..have]);
                    }
                }
            }
            if ns.values().any(|n| *n == Node::File(*id)) {
                images.insert(*id, out);
            }
        }
        Self::booted(ns, images, st.next_inode, new_boot_id())
    }

    /// Limits the total size of all files; creating or growing past it fails
    /// with "no space left on device". `None` removes the limit.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.inner.state.lock().space_limit = bytes;
    }

    /// Live bytes of a file, for tests that damage files on purpose.
    pub fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        self.inner.read_file(path.as_ref(), u64::MAX)
    }

    /// Replaces a file's live and durable content (creating it if needed), as
    /// if damage had happened on the medium. Fails while the file is mapped.
    pub fn overwrite(&self, path: impl AsRef<Path>, data: &[u8]) -> io::Result<()> {
        let path = path.as_ref();
        self.inner.write_file(path, data)?;
        self.inner.sync_file(path)?;
        if let Some(parent) = path.parent() {
            self.inner.sync_dir(parent)?;
        }
        Ok(())
    }

    /// Removes a file durably, as if it had been lost.
    pub fn remove(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        self.inner.remove_file(path)?;
        if let Some(parent) = path.parent() {
            self.inner.sync_dir(parent)?;
        }
        Ok(())
    }

    /// Paths of every file and directory, live view.
    pub fn list_all(&self) -> Vec<PathBuf> {
        self.inner.state.lock().live.keys().cloned().collect()
    }
}

/// Whether bytes `range` differ between two images (missing bytes are 0).
fn page_differs(old: &[u8], new: &[u8], range: Range<usize>) -> bool {
    // Slices compared whole (memcmp), the missing part of either as zeros:
    // crash tests call this for every page of every file, many times.
    let part = |img: &[u8]| -> (Vec<u8>, usize) {
        let end = range.end.min(img.len());
        let start = range.start.min(end);
        (img[start..end].to_vec(), end - start)
    };
    let (a, alen) = part(old);
    let (b, blen) = part(new);
    let common = alen.min(blen);
    a[..common] != b[..common] || a[common..].iter().any(|&x| x != 0) || b[common..].iter().any(|&x| x != 0)
}

/// One file's content after a power cut.
fn crash_image(old: &[u8], new: &[u8], rng: &mut Rng) -> Vec<u8> {
    let len = if old.len() == new.len() || rng.below(2) == 0 {
        new.len()
    } else {
        old.len()
    };
    let padded = |img: &[u8]| {
        let mut v = img.to_vec();
        v.resize(len, 0);
        v
    };
    let (old, new) = (padded(old), padded(new));
    let mut out = old.clone();
    for page in (0..len).step_by(PAGE) {
        let end = (page + PAGE).min(len);
        if old[page..end] == new[page..end] {
            continue;
        }
        let choice = rng.below(3);
        for sector in (page..end).step_by(SECTOR) {
            let take_new = match choice {
                0 => false,
                1 => true,
                _ => rng.below(2) == 0,
            };
            if take_new {
                let sector_end = (sector + SECTOR).min(end);
                out[sector..sector_end].copy_from_slice(&new[sector..sector_end]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::SimStorage;
    use crate::{Options, Store, SyncPolicy};

    /// Small enough to run under miri: exercises the heap regions (the
    /// unsafe code the simulation uses) from a writer and a reader thread.
    #[test]
    fn publish_read_and_power_loss_on_heap_regions() {
        let sim = SimStorage::new();
        let opts = Options::default()
            .simulated(&sim)
            .segment_size(4096)
            .index_interval(64)
            .sync_policy(SyncPolicy::Never);
        let store = Store::open("/s", opts.clone()).expect("open");
        let ch = store.channel("c").expect("channel");
        let reader = {
            let ch = ch.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while seen < 60 {
                    if let Some(m) = ch.read_from(seen + 1).expect("read").next() {
                        let m = m.expect("message");
                        assert_eq!(m.payload(), &[m.seq() as u8; 100][..]);
                        seen = m.seq();
                    }
                    std::thread::yield_now();
                }
            })
        };
        for i in 1..=60u64 {
            assert_eq!(ch.publish(&[i as u8; 100]).expect("publish"), i);
            if i == 30 {
                ch.sync().expect("sync");
            }
        }
        reader.join().expect("reader");
        let after = sim.power_loss(11);
        drop(ch);
        drop(store);
        let store = Store::open("/s", opts.simulated(&after)).expect("recover");
        let ch = store.channel("c").expect("channel");
        assert!(ch.last_seq() >= 30, "synced messages survive");
        for m in ch.read_from(1).expect("read") {
            let m = m.expect("message");
            assert_eq!(m.payload(), &[m.seq() as u8; 100][..]);
        }
    }
}
