//! The table and the CSV.

use std::io::Write;
use std::time::Duration;

use crate::workloads::PAYLOAD;

/// One measured (workload, engine) pair.
pub struct Row {
    pub workload: &'static str,
    pub engine: &'static str,
    /// Messages per second.
    pub rate: Option<f64>,
    /// p50 and p99 in microseconds.
    pub latency: Option<(f64, f64)>,
    /// Wall time of a one-off operation.
    pub time: Option<Duration>,
    /// Messages found after a recovery.
    pub kept: Option<u64>,
}

impl Row {
    pub fn rate(workload: &'static str, engine: &'static str, messages: usize, took: Duration) -> Row {
        Row {
            workload,
            engine,
            rate: Some(messages as f64 / took.as_secs_f64()),
            latency: None,
            time: None,
            kept: None,
        }
    }

    pub fn latency(
        workload: &'static str,
        engine: &'static str,
        messages: usize,
        took: Duration,
        samples: &mut [Duration],
    ) -> Row {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Row {
            latency: Some((us(at(0.50)), us(at(0.99)))),
            ..Row::rate(workload, engine, messages, took)
        }
    }

    pub fn time(workload: &'static str, engine: &'static str, took: Duration, kept: u64) -> Row {
        Row {
            workload,
            engine,
            rate: None,
            latency: None,
            time: Some(took),
            kept: Some(kept),
        }
    }

    /// The figure compared across engines, oriented so that larger is
    /// better: rate, or the inverse of p50 latency or of wall time.
    fn speed(&self) -> f64 {
        match (self.latency, self.time, self.rate) {
            (Some((p50, _)), _, _) => 1.0 / p50,
            (_, Some(t), _) => 1.0 / t.as_secs_f64(),
            (_, _, Some(r)) => r,
            _ => 0.0,
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// Prints the markdown table and writes the CSV.
pub fn print(rows: &[Row], out: impl Write) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    println!("100-byte payloads, batches of 1000; speed vs spool > 1 means faster than spool\n");
    println!("| workload | engine | M msg/s | MB/s | p50 µs | p99 µs | time ms | msgs kept | speed vs spool |");
    println!("|---|---|---|---|---|---|---|---|---|");
    csv.write_record([
        "workload",
        "engine",
        "msg_per_s",
        "mb_per_s",
        "p50_us",
        "p99_us",
        "time_ms",
        "kept",
        "speed_vs_spool",
    ])?;
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    for w in workloads {
        let spool = rows.iter().find(|r| r.workload == w && r.engine == "spool");
        for r in rows.iter().filter(|r| r.workload == w) {
            let ratio = spool.map(|s| r.speed() / s.speed());
            let mb = r.rate.map(|v| v * PAYLOAD as f64 / 1e6);
            let (p50, p99) = (r.latency.map(|l| l.0), r.latency.map(|l| l.1));
            let ms = r.time.map(|t| t.as_secs_f64() * 1e3);
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.workload,
                r.engine,
                opt(r.rate.map(|v| v / 1e6), 3),
                opt(mb, 0),
                opt(p50, 1),
                opt(p99, 1),
                opt(ms, 1),
                opt(r.kept.map(|k| k as f64), 0),
                opt(ratio, 2)
            );
            csv.write_record([
                r.workload.to_owned(),
                r.engine.to_owned(),
                opt(r.rate, 0),
                opt(mb, 1),
                opt(p50, 1),
                opt(p99, 1),
                opt(ms, 2),
                opt(r.kept.map(|k| k as f64), 0),
                opt(ratio, 3),
            ])?;
        }
    }
    csv.flush()
}
