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

/// The identity of `store` in message ids: [`spool::Store::store_id`], a
/// random id fixed when the store was created and kept by its copies, so a
/// store deleted and created again at the same path never reuses ids.
pub fn store_id(store: &spool::Store) -> u128 {
    store.store_id()
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
    fn store_id_is_the_stores_own_and_kept_across_reopen() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (ida, idb) = {
            let sa = spool::Store::open(a.path(), spool::Options::default()).unwrap();
            let sb = spool::Store::open(b.path(), spool::Options::default()).unwrap();
            (store_id(&sa), store_id(&sb))
        };
        assert_ne!(ida, idb, "two stores, two ids");
        let sa = spool::Store::open(a.path(), spool::Options::default()).unwrap();
        assert_eq!(store_id(&sa), ida, "the same store keeps its id");
        drop(sa);
        // A store deleted and created again at the same path is another one.
        std::fs::remove_dir_all(a.path()).unwrap();
        let again = spool::Store::open(a.path(), spool::Options::default()).unwrap();
        assert_ne!(store_id(&again), ida);
    }
}
