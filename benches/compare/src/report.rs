//! Rows, the median of repeated runs, the table and the CSV.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::workloads::PAYLOAD;

/// The figure a row is compared and charted by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Figure {
    /// Messages per second.
    Rate,
    /// Median latency, µs.
    P50,
    /// Largest latency, µs.
    Max,
    /// Wall time of a one-off operation, ms.
    Time,
    /// Bytes allocated on disk.
    Bytes,
}

impl Figure {
    /// The CSV column that holds it.
    fn column(self) -> &'static str {
        match self {
            Figure::Rate => "msg_per_s",
            Figure::P50 => "p50_us",
            Figure::Max => "max_us",
            Figure::Time => "time_ms",
            Figure::Bytes => "disk_bytes",
        }
    }

    fn lower_is_better(self) -> bool {
        self != Figure::Rate
    }

    /// A value in CSV units as shown in the table, with its unit.
    fn display(self, v: f64) -> String {
        match self {
            Figure::Rate => format!("{:.3} M msg/s", v / 1e6),
            Figure::P50 | Figure::Max => format!("{} µs", us(Some(v))),
            Figure::Time => format!("{v:.1} ms"),
            Figure::Bytes => format!("{:.0} KiB", v / 1024.0),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p9999: f64,
    pub max: f64,
}

/// One measured (workload, engine) pair: one run, or the median of several.
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: &'static str,
    pub engine: &'static str,
    pub figure: Figure,
    /// Messages per second.
    pub rate: Option<f64>,
    pub latency: Option<Latency>,
    /// Wall time of a one-off operation.
    pub time: Option<Duration>,
    /// Messages found after a recovery.
    pub kept: Option<u64>,
    /// Bytes allocated on disk.
    pub bytes: Option<u64>,
    /// How many runs this row is the median of, and the smallest and
    /// largest value of its figure over them (CSV units).
    pub runs: usize,
    pub min: f64,
    pub max: f64,
}

impl Row {
    fn new(workload: &'static str, engine: &'static str, figure: Figure) -> Row {
        Row {
            workload,
            engine,
            figure,
            rate: None,
            latency: None,
            time: None,
            kept: None,
            bytes: None,
            runs: 1,
            min: 0.0,
            max: 0.0,
        }
    }

    /// Fills `min` and `max` from the one run this row is.
    fn single(mut self) -> Row {
        let v = self.value();
        (self.min, self.max) = (v, v);
        self
    }

    pub fn rate(workload: &'static str, engine: &'static str, messages: usize, took: Duration) -> Row {
        Row {
            rate: Some(messages as f64 / took.as_secs_f64()),
            ..Row::new(workload, engine, Figure::Rate)
        }
        .single()
    }

    /// Percentiles from a histogram of nanoseconds (each the highest value
    /// equivalent to the recorded ones at 3 significant digits), and the
    /// rate over the whole loop; compared by `figure`.
    pub fn latency(
        workload: &'static str,
        engine: &'static str,
        figure: Figure,
        messages: usize,
        took: Duration,
        h: &Histogram<u64>,
    ) -> Row {
        let us = |ns: u64| ns as f64 / 1e3;
        Row {
            rate: Some(messages as f64 / took.as_secs_f64()),
            latency: Some(Latency {
                p50: us(h.value_at_quantile(0.50)),
                p99: us(h.value_at_quantile(0.99)),
                p9999: us(h.value_at_quantile(0.9999)),
                max: us(h.max()),
            }),
            ..Row::new(workload, engine, figure)
        }
        .single()
    }

    pub fn time(workload: &'static str, engine: &'static str, took: Duration, kept: u64) -> Row {
        Row {
            time: Some(took),
            kept: Some(kept),
            ..Row::new(workload, engine, Figure::Time)
        }
        .single()
    }

    pub fn bytes(workload: &'static str, engine: &'static str, bytes: u64) -> Row {
        Row {
            bytes: Some(bytes),
            ..Row::new(workload, engine, Figure::Bytes)
        }
        .single()
    }

    /// The row's figure in CSV units.
    fn value(&self) -> f64 {
        let v = match self.figure {
            Figure::Rate => self.rate,
            Figure::P50 => self.latency.map(|l| l.p50),
            Figure::Max => self.latency.map(|l| l.max),
            Figure::Time => self.time.map(|t| t.as_secs_f64() * 1e3),
            Figure::Bytes => self.bytes.map(|b| b as f64),
        };
        v.unwrap_or(f64::NAN)
    }

    /// The figure oriented so that larger is better.
    fn speed(&self) -> f64 {
        let v = self.value();
        if self.figure.lower_is_better() {
            1.0 / v
        } else {
            v
        }
    }

    /// The median of several runs of one (workload, engine): the run whose
    /// figure is the median (for an even count, the worse of the two
    /// middle runs), so every column comes from that one run; `min` and
    /// `max` span all of them.
    pub fn median(mut runs: Vec<Row>) -> Row {
        assert!(!runs.is_empty(), "at least one run");
        runs.sort_by(|a, b| a.speed().total_cmp(&b.speed()));
        let values: Vec<f64> = runs.iter().map(Row::value).collect();
        let mut row = runs[(runs.len() - 1) / 2].clone();
        row.runs = runs.len();
        row.min = values.iter().copied().fold(f64::INFINITY, f64::min);
        row.max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        row
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// Microseconds with three significant digits for small values (a publish
/// without sync takes well under one), whole ones from 100 up.
fn us(v: Option<f64>) -> String {
    v.map_or_else(
        || "-".to_owned(),
        |v| match v {
            v if v < 1.0 => format!("{v:.3}"),
            v if v < 10.0 => format!("{v:.2}"),
            v if v < 100.0 => format!("{v:.1}"),
            v => format!("{v:.0}"),
        },
    )
}

/// The rows grouped by workload, in first-appearance order, each with its
/// speed relative to spool's row of the same workload.
fn grouped(rows: &[Row]) -> Vec<(&Row, Option<f64>)> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    let mut out = Vec::new();
    for w in workloads {
        let spool = rows.iter().find(|r| r.workload == w && r.engine == "spool");
        for r in rows.iter().filter(|r| r.workload == w) {
            out.push((r, spool.map(|s| r.speed() / s.speed())));
        }
    }
    out
}

/// Prints the markdown table.
pub fn print(rows: &[Row]) {
    println!("100-byte payloads, batches of 1000; speed vs spool > 1 means faster (or smaller) than spool\n");
    println!(
        "| workload | engine | M msg/s | MB/s | p50 µs | p99 µs | p99.99 µs | max µs | time ms | msgs kept | disk KiB \
         | speed vs spool | runs: min – max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (r, ratio) in grouped(rows) {
        let l = r.latency;
        let spread = if r.runs > 1 {
            format!("{}: {} – {}", r.runs, r.figure.display(r.min), r.figure.display(r.max))
        } else {
            "1".to_owned()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.engine,
            opt(r.rate.map(|v| v / 1e6), 3),
            opt(r.rate.map(|v| v * PAYLOAD as f64 / 1e6), 0),
            us(l.map(|l| l.p50)),
            us(l.map(|l| l.p99)),
            us(l.map(|l| l.p9999)),
            us(l.map(|l| l.max)),
            opt(r.time.map(|t| t.as_secs_f64() * 1e3), 1),
            opt(r.kept.map(|k| k as f64), 0),
            opt(r.bytes.map(|b| b as f64 / 1024.0), 0),
            opt(ratio, 2),
            spread,
        );
    }
}

/// The CSV: the original nine columns first, in their original order, then
/// the ones added since (`figure` names the column a row is compared and
/// charted by; `figure_min`/`figure_max` span its runs).
pub fn csv(rows: &[Row]) -> std::io::Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
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
        "p9999_us",
        "max_us",
        "disk_bytes",
        "figure",
        "runs",
        "figure_min",
        "figure_max",
    ])?;
    for (r, ratio) in grouped(rows) {
        let l = r.latency;
        let digits = match r.figure {
            Figure::Rate | Figure::Bytes => 0,
            Figure::P50 | Figure::Max => 3,
            Figure::Time => 2,
        };
        csv.write_record([
            r.workload.to_owned(),
            r.engine.to_owned(),
            opt(r.rate, 0),
            opt(r.rate.map(|v| v * PAYLOAD as f64 / 1e6), 1),
            opt(l.map(|l| l.p50), 3),
            opt(l.map(|l| l.p99), 3),
            opt(r.time.map(|t| t.as_secs_f64() * 1e3), 2),
            opt(r.kept.map(|k| k as f64), 0),
            opt(ratio, 3),
            opt(l.map(|l| l.p9999), 3),
            opt(l.map(|l| l.max), 3),
            opt(r.bytes.map(|b| b as f64), 0),
            r.figure.column().to_owned(),
            r.runs.to_string(),
            format!("{:.digits$}", r.min),
            format!("{:.digits$}", r.max),
        ])?;
    }
    csv.into_inner().map_err(|e| e.into_error())
}
