//! Work-queue operations of queue groups, each across a restart: nak,
//! nak_with_delay, in_progress, term, batched acks, max_deliveries into a
//! dead-letter channel, durable delivery counts (after a clean close: the
//! exact counts; after a crash: at most one more than the truth).

mod common;

use std::time::{Duration, Instant};

use common::{open_sim, small};
use spool::sim::SimStorage;
use spool::{Channel, DeadLetter, DeadReason, Error, Options, QueueMember, QueueOptions, StartAt, Store, SyncPolicy};

fn opts() -> Options {
    small(64 << 10)
}

fn long() -> QueueOptions {
    QueueOptions::default()
        .ack_wait(Duration::from_secs(600))
        .max_in_flight(100)
}

fn publish(ch: &Channel, n: u64) {
    for i in 1..=n {
        ch.publish(format!("job {i}").as_bytes()).unwrap();
    }
}

/// A crash of the process: every page written survives, nothing more.
fn process_crash(sim: &SimStorage) -> SimStorage {
    let (pages, ns) = sim.dirty();
    assert!(
        pages <= 64,
        "the workload stays within what the image can keep ({pages} pages)"
    );
    sim.power_loss_choosing(u64::MAX, ns)
}

fn recv(m: &QueueMember) -> spool::Delivery {
    m.recv_timeout(Duration::from_secs(30)).unwrap().expect("a delivery")
}

#[test]
fn nak_hands_a_message_back_at_once_and_a_restart_keeps_its_count() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        let ch = store.channel("jobs").unwrap();
        publish(&ch, 3);
        let a = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
        let b = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
        let d = recv(&a);
        assert_eq!((d.seq(), d.delivery_count()), (1, 1));
        a.nak(1).unwrap();
        assert!(matches!(a.nak(1), Err(Error::NotDelivered { seq: 1 })), "no longer a's");
        // The lowest seq due again goes first, to any member.
        let again = recv(&b);
        assert_eq!((again.seq(), again.delivery_count(), again.redelivered()), (1, 2, true));
        b.nak(1).unwrap();
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    let m = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
    let got: Vec<(u64, u32)> = (0..3)
        .map(|_| recv(&m))
        .map(|d| (d.seq(), d.delivery_count()))
        .collect();
    assert_eq!(got, [(1, 3), (2, 1), (3, 1)], "exact counts after a clean close");
    assert_eq!(m.ack_through(3).unwrap(), 3);
    assert_eq!(m.ack_floor(), 3);
}

#[test]
fn nak_with_delay_waits_and_a_restart_ends_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        let ch = store.channel("jobs").unwrap();
        publish(&ch, 2);
        let m = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
        let d = recv(&m);
        let nakked = Instant::now();
        m.nak_with_delay(d.seq(), Duration::from_millis(50)).unwrap();
        // Not before its delay: the next one is 2, then the wait.
        assert_eq!(recv(&m).seq(), 2);
        let again = recv(&m);
        assert!(
            nakked.elapsed() >= Duration::from_millis(50),
            "came back after its delay"
        );
        assert_eq!((again.seq(), again.delivery_count()), (1, 2));
        m.nak_with_delay(1, Duration::from_secs(3600)).unwrap();
        assert!(m.try_recv().unwrap().is_none(), "delayed for an hour");
        assert!(matches!(
            m.nak_with_delay(2, Duration::from_secs(25 * 3600)),
            Err(Error::InvalidOption { .. })
        ));
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    let m = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
    let mut got: Vec<(u64, u32)> = (0..2)
        .map(|_| recv(&m))
        .map(|d| (d.seq(), d.delivery_count()))
        .collect();
    got.sort_unstable();
    assert_eq!(got, [(1, 3), (2, 2)], "the restart ended the delay; counts kept");
}

#[test]
fn in_progress_restarts_the_ack_wait_and_a_restart_redelivers() {
    // Timing-free: what is checked is when the redelivery came, measured,
    // against when in_progress ran; if this thread was too slow to call
    // in_progress in time, the round is tried again with a longer wait.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    publish(&ch, 1);
    let mut checked = false;
    for round in 0..6u32 {
        let wait = Duration::from_millis(100 << round);
        let o = long().ack_wait(wait);
        let a = ch
            .queue_subscribe_with(&format!("g{round}"), StartAt::First, o.clone())
            .unwrap();
        let b = ch
            .queue_subscribe_with(&format!("g{round}"), StartAt::First, o)
            .unwrap();
        recv(&a);
        std::thread::sleep(wait / 2);
        let before = Instant::now();
        if a.in_progress(1).is_err() {
            continue; // expired already: this thread was descheduled
        }
        let again = recv(&b);
        assert_eq!(again.seq(), 1);
        assert!(
            before.elapsed() >= wait,
            "redelivered {:?} after in_progress, before the restarted ack_wait {wait:?}",
            before.elapsed()
        );
        assert!(
            matches!(a.in_progress(1), Err(Error::NotDelivered { seq: 1 })),
            "now b's"
        );
        checked = true;
        break;
    }
    assert!(checked, "in_progress was never in time");
    // Across a restart: a message in progress comes back, counted.
    let m = ch.queue_subscribe_with("r", StartAt::First, long()).unwrap();
    recv(&m);
    m.in_progress(1).unwrap();
    drop(m);
    drop(ch);
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let m = store
        .channel("jobs")
        .unwrap()
        .queue_subscribe_with("r", StartAt::First, long())
        .unwrap();
    let d = recv(&m);
    assert_eq!((d.seq(), d.delivery_count()), (1, 2));
}

#[test]
fn term_is_an_ack_counted_apart_and_durable_at_once_under_always() {
    let sim = SimStorage::new();
    let o = opts().sync_policy(SyncPolicy::Always);
    let store = open_sim(&sim, o.clone()).unwrap();
    let ch = store.channel("jobs").unwrap();
    publish(&ch, 3);
    let m = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
    let d = recv(&m);
    m.term(d.seq()).unwrap();
    assert!(matches!(m.term(d.seq()), Err(Error::NotDelivered { .. })));
    assert_eq!((m.ack_floor(), m.terminated()), (1, 1));
    // A power loss right after: the term is durable.
    let after = sim.power_loss(7);
    let store = open_sim(&after, o).unwrap();
    let m = store
        .channel("jobs")
        .unwrap()
        .queue_subscribe_with("w", StartAt::First, long())
        .unwrap();
    assert_eq!((m.ack_floor(), m.terminated()), (1, 1));
    assert_eq!(recv(&m).seq(), 2, "the terminated message is not delivered again");
}

#[test]
fn acks_wait_for_the_next_sync_under_never() {
    let sim = SimStorage::new();
    let store = open_sim(&sim, opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    publish(&ch, 4);
    let m = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
    for _ in 0..4 {
        recv(&m);
    }
    m.ack_many(&[1, 2]).unwrap();
    assert!(matches!(m.ack_many(&[3, 9]), Err(Error::NotDelivered { seq: 9 })));
    assert_eq!(m.ack_floor(), 2, "nothing of a refused ack_many is acked");
    store.sync().unwrap();
    m.ack(3).unwrap();
    // A crash now: the acks before the sync are there, the one after it
    // is not (its message comes back, marked redelivered).
    let crashed = process_crash(&sim);
    let store = open_sim(&crashed, opts()).unwrap();
    let m = store
        .channel("jobs")
        .unwrap()
        .queue_subscribe_with("w", StartAt::First, long())
        .unwrap();
    assert_eq!(m.ack_floor(), 2);
    let d = recv(&m);
    assert_eq!((d.seq(), d.delivery_count()), (3, 2));
}

#[test]
fn delivery_counts_survive_a_crash_as_upper_bounds() {
    let sim = SimStorage::new();
    let store = open_sim(&sim, opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    publish(&ch, 5);
    let m = ch.queue_subscribe_with("w", StartAt::First, long()).unwrap();
    // seq 1: three deliveries; seq 2: one, still out; 3..5 never handed out.
    for _ in 0..2 {
        let d = recv(&m);
        assert_eq!(d.seq(), 1);
        m.nak(1).unwrap();
    }
    assert_eq!(recv(&m).delivery_count(), 3);
    assert_eq!(recv(&m).seq(), 2);
    let crashed = process_crash(&sim);
    let store = open_sim(&crashed, opts()).unwrap();
    let m = store
        .channel("jobs")
        .unwrap()
        .queue_subscribe_with("w", StartAt::First, long())
        .unwrap();
    let mut got = Vec::new();
    while let Some(d) = m.try_recv().unwrap() {
        got.push((d.seq(), d.delivery_count()));
    }
    got.sort_unstable();
    let truth = [(1, 4), (2, 2), (3, 1), (4, 1), (5, 1)];
    assert_eq!(got.len(), truth.len());
    for ((seq, count), (tseq, tcount)) in got.iter().zip(truth) {
        assert_eq!(*seq, tseq);
        assert!(
            *count >= tcount && *count <= tcount + 1,
            "seq {seq}: count {count}, true {tcount}"
        );
    }
    assert_eq!(got[0], (1, 4), "a redelivered message's count is exact");
    assert_eq!(got[1], (2, 2), "so is a delivered one's");
}

fn dead_letters(dead: &Channel) -> Vec<DeadLetter> {
    dead.read_from(1)
        .unwrap()
        .map(|m| DeadLetter::from_message(m.unwrap()).unwrap())
        .collect()
}

#[test]
fn a_poison_message_goes_to_the_dead_letter_channel_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        let (ch, dead) = (store.channel("jobs").unwrap(), store.channel("dead").unwrap());
        publish(&ch, 3);
        let o = long().max_deliveries(3).dead_letter(&dead);
        let m = ch.queue_subscribe_with("w", StartAt::First, o).unwrap();
        for n in 1..=2 {
            let d = recv(&m);
            assert_eq!((d.seq(), d.delivery_count()), (1, n));
            m.nak(1).unwrap();
        }
        store.close().unwrap();
    }
    // The third delivery comes after a restart.
    let store = Store::open(dir.path(), opts()).unwrap();
    let (ch, dead) = (store.channel("jobs").unwrap(), store.channel("dead").unwrap());
    let o = long().max_deliveries(3).dead_letter(&dead);
    let m = ch.queue_subscribe_with("w", StartAt::First, o.clone()).unwrap();
    let d = recv(&m);
    assert_eq!((d.seq(), d.delivery_count()), (1, 3));
    m.nak(1).unwrap();
    assert_eq!(m.dead_lettered(), 1);
    let letters = dead_letters(&dead);
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!((l.seq(), l.delivery_count(), l.reason()), (1, 3, DeadReason::Nak));
    assert_eq!((l.channel(), l.channel_id(), l.group()), ("jobs", ch.id(), "w"));
    assert_eq!(l.payload(), b"job 1", "payload unchanged");
    let rest: Vec<u64> = (0..2).map(|_| recv(&m).seq()).collect();
    assert_eq!(rest, [2, 3], "the poison message is not handed out again");
    m.ack_through(3).unwrap();
    assert_eq!(m.ack_floor(), 3);
    drop(m);
    let m = ch.queue_subscribe_with("w", StartAt::First, o).unwrap();
    assert!(m.try_recv().unwrap().is_none());
    assert_eq!(dead_letters(&dead).len(), 1);
    assert!(matches!(
        DeadLetter::from_message(ch.get(1).unwrap()),
        Err(Error::NotDeadLetter { seq: 1 })
    ));
}

#[test]
fn an_expired_message_is_dead_lettered_and_wakes_nobody_for_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let (ch, dead) = (store.channel("jobs").unwrap(), store.channel("dead").unwrap());
    publish(&ch, 1);
    let o = long()
        .ack_wait(Duration::from_millis(5))
        .max_deliveries(2)
        .dead_letter(&dead);
    let m = ch.queue_subscribe_with("w", StartAt::First, o).unwrap();
    assert_eq!(recv(&m).delivery_count(), 1);
    assert_eq!(recv(&m).delivery_count(), 2);
    // Bounded: the second expiry gives it up.
    for _ in 0..1000 {
        if m.dead_lettered() == 1 {
            break;
        }
        assert!(m.recv_timeout(Duration::from_millis(20)).unwrap().is_none());
    }
    assert_eq!(m.dead_lettered(), 1);
    assert_eq!(dead_letters(&dead)[0].reason(), DeadReason::AckWait);
    assert_eq!(m.ack_floor(), 1);
}

#[test]
fn a_crash_after_the_dead_letter_and_before_the_record_publishes_nothing_twice() {
    // Under Never the ack of a dead letter waits for the next sync: a
    // crash before it loses the record but not the letter, and the group
    // finds its letter at open.
    let sim = SimStorage::new();
    let store = open_sim(&sim, opts()).unwrap();
    let (ch, dead) = (store.channel("jobs").unwrap(), store.channel("dead").unwrap());
    publish(&ch, 2);
    let o = long().max_deliveries(1).dead_letter(&dead);
    let m = ch.queue_subscribe_with("w", StartAt::First, o).unwrap();
    recv(&m);
    m.nak(1).unwrap();
    assert_eq!(dead_letters(&dead).len(), 1);
    let crashed = process_crash(&sim);
    let store = open_sim(&crashed, opts()).unwrap();
    let (ch, dead) = (store.channel("jobs").unwrap(), store.channel("dead").unwrap());
    let o = long().max_deliveries(1).dead_letter(&dead);
    let m = ch.queue_subscribe_with("w", StartAt::First, o).unwrap();
    assert_eq!((m.ack_floor(), m.dead_lettered()), (1, 1));
    assert_eq!(recv(&m).seq(), 2);
    assert_eq!(dead_letters(&dead).len(), 1);
}

#[test]
fn bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open(other_dir.path(), opts()).unwrap();
    for bad in [
        long().max_deliveries(0),
        long().dead_letter(&ch),
        long().dead_letter(&other.channel("dead").unwrap()),
    ] {
        assert!(matches!(
            ch.queue_subscribe_with("w", StartAt::First, bad),
            Err(Error::InvalidOption { .. })
        ));
    }
}

#[test]
fn a_nak_wakes_waiting_members_blocking_and_async() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let ch = store.channel("jobs").unwrap();
    publish(&ch, 1);
    let o = long().max_in_flight(1);
    let a = ch.queue_subscribe_with("w", StartAt::First, o.clone()).unwrap();
    assert_eq!(recv(&a).seq(), 1);
    for asynchronous in [false, true] {
        let b = ch.queue_subscribe_with("w", StartAt::First, o.clone()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            tx.send(()).unwrap();
            // Nothing else could end these waits within a minute (ack_wait
            // is ten): only the nak's wake-up.
            let got = if asynchronous {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), b.recv_async()).await })
                    .ok()
                    .map(|r| r.unwrap())
            } else {
                b.recv_timeout(Duration::from_secs(60)).unwrap()
            };
            (got.map(|d| (d.seq(), d.delivery_count())), b)
        });
        rx.recv().unwrap();
        // Give the waiter time to block (it works either way: if it has
        // not blocked yet it finds the message at once).
        std::thread::sleep(Duration::from_millis(50));
        a.nak(1).unwrap();
        let (got, b) = waiter.join().unwrap();
        let (seq, count) = got.expect("woken by the nak");
        assert_eq!(seq, 1);
        assert!(count >= 2);
        // Back to a for the next round.
        b.nak(1).unwrap();
        drop(b);
        assert_eq!(recv(&a).seq(), 1);
    }
}
