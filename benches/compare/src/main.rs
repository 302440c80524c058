//! Side-by-side runs of the same workloads on spool, on the engines users
//! would pick instead (SQLite, redb, fjall, LMDB, commitlog) and on two
//! hand-written baselines that bound what is possible. Prints a markdown
//! table and writes the same data as CSV to `docs/compare.csv`, from which
//! the `chart` binary draws `docs/compare.svg`.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- --help
//! ```
//!
//! Every engine gets the same data (100-byte payloads), the same batch sizes
//! and the same durability level, each used the way its documentation
//! recommends for bulk sequential writes.

mod engine;
mod engines;
mod report;
mod workloads;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use report::Row;

const EXAMPLES: &str = "\
Examples:
  # everything (6-7 minutes), writes docs/compare.csv
  cargo run --release --manifest-path benches/compare/Cargo.toml
  # one workload on two engines, 3 runs each, median with min/max, CSV elsewhere
  cargo run --release --manifest-path benches/compare/Cargo.toml -- \\
      --only spool,raw-write --workload append-no-sync --runs 3 --csv /tmp/compare.csv

Names are matched without regard to case; an id or the full name of an
engine or workload is accepted, several separated by commas or given as
separate values.";

#[derive(Parser, Debug)]
#[command(
    name = "spool-compare",
    about = "Runs the same workloads on spool and on other storage engines, side by side.",
    after_help = EXAMPLES,
)]
struct Args {
    /// Engines to run (default: all): spool, raw-write, raw-mmap, sqlite,
    /// redb, fjall, lmdb, commitlog.
    #[arg(long, value_name = "ENGINE", num_args = 1.., value_parser = parse_engines)]
    only: Vec<Selection>,

    /// Workloads to run (default: all), by id or by group: append, read,
    /// latency, consume, open, max-publish-latency, footprint (`--list`
    /// shows every id).
    #[arg(long, value_name = "NAME", num_args = 1.., value_parser = parse_workloads)]
    workload: Vec<Selection>,

    /// Skip the open-after-SIGKILL workloads.
    #[arg(long, conflicts_with = "open_only")]
    no_open: bool,

    /// Run only the open-after-SIGKILL workloads.
    #[arg(long)]
    open_only: bool,

    /// Run each (workload, engine) this many times and report the median
    /// run, with the min and max of its figure.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,

    /// Where to write the CSV, once every run has succeeded [default:
    /// docs/compare.csv in the repository].
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,

    /// List the engines and workloads and exit.
    #[arg(long)]
    list: bool,

    /// Child process of the open-after-SIGKILL workload: fill a store with
    /// ENGINE in DIR with BYTES of payload, print "filled", wait.
    #[arg(long, hide = true, num_args = 3, value_names = ["ENGINE", "DIR", "BYTES"], allow_hyphen_values = true)]
    fill: Option<Vec<String>>,
}

/// Indexes selected from `engine::ENGINES` or `workloads::WORKLOADS`.
#[derive(Clone, Debug)]
struct Selection(Vec<usize>);

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Parses one value of a list option: the whole value if it names
/// something (full names may contain commas), else its comma-separated
/// parts, each of which must name something. `names` gives, per index,
/// every name that selects it.
fn parse_list(value: &str, what: &str, names: &[Vec<&str>], valid: &str) -> Result<Selection, String> {
    let find = |part: &str| -> Vec<usize> {
        let part = norm(part);
        (0..names.len())
            .filter(|&i| names[i].iter().any(|n| norm(n) == part))
            .collect()
    };
    let whole = find(value);
    if !whole.is_empty() {
        return Ok(Selection(whole));
    }
    let mut picked = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let found = find(part);
        if found.is_empty() {
            return Err(format!("unknown {what} '{part}'; valid {what}s:{valid}"));
        }
        picked.extend(found);
    }
    if picked.is_empty() {
        return Err(format!("no {what} named; valid {what}s:{valid}"));
    }
    Ok(Selection(picked))
}

fn engine_list() -> String {
    let mut out = String::new();
    for e in &engine::ENGINES {
        out += &format!("\n  {:<12} {}", e.id, e.name);
    }
    out
}

fn workload_list() -> String {
    let mut out = String::new();
    for w in &workloads::WORKLOADS {
        let groups = if w.groups.is_empty() {
            String::new()
        } else {
            format!("  [{}]", w.groups.join(", "))
        };
        out += &format!("\n  {:<26} {}{groups}", w.id, w.name);
    }
    out
}

fn parse_engines(value: &str) -> Result<Selection, String> {
    let names: Vec<Vec<&str>> = engine::ENGINES.iter().map(|e| vec![e.id, e.name]).collect();
    parse_list(value, "engine", &names, &engine_list())
}

fn parse_workloads(value: &str) -> Result<Selection, String> {
    let names: Vec<Vec<&str>> = workloads::WORKLOADS
        .iter()
        .map(|w| [w.id, w.name].iter().chain(w.groups).copied().collect())
        .collect();
    parse_list(value, "workload", &names, &workload_list())
}

/// The selected indexes in table order, or all of `len` when none given.
fn selected(sel: &[Selection], len: usize) -> Vec<usize> {
    (0..len)
        .filter(|i| sel.is_empty() || sel.iter().any(|s| s.0.contains(i)))
        .collect()
}

/// Child side of the open-after-SIGKILL workload.
fn fill(args: &[String]) -> std::io::Result<()> {
    let [name, dir, bytes] = args else {
        unreachable!("clap passes exactly three values")
    };
    let bytes = bytes.parse().expect("--fill BYTES is a number");
    workloads::fill_child(name, std::path::Path::new(dir), bytes);
    println!("filled");
    std::io::stdout().flush()?;
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    Ok(())
}

fn main() -> std::io::Result<ExitCode> {
    let args = Args::parse();
    if let Some(child) = &args.fill {
        fill(child)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        println!(
            "engines:{}\n\nworkloads (id, name, [groups]):{}",
            engine_list(),
            workload_list()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let engines: Vec<&'static str> = selected(&args.only, engine::ENGINES.len())
        .into_iter()
        .map(|i| engine::ENGINES[i].name)
        .collect();
    let workloads: Vec<&workloads::Workload> = selected(&args.workload, workloads::WORKLOADS.len())
        .into_iter()
        .map(|i| &workloads::WORKLOADS[i])
        .filter(|w| if w.is_open() { !args.no_open } else { !args.open_only })
        .collect();
    let plan: Vec<(&workloads::Workload, &'static str)> = workloads
        .iter()
        .flat_map(|w| engines.iter().filter(|e| w.applies(e)).map(move |e| (*w, *e)))
        .collect();
    if plan.is_empty() {
        eprintln!(
            "error: nothing to run: none of the selected workloads applies to the selected engines \
             (see --list); nothing written"
        );
        return Ok(ExitCode::from(2));
    }
    let csv_path = args
        .csv
        .clone()
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compare.csv")));
    let mut rows: Vec<Row> = Vec::new();
    for (w, name) in plan {
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            eprintln!("{}: {} (run {run}/{})", name, w.name, args.runs);
            runs.push(w.run(name)?);
        }
        rows.push(Row::median(runs));
    }
    report::print(&rows);
    // Written only now, after every run succeeded, and through a rename so
    // that an interrupted write leaves the old file.
    let tmp = csv_path.with_extension("csv.tmp");
    std::fs::write(&tmp, report::csv(&rows)?)?;
    std::fs::rename(&tmp, &csv_path)?;
    eprintln!("wrote {}", csv_path.display());
    Ok(ExitCode::SUCCESS)
}
