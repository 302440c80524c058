//! The command line: every command, its arguments and its `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Look into a spool store, follow it live, verify it, back it up, repair it.
///
/// Every command but `repair` reads the store without writing a byte and
/// without its lock (read-only attach), so it works on a closed store and
/// on one an application has open. None of them creates a store: a path
/// that holds none is an error.
///
/// Exit status: 0 on success, 1 on an error (not a store, no such channel,
/// damaged file, no permission...), 2 on bad usage, 3 when `verify` finds
/// problems or `repair` lost data.
#[derive(Parser, Debug)]
#[command(name = "spool", version, about, long_about, propagate_version = true)]
#[command(
    after_help = "Examples:\n  spool stat ./data\n  spool tail ./data orders -f\n  spool verify ./data\n  \
                        spool backup ./data /backups/data-monday"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The store at a glance: channels, their messages, disk use, limits and subscribers.
    #[command(after_help = "Example:\n  spool stat ./data\n  spool stat ./data --json | jq '.channels[].messages'")]
    Stat {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Print messages of a channel: seq, time and payload.
    ///
    /// Printable UTF-8 payloads are shown as text, others as hex (text
    /// format) or base64 (JSON). Starts at the first retained message
    /// unless --from or --since says otherwise.
    #[command(after_help = "Examples:\n  spool dump ./data orders --from 1000 --limit 10\n  \
                            spool dump ./data orders --since 15m --format json\n  \
                            spool dump ./data orders --since 2026-11-25T08:00:00Z --format hex")]
    Dump {
        /// The store's directory.
        dir: PathBuf,
        /// The channel's name.
        channel: String,
        /// First sequence number to print.
        #[arg(long, conflicts_with = "since")]
        from: Option<u64>,
        /// First message at or after this time: an RFC 3339 UTC time
        /// (2026-11-25T08:00:00Z) or a duration ago (90s, 15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Print at most this many messages.
        #[arg(long)]
        limit: Option<u64>,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Print the last messages of a channel; with -f, keep printing new ones.
    ///
    /// With -f it follows the channel while the application that owns the
    /// store publishes (a new message is printed within about 10 ms), across
    /// segment files and retention, until interrupted (Ctrl-C).
    #[command(after_help = "Examples:\n  spool tail ./data orders\n  spool tail ./data orders -n 0 -f --format json")]
    Tail {
        /// The store's directory.
        dir: PathBuf,
        /// The channel's name.
        channel: String,
        /// How many of the last messages to print first.
        #[arg(short = 'n', long = "lines", default_value_t = 10)]
        lines: u64,
        /// Keep following the channel (until Ctrl-C).
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// List durable subscribers and queue groups: position, lag, state size, last commit.
    #[command(after_help = "Examples:\n  spool subscribers ./data\n  spool subscribers ./data orders --json")]
    Subscribers {
        /// The store's directory.
        dir: PathBuf,
        /// Only this channel.
        channel: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Check every file of the store: records and CRCs, seals, indexes, subscribers.
    ///
    /// Reads everything, changes nothing; works while the application runs
    /// (it checks what was written when it started). Shows a progress bar
    /// on stderr when stderr is a terminal. Exit status 3 when it finds a
    /// problem; each one is printed with its file and offset.
    #[command(after_help = "Example:\n  spool verify ./data && echo intact")]
    Verify {
        /// The store's directory.
        dir: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Copy the store consistently into DEST while the application keeps writing.
    ///
    /// Every channel is copied as an exact prefix at one instant, every
    /// subscriber with the position and state of a commit that existed then.
    /// Sealed segments are hard-linked when DEST is on the same file system,
    /// copied otherwise. DEST must not exist or be empty; the copy opens as
    /// an ordinary store (same store and channel ids).
    #[command(after_help = "Example:\n  spool backup ./data /backups/data-$(date +%F)")]
    Backup {
        /// The store's directory.
        dir: PathBuf,
        /// Where the copy goes (a new or empty directory).
        dest: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Open a damaged store in repair mode and print what was lost.
    ///
    /// Keeps every record and commit that validates; damaged ranges become
    /// holes (reads of them say "lost"), unusable files are renamed aside
    /// (*.damaged), never deleted. The store must not be open elsewhere.
    /// Asks for confirmation unless --yes. Exit status 3 when data was lost.
    #[command(after_help = "Example:\n  spool verify ./data || spool repair ./data --yes")]
    Repair {
        /// The store's directory.
        dir: PathBuf,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Forward a channel to NATS JetStream, exactly once, with a live status line.
    ///
    /// Unlike the other commands, the relay owns the store while it runs
    /// (it commits its position as a durable subscriber): run it against a
    /// store no application has open, or use the spool-relay library inside
    /// the application. Stops gracefully on Ctrl-C or SIGTERM.
    Relay(spool_relay::command::RelayArgs),
}

/// `--json`.
#[derive(Args, Debug, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of text (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// How messages are printed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per message: seq, time, payload (text, or hex when binary).
    Text,
    /// One JSON object per line.
    Json,
    /// The payloads only, each followed by a newline.
    Raw,
    /// A header line per message, then its payload as a hex dump.
    Hex,
}

/// `--format` (and `--json`, the same as `--format json`).
#[derive(Args, Debug, Clone, Copy)]
pub struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The same as --format json.
    #[arg(long)]
    pub json: bool,
}

impl FormatArgs {
    /// The format asked for.
    pub fn get(self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }
}
