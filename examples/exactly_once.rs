//! Exactly-once processing: a consumer folds message values into a running
//! sum and commits the sum together with its position in one atomic step,
//! while a producer thread keeps publishing. Kill it at any moment and run
//! it again: the committed sum is always the sum of exactly the messages up
//! to the committed position.
//!
//! Run: `cargo run --release --example exactly_once -- [DIR] [MESSAGES]`
//! (defaults: a temporary directory, 20000 messages). `tests/exactly_once.rs`
//! runs it as a child process and SIGKILLs it over and over.

use std::time::Duration;

use spool::{Options, StartAt, Store, SyncPolicy};

/// The value carried by message `seq` (what the consumer sums).
fn value(seq: u64) -> u64 {
    seq % 1000 + 1
}

fn decode(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let temp;
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let total: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(20_000);

    let store = Store::open(
        &dir,
        Options::default().sync_policy(SyncPolicy::Interval(Duration::from_millis(5))),
    )?;
    let numbers = store.channel("numbers")?;

    let producer = {
        let numbers = numbers.clone();
        std::thread::spawn(move || -> spool::Result<()> {
            while numbers.last_seq() < total {
                let seq = numbers.last_seq() + 1;
                numbers.publish(&value(seq).to_le_bytes())?;
                if seq % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Ok(())
        })
    };

    let summer = numbers.subscribe("summer", StartAt::First)?;
    let (mut position, state) = summer.committed();
    let mut sum = decode(&state);
    println!("resuming after seq {position} with sum {sum}");
    while position < total {
        let msg = summer.recv()?;
        sum += decode(msg.payload());
        position = msg.seq();
        // Position and sum in one atomic step: no double count, no skip.
        summer.commit(position, &sum.to_le_bytes())?;
    }
    producer.join().map_err(|_| "producer panicked")??;
    let expected: u64 = (1..=total).map(value).sum();
    println!("done: committed seq {position}, sum {sum} (expected {expected})");
    assert_eq!(sum, expected);
    Ok(())
}
