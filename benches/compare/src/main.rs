//! Side-by-side runs of the same workloads on spool and on baselines that
//! bound what is possible: a buffered `write` loop with CRC (+ `fdatasync`)
//! and a memcpy-into-mmap loop with CRC (+ `msync`). Prints a markdown table
//! and writes the same data as CSV (`compare.csv`).
//!
//! `cargo run --release --manifest-path benches/compare/Cargo.toml`
//!
//! Peers so far: SQLite (rusqlite, bundled), redb, fjall and LMDB (heed);
//! commitlog is to be added as a further `Engine`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

const MESSAGES: usize = 1_000_000;
const PAYLOAD: usize = 100;
const BATCH: usize = 1000;

/// One storage engine under test.
trait Engine {
    fn name(&self) -> &'static str;
    /// Appends one batch; with `sync`, durable before returning.
    fn append(&mut self, batch: &[&[u8]], sync: bool);
    /// Reads every message back; returns the payload bytes seen.
    fn read_all(&mut self) -> usize;
}

struct Spool {
    _dir: tempfile::TempDir,
    _store: spool::Store,
    ch: spool::Channel,
}

impl Spool {
    /// `Always` (every publish durable before it returns) for the synced
    /// workloads, `Never` (the OS writes back) otherwise.
    fn new(sync: bool) -> Spool {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = if sync {
            spool::SyncPolicy::Always
        } else {
            spool::SyncPolicy::Never
        };
        let opts = spool::Options::default().sync_policy(policy);
        let store = spool::Store::open(dir.path(), opts).expect("open");
        let ch = store.channel("bench").expect("channel");
        Spool {
            _dir: dir,
            _store: store,
            ch,
        }
    }
}

impl Engine for Spool {
    fn name(&self) -> &'static str {
        "spool"
    }
    fn append(&mut self, batch: &[&[u8]], _sync: bool) {
        self.ch.publish_batch(batch).expect("publish");
    }
    fn read_all(&mut self) -> usize {
        self.ch
            .read_from(1)
            .expect("read")
            .map(|m| m.expect("message").payload().len())
            .sum()
    }
}

/// SQLite through rusqlite: WAL, `synchronous=NORMAL` without per-batch
/// sync and `FULL` with it, a prepared insert, a transaction per batch.
struct Sqlite {
    _dir: tempfile::TempDir,
    conn: rusqlite::Connection,
    next: i64,
}

impl Sqlite {
    fn new(sync: bool) -> Sqlite {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).expect("open");
        let mode = if sync { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={mode};
             CREATE TABLE log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
        ))
        .expect("schema");
        Sqlite {
            _dir: dir,
            conn,
            next: 1,
        }
    }
}

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite (rusqlite, WAL)"
    }
    fn append(&mut self, batch: &[&[u8]], _sync: bool) {
        let tx = self.conn.transaction().expect("begin");
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO log (seq, payload) VALUES (?1, ?2)")
                .expect("prepare");
            for p in batch {
                insert.execute(rusqlite::params![self.next, p]).expect("insert");
                self.next += 1;
            }
        }
        tx.commit().expect("commit");
    }
    fn read_all(&mut self) -> usize {
        let mut stmt = self
            .conn
            .prepare("SELECT payload FROM log ORDER BY seq")
            .expect("prepare");
        let mut rows = stmt.query([]).expect("query");
        let mut total = 0;
        while let Some(row) = rows.next().expect("row") {
            total += row.get_ref(0).expect("payload").as_blob().expect("blob").len();
        }
        total
    }
}

const REDB_LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");

/// redb: a write transaction per batch, `Durability::None` without
/// per-batch sync and `Immediate` with it.
struct Redb {
    _dir: tempfile::TempDir,
    db: redb::Database,
    next: u64,
}

impl Redb {
    fn new() -> Redb {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("db.redb")).expect("create");
        Redb { _dir: dir, db, next: 1 }
    }
}

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn append(&mut self, batch: &[&[u8]], sync: bool) {
        let mut tx = self.db.begin_write().expect("begin");
        tx.set_durability(if sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        });
        {
            let mut table = tx.open_table(REDB_LOG).expect("table");
            for p in batch {
                table.insert(self.next, *p).expect("insert");
                self.next += 1;
            }
        }
        tx.commit().expect("commit");
    }
    fn read_all(&mut self) -> usize {
        use redb::ReadableTable;
        let tx = self.db.begin_read().expect("begin");
        let table = tx.open_table(REDB_LOG).expect("table");
        table
            .iter()
            .expect("iter")
            .map(|kv| kv.expect("entry").1.value().len())
            .sum()
    }
}

/// fjall: a write batch per message batch; `persist(SyncData)` with sync.
struct Fjall {
    _dir: tempfile::TempDir,
    keyspace: fjall::Keyspace,
    log: fjall::PartitionHandle,
    next: u64,
}

impl Fjall {
    fn new() -> Fjall {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyspace = fjall::Config::new(dir.path().join("fjall")).open().expect("open");
        let log = keyspace
            .open_partition("log", fjall::PartitionCreateOptions::default())
            .expect("partition");
        Fjall {
            _dir: dir,
            keyspace,
            log,
            next: 1,
        }
    }
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }
    fn append(&mut self, batch: &[&[u8]], sync: bool) {
        let mut b = self.keyspace.batch();
        for p in batch {
            b.insert(&self.log, self.next.to_be_bytes(), *p);
            self.next += 1;
        }
        b.commit().expect("commit");
        if sync {
            self.keyspace.persist(fjall::PersistMode::SyncData).expect("persist");
        }
    }
    fn read_all(&mut self) -> usize {
        self.log.iter().map(|kv| kv.expect("entry").1.len()).sum()
    }
}

/// LMDB through heed: a write transaction per batch; the environment
/// opened with NO_SYNC when not syncing per batch.
struct Lmdb {
    _dir: tempfile::TempDir,
    env: heed::Env,
    db: heed::Database<heed::types::U64<heed::byteorder::BE>, heed::types::Bytes>,
    next: u64,
}

impl Lmdb {
    fn new(sync: bool) -> Lmdb {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = heed::EnvOpenOptions::new();
        opts.map_size(4 << 30);
        if !sync {
            // SAFETY: only durability is relaxed; nothing else shares the env.
            unsafe { opts.flags(heed::EnvFlags::NO_SYNC) };
        }
        // SAFETY: the directory is private to this run and opened once.
        let env = unsafe { opts.open(dir.path()) }.expect("open");
        let mut wtxn = env.write_txn().expect("txn");
        let db = env.create_database(&mut wtxn, None).expect("db");
        wtxn.commit().expect("commit");
        Lmdb {
            _dir: dir,
            env,
            db,
            next: 1,
        }
    }
}

impl Engine for Lmdb {
    fn name(&self) -> &'static str {
        "lmdb (heed)"
    }
    fn append(&mut self, batch: &[&[u8]], _sync: bool) {
        let mut wtxn = self.env.write_txn().expect("txn");
        for p in batch {
            self.db
                .put_with_flags(&mut wtxn, heed::PutFlags::APPEND, &self.next, p)
                .expect("append");
            self.next += 1;
        }
        wtxn.commit().expect("commit");
    }
    fn read_all(&mut self) -> usize {
        let rtxn = self.env.read_txn().expect("txn");
        self.db
            .iter(&rtxn)
            .expect("iter")
            .map(|kv| kv.expect("entry").1.len())
            .sum()
    }
}

/// `write(2)` through a buffer: length + CRC + payload per record.
struct RawWrite {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    out: BufWriter<File>,
}

impl RawWrite {
    fn new() -> RawWrite {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let out = BufWriter::with_capacity(1 << 20, File::create(&path).expect("create"));
        RawWrite { _dir: dir, path, out }
    }
}

impl Engine for RawWrite {
    fn name(&self) -> &'static str {
        "raw write+crc"
    }
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
        let data = std::fs::read(&self.path).expect("read");
        let (mut at, mut total) = (0, 0);
        while at + 8 <= data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
            let p = &data[at + 8..at + 8 + len];
            assert_eq!(crc32fast::hash(p), crc);
            total += len;
            at += 8 + len;
        }
        total
    }
}

/// memcpy into a preallocated shared mapping: length + CRC + payload.
struct RawMmap {
    _dir: tempfile::TempDir,
    map: memmap2::MmapMut,
    at: usize,
    synced: usize,
}

impl RawMmap {
    fn new() -> RawMmap {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("log"))
            .expect("create");
        file.set_len((MESSAGES * (PAYLOAD + 8) + (1 << 20)) as u64)
            .expect("size");
        // SAFETY: the file is private to this benchmark and outlives the map.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map");
        RawMmap {
            _dir: dir,
            map,
            at: 0,
            synced: 0,
        }
    }
}

impl Engine for RawMmap {
    fn name(&self) -> &'static str {
        "raw mmap+crc"
    }
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
        let (mut at, mut total) = (0, 0);
        while at < self.at {
            let len = u32::from_le_bytes(self.map[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(self.map[at + 4..at + 8].try_into().expect("4 bytes"));
            assert_eq!(crc32fast::hash(&self.map[at + 8..at + 8 + len]), crc);
            total += len;
            at += 8 + len;
        }
        total
    }
}

struct Row {
    engine: &'static str,
    workload: &'static str,
    elapsed: Duration,
}

fn run(mut e: Box<dyn Engine>, rows: &mut Vec<Row>, sync: bool) {
    let payload = vec![0x42u8; PAYLOAD];
    let batch: Vec<&[u8]> = vec![&payload; BATCH];
    let start = Instant::now();
    for _ in 0..MESSAGES / BATCH {
        e.append(&batch, sync);
    }
    let workload = if sync {
        "append, sync per batch"
    } else {
        "append, no sync"
    };
    rows.push(Row {
        engine: e.name(),
        workload,
        elapsed: start.elapsed(),
    });
    if !sync {
        let start = Instant::now();
        assert_eq!(e.read_all(), MESSAGES * PAYLOAD);
        rows.push(Row {
            engine: e.name(),
            workload: "sequential read",
            elapsed: start.elapsed(),
        });
    }
}

fn main() -> std::io::Result<()> {
    let mut rows = Vec::new();
    for sync in [false, true] {
        run(Box::new(Spool::new(sync)), &mut rows, sync);
        run(Box::new(RawWrite::new()), &mut rows, sync);
        run(Box::new(RawMmap::new()), &mut rows, sync);
        run(Box::new(Sqlite::new(sync)), &mut rows, sync);
        run(Box::new(Redb::new()), &mut rows, sync);
        run(Box::new(Fjall::new()), &mut rows, sync);
        run(Box::new(Lmdb::new(sync)), &mut rows, sync);
    }
    let rate = |r: &Row| MESSAGES as f64 / r.elapsed.as_secs_f64();
    println!("{MESSAGES} x {PAYLOAD} B, batches of {BATCH}\n");
    println!("| workload | engine | M msg/s | MB/s | ratio to spool |");
    println!("|---|---|---|---|---|");
    let mut csv = File::create("compare.csv")?;
    writeln!(csv, "workload,engine,msg_per_s,mb_per_s,ratio_to_spool")?;
    for r in &rows {
        let spool = rows
            .iter()
            .find(|s| s.workload == r.workload && s.engine == "spool")
            .map_or(1.0, rate);
        let (msgs, mbs) = (rate(r), rate(r) * PAYLOAD as f64 / 1e6);
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.2} |",
            r.workload,
            r.engine,
            msgs / 1e6,
            mbs,
            msgs / spool
        );
        writeln!(
            csv,
            "{},{},{:.0},{:.1},{:.3}",
            r.workload,
            r.engine,
            msgs,
            mbs,
            msgs / spool
        )?;
    }
    Ok(())
}
