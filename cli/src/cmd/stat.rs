//! `spool stat`: the store at a glance.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use spool::{Limits, SubscriberInfo};

use super::subscribers::{kind_name, SubscriberJson};
use super::{json_pretty, open, CliError, Outcome};
use crate::render;

#[derive(Serialize)]
struct StoreJson {
    path: String,
    store_id: String,
    /// The pid of the process that has the store open (holds its lock),
    /// if one does.
    owner_pid: Option<u32>,
    disk_bytes: u64,
    channels: Vec<ChannelJson>,
}

#[derive(Serialize)]
struct ChannelJson {
    name: String,
    id: u64,
    first_seq: u64,
    last_seq: u64,
    messages: u64,
    segments: usize,
    disk_bytes: u64,
    oldest_ns: Option<u64>,
    newest_ns: Option<u64>,
    limits: LimitsJson,
    subscribers: Vec<SubscriberJson>,
}

/// The limits in force (null: none).
#[derive(Serialize)]
struct LimitsJson {
    max_msgs: Option<u64>,
    max_bytes: Option<u64>,
    max_age_ns: Option<u64>,
    max_subscribers: Option<usize>,
    max_inactivity_ns: Option<u64>,
}

fn ns(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl From<Limits> for LimitsJson {
    fn from(l: Limits) -> Self {
        LimitsJson {
            max_msgs: l.max_msgs,
            max_bytes: l.max_bytes,
            max_age_ns: ns(l.max_age),
            max_subscribers: l.max_subscribers,
            max_inactivity_ns: ns(l.max_inactivity),
        }
    }
}

impl LimitsJson {
    fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.max_msgs {
            parts.push(format!("max_msgs {n}"));
        }
        if let Some(n) = self.max_bytes {
            parts.push(format!("max_bytes {}", render::bytes(n)));
        }
        if let Some(n) = self.max_age_ns {
            parts.push(format!("max_age {}", render::duration_ns(n)));
        }
        if let Some(n) = self.max_subscribers {
            parts.push(format!("max_subscribers {n}"));
        }
        if let Some(n) = self.max_inactivity_ns {
            parts.push(format!("max_inactivity {}", render::duration_ns(n)));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Whether a process holds the store's lock now, and its pid: read from
/// the kernel's table of file locks (`/proc/locks`), matched by the lock
/// file's inode. Nothing is locked or written to find out.
fn owner(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join("LOCK")).ok()?;
    let (major, minor) = (
        (meta.dev() >> 8) & 0xfff,
        (meta.dev() & 0xff) | ((meta.dev() >> 12) & 0xfff00),
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let mut parts = file.split(':');
        let maj = u64::from_str_radix(parts.next()?, 16).ok()?;
        let min = u64::from_str_radix(parts.next()?, 16).ok()?;
        let ino: u64 = parts.next()?.parse().ok()?;
        (*kind == "FLOCK" && ino == meta.ino() && maj == major && min == minor)
            .then(|| pid.parse().ok())
            .flatten()
    })
}

pub fn run(dir: &Path, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let store = open(dir)?;
    let owner_pid = owner(dir);
    let mut channels = Vec::new();
    for name in store.channel_names() {
        let ch = match store.open_channel(&name) {
            Ok(ch) => ch,
            // Deleted by the owner since the names were read.
            Err(spool::Error::NoSuchChannel { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        // Subscribers first: the channel as read after them holds every
        // message their commits point at.
        let subs: Vec<SubscriberInfo> = ch.subscribers()?;
        let stats = ch.stats();
        let oldest = (stats.messages > 0)
            .then(|| ch.get(stats.first_seq).ok().map(|m| m.timestamp()))
            .flatten();
        channels.push(ChannelJson {
            name: name.clone(),
            id: stats.id,
            first_seq: stats.first_seq,
            last_seq: stats.last_seq,
            messages: stats.messages,
            segments: stats.segments,
            disk_bytes: ch.disk_usage()?,
            oldest_ns: oldest,
            newest_ns: (stats.messages > 0).then(|| ch.last_timestamp()),
            limits: stats.limits.into(),
            subscribers: subs.iter().map(SubscriberJson::from).collect(),
        });
    }
    let report = StoreJson {
        path: dir.display().to_string(),
        store_id: format!("{:032x}", store.store_id()),
        owner_pid,
        disk_bytes: store.disk_usage()?,
        channels,
    };
    if json {
        json_pretty(out, &report)?;
        return Ok(Outcome::Done);
    }
    let owner_text = match report.owner_pid {
        Some(pid) => format!("open in pid {pid}"),
        None => "not open".into(),
    };
    writeln!(out, "store    {}  ({owner_text})", report.path)?;
    writeln!(out, "id       {}", report.store_id)?;
    writeln!(
        out,
        "disk     {} in {} channels",
        render::bytes(report.disk_bytes),
        report.channels.len()
    )?;
    for c in &report.channels {
        writeln!(out)?;
        writeln!(out, "channel {:?} (id {})", c.name, c.id)?;
        if c.messages == 0 {
            writeln!(out, "  messages     none (next seq {})", c.last_seq + 1)?;
        } else {
            writeln!(
                out,
                "  messages     {} (seq {}..={})",
                c.messages, c.first_seq, c.last_seq
            )?;
        }
        if let (Some(oldest), Some(newest)) = (c.oldest_ns, c.newest_ns) {
            writeln!(
                out,
                "  time         {} .. {}",
                render::time(oldest),
                render::time(newest)
            )?;
        }
        writeln!(
            out,
            "  disk         {} in {} segments",
            render::bytes(c.disk_bytes),
            c.segments
        )?;
        writeln!(out, "  limits       {}", c.limits.text())?;
        for s in &c.subscribers {
            writeln!(
                out,
                "  {:<12} {:<18} {} {:<10} lag {}",
                kind_name(s.kind),
                s.name,
                if s.kind == "queue_group" {
                    "ack floor"
                } else {
                    "position "
                },
                s.position,
                s.lag
            )?;
        }
    }
    Ok(Outcome::Done)
}
