//! `spool-relay DIR CHANNEL --nats URL --subject S`: forwards a channel of
//! the spool store in DIR to NATS JetStream, with a live status line.
//! (The future `spool relay` subcommand is this, under the `spool` command.)

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::stream;
use spool_relay::{OnTooLarge, Ownership, Relay, StreamSpec};

const USAGE: &str = "\
usage: spool-relay DIR CHANNEL --nats URL --subject SUBJECT [options]

Forwards the spool channel CHANNEL of the store in DIR to NATS JetStream,
exactly once, resuming where it stopped. `{channel}` in SUBJECT is replaced
by the channel name. Stops gracefully on SIGINT or SIGTERM.

options:
  --stream NAME                the stream (default: the one capturing SUBJECT)
  --create-stream              create --stream NAME (file storage, SUBJECT as
                               its subject) if it does not exist
  --name NAME                  relay name, also its spool subscriber's
                               (default relay-<stream>)
  --shared                     other publishers write to the stream too
  --max-in-flight N            publishes awaiting their ack (default 256)
  --commit-every N             commit after N acks (default 1000)
  --commit-interval-ms MS      or after MS milliseconds (default 100)
  --min-duplicate-window-s S   required stream duplicate window (default 120)
  --skip-too-large-into CHAN   skip messages too large for JetStream and
                               record them in spool channel CHAN (default:
                               stop with an error naming the message)
  --exit-when-caught-up        exit once everything in the channel is relayed
                               and committed
  --quiet                      no status line
";

struct Args {
    dir: PathBuf,
    channel: String,
    nats: String,
    subject: String,
    stream: Option<String>,
    create_stream: bool,
    name: Option<String>,
    shared: bool,
    max_in_flight: Option<usize>,
    commit_every: Option<u64>,
    commit_interval_ms: Option<u64>,
    min_duplicate_window_s: Option<u64>,
    skip_into: Option<String>,
    exit_when_caught_up: bool,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut flags = std::collections::HashMap::new();
    let mut switches = std::collections::HashSet::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--create-stream" | "--shared" | "--exit-when-caught-up" | "--quiet" => {
                switches.insert(arg);
            }
            "--nats"
            | "--subject"
            | "--stream"
            | "--name"
            | "--max-in-flight"
            | "--commit-every"
            | "--commit-interval-ms"
            | "--min-duplicate-window-s"
            | "--skip-too-large-into" => {
                let value = it.next().ok_or(format!("{arg} needs a value"))?;
                flags.insert(arg, value);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    let [dir, channel] = <[String; 2]>::try_from(positional).map_err(|_| "expected DIR and CHANNEL".to_string())?;
    let take = |flags: &mut std::collections::HashMap<String, String>, name: &str| flags.remove(name);
    fn number<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>, String> {
        v.map(|v| v.parse().map_err(|_| format!("{name}: not a number: {v}")))
            .transpose()
    }
    let mut f = flags;
    Ok(Args {
        dir: PathBuf::from(dir),
        channel,
        nats: take(&mut f, "--nats").ok_or("--nats URL is required")?,
        subject: take(&mut f, "--subject").ok_or("--subject SUBJECT is required")?,
        stream: take(&mut f, "--stream"),
        create_stream: switches.contains("--create-stream"),
        name: take(&mut f, "--name"),
        shared: switches.contains("--shared"),
        max_in_flight: number("--max-in-flight", take(&mut f, "--max-in-flight"))?,
        commit_every: number("--commit-every", take(&mut f, "--commit-every"))?,
        commit_interval_ms: number("--commit-interval-ms", take(&mut f, "--commit-interval-ms"))?,
        min_duplicate_window_s: number("--min-duplicate-window-s", take(&mut f, "--min-duplicate-window-s"))?,
        skip_into: take(&mut f, "--skip-too-large-into"),
        exit_when_caught_up: switches.contains("--exit-when-caught-up"),
        quiet: switches.contains("--quiet"),
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("spool-relay: {e}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spool-relay: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spool-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Never create a store (or a channel) by accident.
    if !args.dir.is_dir() {
        return Err(format!("{}: no such directory", args.dir.display()).into());
    }
    let store = spool::Store::open(&args.dir, spool::Options::default())?;
    if !store.channel_names().contains(&args.channel) {
        return Err(format!("no channel {:?} in {}", args.channel, args.dir.display()).into());
    }
    let client = async_nats::connect(&args.nats).await?;
    let js = async_nats::jetstream::new(client);

    let mut relay = Relay::new(&store, &args.channel, js, &args.subject)?;
    let subject = relay.subject().to_string();
    relay = match (&args.stream, args.create_stream) {
        (Some(name), true) => relay.stream(StreamSpec::Create(Box::new(stream::Config {
            name: name.clone(),
            subjects: vec![subject],
            storage: stream::StorageType::File,
            ..Default::default()
        }))),
        (Some(name), false) => relay.stream(StreamSpec::Require(name.clone())),
        (None, true) => return Err("--create-stream needs --stream NAME".into()),
        (None, false) => relay,
    };
    if let Some(name) = &args.name {
        relay = relay.name(name);
    }
    if args.shared {
        relay = relay.ownership(Ownership::Shared);
    }
    if let Some(n) = args.max_in_flight {
        relay = relay.max_in_flight(n);
    }
    if let Some(n) = args.commit_every {
        relay = relay.commit_every(n);
    }
    if let Some(ms) = args.commit_interval_ms {
        relay = relay.commit_interval(Duration::from_millis(ms));
    }
    if let Some(s) = args.min_duplicate_window_s {
        relay = relay.min_duplicate_window(Duration::from_secs(s));
    }
    if let Some(record) = &args.skip_into {
        relay = relay.on_too_large(OnTooLarge::SkipAndRecord(store.channel(record)?));
    }

    let mut status = relay.status();
    let quiet = args.quiet;
    let caught_up = args.exit_when_caught_up;
    let shutdown = async move {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        let tty = std::io::stderr().is_terminal();
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let s = status.borrow_and_update().clone();
                    if caught_up && s.phase == spool_relay::Phase::Running && s.committed >= s.channel_last_seq {
                        break;
                    }
                }
                _ = every.tick(), if !quiet => {
                    let line = status.borrow().line();
                    let mut err = std::io::stderr().lock();
                    let _ = if tty { write!(err, "\r\x1b[K{line}") } else { writeln!(err, "{line}") };
                    let _ = err.flush();
                }
            }
        }
        if tty && !quiet {
            eprintln!();
        }
    };
    let last = relay.run_until(shutdown).await?;
    if !quiet {
        eprintln!("{}", last.line());
    }
    drop(store);
    Ok(())
}
