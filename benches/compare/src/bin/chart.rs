//! Draws `docs/compare.csv` (written by `spool-compare`) as a bar chart
//! in `docs/compare.svg`: one
//! panel per workload, one bar per engine, spool's bar highlighted.
//!
//! `cargo run --release --manifest-path benches/compare/Cargo.toml --bin chart [-- IN.csv OUT.svg]`

use plotters::prelude::*;

/// One CSV row: workload, engine, and the figure drawn with its unit.
struct Bar {
    workload: String,
    engine: String,
    value: f64,
}

/// The figure a workload is drawn by: throughput, p50 latency or time.
fn figure(fields: &[&str]) -> Option<(f64, &'static str)> {
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    if let Some(p50) = num(4) {
        return Some((p50, "p50 µs, lower is better"));
    }
    if let Some(ms) = num(6) {
        return Some((ms, "ms, lower is better"));
    }
    num(2).map(|r| (r / 1e6, "M msg/s"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    let input = args.get(1).cloned().unwrap_or_else(|| format!("{docs}/compare.csv"));
    let output = args.get(2).cloned().unwrap_or_else(|| format!("{docs}/compare.svg"));
    let mut bars = Vec::new();
    let mut units: Vec<(String, &'static str)> = Vec::new();
    for record in csv::Reader::from_path(&input)?.records() {
        let record = record?;
        let fields: Vec<&str> = record.iter().collect();
        let Some((value, unit)) = figure(&fields) else { continue };
        let workload = fields[0].to_owned();
        if !units.iter().any(|(w, _)| *w == workload) {
            units.push((workload.clone(), unit));
        }
        bars.push(Bar {
            workload,
            engine: fields[1].to_owned(),
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
