//! Every error type of raft-net.
//!
//! - [`Error`]: starting and configuring the transport.
//! - [`SendError`]: why [`crate::Transport::send`] did not queue a message; every variant
//!   means the message was dropped, and the caller (Raft) will retransmit.
//! - [`EncodeError`] / [`DecodeError`]: one frame could not be written or read.
//! - [`RejectReason`]: why an inbound connection was closed; each one is logged and
//!   counted, and affects only that connection.

use std::io;
use std::net::SocketAddr;

use raft_core::NodeId;

use crate::handshake::ClusterId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid transport configuration: `{field}` {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error("cannot listen for peers on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("node {id} is this node, so it cannot be its own peer")]
    PeerIsSelf { id: NodeId },
    #[error("the transport has been shut down")]
    Shutdown,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a message was not queued. In every case the message is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer is not keeping up (or is down and its queue filled while reconnecting).
    #[error("peer {to} is unreachable: its queue of {queue_msgs_max} messages is full")]
    QueueFull { to: NodeId, queue_msgs_max: usize },
    #[error("peer {to} has no address; call set_peer first")]
    UnknownPeer { to: NodeId },
    /// The payload alone exceeds the frame limit, so no peer could accept it.
    #[error("message to {to} carries {payload_bytes} bytes, over the {frame_bytes_max}-byte frame limit")]
    TooLarge {
        to: NodeId,
        payload_bytes: u64,
        frame_bytes_max: usize,
    },
    #[error("the transport has been shut down")]
    Shutdown,
}

impl SendError {
    /// True when the caller should treat the peer as unreachable for now (Raft's
    /// `report_unreachable`), as opposed to a configuration or usage problem.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SendError::QueueFull { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoded frame of {frame_bytes} bytes is over the {frame_bytes_max}-byte limit")]
    TooLarge {
        frame_bytes: usize,
        frame_bytes_max: usize,
    },
    #[error("postcard could not encode the frame body")]
    Serialize {
        #[source]
        source: postcard::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Caught from the length prefix alone, before any byte of the body is buffered.
    #[error("frame length {frame_bytes} is over the {frame_bytes_max}-byte limit")]
    TooLarge {
        frame_bytes: u64,
        frame_bytes_max: usize,
    },
    #[error("frame length is invalid")]
    Length {
        #[source]
        source: io::Error,
    },
    #[error("frame is empty (no version byte)")]
    EmptyFrame,
    #[error("frame has protocol version {version}; this node speaks only version {supported}")]
    UnsupportedVersion { version: u8, supported: u8 },
    #[error("frame body is not a valid postcard encoding")]
    Malformed {
        #[source]
        source: postcard::Error,
    },
    #[error("frame body has {trailing_bytes} bytes left over after decoding")]
    TrailingBytes { trailing_bytes: usize },
    /// The stream ended in the middle of a frame.
    #[error("connection ended inside a frame, with {buffered_bytes} bytes buffered")]
    Truncated { buffered_bytes: usize },
}

/// Why an inbound connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    #[error("undecodable input")]
    Decode(#[from] DecodeError),
    #[error("handshake magic {magic:#010x} is not raftkv's")]
    BadMagic { magic: u32 },
    #[error("peer belongs to cluster {theirs}, this node to cluster {ours}")]
    ClusterMismatch { ours: ClusterId, theirs: ClusterId },
    #[error("peer meant to reach node {addressed_to}, but this is node {ours}")]
    WrongReceiver { ours: NodeId, addressed_to: NodeId },
    #[error("peer claims this node's own id {id} (duplicated node id?)")]
    SenderIsSelf { id: NodeId },
    #[error("peer sent a {kind} message before its handshake")]
    MessageBeforeHandshake { kind: &'static str },
    #[error("peer sent a second handshake")]
    RepeatedHandshake,
    /// A hello where a welcome was due, or the reverse.
    #[error("expected a {expected} frame first, got a {got}")]
    WrongHandshakeKind {
        expected: &'static str,
        got: &'static str,
    },
    /// The welcome came from another node than the one dialled.
    #[error("dialled node {expected}, but node {actual} answered")]
    UnexpectedPeer { expected: NodeId, actual: NodeId },
    #[error("message from {frame_from} on the connection of node {handshake_from}")]
    SenderMismatch {
        handshake_from: NodeId,
        frame_from: NodeId,
    },
    #[error("message addressed to {frame_to} arrived at node {ours}")]
    ReceiverMismatch { ours: NodeId, frame_to: NodeId },
    #[error("no handshake within {timeout_ms} ms")]
    HandshakeTimeout { timeout_ms: u128 },
}

/// Which counter a [`RejectReason`] is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectClass {
    Handshake,
    Decode,
    WrongIds,
}

impl RejectReason {
    pub fn class(&self) -> RejectClass {
        match self {
            RejectReason::Decode(_) => RejectClass::Decode,
            RejectReason::BadMagic { .. }
            | RejectReason::ClusterMismatch { .. }
            | RejectReason::WrongReceiver { .. }
            | RejectReason::SenderIsSelf { .. }
            | RejectReason::MessageBeforeHandshake { .. }
            | RejectReason::RepeatedHandshake
            | RejectReason::WrongHandshakeKind { .. }
            | RejectReason::UnexpectedPeer { .. }
            | RejectReason::HandshakeTimeout { .. } => RejectClass::Handshake,
            RejectReason::SenderMismatch { .. } | RejectReason::ReceiverMismatch { .. } => {
                RejectClass::WrongIds
            }
        }
    }
}

/// An error and its `source()` chain on one line, for log fields.
pub(crate) fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    // Bounded: source chains are finite and short (at most three levels in this crate).
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
