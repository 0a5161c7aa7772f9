//! Frame layout, encoding and the length-checked decoder.
//!
//! A frame is a 4-byte big-endian length (of what follows, excluding itself), then the
//! body: one protocol-version byte, then the postcard encoding of a [`WireBody`]. The
//! length prefix is tokio-util's `LengthDelimitedCodec` format; decoding goes through that
//! codec with `max_frame_length` set, and the length is checked against the limit before a
//! single body byte is buffered, so a hostile length never causes an allocation.
//!
//! Encoding writes frames straight into a caller's buffer so a batch of messages becomes one
//! contiguous buffer and one write (see `peer/batch.rs`).

use bytes::{Buf, BufMut, BytesMut};
use raft_core::Message;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

use crate::error::{DecodeError, EncodeError};
use crate::handshake::{Challenge, Handshake};
use crate::secret::Proof;

/// The version byte every frame starts with. See PROTOCOL.md for when it changes.
pub const PROTOCOL_VERSION: u8 = 4;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// What a frame carries. The postcard tag (0 to 6) is the body's second byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireBody {
    /// The dialer's first frame ("hello").
    Handshake(Handshake),
    Message(Message),
    /// The acceptor's reply to an accepted hello, and its first frame; `from` is the
    /// acceptor. The dialer writes no message before it has read this.
    Welcome(Handshake),
    /// Carries nothing and is skipped by the receiver. Written to find out whether a
    /// connection the peer has apparently given up on is still alive (see PROTOCOL.md,
    /// "Connections"): a dead one answers with a reset.
    Probe,
    /// Carries nothing and is skipped by the receiver. Written on an established connection
    /// only when nothing else has been written to it for `keepalive_interval`, so that a
    /// live peer is never silent for longer and a silent connection can be declared dead
    /// (see `liveness` and PROTOCOL.md, "Liveness").
    Keepalive,
    /// The acceptor's answer to a hello carrying a nonce (cluster secret in use): its nonce
    /// and its proof. The dialer answers with [`WireBody::Proof`].
    Challenge(Challenge),
    /// The dialer's proof of the cluster secret, its second frame; the acceptor decides on
    /// the hello (welcome or close) only after checking it.
    Proof(Proof),
}

/// A postcard output flavor that appends to a `BytesMut`, copying slices in one go (the
/// stock `ExtendFlavor` pushes byte by byte, which is slow for snapshot chunks).
struct BytesMutFlavor<'a> {
    dst: &'a mut BytesMut,
}

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.dst.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.dst.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends one whole frame (prefix, version byte, body) to `dst` and returns its length
/// including the prefix. On error `dst` is left exactly as it was.
///
/// # Errors
/// `TooLarge` if the frame body would exceed `frame_bytes_max` (the receiver would refuse
/// it); `Serialize` if postcard fails.
pub fn encode_frame(
    body: &WireBody,
    frame_bytes_max: usize,
    dst: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let start = dst.len();
    dst.put_u32(0); // patched below, once the body length is known
    dst.put_u8(PROTOCOL_VERSION);
    let encoded = postcard::serialize_with_flavor(body, BytesMutFlavor { dst: &mut *dst });
    if let Err(source) = encoded {
        dst.truncate(start);
        return Err(EncodeError::Serialize { source });
    }
    let frame_bytes = dst.len() - start;
    let body_bytes = frame_bytes - LENGTH_PREFIX_BYTES;
    let body_len = match u32::try_from(body_bytes) {
        Ok(len) if body_bytes <= frame_bytes_max => len,
        _ => {
            dst.truncate(start);
            return Err(EncodeError::TooLarge {
                frame_bytes: body_bytes,
                frame_bytes_max,
            });
        }
    };
    dst[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&body_len.to_be_bytes());
    Ok(frame_bytes)
}

/// Decodes a frame body (everything after the length prefix).
///
/// # Errors
/// An empty body, a version other than [`PROTOCOL_VERSION`], bytes postcard rejects, or
/// bytes left over after a complete value.
pub fn decode_body(body: &[u8]) -> Result<WireBody, DecodeError> {
    let (&version, rest) = body.split_first().ok_or(DecodeError::EmptyFrame)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            version,
            supported: PROTOCOL_VERSION,
        });
    }
    let (value, trailing) = postcard::take_from_bytes::<WireBody>(rest)
        .map_err(|source| DecodeError::Malformed { source })?;
    if !trailing.is_empty() {
        return Err(DecodeError::TrailingBytes {
            trailing_bytes: trailing.len(),
        });
    }
    Ok(value)
}

/// Splits a byte stream into frames and decodes them. Buffers at most one frame body
/// (bounded by `frame_bytes_max`) plus whatever the last read brought in.
pub struct FrameDecoder {
    lengths: LengthDelimitedCodec,
    frame_bytes_max: usize,
    /// True once `lengths` has consumed a frame's prefix and waits for its body; the
    /// bytes at the front of the buffer are then body bytes, not a prefix.
    in_frame: bool,
}

impl FrameDecoder {
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        let lengths = LengthDelimitedCodec::builder()
            .length_field_length(LENGTH_PREFIX_BYTES)
            .max_frame_length(frame_bytes_max)
            .new_codec();
        FrameDecoder {
            lengths,
            frame_bytes_max,
            in_frame: false,
        }
    }

    /// The next whole frame in `src`, or `None` if more bytes are needed. Returns the
    /// decoded body and the frame's size on the wire, prefix included.
    ///
    /// # Errors
    /// Any [`DecodeError`]; the connection must then be closed, since the stream position
    /// is no longer trustworthy.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<(WireBody, usize)>, DecodeError> {
        let has_prefix = !self.in_frame && src.len() >= LENGTH_PREFIX_BYTES;
        if has_prefix {
            self.decode_check_length(src)?;
        }
        let frame = self
            .lengths
            .decode(src)
            .map_err(|source| DecodeError::Length { source })?;
        match frame {
            None => {
                // The codec consumes a whole prefix as soon as one is buffered.
                self.in_frame |= has_prefix;
                Ok(None)
            }
            Some(body) => {
                self.in_frame = false;
                let wire_bytes = body.len() + LENGTH_PREFIX_BYTES;
                Ok(Some((decode_body(&body)?, wire_bytes)))
            }
        }
    }

    /// Rejects an oversized length from the prefix alone, with the length in the error
    /// (the codec's own error does not carry it).
    fn decode_check_length(&self, src: &BytesMut) -> Result<(), DecodeError> {
        let frame_bytes = u64::from((&src[..LENGTH_PREFIX_BYTES]).get_u32());
        let frame_bytes_max = u64::try_from(self.frame_bytes_max).expect("usize fits in u64");
        if frame_bytes > frame_bytes_max {
            return Err(DecodeError::TooLarge {
                frame_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ClusterId;
    use crate::secret::Nonce;
    use bytes::{BufMut, Bytes};
    use raft_core::{LogIndex, MessageBody, NodeId, SnapshotMeta, Term};
    use tokio_util::codec::Encoder;

    const FRAME_MAX: usize = 64 * 1024;

    fn heartbeat(round: u64) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::Heartbeat {
                commit: LogIndex(9),
                read_round: round,
            },
        }
    }

    fn snapshot_chunk(data_bytes: usize) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(3),
            body: MessageBody::InstallSnapshot {
                meta: SnapshotMeta::default(),
                offset: 0,
                data: Bytes::from(vec![7u8; data_bytes]),
                done: false,
            },
        }
    }

    #[test]
    fn frames_round_trip_in_one_buffer() {
        let bodies = vec![
            WireBody::Handshake(Handshake::new(ClusterId(5), NodeId(1), NodeId(2))),
            WireBody::Message(heartbeat(1)),
            WireBody::Message(snapshot_chunk(1000)),
            WireBody::Message(heartbeat(2)),
            WireBody::Welcome(Handshake::new(ClusterId(5), NodeId(2), NodeId(1))),
            WireBody::Probe,
            WireBody::Keepalive,
            WireBody::Handshake(
                Handshake::new(ClusterId(5), NodeId(1), NodeId(2)).with_nonce(Nonce([7; 32])),
            ),
            WireBody::Challenge(Challenge {
                nonce: Nonce([8; 32]),
                proof: Proof([9; 32]),
            }),
            WireBody::Proof(Proof([10; 32])),
        ];
        let mut buf = BytesMut::new();
        let mut total = 0;
        for body in &bodies {
            total += encode_frame(body, FRAME_MAX, &mut buf).expect("fits");
        }
        assert_eq!(total, buf.len());
        let mut decoder = FrameDecoder::new(FRAME_MAX);
        let mut got = Vec::new();
        while let Some((body, _)) = decoder.decode(&mut buf).expect("valid") {
            got.push(body);
        }
        assert_eq!(got, bodies);
        assert!(buf.is_empty());
    }

    /// The example in PROTOCOL.md, byte for byte.
    #[test]
    fn handshake_bytes_match_protocol_md() {
        let mut buf = BytesMut::new();
        let hello = Handshake::new(ClusterId(42), NodeId(2), NodeId(1));
        encode_frame(&WireBody::Handshake(hello), FRAME_MAX, &mut buf).expect("fits");
        let expected = [
            0, 0, 0, 0x0b, 4, 0, 0xce, 0xac, 0xad, 0x92, 0x05, 0x2a, 2, 1, 0,
        ];
        assert_eq!(&buf[..], &expected[..]);
        buf.clear();
        let welcome = Handshake::new(ClusterId(42), NodeId(1), NodeId(2));
        encode_frame(&WireBody::Welcome(welcome), FRAME_MAX, &mut buf).expect("fits");
        let expected = [
            0, 0, 0, 0x0b, 4, 2, 0xce, 0xac, 0xad, 0x92, 0x05, 0x2a, 1, 2, 0,
        ];
        assert_eq!(&buf[..], &expected[..]);
        buf.clear();
        encode_frame(&WireBody::Probe, FRAME_MAX, &mut buf).expect("fits");
        assert_eq!(&buf[..], &[0, 0, 0, 2, 4, 3][..]);
        buf.clear();
        encode_frame(&WireBody::Keepalive, FRAME_MAX, &mut buf).expect("fits");
        assert_eq!(&buf[..], &[0, 0, 0, 2, 4, 4][..]);
    }

    /// The secret-mode frames in PROTOCOL.md: sizes and where the fixed-width fields sit.
    #[test]
    fn secret_frames_match_protocol_md() {
        let mut buf = BytesMut::new();
        let hello =
            Handshake::new(ClusterId(42), NodeId(2), NodeId(1)).with_nonce(Nonce([0xd1; 32]));
        encode_frame(&WireBody::Handshake(hello), FRAME_MAX, &mut buf).expect("fits");
        assert_eq!(
            &buf[..15],
            &[0, 0, 0, 0x2b, 4, 0, 0xce, 0xac, 0xad, 0x92, 0x05, 0x2a, 2, 1, 1][..]
        );
        assert_eq!(&buf[15..], &[0xd1; 32][..]);
        buf.clear();
        let challenge = Challenge {
            nonce: Nonce([0xa1; 32]),
            proof: Proof([0xa2; 32]),
        };
        encode_frame(&WireBody::Challenge(challenge), FRAME_MAX, &mut buf).expect("fits");
        assert_eq!(&buf[..6], &[0, 0, 0, 0x42, 4, 5][..]);
        assert_eq!(&buf[6..38], &[0xa1; 32][..]);
        assert_eq!(&buf[38..], &[0xa2; 32][..]);
        buf.clear();
        encode_frame(&WireBody::Proof(Proof([0xd2; 32])), FRAME_MAX, &mut buf).expect("fits");
        assert_eq!(&buf[..6], &[0, 0, 0, 0x22, 4, 6][..]);
        assert_eq!(&buf[6..], &[0xd2; 32][..]);
    }

    #[test]
    fn encoded_prefix_matches_length_delimited_codec() {
        let mut ours = BytesMut::new();
        encode_frame(&WireBody::Message(heartbeat(4)), FRAME_MAX, &mut ours).expect("fits");
        let body = Bytes::copy_from_slice(&ours[LENGTH_PREFIX_BYTES..]);
        let mut theirs = BytesMut::new();
        LengthDelimitedCodec::new()
            .encode(body, &mut theirs)
            .expect("codec encodes");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn frame_split_at_every_byte_decodes_once_complete() {
        let mut whole = BytesMut::new();
        encode_frame(
            &WireBody::Message(snapshot_chunk(300)),
            FRAME_MAX,
            &mut whole,
        )
        .expect("fits");
        encode_frame(&WireBody::Message(heartbeat(8)), FRAME_MAX, &mut whole).expect("fits");
        for split in 0..whole.len() {
            let mut decoder = FrameDecoder::new(FRAME_MAX);
            let mut buf = BytesMut::from(&whole[..split]);
            let mut got = Vec::new();
            while let Some((body, _)) = decoder.decode(&mut buf).expect("prefix is valid") {
                got.push(body);
            }
            buf.extend_from_slice(&whole[split..]);
            while let Some((body, _)) = decoder.decode(&mut buf).expect("valid") {
                got.push(body);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[1], WireBody::Message(heartbeat(8)), "split at {split}");
        }
    }

    #[test]
    fn oversized_frame_rejected_from_prefix_alone() {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::try_from(FRAME_MAX + 1).expect("small"));
        buf.put_u8(PROTOCOL_VERSION);
        let err = FrameDecoder::new(FRAME_MAX)
            .decode(&mut buf)
            .expect_err("too large");
        assert!(matches!(err, DecodeError::TooLarge { frame_bytes, .. } if frame_bytes == 65537));
        assert!(
            buf.capacity() < FRAME_MAX,
            "no allocation for the claimed length"
        );
    }

    #[test]
    fn oversized_message_not_encoded() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let err = encode_frame(
            &WireBody::Message(snapshot_chunk(FRAME_MAX)),
            FRAME_MAX,
            &mut buf,
        )
        .expect_err("too large");
        assert!(matches!(err, EncodeError::TooLarge { .. }));
        assert_eq!(&buf[..], b"keep");
    }

    #[test]
    fn bad_bodies_rejected() {
        let mut valid = BytesMut::new();
        encode_frame(&WireBody::Message(heartbeat(1)), FRAME_MAX, &mut valid).expect("fits");
        let body = &valid[LENGTH_PREFIX_BYTES..];
        let mut wrong_version = body.to_vec();
        wrong_version[0] = PROTOCOL_VERSION + 1;
        let mut trailing = body.to_vec();
        trailing.push(0);
        type Expect = fn(&DecodeError) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("empty", vec![], |e| matches!(e, DecodeError::EmptyFrame)),
            ("version", wrong_version, |e| {
                matches!(e, DecodeError::UnsupportedVersion { version: 5, .. })
            }),
            ("trailing", trailing, |e| {
                matches!(e, DecodeError::TrailingBytes { trailing_bytes: 1 })
            }),
            ("truncated body", body[..body.len() - 1].to_vec(), |e| {
                matches!(e, DecodeError::Malformed { .. })
            }),
            ("unknown tag", vec![PROTOCOL_VERSION, 9], |e| {
                matches!(e, DecodeError::Malformed { .. })
            }),
        ];
        for (name, bytes, expected) in cases {
            let err = decode_body(&bytes).expect_err(name);
            assert!(expected(&err), "{name}: {err:?}");
        }
    }
}
