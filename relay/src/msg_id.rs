//! Message ids: the `Nats-Msg-Id` header of every relayed message.
//!
//! Format: `<store id>-<channel id>-<seq>`, for example
//! `0f3c9a5e1b7d42c8a0e6f1d2c3b4a596-3-1042`:
//!
//! - store id: 32 lowercase hex digits (a `u128`), the identity of the spool
//!   store the message comes from;
//! - channel id: decimal, the channel's incarnation id
//!   ([`spool::Channel::id`]): a channel deleted and created again under the
//!   same name gets a new id, so its seqs never collide with the earlier
//!   incarnation's;
//! - seq: decimal, the message's sequence number in the channel.
//!
//! JetStream drops a message whose id it has seen within the stream's
//! duplicate window, so a message the relay sends again after a crash or a
//! lost ack is stored once.

use std::fmt;
use std::path::Path;

/// The identity of `store` in message ids.
///
/// `// TODO(store_id)`: switch to `Store::store_id()` (a random id fixed when
/// the store is created, persisted in it) once the library has it. Until
/// then this is a placeholder derived from the canonical path of the store
/// directory: stable across restarts and different for stores in different
/// directories, but a store deleted and created again at the same path gets
/// the same id (the real store id fixes that). It never writes into the
/// store directory.
pub fn store_id(store: &spool::Store) -> u128 {
    // TODO(store_id): return store.store_id()
    placeholder_store_id(store.path())
}

/// FNV-1a (128-bit) of the canonical path: a fixed, documented function, so
/// the id does not change with the Rust version (std's hasher may).
fn placeholder_store_id(path: &Path) -> u128 {
    use std::os::unix::ffi::OsStrExt;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    fnv1a_128(canonical.as_os_str().as_bytes())
}

fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// One message id: which store, which channel incarnation, which seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgId {
    /// The store's identity ([`store_id`]).
    pub store: u128,
    /// The channel's incarnation id.
    pub channel: u64,
    /// The message's sequence number in the channel.
    pub seq: u64,
}

impl MsgId {
    /// Parses an id in the format above; `None` for anything else.
    pub fn parse(s: &str) -> Option<MsgId> {
        let mut parts = s.split('-');
        let store = parts.next()?;
        let channel = parts.next()?;
        let seq = parts.next()?;
        if parts.next().is_some() || store.len() != 32 {
            return None;
        }
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !store.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) || !digits(channel) || !digits(seq) {
            return None;
        }
        Some(MsgId {
            store: u128::from_str_radix(store, 16).ok()?,
            channel: channel.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// Whether the id belongs to the same store and channel incarnation as
    /// `other`.
    pub fn same_channel(&self, other: &MsgId) -> bool {
        self.store == other.store && self.channel == other.channel
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}-{}-{}", self.store, self.channel, self.seq)
    }
}

/// Builds ids for one channel incarnation without reformatting the prefix.
#[derive(Clone, Debug)]
pub(crate) struct IdPrefix {
    prefix: String,
}

impl IdPrefix {
    pub(crate) fn new(store: u128, channel: u64) -> IdPrefix {
        IdPrefix {
            prefix: format!("{store:032x}-{channel}-"),
        }
    }

    pub(crate) fn id(&self, seq: u64) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(self.prefix.len() + 20);
        s.push_str(&self.prefix);
        let _ = write!(s, "{seq}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        let id = MsgId {
            store: 0x0f3c9a5e1b7d42c8a0e6f1d2c3b4a596,
            channel: 3,
            seq: 1042,
        };
        let text = id.to_string();
        assert_eq!(text, "0f3c9a5e1b7d42c8a0e6f1d2c3b4a596-3-1042");
        assert_eq!(MsgId::parse(&text), Some(id));
        assert_eq!(IdPrefix::new(id.store, id.channel).id(id.seq), text);
        assert_eq!(
            MsgId::parse(
                &MsgId {
                    store: 1,
                    channel: 0,
                    seq: 0
                }
                .to_string()
            )
            .unwrap()
            .store,
            1
        );
    }

    #[test]
    fn rejects_other_ids() {
        for bad in [
            "",
            "abc",
            "0f3c9a5e1b7d42c8a0e6f1d2c3b4a596-3",
            "0f3c9a5e1b7d42c8a0e6f1d2c3b4a596-3-4-5",
            "0f3c9a5e1b7d42c8a0e6f1d2c3b4a59-3-4",
            "0F3C9A5E1B7D42C8A0E6F1D2C3B4A596-3-4",
            "0f3c9a5e1b7d42c8a0e6f1d2c3b4a596--4",
            "0f3c9a5e1b7d42c8a0e6f1d2c3b4a596-3-+4",
            "0f3c9a5e1b7d42c8a0e6f1d2c3b4a596-3-99999999999999999999999",
        ] {
            assert_eq!(MsgId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn placeholder_store_id_is_stable_and_path_specific() {
        // FNV-1a test vector: the empty input hashes to the offset basis.
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_eq!(placeholder_store_id(a.path()), placeholder_store_id(a.path()));
        assert_ne!(placeholder_store_id(a.path()), placeholder_store_id(b.path()));
    }
}
