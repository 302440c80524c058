//! The relay's durable state: the blob its spool subscriber commits together
//! with its position, in one atomic step.
//!
//! Layout (all integers little-endian), version 1:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version = 1 |
//! | 1 | 8 | `stream_seq`: JetStream stream sequence of the last acknowledged message (0: none yet) |
//! | 9 | 8 | `seq_at_stream_seq`: the channel seq of that message |
//! | 17 | 8 | `skipped`: messages skipped as too large (skip-and-record mode) |
//! | 25 | 2 | length `n` of the stream name |
//! | 27 | n | the stream name (UTF-8) |
//!
//! The committed position itself is the subscriber's: every channel seq up
//! to it is acknowledged by JetStream (or skipped and recorded). A relay
//! that starts with an empty blob (a new subscriber) first commits one with
//! the stream's last sequence, before it publishes anything: from then on
//! every message in the stream after `stream_seq` was published by this
//! relay after its last commit, which is what the start-up reconciliation
//! relies on.

use crate::error::RelayError;

const VERSION: u8 = 1;
const FIXED: usize = 27;

/// The decoded state blob of a relay (see the module docs for the layout).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayState {
    /// JetStream stream sequence of the last acknowledged message; 0 before
    /// the first (then the stream's last sequence when the relay started).
    pub stream_seq: u64,
    /// The channel seq of the message stored at `stream_seq` (0 if none).
    pub seq_at_stream_seq: u64,
    /// Messages skipped as too large and recorded (skip-and-record mode).
    pub skipped: u64,
    /// The stream this state refers to.
    pub stream: String,
}

impl RelayState {
    /// Encodes the state as committed with the position.
    pub fn encode(&self) -> Vec<u8> {
        let name = self.stream.as_bytes();
        let mut out = Vec::with_capacity(FIXED + name.len());
        out.push(VERSION);
        out.extend_from_slice(&self.stream_seq.to_le_bytes());
        out.extend_from_slice(&self.seq_at_stream_seq.to_le_bytes());
        out.extend_from_slice(&self.skipped.to_le_bytes());
        let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&name[..usize::from(len)]);
        out
    }

    /// Decodes a committed blob; `Ok(None)` for the empty blob of a
    /// subscriber that never committed. `BadState` for anything that is not
    /// a version-1 relay state.
    pub fn decode(blob: &[u8]) -> Result<Option<RelayState>, RelayError> {
        if blob.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| RelayError::BadState {
            reason: why.to_string(),
        };
        if blob[0] != VERSION {
            return Err(bad(&format!("unknown state version {}", blob[0])));
        }
        if blob.len() < FIXED {
            return Err(bad(&format!(
                "{} bytes, shorter than the {FIXED}-byte header",
                blob.len()
            )));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&blob[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let len = usize::from(u16::from_le_bytes([blob[25], blob[26]]));
        if blob.len() != FIXED + len {
            return Err(bad(&format!(
                "{} bytes, but the header says {}",
                blob.len(),
                FIXED + len
            )));
        }
        let stream = std::str::from_utf8(&blob[FIXED..])
            .map_err(|_| bad("the stream name is not UTF-8"))?
            .to_string();
        Ok(Some(RelayState {
            stream_seq: u64_at(1),
            seq_at_stream_seq: u64_at(9),
            skipped: u64_at(17),
            stream,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = RelayState {
            stream_seq: 77,
            seq_at_stream_seq: 1042,
            skipped: 2,
            stream: "ORDERS".into(),
        };
        let blob = s.encode();
        assert_eq!(blob.len(), FIXED + 6);
        assert_eq!(blob[0], 1);
        assert_eq!(RelayState::decode(&blob).unwrap(), Some(s));
        assert_eq!(RelayState::decode(&[]).unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        let blob = RelayState::default().encode();
        assert!(RelayState::decode(&blob[..10]).is_err());
        let mut v2 = blob.clone();
        v2[0] = 2;
        assert!(RelayState::decode(&v2).is_err());
        let mut long = blob.clone();
        long.push(b'x');
        assert!(RelayState::decode(&long).is_err());
        assert!(RelayState::decode(&7u64.to_le_bytes()).is_err());
    }
}
