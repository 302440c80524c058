//! The relay as a command: its arguments (clap) and a run with a live
//! status line. Both the `spool relay` subcommand and the `spool-relay`
//! binary are this.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::stream;

use crate::{OnTooLarge, Ownership, Phase, Relay, StreamSpec};

/// Forwards a channel of a spool store to NATS JetStream, exactly once,
/// resuming where it stopped. Stops gracefully on SIGINT or SIGTERM.
///
/// The relay owns the store while it runs (it takes the store's lock): run
/// it inside the application, or against a store no application has open.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example:\n  spool relay ./data orders --nats nats://127.0.0.1:4222 \
                        --subject 'outbox.{channel}' --stream OUTBOX --create-stream")]
pub struct RelayArgs {
    /// The store's directory (it must exist and hold the channel).
    pub dir: PathBuf,
    /// The channel to forward.
    pub channel: String,
    /// The NATS server's URL.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// The subject to publish to; `{channel}` is replaced by the channel name.
    #[arg(long)]
    pub subject: String,
    /// The stream (default: the one capturing the subject).
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// Create --stream NAME (file storage, the subject as its subject) if it
    /// does not exist.
    #[arg(long, requires = "stream")]
    pub create_stream: bool,
    /// The relay's name, also its spool subscriber's (default relay-<stream>).
    #[arg(long)]
    pub name: Option<String>,
    /// Other publishers write to the stream too.
    #[arg(long)]
    pub shared: bool,
    /// Publishes awaiting their ack.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_in_flight: usize,
    /// Commit the position after this many acks...
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub commit_every: u64,
    /// ...or after this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// The stream's duplicate window must be at least this many seconds.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub min_duplicate_window_s: u64,
    /// Skip messages too large for JetStream and record them in this spool
    /// channel (default: stop with an error naming the message).
    #[arg(long, value_name = "CHANNEL")]
    pub skip_too_large_into: Option<String>,
    /// Exit once everything in the channel is relayed and committed.
    #[arg(long)]
    pub exit_when_caught_up: bool,
    /// No status line.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the relay described by `args` on a new multi-threaded runtime until
/// SIGINT, SIGTERM, or (with `--exit-when-caught-up`) until it has caught
/// up; prints a status line every second on stderr unless `--quiet`.
pub fn run(args: RelayArgs) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: RelayArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Never create a store (or a channel) by accident.
    if !args.dir.is_dir() {
        return Err(format!("{}: no such directory", args.dir.display()).into());
    }
    let store = spool::Store::open(&args.dir, spool::Options::default().create_if_missing(false))?;
    if !store.channel_names().contains(&args.channel) {
        return Err(format!("no channel {:?} in {}", args.channel, args.dir.display()).into());
    }
    let client = async_nats::connect(&args.nats)
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.nats))?;
    let js = async_nats::jetstream::new(client);

    let mut relay = Relay::new(&store, &args.channel, js, &args.subject)?
        .max_in_flight(args.max_in_flight)
        .commit_every(args.commit_every)
        .commit_interval(Duration::from_millis(args.commit_interval_ms))
        .min_duplicate_window(Duration::from_secs(args.min_duplicate_window_s));
    let subject = relay.subject().to_string();
    relay = match (&args.stream, args.create_stream) {
        (Some(name), true) => relay.stream(StreamSpec::Create(Box::new(stream::Config {
            name: name.clone(),
            subjects: vec![subject],
            storage: stream::StorageType::File,
            ..Default::default()
        }))),
        (Some(name), false) => relay.stream(StreamSpec::Require(name.clone())),
        (None, _) => relay,
    };
    if let Some(name) = &args.name {
        relay = relay.name(name);
    }
    if args.shared {
        relay = relay.ownership(Ownership::Shared);
    }
    if let Some(record) = &args.skip_too_large_into {
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
                    if caught_up && s.phase == Phase::Running && s.committed >= s.channel_last_seq {
                        break;
                    }
                }
                _ = every.tick(), if !quiet => {
                    let line = status.borrow().line();
                    let mut err = std::io::stderr().lock();
                    // On a terminal the line is rewritten in place.
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
