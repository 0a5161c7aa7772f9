//! The leader's view of one follower's log, and how it paces replication to it.
//!
//! - `Probe`: the leader does not know where the follower's log matches; it sends one
//!   append at a time and waits for the answer (or a heartbeat response) before the next.
//! - `Replicate`: the follower is known to match up to `matched`; appends are pipelined up
//!   to the in-flight window, optimistically advancing `next`.
//! - `Snapshot`: the follower needs entries the leader has compacted; a snapshot is being
//!   sent in chunks and appends wait until it is installed.
//!
//! Invariant: `matched < next`.

use crate::inflights::Inflights;
use crate::types::LogIndex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot {
        /// Index of the snapshot being sent.
        index: LogIndex,
        /// Bytes the follower has confirmed holding.
        acked_offset: u64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Highest index known to match the leader's log (durable on the follower).
    pub(crate) matched: LogIndex,
    /// Next index to send.
    pub(crate) next: LogIndex,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append is outstanding; wait for its answer or a heartbeat response.
    pub(crate) probe_sent: bool,
    pub(crate) inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The leader's tick count when it last heard from this follower (0: never).
    pub(crate) heard_at: u64,
    /// Highest ReadIndex round this follower has acknowledged.
    pub(crate) read_round_acked: u64,
    /// Heartbeat responses since `matched` last moved while something was outstanding;
    /// a pipelined append or snapshot chunk that was lost is re-sent after a few.
    pub(crate) stalled_heartbeats: u32,
}

impl Progress {
    pub(crate) fn new(next: LogIndex, inflight_msgs_max: usize) -> Progress {
        Progress {
            matched: LogIndex::ZERO,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_msgs_max),
            recent_active: false,
            heard_at: 0,
            read_round_acked: 0,
            stalled_heartbeats: 0,
        }
    }

    /// Probes from just after the last known match. Callers leave `Snapshot` only once the
    /// follower confirmed holding the snapshot, so `matched` already covers it.
    pub(crate) fn become_probe(&mut self) {
        self.next = self.matched.next();
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.clear();
        self.stalled_heartbeats = 0;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched.next();
        self.probe_sent = false;
        self.inflights.clear();
        self.stalled_heartbeats = 0;
    }

    pub(crate) fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot {
            index,
            acked_offset: 0,
        };
        self.probe_sent = false;
        self.inflights.clear();
        self.stalled_heartbeats = 0;
    }

    /// Records an acknowledgement; returns whether `matched` moved.
    pub(crate) fn update_matched(&mut self, index: LogIndex) -> bool {
        let moved = index > self.matched;
        if moved {
            self.matched = index;
            self.probe_sent = false;
            self.stalled_heartbeats = 0;
        }
        if self.next <= index {
            self.next = index.next();
        }
        moved
    }

    /// Whether the leader should hold further appends to this follower for now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }
}
