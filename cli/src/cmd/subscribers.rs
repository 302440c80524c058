//! `spool subscribers`: every durable subscriber and queue group.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use spool::{SubscriberInfo, SubscriptionKind};

use super::{json_pretty, open, CliError, Outcome};
use crate::render;

/// One subscriber or queue group as JSON.
#[derive(Serialize)]
pub struct SubscriberJson {
    pub name: String,
    /// `subscriber` or `queue_group`.
    pub kind: &'static str,
    pub position: u64,
    pub ack_floor: Option<u64>,
    pub acked_above_floor: u64,
    pub lag: u64,
    pub state_bytes: usize,
    pub committed_ns: Option<u64>,
}

impl From<&SubscriberInfo> for SubscriberJson {
    fn from(s: &SubscriberInfo) -> Self {
        SubscriberJson {
            name: s.name.clone(),
            kind: match s.kind {
                SubscriptionKind::QueueGroup => "queue_group",
                _ => "subscriber",
            },
            position: s.position,
            ack_floor: s.ack_floor,
            acked_above_floor: s.acked_above_floor,
            lag: s.lag,
            state_bytes: s.state_len,
            committed_ns: s.committed_at,
        }
    }
}

/// The kind as people read it.
pub fn kind_name(kind: &str) -> &'static str {
    if kind == "queue_group" {
        "queue group"
    } else {
        "subscriber"
    }
}

#[derive(Serialize)]
struct ChannelSubscribers {
    channel: String,
    last_seq: u64,
    subscribers: Vec<SubscriberJson>,
}

pub fn run(dir: &Path, only: Option<&str>, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let store = open(dir)?;
    let names = match only {
        Some(name) => vec![store.open_channel(name)?.name().to_string()],
        None => store.channel_names(),
    };
    let mut all = Vec::new();
    for name in names {
        let ch = match store.open_channel(&name) {
            Ok(ch) => ch,
            Err(spool::Error::NoSuchChannel { .. }) if only.is_none() => continue,
            Err(e) => return Err(e.into()),
        };
        let subscribers = ch.subscribers()?.iter().map(SubscriberJson::from).collect();
        all.push(ChannelSubscribers {
            channel: name,
            last_seq: ch.last_seq(),
            subscribers,
        });
    }
    if json {
        json_pretty(out, &all)?;
        return Ok(Outcome::Done);
    }
    writeln!(
        out,
        "{:<16} {:<18} {:<12} {:>12} {:>10} {:>8}  LAST COMMIT",
        "CHANNEL", "NAME", "KIND", "POSITION", "LAG", "STATE"
    )?;
    for c in &all {
        for s in &c.subscribers {
            let extra = if s.acked_above_floor > 0 {
                format!(" (+{} acked above)", s.acked_above_floor)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:<16} {:<18} {:<12} {:>12} {:>10} {:>8}  {}{extra}",
                c.channel,
                s.name,
                kind_name(s.kind),
                s.position,
                s.lag,
                render::bytes(s.state_bytes as u64),
                s.committed_ns.map_or_else(|| "unknown".into(), render::time),
            )?;
        }
    }
    Ok(Outcome::Done)
}
