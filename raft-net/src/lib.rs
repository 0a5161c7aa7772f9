//! raft-net: the peer transport between raftkv nodes.
//!
//! Carries `raft_core::Message`s between nodes over TCP: one connection per pair of nodes,
//! carrying both directions (either node may dial; a deterministic tie-break keeps one),
//! one bounded queue per peer, an accept loop for inbound connections, a hello and a
//! welcome frame opening every connection (cluster id, sender id, intended receiver id,
//! protocol version), then length-prefixed frames holding a version byte and a postcard
//! body. Keepalive frames fill in on idle connections, and a connection silent for
//! `silence_timeout` is closed and redialled, so a dead or partitioned peer is noticed
//! within a bound rather than after TCP's backoff. Peers can be required to prove who they
//! are: mutual TLS with certificates that name their node, a cluster secret proved in the
//! handshake, or both; a connection that cannot prove it is node N never reaches node N's
//! connection. `PROTOCOL.md` beside this crate holds the connection, identity and
//! liveness rules, the byte layout and the version rules.
//!
//! What it must never do:
//! - block the caller of [`Transport::send`]: a full queue drops the message and says so
//!   (Raft retransmits);
//! - panic, or allocate beyond the configured frame size, on anything a peer sends: bad
//!   input closes that one connection with a log line and a counter;
//! - let a peer that has not proved who it is (when TLS or a secret is configured) refuse,
//!   replace or send on any node's connection; or log the cluster secret;
//! - know Raft's rules: it moves messages, it never looks inside them beyond `from`, `to`
//!   and whether the body is a snapshot chunk (which travels in its own lane).
//!
//! Module map:
//! - [`config`]: `TransportConfig`, defaults, limits and `validate()`.
//! - [`codec`]: frame layout, encoding, and the length-checked frame decoder.
//! - [`handshake`]: the first frame of a connection and the rules for accepting it.
//! - [`inbound`]: the sans-IO state machine of a connection's incoming bytes (hello or
//!   welcome, with the secret's challenge and proof and the certificate's name checked,
//!   then messages with checked ids); fuzzed in `tests/fuzz.rs`.
//! - [`secret`]: the cluster secret, nonces, and the HMAC proofs of the handshake.
//! - [`tls`]: loading and checking a node's TLS identity, the TLS handshakes, and
//!   ([`tls::naming`]) the rule by which a certificate names its node.
//! - `record`: a connection's record layer after the handshake: plain bytes, or TLS
//!   records sealed and opened through rustls, shared by the socket's two halves.
//! - `certgen` (feature `certgen`): a throwaway CA and node certificates, for tests,
//!   benchmarks and local clusters.
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
#[cfg(feature = "certgen")]
pub mod certgen;
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
mod record;
pub mod secret;
mod socket;
pub mod tls;
pub mod transport;

pub use config::{PeerSecurity, TransportConfig};
pub use error::{
    CertificateNameError, DecodeError, EncodeError, Error, RejectReason, Result, SendError,
    TlsConfigError, TlsFile,
};
pub use handshake::{Challenge, ClusterId, Handshake};
pub use metrics::{PeerMetrics, TransportMetrics};
pub use secret::ClusterSecret;
pub use tls::{TlsFiles, TlsIdentity};
pub use transport::{Delivery, Transport};
