//! The envelope of a dead letter: a message a queue group gave up on,
//! published to the dead-letter channel as this envelope followed by the
//! original payload, unchanged (docs/format.md, "Dead letters").
//!
//! ```text
//! 0   4  magic "SPDL"
//! 4   1  version (1)
//! 5   1  reason (1 ack wait ran out, 2 nak, 3 member left)
//! 6   4  delivery count (u32)
//! 10  8  original seq (u64)
//! 18  8  original channel id (u64)
//! 26  2  channel name length c (u16), then c bytes of UTF-8
//! ..  2  group name length g (u16), then g bytes of UTF-8
//! ..     the original payload (the rest of the message)
//! ```

use crate::codec::ByteReader;

const MAGIC: &[u8; 4] = b"SPDL";
const VERSION: u8 = 1;

/// The envelope's fields (the payload follows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub reason: u8,
    pub count: u32,
    pub seq: u64,
    pub channel_id: u64,
    pub channel: &'a str,
    pub group: &'a str,
}

impl Envelope<'_> {
    /// Bytes the envelope adds before the payload.
    pub(crate) fn len(&self) -> usize {
        30 + self.channel.len() + self.group.len()
    }

    /// The envelope followed by `payload`.
    pub(crate) fn wrap(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + payload.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.reason);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.channel_id.to_le_bytes());
        for name in [self.channel, self.group] {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(payload);
        out
    }
}

/// Splits a dead letter into its envelope and the original payload;
/// `None` if `bytes` is not one.
pub(crate) fn unwrap(bytes: &[u8]) -> Option<(Envelope<'_>, &[u8])> {
    let mut r = ByteReader::new(bytes);
    if r.take(4)? != MAGIC || r.u8()? != VERSION {
        return None;
    }
    let reason = r.u8()?;
    let count = r.u32()?;
    let seq = r.u64()?;
    let channel_id = r.u64()?;
    let mut name = || -> Option<&str> {
        let len = usize::from(r.u16()?);
        std::str::from_utf8(r.take(len)?).ok()
    };
    let channel = name()?;
    let group = name()?;
    let at = 30 + channel.len() + group.len();
    let payload = bytes.get(at..)?;
    Some((
        Envelope {
            reason,
            count,
            seq,
            channel_id,
            channel,
            group,
        },
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncations() {
        let e = Envelope {
            reason: 2,
            count: 3,
            seq: 77,
            channel_id: 9,
            channel: "jobs",
            group: "workers",
        };
        let b = e.wrap(b"payload");
        assert_eq!(b.len(), e.len() + 7);
        let (got, payload) = unwrap(&b).expect("unwraps");
        assert_eq!((got, payload), (e, &b"payload"[..]));
        let head = b.len() - 7;
        for cut in 0..head {
            assert!(unwrap(&b[..cut]).is_none(), "cut at {cut}");
        }
        assert!(unwrap(b"not a dead letter").is_none());
    }
}
