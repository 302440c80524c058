//! A work queue: a producer and a pool of worker threads in one queue
//! group. Deterministic whatever the machine's load:
//!
//! - worker 0 joins first, takes five jobs and "dies" without acking them:
//!   they go back to the group at once, marked redelivered;
//! - one job is flaky (its first attempt fails: `nak`, handed out again at
//!   once) and one is poison (it always fails): after `max_deliveries(3)`
//!   it goes to the dead-letter channel, payload unchanged;
//! - the other workers ack in batches with `ack_through`.
//!
//! Run: `cargo run --release --example work_queue`

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spool::{DeadLetter, Options, QueueOptions, StartAt, Store, SyncPolicy};

const JOBS: u64 = 2000;
const WORKERS: usize = 3;
const FLAKY: u64 = 700;
const POISON: u64 = 1234;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never))?;
    let jobs = store.channel("jobs")?;
    let dead = store.channel("jobs.dead")?;
    let opts = QueueOptions::default()
        .ack_wait(Duration::from_secs(30))
        .max_in_flight(64)
        .max_deliveries(3)
        .dead_letter(&dead);
    for i in 1..=JOBS {
        jobs.publish(format!("resize image {i}").as_bytes())?;
    }

    // Worker 0 takes five jobs and dies holding them.
    let doomed = jobs.queue_subscribe_with("resizers", StartAt::First, opts.clone())?;
    let held: Vec<u64> = (0..5)
        .map(|_| doomed.recv().map(|j| j.seq()))
        .collect::<spool::Result<_>>()?;
    println!("worker 0 dies holding jobs {held:?}");
    drop(doomed);

    let done = Arc::new(Mutex::new(BTreeSet::new()));
    let redelivered = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 1..=WORKERS {
        let member = jobs.queue_subscribe_with("resizers", StartAt::First, opts.clone())?;
        let (done, redelivered) = (Arc::clone(&done), Arc::clone(&redelivered));
        workers.push(std::thread::spawn(move || -> spool::Result<usize> {
            let (mut handled, mut batch) = (0, Vec::new());
            // Until every job is acked or given up (the floor covers both).
            while member.ack_floor() < JOBS {
                let Some(job) = member.recv_timeout(Duration::from_millis(20))? else {
                    // Nothing for now: ack what this worker finished.
                    if let Some(&last) = batch.last() {
                        member.ack_through(last)?;
                        done.lock().map_err(|_| spool::Error::Closed)?.extend(batch.drain(..));
                    }
                    continue;
                };
                if job.redelivered() {
                    redelivered
                        .lock()
                        .map_err(|_| spool::Error::Closed)?
                        .push((job.seq(), job.delivery_count()));
                }
                let fails = job.seq() == POISON || (job.seq() == FLAKY && job.delivery_count() == 1);
                if fails {
                    member.nak(job.seq())?;
                    continue;
                }
                batch.push(job.seq());
                handled += 1;
                if batch.len() == 50 {
                    member.ack_through(job.seq())?;
                    done.lock().map_err(|_| spool::Error::Closed)?.extend(batch.drain(..));
                }
            }
            Ok(handled)
        }));
    }
    for (w, h) in workers.into_iter().enumerate() {
        let handled = h.join().map_err(|_| "worker panicked")??;
        println!("worker {} handled {handled} jobs", w + 1);
    }
    let done = done.lock().map_err(|_| "poisoned")?;
    let mut redelivered = redelivered.lock().map_err(|_| "poisoned")?.clone();
    redelivered.sort_unstable();
    let letters: Vec<DeadLetter> = dead
        .read_from(1)?
        .map(|m| DeadLetter::from_message(m?))
        .collect::<spool::Result<_>>()?;
    println!("{} of {JOBS} jobs processed", done.len());
    println!("redelivered (seq, delivery count): {redelivered:?}");
    for l in &letters {
        println!(
            "dead letter: {}#{} after {} deliveries ({:?}): {:?}",
            l.channel(),
            l.seq(),
            l.delivery_count(),
            l.reason(),
            String::from_utf8_lossy(l.payload())
        );
    }
    assert_eq!(done.len() as u64, JOBS - 1, "every job but the poison one");
    assert!(
        held.iter().all(|s| redelivered.iter().any(|(r, _)| r == s)),
        "worker 0's jobs came back"
    );
    assert!(redelivered.contains(&(FLAKY, 2)));
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].seq(), letters[0].delivery_count()), (POISON, 3));
    Ok(())
}
