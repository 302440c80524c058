//! Publishes a few hundred thousand messages into a store under a temporary
//! directory, reads them back, reopens the store, and says how fast it went.
//!
//! Run: `cargo run --release --example quickstart`

use std::time::Instant;

use spool::{Options, Store, SyncPolicy};

const MESSAGES: u64 = 300_000;
const BATCH: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = Options::default().sync_policy(SyncPolicy::Never);
    let store = Store::open(dir.path(), opts.clone())?;
    let orders = store.channel("orders")?;
    let payload = [b'x'; 100];

    // Half one by one, half in batches of 100.
    let start = Instant::now();
    for _ in 0..MESSAGES / 2 {
        orders.publish(&payload)?;
    }
    let single = start.elapsed();
    let batch: Vec<&[u8]> = vec![&payload; BATCH];
    let start = Instant::now();
    for _ in 0..(MESSAGES / 2) / BATCH as u64 {
        orders.publish_batch(&batch)?;
    }
    let batched = start.elapsed();
    let start = Instant::now();
    orders.sync()?;
    let synced = start.elapsed();

    let start = Instant::now();
    let mut bytes = 0usize;
    for msg in orders.read_from(1)? {
        bytes += msg?.payload().len();
    }
    let read = start.elapsed();

    let first = orders.get(1)?;
    let midpoint = orders.seq_at_or_after(orders.get(MESSAGES / 2)?.timestamp())?;
    drop((orders, first));
    store.close()?;

    let start = Instant::now();
    let store = Store::open(dir.path(), opts)?;
    let reopened = start.elapsed();
    let orders = store.channel("orders")?;
    assert_eq!(orders.last_seq(), MESSAGES);

    let rate = |n: u64, d: std::time::Duration| n as f64 / d.as_secs_f64() / 1e6;
    println!("store: {}", dir.path().display());
    println!(
        "published {} x 100 B one by one:    {:>6.2} M msg/s",
        MESSAGES / 2,
        rate(MESSAGES / 2, single)
    );
    println!(
        "published {} x 100 B in batches of {BATCH}: {:>6.2} M msg/s",
        MESSAGES / 2,
        rate(MESSAGES / 2, batched)
    );
    println!("made durable (msync) in {:.1} ms", synced.as_secs_f64() * 1e3);
    println!(
        "read back {MESSAGES} messages ({bytes} B):  {:>6.2} M msg/s",
        rate(MESSAGES, read)
    );
    println!("first message at or after the midpoint's timestamp: seq {midpoint:?}");
    println!(
        "reopened in {:.2} ms, last seq {}",
        reopened.as_secs_f64() * 1e3,
        orders.last_seq()
    );
    Ok(())
}
