//! Two hand-written baselines that bound what is possible: a buffered
//! `write(2)` loop and a memcpy-into-mmap loop, both framing each record as
//! length + CRC-32 + payload. Opening either scans to the last valid record.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::engine::{Engine, STATE};

/// Size of the raw mmap file: sparse, so only what is written uses disk.
const MAP_LEN: u64 = 3 << 30;

/// Walks records from the start of `data`; returns (records, end offset,
/// payload bytes), stopping at the first record that does not check.
fn scan(data: &[u8]) -> (u64, usize, usize) {
    let (mut at, mut count, mut bytes) = (0usize, 0u64, 0usize);
    while let Some(head) = data.get(at..at + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        match data.get(at + 8..at + 8 + len) {
            Some(p) if len > 0 && crc32fast::hash(p) == crc => {
                count += 1;
                bytes += len;
                at += 8 + len;
            }
            _ => break,
        }
    }
    (count, at, bytes)
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

pub struct RawWrite {
    path: std::path::PathBuf,
    out: BufWriter<File>,
    offsets: File,
}

impl RawWrite {
    pub fn open(dir: &Path) -> RawWrite {
        let path = dir.join("log");
        let (_, end, _) = scan(&read_file(&path));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(end as u64).expect("cut the torn tail");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        std::io::Seek::seek(&mut out, std::io::SeekFrom::End(0)).expect("seek");
        let offsets = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("offsets"))
            .expect("open offsets");
        RawWrite { path, out, offsets }
    }
}

impl Engine for RawWrite {
    fn append(&mut self, batch: &[&[u8]], sync: bool) {
        for p in batch {
            self.out.write_all(&(p.len() as u32).to_le_bytes()).expect("write");
            self.out.write_all(&crc32fast::hash(p).to_le_bytes()).expect("write");
            self.out.write_all(p).expect("write");
        }
        if sync {
            self.out.flush().expect("flush");
            self.out.get_ref().sync_data().expect("fdatasync");
        }
    }
    fn read_all(&mut self) -> usize {
        self.out.flush().expect("flush");
        scan(&read_file(&self.path)).2
    }
    fn last(&mut self) -> u64 {
        self.out.flush().expect("flush");
        scan(&read_file(&self.path)).0
    }
    /// The position (byte offset + seq) and state go to a second file with
    /// one `pwrite` (+ `fdatasync`): the least a consumer could do.
    fn consume(&mut self, count: usize, every: usize, sync: bool) -> Option<usize> {
        self.out.flush().expect("flush");
        let data = read_file(&self.path);
        let (mut at, mut seen) = (0usize, 0usize);
        let mut record = [0u8; 8 + 8 + 64];
        while seen < count {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
            assert_eq!(crc32fast::hash(&data[at + 8..at + 8 + len]), crc);
            at += 8 + len;
            seen += 1;
            if seen % every == 0 {
                record[0..8].copy_from_slice(&(at as u64).to_le_bytes());
                record[8..16].copy_from_slice(&(seen as u64).to_le_bytes());
                record[16..].copy_from_slice(&STATE);
                self.offsets.write_all_at(&record, 0).expect("commit");
                if sync {
                    self.offsets.sync_data().expect("fdatasync");
                }
            }
        }
        Some(seen)
    }
}

pub struct RawMmap {
    map: memmap2::MmapMut,
    at: usize,
    synced: usize,
}

impl RawMmap {
    pub fn open(dir: &Path) -> RawMmap {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("log"))
            .expect("create");
        if file.metadata().expect("stat").len() < MAP_LEN {
            file.set_len(MAP_LEN).expect("size");
        }
        // SAFETY: the file is private to this benchmark and outlives the map.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map");
        let (_, at, _) = scan(&map);
        RawMmap { map, at, synced: at }
    }
}

impl Engine for RawMmap {
    fn append(&mut self, batch: &[&[u8]], sync: bool) {
        for p in batch {
            let at = self.at;
            self.map[at..at + 4].copy_from_slice(&(p.len() as u32).to_le_bytes());
            self.map[at + 4..at + 8].copy_from_slice(&crc32fast::hash(p).to_le_bytes());
            self.map[at + 8..at + 8 + p.len()].copy_from_slice(p);
            self.at += 8 + p.len();
        }
        if sync {
            let start = self.synced & !4095;
            self.map.flush_range(start, self.at - start).expect("msync");
            self.synced = self.at;
        }
    }
    fn read_all(&mut self) -> usize {
        scan(&self.map[..self.at]).2
    }
    fn last(&mut self) -> u64 {
        scan(&self.map[..self.at]).0
    }
    fn consume(&mut self, _count: usize, _every: usize, _sync: bool) -> Option<usize> {
        None
    }
}
