//! The state machine of one connection's incoming bytes, without I/O.
//!
//! Bytes go in (`BytesMut` filled by the socket reader); events come out: first exactly one
//! [`InboundEvent::Established`] for a valid handshake frame, then [`InboundEvent::Message`]s
//! whose `from` equals the peer and whose `to` is this node. On a connection this node
//! accepted, the handshake frame is the dialer's hello ([`InboundDecoder::new`]); on one it
//! dialled, the acceptor's welcome, which must come from the node dialled
//! ([`InboundDecoder::for_dialer`]). Probe and keepalive frames are skipped (a keepalive
//! has done its work once its bytes were read: see `liveness`). Anything else is a
//! [`RejectReason`], after which the caller closes the connection: the decoder does not
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
    /// The handshake frame was accepted; `peer` is the node at the other end.
    Established { peer: NodeId },
    /// A message, and its size on the wire.
    Message { message: Message, wire_bytes: usize },
}

/// Which handshake frame opens the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// We accepted the connection: a hello from any valid peer.
    Acceptor,
    /// We dialled `peer`: a welcome from it.
    Dialer { peer: NodeId },
}

pub struct InboundDecoder {
    frames: FrameDecoder,
    cluster_id: ClusterId,
    local_id: NodeId,
    role: Role,
    /// The node at the other end, once its handshake frame is accepted.
    peer: Option<NodeId>,
}

fn kind_of(body: &WireBody) -> &'static str {
    match body {
        WireBody::Handshake(_) => "hello",
        WireBody::Welcome(_) => "welcome",
        WireBody::Probe => "probe",
        WireBody::Keepalive => "keepalive",
        WireBody::Message(message) => message.body.kind(),
    }
}

impl InboundDecoder {
    /// For a connection this node accepted: the stream opens with a hello.
    pub fn new(cluster_id: ClusterId, local_id: NodeId, frame_bytes_max: usize) -> InboundDecoder {
        InboundDecoder {
            frames: FrameDecoder::new(frame_bytes_max),
            cluster_id,
            local_id,
            role: Role::Acceptor,
            peer: None,
        }
    }

    /// For a connection this node dialled to `peer`: the stream opens with its welcome.
    pub fn for_dialer(
        cluster_id: ClusterId,
        local_id: NodeId,
        peer: NodeId,
        frame_bytes_max: usize,
    ) -> InboundDecoder {
        InboundDecoder {
            role: Role::Dialer { peer },
            ..InboundDecoder::new(cluster_id, local_id, frame_bytes_max)
        }
    }

    /// The peer named by an accepted handshake frame.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The next event in `src`, or `None` when more bytes are needed.
    ///
    /// # Errors
    /// Why the connection must be closed.
    pub fn next_event(&mut self, src: &mut BytesMut) -> Result<Option<InboundEvent>, RejectReason> {
        // Bounded: each pass consumes one whole frame from `src`, and only probes and
        // keepalives loop.
        loop {
            let Some((body, wire_bytes)) = self.frames.decode(src)? else {
                return Ok(None);
            };
            let Some(peer) = self.peer else {
                return self.next_event_handshake(body).map(Some);
            };
            match body {
                WireBody::Message(message) => {
                    self.next_event_check_ids(&message, peer)?;
                    return Ok(Some(InboundEvent::Message {
                        message,
                        wire_bytes,
                    }));
                }
                WireBody::Probe | WireBody::Keepalive => {}
                WireBody::Handshake(_) | WireBody::Welcome(_) => {
                    return Err(RejectReason::RepeatedHandshake)
                }
            }
        }
    }

    /// The first frame: the hello or welcome this role expects, with every field checked.
    fn next_event_handshake(&mut self, body: WireBody) -> Result<InboundEvent, RejectReason> {
        let handshake = match (self.role, body) {
            (Role::Acceptor, WireBody::Handshake(hello)) => hello,
            (Role::Dialer { peer }, WireBody::Welcome(welcome)) => {
                if welcome.from != peer {
                    // Checked before the rest so that a wrong node is named as such.
                    welcome.check(self.cluster_id, self.local_id)?;
                    return Err(RejectReason::UnexpectedPeer {
                        expected: peer,
                        actual: welcome.from,
                    });
                }
                welcome
            }
            (_, body @ (WireBody::Message(_) | WireBody::Probe | WireBody::Keepalive)) => {
                return Err(RejectReason::MessageBeforeHandshake {
                    kind: kind_of(&body),
                })
            }
            (role, body) => {
                let expected = if role == Role::Acceptor {
                    "hello"
                } else {
                    "welcome"
                };
                return Err(RejectReason::WrongHandshakeKind {
                    expected,
                    got: kind_of(&body),
                });
            }
        };
        handshake.check(self.cluster_id, self.local_id)?;
        self.peer = Some(handshake.from);
        Ok(InboundEvent::Established {
            peer: handshake.from,
        })
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

    fn welcome(from: u64) -> WireBody {
        WireBody::Welcome(Handshake::new(CLUSTER, NodeId(from), ME))
    }

    /// Feeds frames in order to an acceptor's decoder; returns the events up to the first
    /// rejection.
    fn run(frames: Vec<WireBody>) -> (usize, Option<RejectReason>) {
        run_with(InboundDecoder::new(CLUSTER, ME, FRAME_MAX), frames)
    }

    fn run_with(
        mut decoder: InboundDecoder,
        frames: Vec<WireBody>,
    ) -> (usize, Option<RejectReason>) {
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
            (
                "welcome to an acceptor",
                vec![welcome(2)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "probes are skipped",
                vec![hello(2), WireBody::Probe, message(2, 1), WireBody::Probe],
                2,
                None,
            ),
            (
                "probe before hello",
                vec![WireBody::Probe, hello(2)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "keepalives are skipped",
                vec![
                    hello(2),
                    WireBody::Keepalive,
                    message(2, 1),
                    WireBody::Keepalive,
                ],
                2,
                None,
            ),
            (
                "keepalive before hello",
                vec![WireBody::Keepalive, hello(2)],
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

    /// A dialer of node 2 accepts only node 2's welcome, then node 2's messages.
    #[test]
    fn dialer_sequences_table() {
        let cases: Vec<(&str, Vec<WireBody>, usize, Option<RejectClass>)> = vec![
            (
                "welcome then messages",
                vec![welcome(2), message(2, 1), WireBody::Probe, message(2, 1)],
                3,
                None,
            ),
            (
                "keepalive before welcome",
                vec![WireBody::Keepalive, welcome(2)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "hello instead of welcome",
                vec![hello(2)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "welcome from another node",
                vec![welcome(3)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "second welcome",
                vec![welcome(2), welcome(2)],
                1,
                Some(RejectClass::Handshake),
            ),
            (
                "message before welcome",
                vec![message(2, 1)],
                0,
                Some(RejectClass::Handshake),
            ),
            (
                "forged sender",
                vec![welcome(2), message(3, 1)],
                1,
                Some(RejectClass::WrongIds),
            ),
        ];
        for (name, frames, want_events, want_reject) in cases {
            let decoder = InboundDecoder::for_dialer(CLUSTER, ME, NodeId(2), FRAME_MAX);
            let (events, reject) = run_with(decoder, frames);
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
