//! raft-net: the peer transport between raftkv nodes.
//!
//! Carries `raft_core::Message`s between nodes over TCP: one connection per pair of nodes,
//! carrying both directions (either node may dial; a deterministic tie-break keeps one),
//! one bounded queue per peer, an accept loop for inbound connections, a hello and a
//! welcome frame opening every connection (cluster id, sender id, intended receiver id,
//! protocol version), then length-prefixed frames holding a version byte and a postcard
//! body. Keepalive frames fill in on idle connections, and a connection silent for
//! `silence_timeout` is closed and redialled, so a dead or partitioned peer is noticed
//! within a bound rather than after TCP's backoff. `PROTOCOL.md` beside this crate holds
//! the connection and liveness rules, the byte layout and the version rules.
//!
//! What it must never do:
//! - block the caller of [`Transport::send`]: a full queue drops the message and says so
//!   (Raft retransmits);
//! - panic, or allocate beyond the configured frame size, on anything a peer sends: bad
//!   input closes that one connection with a log line and a counter;
//! - know Raft's rules: it moves messages, it never looks inside them beyond `from`, `to`
//!   and whether the body is a snapshot chunk (which travels in its own lane).
//!
//! Module map:
//! - [`config`]: `TransportConfig`, defaults, limits and `validate()`.
//! - [`codec`]: frame layout, encoding, and the length-checked frame decoder.
//! - [`handshake`]: the first frame of a connection and the rules for accepting it.
//! - [`inbound`]: the sans-IO state machine of a connection's incoming bytes (hello or
//!   welcome, then messages with checked ids); fuzzed in `tests/fuzz.rs`.
//! - `link`: which connection serves each peer (dial, accept, refuse, replace).
//! - `connection`: reading one connection, dialled or accepted, into the inbound channel
//!   or handler, until it ends or falls silent.
//! - `liveness`: keepalives and the silence rule: when each is due, and the keepalives of
//!   an accepted connection no peer task has taken yet.
//! - `socket`: a peer socket's kernel settings (no Nagle, `TCP_USER_TIMEOUT`, reset on
//!   abandoning) and the dial's bounded connect on a fresh socket.
//! - `listener`: the accept loop and the handshake of one accepted connection.
//! - `peer`: one peer: its queues, dialling or adopting its connection, backoff and
//!   batching (with keepalives when idle), and the direct path by which `send` writes to
//!   an idle peer's socket itself.
//! - [`backoff`]: jittered, capped exponential backoff.
//! - [`metrics`]: counters and the snapshot struct the server exports.
//! - [`transport`]: the public handle tying these together.
//! - [`error`]: every error type of the crate.

pub mod backoff;
pub mod codec;
pub mod config;
mod connection;
pub mod error;
pub mod handshake;
pub mod inbound;
mod link;
mod listener;
mod liveness;
pub mod metrics;
mod peer;
mod socket;
pub mod transport;

pub use config::TransportConfig;
pub use error::{DecodeError, EncodeError, Error, RejectReason, Result, SendError};
pub use handshake::{ClusterId, Handshake};
pub use metrics::{PeerMetrics, TransportMetrics};
pub use transport::{Delivery, Transport};
