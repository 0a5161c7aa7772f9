//! The cluster's address book: how to reach each member, replicated with the membership.
//!
//! When kvnode proposes a configuration change it puts the addresses of the nodes involved
//! in the entry's opaque `context` ([`MembershipContext`]); when the entry applies, every
//! replica records them, so any node can tell a client where the leader listens. The book
//! is part of the snapshot.
//!
//! ```text
//! context = version:u8 (=1) count:u32le member*
//! member  = id:u64le peer:bytes client:bytes      (bytes = len:u32le data, UTF-8)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::NodeId;

use super::encoding::DecodeError;
use super::wire::{put_bytes, put_count, Reader};

/// Longest address stored (a DNS name is at most 253 bytes, plus `:65535`).
pub const MEMBER_ADDRESS_BYTES_MAX: usize = 260;

const CONTEXT_VERSION: u8 = 1;

/// Where a member listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddress {
    /// `host:port` for Raft traffic.
    pub peer: String,
    /// `host:port` for Redis clients.
    pub client: String,
}

/// The addresses carried in a configuration entry's context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipContext {
    pub members: Vec<(NodeId, MemberAddress)>,
}

impl MembershipContext {
    /// The bytes to put in the configuration entry's context.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(CONTEXT_VERSION);
        put_count(&mut out, self.members.len());
        for (id, address) in &self.members {
            out.put_u64_le(id.get());
            put_bytes(&mut out, address.peer.as_bytes());
            put_bytes(&mut out, address.client.as_bytes());
        }
        out.freeze()
    }

    /// Decodes a context written by [`MembershipContext::encode`]; an empty context (a
    /// change proposed with no addresses) decodes as no members.
    ///
    /// # Errors
    /// [`DecodeError`] for bytes that are not a context; never panics.
    pub fn decode(bytes: &[u8]) -> Result<MembershipContext, DecodeError> {
        if bytes.is_empty() {
            return Ok(MembershipContext::default());
        }
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != CONTEXT_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let count = reader.u32()?;
        let remaining = reader.remaining();
        // Each member takes at least 16 bytes: check before allocating for `count`.
        if usize::try_from(count).map_or(true, |count| count > remaining / 16) {
            return Err(DecodeError::CountTooLarge { count, remaining });
        }
        let mut members = Vec::new();
        for _ in 0..count {
            let id = NodeId(reader.u64()?);
            let peer = read_address(&mut reader)?;
            let client = read_address(&mut reader)?;
            members.push((id, MemberAddress { peer, client }));
        }
        match reader.remaining() {
            0 => Ok(MembershipContext { members }),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Reads one length-prefixed UTF-8 address of at most [`MEMBER_ADDRESS_BYTES_MAX`] bytes.
pub(crate) fn read_address(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    let offset = reader.position();
    let raw = reader.bytes()?;
    if raw.len() > MEMBER_ADDRESS_BYTES_MAX {
        return Err(DecodeError::InvalidAddress { offset });
    }
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidAddress { offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(n: u16) -> MemberAddress {
        MemberAddress {
            peer: format!("10.0.0.{n}:7000"),
            client: format!("10.0.0.{n}:6379"),
        }
    }

    #[test]
    fn context_round_trips() {
        let cases = [
            MembershipContext::default(),
            MembershipContext {
                members: vec![(NodeId(1), address(1)), (NodeId(4), address(4))],
            },
        ];
        for context in cases {
            assert_eq!(
                MembershipContext::decode(&context.encode()),
                Ok(context.clone())
            );
        }
    }

    #[test]
    fn empty_bytes_mean_no_addresses() {
        assert_eq!(
            MembershipContext::decode(b""),
            Ok(MembershipContext::default())
        );
    }

    #[test]
    fn malformed_context_is_refused() {
        let good = MembershipContext {
            members: vec![(NodeId(1), address(1))],
        }
        .encode();
        for cut in 1..good.len() {
            assert!(
                MembershipContext::decode(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let cases: &[(&[u8], DecodeError)] = &[
            (b"\x02", DecodeError::UnsupportedVersion { version: 2 }),
            (b"\x01\xff\xff\xff\xff", DecodeError::CountTooLarge { count: u32::MAX, remaining: 0 }),
            (
                b"\x01\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\xff\x00\x00\x00\x00",
                DecodeError::InvalidAddress { offset: 13 },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                MembershipContext::decode(bytes),
                Err(expected.clone()),
                "{bytes:?}"
            );
        }
    }
}
