//! ReadIndex bookkeeping on the leader (thesis §6.4).
//!
//! A read arriving at commit index `c` is assigned the next heartbeat *round*. The leader
//! broadcasts a heartbeat carrying that round; once a quorum has answered a round at least
//! as new, no other leader can have existed when the read arrived, so `c` is a safe read
//! point. Rounds ascend in queue order, so reads are released from the front.

use std::collections::VecDeque;

use crate::types::{LogIndex, NodeId};

#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingRead {
    pub(crate) request_id: u64,
    /// The node whose client asked (this node, or a follower that forwarded it).
    pub(crate) requester: NodeId,
    pub(crate) index: LogIndex,
    pub(crate) round: u64,
}

#[derive(Default, Debug)]
pub(crate) struct ReadOnly {
    /// The last round broadcast.
    pub(crate) round: u64,
    /// A read is waiting for round `round + 1` to be broadcast.
    next_round_needed: bool,
    /// Confirmed-pending reads, ascending by round. Bounded by `pending_reads_max`.
    pub(crate) pending: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term; they get a
    /// read point once it has (§6.4 step 1).
    pub(crate) waiting_for_commit: Vec<(NodeId, u64)>,
}

impl ReadOnly {
    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.waiting_for_commit.len()
    }

    pub(crate) fn enqueue(&mut self, requester: NodeId, request_id: u64, index: LogIndex) {
        self.next_round_needed = true;
        self.pending.push_back(PendingRead {
            request_id,
            requester,
            index,
            round: self.round + 1,
        });
    }

    pub(crate) fn round_pending(&self) -> bool {
        self.next_round_needed
    }

    /// Starts the round the queued reads wait for; returns its number.
    pub(crate) fn start_round(&mut self) -> u64 {
        self.next_round_needed = false;
        self.round += 1;
        self.round
    }

    /// Pops the reads whose round `confirmed(round)` says a quorum has acknowledged.
    pub(crate) fn release(&mut self, confirmed: impl Fn(u64) -> bool) -> Vec<PendingRead> {
        let mut released = Vec::new();
        while let Some(front) = self.pending.front() {
            if !confirmed(front.round) {
                break;
            }
            released.push(self.pending.pop_front().expect("front exists"));
        }
        released
    }

    pub(crate) fn take_all(&mut self) -> Vec<(NodeId, u64)> {
        let mut all: Vec<(NodeId, u64)> = self
            .pending
            .drain(..)
            .map(|read| (read.requester, read.request_id))
            .collect();
        all.append(&mut self.waiting_for_commit);
        self.next_round_needed = false;
        all
    }
}
