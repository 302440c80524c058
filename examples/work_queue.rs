//! A work queue: a producer and a pool of worker threads in one queue
//! group. One worker dies midway without acking what it holds; its jobs
//! come back to the others after `ack_wait`. Every job is processed, and
//! the redelivered ones are reported.
//!
//! Run: `cargo run --release --example work_queue`

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spool::{Options, QueueOptions, StartAt, Store, SyncPolicy};

const JOBS: u64 = 2000;
const WORKERS: usize = 4;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never))?;
    let jobs = store.channel("jobs")?;
    let opts = QueueOptions::default().ack_wait(Duration::from_millis(200)).max_in_flight(8);

    let done = Arc::new(Mutex::new(BTreeSet::new()));
    let redelivered = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let member = jobs.queue_subscribe_with("resizers", StartAt::First, opts.clone())?;
        let (done, redelivered) = (Arc::clone(&done), Arc::clone(&redelivered));
        workers.push(std::thread::spawn(move || -> spool::Result<usize> {
            let mut handled = 0;
            loop {
                if done.lock().map(|d| d.len() as u64 == JOBS).unwrap_or(true) {
                    return Ok(handled);
                }
                let Some(job) = member.recv_timeout(Duration::from_millis(50))? else {
                    continue;
                };
                if w == 0 && handled == 25 {
                    // This worker "crashes": it leaves without acking the
                    // job it holds (nor anything else in flight).
                    println!("worker 0 dies holding job {}", job.seq());
                    return Ok(handled);
                }
                if job.redelivered() {
                    if let Ok(mut r) = redelivered.lock() {
                        r.push((job.seq(), job.delivery_count()));
                    }
                }
                member.ack(job.seq())?;
                if let Ok(mut d) = done.lock() {
                    d.insert(job.seq());
                }
                handled += 1;
            }
        }));
    }

    for i in 1..=JOBS {
        jobs.publish(format!("resize image {i}").as_bytes())?;
    }

    for (w, h) in workers.into_iter().enumerate() {
        let handled = h.join().map_err(|_| "worker panicked")??;
        println!("worker {w} handled {handled} jobs");
    }
    let done = done.lock().map_err(|_| "poisoned")?;
    let redelivered = redelivered.lock().map_err(|_| "poisoned")?;
    println!("{} of {JOBS} jobs processed", done.len());
    println!("redelivered after worker 0 died: {:?}", *redelivered);
    assert_eq!(done.len() as u64, JOBS);
    assert!(!redelivered.is_empty());
    Ok(())
}
