//! Counters and latency histograms, and their Prometheus text rendering.
//!
//! Everything is an atomic so the raft loop and the connection tasks update it without
//! locks; the metrics endpoint reads a consistent-enough view.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use raft_net::TransportMetrics;

use raft_net::SendError;

use crate::client_tls::Rejection;
use crate::status::{role_name, NodeStatus, ROLES};

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 1_000_000,
    4_000_000,
];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let seconds = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{seconds}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Why a message to a peer was dropped before it was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    QueueFull,
    UnknownPeer,
    TooLarge,
    Shutdown,
}

impl SendFailure {
    pub const KINDS: usize = 4;
    const ALL: [SendFailure; SendFailure::KINDS] = [
        SendFailure::QueueFull,
        SendFailure::UnknownPeer,
        SendFailure::TooLarge,
        SendFailure::Shutdown,
    ];

    pub fn of(error: &SendError) -> SendFailure {
        match error {
            SendError::QueueFull { .. } => SendFailure::QueueFull,
            SendError::UnknownPeer { .. } => SendFailure::UnknownPeer,
            SendError::TooLarge { .. } => SendFailure::TooLarge,
            SendError::Shutdown => SendFailure::Shutdown,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SendFailure::QueueFull => "queue_full",
            SendFailure::UnknownPeer => "unknown_peer",
            SendFailure::TooLarge => "too_large",
            SendFailure::Shutdown => "shutdown",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub proposals_total: AtomicU64,
    pub proposal_latency: Histogram,
    pub fsync_latency: Histogram,
    pub snapshots_total: AtomicU64,
    pub snapshot_bytes: AtomicU64,
    pub leader_changes_total: AtomicU64,
    /// Elections this node won (it became leader).
    pub elections_won_total: AtomicU64,
    /// Snapshots received from a leader and restored.
    pub snapshots_restored_total: AtomicU64,
    /// How long each pass of the raft loop took, waiting excluded.
    pub loop_pass_latency: Histogram,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused_total: AtomicU64,
    pub commands_total: AtomicU64,
    pub forwarded_total: AtomicU64,
    /// Messages to peers dropped before they were queued, by [`SendFailure`].
    pub peer_send_failures: [AtomicU64; SendFailure::KINDS],
    /// Client TLS handshakes refused, by [`Rejection`].
    pub client_tls_rejections: [AtomicU64; Rejection::KINDS],
}

fn counter(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Metrics {
    /// The Prometheus text exposition of everything this node measures.
    pub fn render(&self, status: &NodeStatus, transport: &TransportMetrics) -> String {
        let mut out = String::new();
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        counter(
            &mut out,
            "raftkv_term",
            "Current Raft term.",
            "gauge",
            status.term.0,
        );
        let _ = writeln!(
            out,
            "# HELP raftkv_role 1 for this node's current role.\n# TYPE raftkv_role gauge"
        );
        for role in ROLES {
            let _ = writeln!(
                out,
                "raftkv_role{{role=\"{}\"}} {}",
                role_name(role),
                u8::from(status.role == role)
            );
        }
        counter(
            &mut out,
            "raftkv_leader_id",
            "Id of the leader this node follows (0: none).",
            "gauge",
            status.leader.map_or(0, |id| id.0),
        );
        counter(
            &mut out,
            "raftkv_commit_index",
            "Highest index known committed.",
            "gauge",
            status.commit_index.0,
        );
        counter(
            &mut out,
            "raftkv_applied_index",
            "Highest index applied to the state machine.",
            "gauge",
            status.applied_index.0,
        );
        counter(
            &mut out,
            "raftkv_last_log_index",
            "Last index in the log.",
            "gauge",
            status.last_index.0,
        );
        counter(
            &mut out,
            "raftkv_proposals_total",
            "Writes proposed by this node as leader.",
            "counter",
            load(&self.proposals_total),
        );
        self.proposal_latency.render(
            &mut out,
            "raftkv_proposal_seconds",
            "From proposal to applied reply.",
        );
        self.fsync_latency.render(
            &mut out,
            "raftkv_fsync_seconds",
            "Duration of one log sync (one per Ready batch).",
        );
        counter(
            &mut out,
            "raftkv_snapshots_total",
            "Snapshots taken.",
            "counter",
            load(&self.snapshots_total),
        );
        counter(
            &mut out,
            "raftkv_snapshot_bytes",
            "Size of the last snapshot.",
            "gauge",
            load(&self.snapshot_bytes),
        );
        counter(
            &mut out,
            "raftkv_leader_changes_total",
            "Leader changes this node has seen.",
            "counter",
            load(&self.leader_changes_total),
        );
        counter(
            &mut out,
            "raftkv_elections_won_total",
            "Elections this node won.",
            "counter",
            load(&self.elections_won_total),
        );
        counter(
            &mut out,
            "raftkv_snapshots_restored_total",
            "Snapshots received from a leader and restored.",
            "counter",
            load(&self.snapshots_restored_total),
        );
        self.loop_pass_latency.render(
            &mut out,
            "raftkv_loop_pass_seconds",
            "One pass of the raft loop (inputs, tick, Readys), waiting excluded.",
        );
        counter(
            &mut out,
            "raftkv_client_connections",
            "Open client connections.",
            "gauge",
            load(&self.connections_open),
        );
        counter(
            &mut out,
            "raftkv_client_connections_refused_total",
            "Connections refused over connections_max.",
            "counter",
            load(&self.connections_refused_total),
        );
        counter(
            &mut out,
            "raftkv_commands_total",
            "Client commands executed.",
            "counter",
            load(&self.commands_total),
        );
        counter(
            &mut out,
            "raftkv_forwarded_total",
            "Client requests forwarded to the leader.",
            "counter",
            load(&self.forwarded_total),
        );
        let _ = writeln!(out, "# HELP raftkv_replication_lag_entries Leader's last index minus a follower's matched index.\n# TYPE raftkv_replication_lag_entries gauge");
        for (peer, matched) in &status.matched {
            let lag = status.last_index.0.saturating_sub(matched.0);
            let _ = writeln!(
                out,
                "raftkv_replication_lag_entries{{peer=\"{}\"}} {lag}",
                peer.0
            );
        }
        let _ = writeln!(out, "# HELP raftkv_peer_send_failures_total Messages to peers dropped before they were queued, by reason (Raft resends).\n# TYPE raftkv_peer_send_failures_total counter");
        for kind in SendFailure::ALL {
            let _ = writeln!(
                out,
                "raftkv_peer_send_failures_total{{reason=\"{}\"}} {}",
                kind.label(),
                load(&self.peer_send_failures[kind as usize])
            );
        }
        let _ = writeln!(out, "# HELP raftkv_client_tls_rejections_total Client connections closed because their TLS handshake failed, by reason.\n# TYPE raftkv_client_tls_rejections_total counter");
        for reason in Rejection::ALL {
            let _ = writeln!(
                out,
                "raftkv_client_tls_rejections_total{{reason=\"{}\"}} {}",
                reason.label(),
                load(&self.client_tls_rejections[reason as usize])
            );
        }
        render_transport(&mut out, transport);
        out
    }
}

fn render_transport(out: &mut String, transport: &TransportMetrics) {
    type Field = fn(&raft_net::PeerMetrics) -> u64;
    let per_peer: [(&str, &str, Field); 9] = [
        (
            "raftkv_peer_bytes_sent_total",
            "Bytes written to a peer.",
            |m| m.bytes_sent,
        ),
        (
            "raftkv_peer_bytes_received_total",
            "Bytes read from a peer.",
            |m| m.bytes_received,
        ),
        (
            "raftkv_peer_messages_sent_total",
            "Messages written to a peer.",
            |m| m.msgs_sent,
        ),
        (
            "raftkv_peer_messages_received_total",
            "Messages read from a peer.",
            |m| m.msgs_received,
        ),
        (
            "raftkv_peer_drops_total",
            "Messages dropped for a peer (queue full, connection lost, oversized).",
            |m| m.drops_queue_full + m.drops_connection_lost + m.drops_oversized,
        ),
        (
            "raftkv_peer_inbound_drops_total",
            "Messages read from a peer and dropped because the raft loop's queue was full.",
            |m| m.drops_inbound,
        ),
        (
            "raftkv_peer_reconnects_total",
            "Reconnections to a peer.",
            |m| m.reconnects,
        ),
        (
            "raftkv_peer_connects_total",
            "Connections to a peer that this node dialled (one connection carries both directions).",
            |m| m.connects,
        ),
        (
            "raftkv_peer_accepts_total",
            "Connections to a peer that the peer dialled and this node accepted.",
            |m| m.accepts,
        ),
    ];
    for (name, help, field) in per_peer {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (peer, metrics) in &transport.peers {
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", peer.0, field(metrics));
        }
    }
    counter(
        out,
        "raftkv_peer_decode_errors_total",
        "Inbound peer connections closed for bad bytes.",
        "counter",
        transport.decode_errors,
    );
    counter(
        out,
        "raftkv_peer_handshake_rejections_total",
        "Inbound peer connections refused at the handshake.",
        "counter",
        transport.handshake_rejections,
    );
    counter(
        out,
        "raftkv_peer_connections_refused_total",
        "Valid peer dials refused because this node's own connection to that peer wins the tie-break.",
        "counter",
        transport.connections_refused,
    );
    counter(
        out,
        "raftkv_peer_connections_replaced_total",
        "Peer connections closed because a newer one to the same peer replaced them.",
        "counter",
        transport.connections_replaced,
    );
    counter(
        out,
        "raftkv_peer_auth_rejections_total",
        "Peer connections refused because the peer did not prove who it claims to be (cluster secret proof, or a certificate that is invalid or names another node).",
        "counter",
        transport.auth_rejections,
    );
    counter(
        out,
        "raftkv_peer_tls_rejections_total",
        "Peer connections refused because TLS failed: not TLS on the TLS port, TLS on a plain port, or TLS garbage.",
        "counter",
        transport.tls_rejections,
    );
}
