//! The state machine of one connection's incoming bytes, without I/O.
//!
//! Bytes go in (`BytesMut` filled by the socket reader, decrypted first under TLS); events
//! come out: first the handshake, then [`InboundEvent::Message`]s whose `from` equals the
//! peer and whose `to` is this node. On a connection this node accepted, the handshake
//! opens with the dialer's hello ([`InboundDecoder::new`]); on one it dialled, with the
//! acceptor's welcome, which must come from the node dialled
//! ([`InboundDecoder::for_dialer`]). Probe and keepalive frames are skipped (a keepalive
//! has done its work once its bytes were read: see `liveness`). Anything else is a
//! [`RejectReason`], after which the caller closes the connection: the decoder does not
//! try to resynchronise on a stream it can no longer trust.
//!
//! Proving identity (PROTOCOL.md, "Proving identity") happens here too, so that it is
//! fuzzed with the rest:
//! - With a cluster secret ([`InboundDecoder::with_secret`]), the acceptor answers a hello
//!   with [`InboundEvent::Respond`] (a challenge: its nonce and proof) and yields
//!   [`InboundEvent::Established`] only once the dialer's proof checks out; the dialer
//!   checks the acceptor's proof before it answers with its own, and then expects the
//!   welcome. A hello without a nonce where a secret is required, or with one where none
//!   is, is refused, as is any frame out of that order.
//! - Under TLS the acceptor is given the dialer's verified certificate
//!   ([`InboundDecoder::with_certificate`]), and the hello's `from` must be the node the
//!   certificate names (`tls::naming`). The dialer checks its peer's certificate itself,
//!   before writing the hello.
//!
//! Memory: the buffer holds at most one frame (bounded by `frame_bytes_max`, checked from
//! the length prefix before buffering) plus one read's worth of bytes. `tests/fuzz.rs`
//! checks that bound and the absence of panics on random and mutated streams.

use bytes::BytesMut;
use raft_core::{Message, NodeId};
use rustls_pki_types::CertificateDer;

use crate::codec::{FrameDecoder, WireBody};
use crate::error::{DecodeError, RejectReason};
use crate::handshake::{Challenge, ClusterId, Handshake};
use crate::secret::{ClusterSecret, Nonce, Proof, ProofContext, ProofRole};
use crate::tls::naming::check_certificate_names_node;

#[derive(Debug, PartialEq, Eq)]
pub enum InboundEvent {
    /// The caller must write this handshake frame to the peer, then go on reading.
    Respond(WireBody),
    /// The handshake is complete on this side; `peer` is the node at the other end (for
    /// an acceptor: proven, and now to be welcomed or refused by the tie-break).
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

/// How far the handshake has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Nothing received yet.
    Start,
    /// Acceptor with a secret: challenge sent to `dialer`, whose nonce was `dialer_nonce`;
    /// its proof is due.
    AwaitProof { dialer: NodeId, dialer_nonce: Nonce },
    /// Dialer with a secret: the acceptor's proof checked and ours sent; the welcome is due.
    AwaitWelcome,
    /// Handshake done (the peer is in `peer`).
    Established,
}

/// This side's part in the cluster-secret proof.
struct SecretSide {
    secret: ClusterSecret,
    /// Our nonce: the acceptor's in its challenge, or the dialer's in its hello.
    nonce: Nonce,
}

pub struct InboundDecoder {
    frames: FrameDecoder,
    cluster_id: ClusterId,
    local_id: NodeId,
    role: Role,
    stage: Stage,
    secret: Option<SecretSide>,
    /// Acceptor under TLS: the dialer's verified certificate, which must name the hello's
    /// `from`.
    certificate: Option<CertificateDer<'static>>,
    /// The node at the other end, once its handshake frame is accepted.
    peer: Option<NodeId>,
}

fn kind_of(body: &WireBody) -> &'static str {
    match body {
        WireBody::Handshake(_) => "hello",
        WireBody::Welcome(_) => "welcome",
        WireBody::Probe => "probe",
        WireBody::Keepalive => "keepalive",
        WireBody::Challenge(_) => "challenge",
        WireBody::Proof(_) => "proof",
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
            stage: Stage::Start,
            secret: None,
            certificate: None,
            peer: None,
        }
    }

    /// For a connection this node dialled to `peer`: the stream opens with its welcome (or,
    /// with a secret, its challenge).
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

    /// Requires the peer to prove `secret`. `nonce` is this side's fresh nonce: the one an
    /// acceptor puts in its challenge, or the one a dialer put in its hello.
    pub fn with_secret(self, secret: ClusterSecret, nonce: Nonce) -> InboundDecoder {
        InboundDecoder {
            secret: Some(SecretSide { secret, nonce }),
            ..self
        }
    }

    /// Acceptor under TLS: the dialer's verified certificate, which must name the node its
    /// hello claims to be.
    pub fn with_certificate(self, certificate: CertificateDer<'static>) -> InboundDecoder {
        InboundDecoder {
            certificate: Some(certificate),
            ..self
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
                WireBody::Handshake(_)
                | WireBody::Welcome(_)
                | WireBody::Challenge(_)
                | WireBody::Proof(_) => return Err(RejectReason::RepeatedHandshake),
            }
        }
    }

    /// One frame of the handshake, checked against the stage it arrives in.
    fn next_event_handshake(&mut self, body: WireBody) -> Result<InboundEvent, RejectReason> {
        match (self.role, self.stage, body) {
            (_, _, body @ (WireBody::Message(_) | WireBody::Probe | WireBody::Keepalive)) => {
                Err(RejectReason::MessageBeforeHandshake {
                    kind: kind_of(&body),
                })
            }
            (Role::Acceptor, Stage::Start, WireBody::Handshake(hello)) => {
                self.next_event_hello(hello)
            }
            (
                Role::Acceptor,
                Stage::AwaitProof {
                    dialer,
                    dialer_nonce,
                },
                WireBody::Proof(proof),
            ) => self.next_event_proof(dialer, dialer_nonce, &proof),
            (Role::Dialer { peer }, Stage::Start, WireBody::Challenge(challenge))
                if self.secret.is_some() =>
            {
                self.next_event_challenge(peer, &challenge)
            }
            (
                Role::Dialer { peer },
                Stage::Start | Stage::AwaitWelcome,
                WireBody::Welcome(welcome),
            ) if self.stage == Stage::AwaitWelcome || self.secret.is_none() => {
                self.next_event_welcome(peer, welcome)
            }
            (Role::Dialer { .. }, Stage::Start, WireBody::Challenge(_)) => {
                Err(RejectReason::SecretUnexpected)
            }
            (role, stage, body) => Err(RejectReason::WrongHandshakeKind {
                expected: InboundDecoder::expected_kind(role, stage, self.secret.is_some()),
                got: kind_of(&body),
            }),
        }
    }

    /// The frame due next, for the log line of a frame out of order.
    fn expected_kind(role: Role, stage: Stage, has_secret: bool) -> &'static str {
        match (role, stage) {
            (Role::Acceptor, Stage::AwaitProof { .. }) => "proof",
            (Role::Acceptor, _) => "hello",
            (Role::Dialer { .. }, Stage::Start) if has_secret => "challenge",
            (Role::Dialer { .. }, _) => "welcome",
        }
    }

    /// Acceptor: the hello. Its fields, then the certificate, then the secret's nonce.
    fn next_event_hello(&mut self, hello: Handshake) -> Result<InboundEvent, RejectReason> {
        hello.check(self.cluster_id, self.local_id)?;
        if let Some(certificate) = &self.certificate {
            check_certificate_names_node(certificate, self.cluster_id, hello.from).map_err(
                |source| RejectReason::CertificateMismatch {
                    claimed: hello.from,
                    source,
                },
            )?;
        }
        match (&self.secret, hello.nonce) {
            (None, None) => Ok(self.established(hello.from)),
            (None, Some(_)) => Err(RejectReason::SecretUnexpected),
            (Some(_), None) => Err(RejectReason::SecretMissing),
            (Some(ours), Some(dialer_nonce)) => {
                let context =
                    self.proof_context(hello.from, self.local_id, dialer_nonce, ours.nonce);
                let challenge = Challenge {
                    nonce: ours.nonce,
                    proof: ours.secret.prove(ProofRole::Acceptor, &context),
                };
                self.stage = Stage::AwaitProof {
                    dialer: hello.from,
                    dialer_nonce,
                };
                Ok(InboundEvent::Respond(WireBody::Challenge(challenge)))
            }
        }
    }

    /// Acceptor: the dialer's proof, over the nonces of this handshake.
    fn next_event_proof(
        &mut self,
        dialer: NodeId,
        dialer_nonce: Nonce,
        proof: &Proof,
    ) -> Result<InboundEvent, RejectReason> {
        let ours = self
            .secret
            .as_ref()
            .expect("a proof is awaited only with a secret");
        let context = self.proof_context(dialer, self.local_id, dialer_nonce, ours.nonce);
        if !ours.secret.verify(ProofRole::Dialer, &context, proof) {
            return Err(RejectReason::BadProof);
        }
        Ok(self.established(dialer))
    }

    /// Dialer: the acceptor's challenge. Its proof must check out before we prove ours.
    fn next_event_challenge(
        &mut self,
        peer: NodeId,
        challenge: &Challenge,
    ) -> Result<InboundEvent, RejectReason> {
        let ours = self.secret.as_ref().expect("checked by the caller");
        let context = self.proof_context(self.local_id, peer, ours.nonce, challenge.nonce);
        if !ours
            .secret
            .verify(ProofRole::Acceptor, &context, &challenge.proof)
        {
            return Err(RejectReason::BadProof);
        }
        let proof = ours.secret.prove(ProofRole::Dialer, &context);
        self.stage = Stage::AwaitWelcome;
        Ok(InboundEvent::Respond(WireBody::Proof(proof)))
    }

    /// Dialer: the welcome, which must come from the node dialled.
    fn next_event_welcome(
        &mut self,
        peer: NodeId,
        welcome: Handshake,
    ) -> Result<InboundEvent, RejectReason> {
        if welcome.from != peer {
            // Checked before the rest so that a wrong node is named as such.
            welcome.check(self.cluster_id, self.local_id)?;
            return Err(RejectReason::UnexpectedPeer {
                expected: peer,
                actual: welcome.from,
            });
        }
        welcome.check(self.cluster_id, self.local_id)?;
        if welcome.nonce.is_some() {
            return Err(RejectReason::NonceInWelcome);
        }
        Ok(self.established(peer))
    }

    fn proof_context(
        &self,
        dialer: NodeId,
        acceptor: NodeId,
        dialer_nonce: Nonce,
        acceptor_nonce: Nonce,
    ) -> ProofContext {
        ProofContext {
            cluster_id: self.cluster_id,
            dialer,
            acceptor,
            dialer_nonce,
            acceptor_nonce,
        }
    }

    fn established(&mut self, peer: NodeId) -> InboundEvent {
        self.stage = Stage::Established;
        self.peer = Some(peer);
        InboundEvent::Established { peer }
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
mod tests;
