//! Transport settings and limits, all in one place, checked by [`TransportConfig::validate`].

use std::net::SocketAddr;
use std::time::Duration;

use raft_core::NodeId;

use crate::error::{Error, Result};
use crate::handshake::ClusterId;
use crate::secret::ClusterSecret;
use crate::tls::TlsIdentity;

/// Smallest frame limit accepted: a handshake and any vote or heartbeat must fit.
pub const FRAME_BYTES_MIN: usize = 1024;

/// Snapshot chunks waiting per peer. Chunks are large (about 1 MiB), so this bounds the
/// memory one lagging follower can pin, and raft-core sends the next chunk only after the
/// follower acknowledges the previous one, so a deeper lane would sit empty.
pub const SNAPSHOT_LANE_CHUNKS_MAX: usize = 4;

/// A write batch stops growing past this many bytes, so one peer's writer never builds an
/// unbounded buffer and a batch is written before the next snapshot chunk is considered.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// `send` writes a message to the socket itself only if its payload is at most this large:
/// bigger messages gain little from skipping the writer task, are likelier to be written
/// only in part, and this bounds the per-peer buffer a direct write encodes into.
pub const DIRECT_WRITE_PAYLOAD_BYTES_MAX: usize = 64 * 1024;

/// How peers prove who they are (PROTOCOL.md, "Proving identity"). Both may be set: the
/// secret is then proved inside TLS. With neither, any process that can reach the peer
/// port can speak for any node: for loopback and trusted networks only.
#[derive(Clone, Debug, Default)]
pub struct PeerSecurity {
    /// Mutual TLS on the peer port, with certificates that name their node.
    pub tls: Option<TlsIdentity>,
    /// A key every node shares, proved in the handshake without being sent.
    pub secret: Option<ClusterSecret>,
}

impl PeerSecurity {
    /// Whether peers must prove who they are (with TLS, a secret, or both).
    pub fn authenticates(&self) -> bool {
        self.tls.is_some() || self.secret.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub cluster_id: ClusterId,
    pub node_id: NodeId,
    /// Where peers connect to this node; port 0 picks a free port (see `local_addr`).
    pub listen_addr: SocketAddr,
    /// Largest frame body accepted or sent, in bytes; must hold the largest append batch
    /// and snapshot chunk raft-core emits, plus a few hundred bytes of headers.
    pub frame_bytes_max: usize,
    /// Messages (other than snapshot chunks) queued per peer before `send` drops.
    pub peer_queue_msgs_max: usize,
    /// Decoded messages waiting for the caller; when full, inbound connections stop reading
    /// (each backpressures only its own sender through TCP). Unused with an inbound
    /// handler, whose own queue is the bound.
    pub inbound_queue_msgs_max: usize,
    /// Accepted connections open at once; more are closed at once and counted.
    pub inbound_connections_max: usize,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max`, jittered.
    pub backoff_min: Duration,
    /// Longest reconnect delay. While a peer is unreachable a new attempt starts at least
    /// every `connect_timeout + backoff_max`, which bounds how long after a partition heals
    /// the pair is connected again (PROTOCOL.md, "Liveness"): derive both from Raft's
    /// heartbeat interval.
    pub backoff_max: Duration,
    /// Longest wait for one TCP connect. Every attempt uses a fresh socket, so a SYN lost
    /// in a partition costs this long, never the kernel's SYN retries (1 s, 3 s, 7 s, ...).
    /// It must comfortably exceed the network's round trip.
    pub connect_timeout: Duration,
    /// An accepted connection that has not sent a valid handshake by then is closed. A
    /// dialer waits for the welcome this long or `silence_timeout`, whichever is shorter.
    pub handshake_timeout: Duration,
    /// A connection to which nothing has been written for this long gets a keepalive
    /// frame, so a live peer is never silent for longer. Only an idle connection carries
    /// keepalives: under load they cost nothing.
    pub keepalive_interval: Duration,
    /// A connection on which nothing at all has been received for this long is closed and
    /// redialled with a fresh socket: the peer is dead, paused, or cut off. At least twice
    /// `keepalive_interval`, so that one late keepalive cannot close a healthy connection.
    pub silence_timeout: Duration,
    /// `TCP_USER_TIMEOUT` on every peer socket (Linux): the kernel ends a connection whose
    /// data has gone unacknowledged for this long, instead of retrying for about 15
    /// minutes, and frees a closed socket's unsent data as soon. A backstop behind
    /// `silence_timeout`, which acts first, so it may not be shorter. It also ends a
    /// connection whose peer has advertised a zero window for this long (its reader
    /// stalled), so with `Transport::start` it must exceed the longest time the consumer
    /// may leave the inbound channel full.
    pub tcp_user_timeout: Duration,
    /// A message sent to a peer within this long of the previous one is queued, so that a
    /// burst leaves in one write by the peer's writer task. After a quieter gap, and when
    /// nothing is queued for the peer, `send` writes the message to the socket itself,
    /// saving a task hand-off. Zero means "write at once whenever nothing is queued".
    pub coalesce_window: Duration,
    /// TLS and the cluster secret; none by default.
    pub security: PeerSecurity,
}

impl TransportConfig {
    /// Defaults suited to a LAN cluster with Raft's 50 ms heartbeat.
    pub fn new(cluster_id: ClusterId, node_id: NodeId, listen_addr: SocketAddr) -> TransportConfig {
        TransportConfig {
            cluster_id,
            node_id,
            listen_addr,
            frame_bytes_max: 16 * 1024 * 1024,
            peer_queue_msgs_max: 4096,
            inbound_queue_msgs_max: 4096,
            inbound_connections_max: 256,
            // A redial within about one heartbeat of a heal: see `backoff_max`.
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(50),
            handshake_timeout: Duration::from_secs(5),
            // Raft's heartbeats already cross a leader's connections that often; keepalives
            // fill in on the idle ones (between followers, or to a paused leader's peers).
            keepalive_interval: Duration::from_millis(50),
            // Four keepalive intervals, within Raft's election timeout range (150-300 ms).
            silence_timeout: Duration::from_millis(200),
            tcp_user_timeout: Duration::from_secs(5),
            // Far below a loopback round trip (about 11 µs on the standard machine), far
            // above the gap between the sends of one Raft `Ready` (well under 1 µs).
            coalesce_window: Duration::from_micros(5),
            security: PeerSecurity::default(),
        }
    }

    /// # Errors
    /// `InvalidConfig` naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let tls_matches =
            self.security.tls.as_ref().is_none_or(|tls| {
                tls.cluster_id() == self.cluster_id && tls.node_id() == self.node_id
            });
        let checks: [(&'static str, bool, &'static str); 14] = [
            (
                "node_id",
                !self.node_id.is_none(),
                "must not be 0 (0 means nobody)",
            ),
            (
                "frame_bytes_max",
                self.frame_bytes_max >= FRAME_BYTES_MIN,
                "is below 1024",
            ),
            (
                "frame_bytes_max",
                u32::try_from(self.frame_bytes_max).is_ok(),
                "does not fit the 4-byte length prefix",
            ),
            (
                "peer_queue_msgs_max",
                self.peer_queue_msgs_max > 0,
                "must be positive",
            ),
            (
                "inbound_queue_msgs_max",
                self.inbound_queue_msgs_max > 0,
                "must be positive",
            ),
            (
                "inbound_connections_max",
                self.inbound_connections_max > 0,
                "must be positive",
            ),
            (
                "backoff_min",
                !self.backoff_min.is_zero(),
                "must be positive",
            ),
            (
                "backoff_max",
                self.backoff_max >= self.backoff_min,
                "is below backoff_min",
            ),
            (
                "connect_timeout",
                !self.connect_timeout.is_zero() && !self.handshake_timeout.is_zero(),
                "and handshake_timeout must be positive",
            ),
            (
                "keepalive_interval",
                !self.keepalive_interval.is_zero(),
                "must be positive",
            ),
            (
                "silence_timeout",
                self.silence_timeout >= self.keepalive_interval.saturating_mul(2),
                "is below twice keepalive_interval (one late keepalive would close a healthy connection)",
            ),
            (
                "tcp_user_timeout",
                self.tcp_user_timeout >= self.silence_timeout,
                "is below silence_timeout (it is the backstop, not the check)",
            ),
            (
                "tcp_user_timeout",
                u32::try_from(self.tcp_user_timeout.as_millis()).is_ok(),
                "does not fit TCP_USER_TIMEOUT's 32-bit milliseconds",
            ),
            (
                "security.tls",
                tls_matches,
                "was loaded for another node id or cluster id",
            ),
        ];
        match checks.iter().find(|(_, ok, _)| !ok) {
            Some(&(field, _, reason)) => Err(Error::InvalidConfig { field, reason }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_bad_field() {
        let good = TransportConfig::new(
            ClusterId(1),
            NodeId(1),
            "127.0.0.1:0".parse().expect("addr"),
        );
        good.validate().expect("defaults are valid");
        let cases: Vec<(&str, TransportConfig)> = vec![
            (
                "node_id",
                TransportConfig {
                    node_id: NodeId(0),
                    ..good.clone()
                },
            ),
            (
                "frame_bytes_max",
                TransportConfig {
                    frame_bytes_max: 10,
                    ..good.clone()
                },
            ),
            (
                "peer_queue_msgs_max",
                TransportConfig {
                    peer_queue_msgs_max: 0,
                    ..good.clone()
                },
            ),
            (
                "backoff_max",
                TransportConfig {
                    backoff_max: Duration::from_millis(1),
                    ..good.clone()
                },
            ),
            (
                "keepalive_interval",
                TransportConfig {
                    keepalive_interval: Duration::ZERO,
                    ..good.clone()
                },
            ),
            (
                "silence_timeout",
                TransportConfig {
                    silence_timeout: good.keepalive_interval * 2 - Duration::from_millis(1),
                    ..good.clone()
                },
            ),
            (
                "tcp_user_timeout",
                TransportConfig {
                    tcp_user_timeout: good.silence_timeout / 2,
                    ..good.clone()
                },
            ),
            (
                "tcp_user_timeout",
                TransportConfig {
                    tcp_user_timeout: Duration::from_secs(50 * 24 * 3600),
                    ..good.clone()
                },
            ),
        ];
        for (field, config) in cases {
            match config.validate() {
                Err(Error::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
