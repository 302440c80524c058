//! An async pipeline on one tokio runtime, no thread blocked on spool:
//!
//! - a **producer** task publishes orders in batches and awaits their
//!   durability (`publish_batch_durable_async`: the fdatasync runs on
//!   spool's background thread, shared by every waiter);
//! - a **consumer** task reads them as a stream, keeps a running total,
//!   forwards each order to a `shipping` channel, awaits the durability of
//!   what it forwarded (`synced_through`), and commits its position
//!   together with the total (so a restart resumes exactly where it
//!   stopped, with the matching total);
//! - a **queue group** of worker tasks shares the shipping jobs: each job
//!   goes to one worker and is acked.
//!
//! Everything ends by itself: the producer ends the orders with an empty
//! message, the consumer then publishes one empty "stop" job per worker,
//! and a worker stops at the first one it gets (so each gets one). The
//! results are checked at the end, after reopening the store.
//!
//! Run: `cargo run --release --example async_pipeline`

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use spool::{Channel, Options, QueueMember, QueueOptions, StartAt, Store, Subscriber, SyncPolicy};

const ORDERS: u64 = 20_000;
const BATCH: u64 = 100;
const WORKERS: usize = 3;
/// The consumer commits every this many orders (and at the end).
const COMMIT_EVERY: u64 = 1_000;

/// Order `i` costs `amount(i)` cents.
fn amount(i: u64) -> u64 {
    100 + i % 900
}

/// Publishes the orders in durable batches, then the end marker.
async fn produce(orders: Channel) -> spool::Result<()> {
    for first in (0..ORDERS).step_by(BATCH as usize) {
        let batch: Vec<[u8; 16]> = (first..first + BATCH)
            .map(|i| {
                let mut p = [0u8; 16];
                p[..8].copy_from_slice(&i.to_le_bytes());
                p[8..].copy_from_slice(&amount(i).to_le_bytes());
                p
            })
            .collect();
        // Appended now; the await lasts until a sync covers the batch.
        orders.publish_batch_durable_async(&batch).await?;
    }
    orders.publish_durable_async(b"").await?;
    Ok(())
}

/// Totals the orders, forwards each as a shipping job, commits position +
/// total. Returns the total.
async fn consume(totals: Subscriber, shipping: Channel) -> spool::Result<u64> {
    let (_, state) = totals.committed();
    let mut total = match state.len() {
        8 => u64::from_le_bytes(state[..].try_into().unwrap_or_default()),
        _ => 0,
    };
    let mut stream = totals.stream();
    let mut forwarded = shipping.last_seq();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        let end = msg.payload().is_empty();
        if !end {
            let p = msg.payload();
            let (id, cents) = (&p[..8], &p[8..]);
            total += u64::from_le_bytes(cents.try_into().unwrap_or_default());
            forwarded = shipping.publish(id)?; // written, not durable yet
        }
        if end || msg.seq() % COMMIT_EVERY == 0 {
            // The jobs forwarded so far become durable before the position
            // that says they were forwarded is committed: a power cut never
            // leaves a committed order whose job is lost. The sync runs on
            // spool's background thread; this task just waits.
            shipping.synced_through(forwarded).await?;
            totals.commit(msg.seq(), &total.to_le_bytes())?;
        }
        if end {
            for _ in 0..WORKERS {
                shipping.publish(b"")?;
            }
            return Ok(total);
        }
    }
    Err(spool::Error::Closed)
}

/// Ships jobs until it gets a stop job. Returns the order ids it shipped.
async fn work(member: QueueMember) -> spool::Result<Vec<u64>> {
    let mut shipped = Vec::new();
    loop {
        // A receive raced against a timer: when the timer wins, the
        // receive future is dropped, which loses nothing (cancellation
        // safety) -- the next receive gets the same job.
        let job = tokio::select! {
            job = member.recv_async() => job?,
            _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
        };
        assert_eq!(job.delivery_count(), 1, "no job is handed out twice");
        member.ack(job.seq())?;
        if job.payload().is_empty() {
            return Ok(shipped);
        }
        shipped.push(u64::from_le_bytes(job.payload().try_into().unwrap_or_default()));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // `Never`: plain publishes return once written; durability is awaited
    // explicitly where it matters (durable publishes, synced_through).
    let opts = Options::default().sync_policy(SyncPolicy::Never);
    let store = Store::open(dir.path(), opts.clone())?;
    let orders = store.channel("orders")?;
    let shipping = store.channel("shipping")?;
    let start = Instant::now();

    let totals = orders.subscribe("totals", StartAt::First)?;
    // Long ack wait: nothing is redelivered in this run.
    let queue = QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(16);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| shipping.queue_subscribe_with("shippers", StartAt::First, queue.clone()))
        .collect::<spool::Result<_>>()?;

    let producer = tokio::spawn(produce(orders.clone()));
    let consumer = tokio::spawn(consume(totals, shipping.clone()));
    let workers: Vec<_> = workers.into_iter().map(|m| tokio::spawn(work(m))).collect();

    producer.await??;
    let total = consumer.await??;
    let mut shipped = Vec::new();
    for (w, h) in workers.into_iter().enumerate() {
        let ids = h.await??;
        println!("worker {w} shipped {} orders", ids.len());
        shipped.extend(ids);
    }
    println!(
        "{ORDERS} orders produced, totalled and shipped in {:.0?}; total {total} cents",
        start.elapsed()
    );

    // Every order shipped exactly once.
    let unique: BTreeSet<u64> = shipped.iter().copied().collect();
    assert_eq!(shipped.len() as u64, ORDERS, "each order shipped once");
    assert_eq!(unique, (0..ORDERS).collect::<BTreeSet<u64>>());
    assert_eq!(total, (0..ORDERS).map(amount).sum::<u64>());

    // The consumer's position and total come back together after a
    // restart; the shipping group acked everything.
    store.close()?;
    let store = Store::open(dir.path(), opts)?;
    let orders = store.channel("orders")?;
    let (position, state) = orders.subscribe("totals", StartAt::First)?.committed();
    assert_eq!(position, ORDERS + 1, "committed through the end marker");
    assert_eq!(state[..], total.to_le_bytes());
    let shipping = store.channel("shipping")?;
    let group = shipping.queue_subscribe("shippers", StartAt::First)?;
    assert_eq!(group.ack_floor(), ORDERS + WORKERS as u64);
    assert!(group.try_recv()?.is_none(), "nothing left to ship");
    println!("after a restart: position {position}, total {total} cents, every job acked");
    store.close()?;
    Ok(())
}
