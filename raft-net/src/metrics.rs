//! Counters, and the plain snapshot the server exports (to Prometheus, `INFO`, tests).
//!
//! Counters are relaxed atomics: each is independently monotonic, and a snapshot is not a
//! consistent cut across counters (it does not need to be for rates and alerts). Per-peer
//! counters outlive `remove_peer`, so exported series never go backwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use raft_core::NodeId;

use crate::error::RejectClass;

/// Counters for one peer, both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerMetrics {
    /// Messages and bytes (frames, prefix included, handshake excluded) written to the peer.
    pub msgs_sent: u64,
    pub bytes_sent: u64,
    /// Successful `write` calls on the peer's socket: with batching, far fewer than
    /// `msgs_sent` under load.
    pub write_calls: u64,
    /// Of those, the ones `send` made itself (an idle, quiet peer; see `coalesce_window`).
    pub write_calls_from_send: u64,
    pub msgs_received: u64,
    pub bytes_received: u64,
    /// Messages `send` refused because the peer's queue was full.
    pub drops_queue_full: u64,
    /// Messages lost in a batch whose write failed (the connection broke).
    pub drops_connection_lost: u64,
    /// Messages dropped because their encoding exceeded the frame limit.
    pub drops_oversized: u64,
    /// Messages received from the peer that the inbound handler refused
    /// ([`crate::Delivery::Dropped`]; only with `Transport::start_with_handler`).
    pub drops_inbound: u64,
    /// Connections this node dialled to the peer and the peer welcomed.
    pub connects: u64,
    /// Connections the peer dialled and this node welcomed. One connection carries both
    /// directions, so `connects + accepts` counts every connection the pair has used.
    pub accepts: u64,
    /// Of `connects` and `accepts`, those made after an earlier connection to the same
    /// peer ended.
    pub reconnects: u64,
    pub connect_failures: u64,
    /// Inbound connections from this peer closed for bad bytes or bad ids.
    pub decode_errors: u64,
    pub frames_rejected: u64,
    /// Keepalive frames written to the peer: one per `keepalive_interval` in which nothing
    /// else was written, so none on a busy connection.
    pub keepalives_sent: u64,
    /// Connections to the peer closed because nothing had been received on them for
    /// `silence_timeout` (the peer was dead, paused or cut off); each is redialled.
    pub silence_closes: u64,
}

#[derive(Default)]
pub(crate) struct PeerCounters {
    pub msgs_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub write_calls: AtomicU64,
    pub write_calls_from_send: AtomicU64,
    pub msgs_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub drops_queue_full: AtomicU64,
    pub drops_connection_lost: AtomicU64,
    pub drops_oversized: AtomicU64,
    pub drops_inbound: AtomicU64,
    pub connects: AtomicU64,
    pub accepts: AtomicU64,
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub decode_errors: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub keepalives_sent: AtomicU64,
    pub silence_closes: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl PeerCounters {
    fn snapshot(&self) -> PeerMetrics {
        PeerMetrics {
            msgs_sent: read(&self.msgs_sent),
            bytes_sent: read(&self.bytes_sent),
            write_calls: read(&self.write_calls),
            write_calls_from_send: read(&self.write_calls_from_send),
            msgs_received: read(&self.msgs_received),
            bytes_received: read(&self.bytes_received),
            drops_queue_full: read(&self.drops_queue_full),
            drops_connection_lost: read(&self.drops_connection_lost),
            drops_oversized: read(&self.drops_oversized),
            drops_inbound: read(&self.drops_inbound),
            connects: read(&self.connects),
            accepts: read(&self.accepts),
            reconnects: read(&self.reconnects),
            connect_failures: read(&self.connect_failures),
            decode_errors: read(&self.decode_errors),
            frames_rejected: read(&self.frames_rejected),
            keepalives_sent: read(&self.keepalives_sent),
            silence_closes: read(&self.silence_closes),
        }
    }
}

/// Everything the transport counts, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportMetrics {
    pub peers: BTreeMap<NodeId, PeerMetrics>,
    pub connections_accepted: u64,
    /// Accepted connections closed at once because `inbound_connections_max` were open.
    pub connections_over_limit: u64,
    /// Inbound connections closed for a bad or missing handshake (any peer, known or not).
    pub handshake_rejections: u64,
    /// Inbound connections closed for undecodable bytes (any peer).
    pub decode_errors: u64,
    /// Inbound connections closed for a message with the wrong `from` or `to`.
    pub frames_rejected: u64,
    /// Valid hellos refused because this node's own connection to that peer wins the
    /// tie-break (PROTOCOL.md, "Connections"): closed without a welcome.
    pub connections_refused: u64,
    /// Connections closed because a newer one to the same peer replaced them.
    pub connections_replaced: u64,
    /// Connections closed because the peer did not prove who it claims to be: a missing
    /// or wrong cluster-secret proof, a certificate that is invalid (expired, another CA)
    /// or names another node. Counted by whichever end refused, acceptor or dialer.
    pub auth_rejections: u64,
    /// Connections closed because TLS itself failed: not TLS on a TLS port, TLS on a
    /// plain port, garbage or a broken record. Counted by whichever end saw it.
    pub tls_rejections: u64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    peers: Mutex<HashMap<NodeId, Arc<PeerCounters>>>,
    pub connections_accepted: AtomicU64,
    pub connections_over_limit: AtomicU64,
    handshake_rejections: AtomicU64,
    decode_errors: AtomicU64,
    frames_rejected: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_replaced: AtomicU64,
    auth_rejections: AtomicU64,
    tls_rejections: AtomicU64,
}

impl Metrics {
    /// The counters of `peer`, created on first use.
    pub fn peer(&self, peer: NodeId) -> Arc<PeerCounters> {
        let mut peers = self
            .peers
            .lock()
            .expect("metrics lock is never held across a panic");
        Arc::clone(peers.entry(peer).or_default())
    }

    /// Counts a closed inbound connection; `peer` is known once its handshake passed.
    pub fn count_rejection(&self, class: RejectClass, peer: Option<&PeerCounters>) {
        let (global, per_peer) = match class {
            RejectClass::Handshake => (&self.handshake_rejections, None),
            RejectClass::Decode => (&self.decode_errors, peer.map(|p| &p.decode_errors)),
            RejectClass::WrongIds => (&self.frames_rejected, peer.map(|p| &p.frames_rejected)),
            RejectClass::Auth => (&self.auth_rejections, None),
            RejectClass::Tls => (&self.tls_rejections, None),
        };
        add(global, 1);
        if let Some(counter) = per_peer {
            add(counter, 1);
        }
    }

    pub fn snapshot(&self) -> TransportMetrics {
        let peers = self
            .peers
            .lock()
            .expect("metrics lock is never held across a panic");
        TransportMetrics {
            peers: peers.iter().map(|(id, c)| (*id, c.snapshot())).collect(),
            connections_accepted: read(&self.connections_accepted),
            connections_over_limit: read(&self.connections_over_limit),
            handshake_rejections: read(&self.handshake_rejections),
            decode_errors: read(&self.decode_errors),
            frames_rejected: read(&self.frames_rejected),
            connections_refused: read(&self.connections_refused),
            connections_replaced: read(&self.connections_replaced),
            auth_rejections: read(&self.auth_rejections),
            tls_rejections: read(&self.tls_rejections),
        }
    }
}
