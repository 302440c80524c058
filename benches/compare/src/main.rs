//! Side-by-side runs of the same workloads on spool, on the engines users
//! would pick instead (SQLite, redb, fjall, LMDB, commitlog) and on two
//! hand-written baselines that bound what is possible. Prints a markdown
//! table and writes the same data as CSV to `docs/compare.csv`, from which
//! the `chart` binary draws `docs/compare.svg`.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml [-- --only spool,redb] [--no-open | --open-only]
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
use std::path::Path;

use report::Row;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--fill") {
        // Child process of the open-after-SIGKILL workload.
        let (name, dir, bytes) = (&args[2], Path::new(&args[3]), args[4].parse().expect("bytes"));
        workloads::fill(name, dir, bytes);
        println!("filled");
        std::io::stdout().flush()?;
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        return Ok(());
    }
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let with_open = !args.iter().any(|a| a == "--no-open");
    let open_only = args.iter().any(|a| a == "--open-only");
    let engines: Vec<&'static str> = engine::ENGINES
        .iter()
        .copied()
        .filter(|e| only.as_ref().is_none_or(|o| o.iter().any(|n| n == e)))
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    for name in engines.iter().filter(|_| !open_only) {
        eprintln!("{name}: append and read");
        rows.extend(workloads::append_and_read(name));
    }
    for name in engines.iter().filter(|_| !open_only) {
        eprintln!("{name}: durable appends");
        rows.extend(workloads::durable(name));
    }
    for name in engines.iter().filter(|_| !open_only) {
        eprintln!("{name}: consume and commit");
        rows.extend(workloads::consume(name));
    }
    if with_open {
        for name in &engines {
            eprintln!("{name}: open after SIGKILL");
            rows.extend(workloads::open_after_kill(name)?);
        }
    }
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compare.csv");
    report::print(&rows, std::fs::File::create(csv)?)?;
    eprintln!("wrote {csv}");
    Ok(())
}
