//! Draws `docs/compare.csv` (written by `spool-compare`) as a bar chart
//! in `docs/compare.svg`: one panel per workload, one bar per engine,
//! spool's bar highlighted. Columns are found by their header names.
//!
//! `cargo run --release --manifest-path benches/compare/Cargo.toml --bin chart [-- IN.csv OUT.svg]`

use plotters::prelude::*;

/// One CSV row: workload, engine, and the figure drawn with its unit.
struct Bar {
    workload: String,
    engine: String,
    value: f64,
}

/// The figure a row is drawn by, scaled, with its unit. CSVs that name it
/// in a `figure` column say which; older ones (without it) are drawn by
/// p50 latency, else time, else throughput.
fn figure(col: impl Fn(&str) -> Option<String>) -> Option<(f64, &'static str)> {
    let num = |name: &str| col(name).and_then(|v| v.parse::<f64>().ok());
    let named = col("figure");
    let name = match named.as_deref() {
        Some(name) => name,
        None if num("p50_us").is_some() => "p50_us",
        None if num("time_ms").is_some() => "time_ms",
        None => "msg_per_s",
    };
    let value = num(name)?;
    Some(match name {
        "msg_per_s" => (value / 1e6, "M msg/s"),
        "p50_us" => (value, "p50 µs, lower is better"),
        "max_us" => (value, "max µs, lower is better"),
        "time_ms" => (value, "ms, lower is better"),
        "disk_bytes" => (value / 1024.0, "KiB on disk, lower is better"),
        _ => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    let input = args.get(1).cloned().unwrap_or_else(|| format!("{docs}/compare.csv"));
    let output = args.get(2).cloned().unwrap_or_else(|| format!("{docs}/compare.svg"));
    let mut bars = Vec::new();
    let mut units: Vec<(String, &'static str)> = Vec::new();
    let mut reader = csv::Reader::from_path(&input)?;
    let header = reader.headers()?.clone();
    for record in reader.records() {
        let record = record?;
        let col = |name: &str| {
            let i = header.iter().position(|h| h == name)?;
            record.get(i).map(str::to_owned)
        };
        let Some((value, unit)) = figure(col) else { continue };
        let (Some(workload), Some(engine)) = (col("workload"), col("engine")) else {
            continue;
        };
        if !units.iter().any(|(w, _)| *w == workload) {
            units.push((workload.clone(), unit));
        }
        bars.push(Bar {
            workload,
            engine,
            value,
        });
    }
    let cols = 3;
    let rows = units.len().div_ceil(cols);
    let root = SVGBackend::new(&output, (1500, 330 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((rows, cols));
    for (panel, (workload, unit)) in panels.iter().zip(&units) {
        // Reversed, so that the first engine (spool) is drawn on top.
        let mine: Vec<&Bar> = bars.iter().rev().filter(|b| b.workload == *workload).collect();
        let max = mine.iter().map(|b| b.value).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{workload} ({unit})"), ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(22)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..max.max(1e-9), (0..mine.len()).into_segmented())?;
        let names: Vec<String> = mine.iter().map(|b| b.engine.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(mine.len())
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(mine.iter().enumerate().map(|(i, b)| {
            let color = if b.engine == "spool" {
                RGBColor(214, 96, 39)
            } else {
                RGBColor(90, 120, 160)
            };
            Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (b.value, SegmentValue::Exact(i + 1))],
                color.filled(),
            )
        }))?;
    }
    root.present()?;
    println!("wrote {output}");
    Ok(())
}
