//! The state machine of one accepted connection, without I/O.
//!
//! Bytes go in (`BytesMut` filled by the socket reader); events come out: first exactly one
//! [`InboundEvent::Established`] for a valid handshake, then [`InboundEvent::Message`]s
//! whose `from` equals the handshake's sender and whose `to` is this node. Anything else is
//! a [`RejectReason`], after which the caller closes the connection: the decoder does not
//! try to resynchronise on a stream it can no longer trust.
//!
//! Memory: the buffer holds at most one frame (bounded by `frame_bytes_max`, checked from
//! the length prefix before buffering) plus one read's worth of bytes. `tests/fuzz.rs`
//! checks that bound and the absence of panics on random and mutated streams.

use bytes::BytesMut;
use raft_core::{Message, NodeId};

use crate::codec::{FrameDecoder, WireBody};
use crate::error::{DecodeError, RejectReason};
use crate::handshake::ClusterId;

#[derive(Debug, PartialEq, Eq)]
pub enum InboundEvent {
    /// The handshake was accepted; `peer` is the dialing node.
    Established { peer: NodeId },
    /// A message, and its size on the wire.
    Message { message: Message, wire_bytes: usize },
}

pub struct InboundDecoder {
    frames: FrameDecoder,
    cluster_id: ClusterId,
    local_id: NodeId,
    /// The handshake's sender, once accepted.
    peer: Option<NodeId>,
}

impl InboundDecoder {
    pub fn new(cluster_id: ClusterId, local_id: NodeId, frame_bytes_max: usize) -> InboundDecoder {
        InboundDecoder {
            frames: FrameDecoder::new(frame_bytes_max),
            cluster_id,
            local_id,
            peer: None,
        }
    }

    /// The peer named by an accepted handshake.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The next event in `src`, or `None` when more bytes are needed.
    ///
    /// # Errors
    /// Why the connection must be closed.
    pub fn next_event(&mut self, src: &mut BytesMut) -> Result<Option<InboundEvent>, RejectReason> {
        let Some((body, wire_bytes)) = self.frames.decode(src)? else {
            return Ok(None);
        };
        match (body, self.peer) {
            (WireBody::Handshake(handshake), None) => {
                handshake.check(self.cluster_id, self.local_id)?;
                self.peer = Some(handshake.from);
                Ok(Some(InboundEvent::Established {
                    peer: handshake.from,
                }))
            }
            (WireBody::Handshake(_), Some(_)) => Err(RejectReason::RepeatedHandshake),
            (WireBody::Message(message), None) => Err(RejectReason::MessageBeforeHandshake {
                kind: message.body.kind(),
            }),
            (WireBody::Message(message), Some(peer)) => {
                self.next_event_check_ids(&message, peer)?;
                Ok(Some(InboundEvent::Message {
                    message,
                    wire_bytes,
                }))
            }
        }
    }

    fn next_event_check_ids(&self, message: &Message, peer: NodeId) -> Result<(), RejectReason> {
        if message.from != peer {
            return Err(RejectReason::SenderMismatch {
                handshake_from: peer,
                frame_from: message.from,
            });
        }
        if message.to != self.local_id {
            return Err(RejectReason::ReceiverMismatch {
                ours: self.local_id,
                frame_to: message.to,
            });
        }
        Ok(())
    }

    /// Called when the stream ends.
    ///
    /// # Errors
    /// `Truncated` if the stream stopped inside a frame.
    pub fn finish(&self, src: &BytesMut) -> Result<(), RejectReason> {
        if src.is_empty() {
            Ok(())
        } else {
            Err(RejectReason::Decode(DecodeError::Truncated {
                buffered_bytes: src.len(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_frame;
    use crate::error::RejectClass;
    use crate::handshake::Handshake;
    use raft_core::{MessageBody, Term};

    const FRAME_MAX: usize = 4096;
    const CLUSTER: ClusterId = ClusterId(11);
    const ME: NodeId = NodeId(1);

    fn frame(body: WireBody) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_frame(&body, FRAME_MAX, &mut buf).expect("fits");
        buf
    }

    fn message(from: u64, to: u64) -> WireBody {
        WireBody::Message(Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(1),
            body: MessageBody::TimeoutNow,
        })
    }

    fn hello(from: u64) -> WireBody {
        WireBody::Handshake(Handshake::new(CLUSTER, NodeId(from), ME))
    }

    /// Feeds frames in order; returns the events up to the first rejection.
    fn run(frames: Vec<WireBody>) -> (usize, Option<RejectReason>) {
        let mut decoder = InboundDecoder::new(CLUSTER, ME, FRAME_MAX);
        let mut buf = BytesMut::new();
        for body in frames {
            buf.extend_from_slice(&frame(body));
        }
        let mut events = 0;
        loop {
            match decoder.next_event(&mut buf) {
                Ok(Some(_)) => events += 1,
                Ok(None) => return (events, decoder.finish(&buf).err()),
                Err(reason) => return (events, Some(reason)),
            }
        }
    }

    #[test]
    fn inbound_sequences_table() {
        let cases: Vec<(&str, Vec<WireBody>, usize, Option<RejectClass>)> = vec![
            (
                "handshake then messages",
                vec![hello(2), message(2, 1), message(2, 1)],
                3,
                None,
            ),
            (
                "message first",
                vec![message(2, 1)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "second handshake",
                vec![hello(2), hello(2)],
                1,
                Some(RejectClass::Handshake),
            ),
            (
                "forged sender",
                vec![hello(2), message(3, 1)],
                1,
                Some(RejectClass::WrongIds),
            ),
            (
                "misaddressed",
                vec![hello(2), message(2, 5)],
                1,
                Some(RejectClass::WrongIds),
            ),
            (
                "claims our id",
                vec![hello(1)],
                0,
                Some(RejectClass::Handshake),
            ),
        ];
        for (name, frames, want_events, want_reject) in cases {
            let (events, reject) = run(frames);
            assert_eq!(events, want_events, "{name}");
            assert_eq!(reject.map(|r| r.class()), want_reject, "{name}");
        }
    }

    #[test]
    fn stream_ending_inside_a_frame_is_truncated() {
        let mut decoder = InboundDecoder::new(CLUSTER, ME, FRAME_MAX);
        let whole = frame(hello(2));
        let mut buf = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(decoder.next_event(&mut buf).expect("partial is fine"), None);
        let reason = decoder.finish(&buf).expect_err("truncated");
        assert!(matches!(
            reason,
            RejectReason::Decode(DecodeError::Truncated { .. })
        ));
    }
}
