//! Test harness: a real `nats-server` with JetStream on a free loopback
//! port and a temporary store directory, started and killed by the tests;
//! reading a stream back through async-nats.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use spool_relay::MsgId;

/// A `nats-server -js` child process; killed (SIGKILL) on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    starts: u32,
}

/// The server binary: `NATS_SERVER` or `nats-server` on the PATH (Debian's
/// package puts it in /usr/sbin). Missing, the test fails: never skipped.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin"]) {
        let candidate = Path::new(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server not found (PATH, /usr/sbin): the relay tests need a real server. \
         Install it with `apt-get install -y nats-server` (or set NATS_SERVER)."
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            starts: 0,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none());
        self.starts += 1;
        let log = self.dir.path().join(format!("server-{}.log", self.starts));
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.dir.path().join("js"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting nats-server: {e}"));
        self.child = Some(child);
        self.wait_ready(&log);
    }

    /// Waits (at most 20 s) until the server answers with its INFO line.
    fn wait_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                panic!("nats-server exited with {status}:\n{text}");
            }
            if let Ok(conn) = TcpStream::connect(("127.0.0.1", self.port)) {
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut line = String::new();
                if BufReader::new(conn.take(4096)).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client that reconnects quickly (tests restart the server).
pub async fn connect(url: &str) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 20).min(200)))
        .connect(url)
        .await
        .unwrap();
    let js = jetstream::new(client.clone());
    (client, js)
}

/// A file-storage stream with the default 2-minute duplicate window.
pub fn stream_config(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// One stored message, as read back.
#[derive(Debug, Clone)]
pub struct Stored {
    pub stream_seq: u64,
    pub id: Option<MsgId>,
    pub payload: Vec<u8>,
}

/// Reads every message of the stream, in stream order, through an
/// ephemeral pull consumer.
pub async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<Stored> {
    let mut stream = js.get_stream(name).await.unwrap();
    let count = stream.info().await.unwrap().state.messages as usize;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .unwrap_or_else(|_| panic!("read {} of {count} messages, then nothing for 10 s", out.len()))
            .expect("consumer ended")
            .expect("consumer error");
        let info = msg.info().unwrap();
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|v| MsgId::parse(v.as_str()));
        out.push(Stored {
            stream_seq: info.stream_sequence,
            id,
            payload: msg.payload.to_vec(),
        });
    }
    out
}

/// Asserts that `stored` holds channel seqs `1..=n` of channel incarnation
/// `channel_id` exactly once each, in order, with their payloads.
pub fn assert_exactly_once(stored: &[Stored], channel_id: u64, n: u64, payload: impl Fn(u64) -> Vec<u8>) {
    let seqs: Vec<u64> = stored
        .iter()
        .filter(|s| s.id.is_some_and(|id| id.channel == channel_id))
        .map(|s| s.id.unwrap().seq)
        .collect();
    let mut dups = seqs.clone();
    dups.sort_unstable();
    let before = dups.len();
    dups.dedup();
    assert_eq!(before, dups.len(), "{} duplicates in the stream", before - dups.len());
    assert_eq!(seqs.len() as u64, n, "the stream holds {} of {n} messages", seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(*s, i as u64 + 1, "out of order at stream position {i}");
    }
    for s in stored
        .iter()
        .filter(|s| s.id.is_some_and(|id| id.channel == channel_id))
    {
        assert_eq!(
            s.payload,
            payload(s.id.unwrap().seq),
            "payload of seq {}",
            s.id.unwrap().seq
        );
    }
}

/// The payload tests publish for seq `seq`: 100 bytes that name it.
pub fn payload(seq: u64) -> Vec<u8> {
    let mut p = format!("message {seq:>12} ").into_bytes();
    p.resize(100, b'.');
    p
}

/// Waits (bounded) until `f` holds.
pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A small deterministic generator (xorshift64*), seeded per run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `RELAY_SEED`, or the clock; printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("RELAY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("RELAY_SEED={seed}");
    seed
}

/// Awaits `fut` for at most 30 s (a test never hangs on a relay).
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after 30 s: {what}"))
}
