//! SQLite through rusqlite (bundled): WAL, `synchronous=FULL` for the
//! durable configuration and `NORMAL` otherwise, prepared statements, a
//! transaction per batch; consumer offsets in a second table.

use std::path::Path;

use crate::engine::{Engine, STATE};

pub struct Sqlite {
    conn: rusqlite::Connection,
    next: i64,
}

impl Sqlite {
    pub fn open(dir: &Path, sync: bool) -> Sqlite {
        let conn = rusqlite::Connection::open(dir.join("db.sqlite")).expect("open");
        let mode = if sync { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={mode};
             CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS offsets (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, state BLOB NOT NULL);"
        ))
        .expect("schema");
        let last: i64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM log", [], |r| r.get(0))
            .expect("last");
        Sqlite { conn, next: last + 1 }
    }
}

impl Engine for Sqlite {
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
    fn last(&mut self) -> u64 {
        let last: i64 = self
            .conn
            .query_row("SELECT seq FROM log ORDER BY seq DESC LIMIT 1", [], |r| r.get(0))
            .expect("last");
        last as u64
    }
    fn consume(&mut self, count: usize, every: usize, _sync: bool) -> Option<usize> {
        let mut pos: i64 = 0;
        let mut seen = 0;
        while seen < count {
            let tx = self.conn.transaction().expect("begin");
            {
                let mut select = tx
                    .prepare_cached("SELECT seq, payload FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                    .expect("prepare");
                let mut rows = select.query(rusqlite::params![pos, every as i64]).expect("query");
                while let Some(row) = rows.next().expect("row") {
                    pos = row.get(0).expect("seq");
                    assert!(!row.get_ref(1).expect("payload").as_blob().expect("blob").is_empty());
                    seen += 1;
                }
                let mut upsert = tx
                    .prepare_cached("INSERT OR REPLACE INTO offsets (name, seq, state) VALUES ('consumer', ?1, ?2)")
                    .expect("prepare");
                upsert
                    .execute(rusqlite::params![pos, &STATE[..]])
                    .expect("commit position");
            }
            tx.commit().expect("commit");
        }
        Some(seen)
    }
}
