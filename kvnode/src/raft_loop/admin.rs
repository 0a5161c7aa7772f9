//! Cluster administration on the loop: membership changes proposed as configuration
//! entries (the new member's addresses in the entry's context), leadership transfer, and
//! the node's [`NodeStatus`].

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use raft_core::{ConfChange, NodeId, Role};

use super::request::{answer, Outcome, ReplyTo};
use super::RaftLoop;
use crate::cmd::AdminCommand;
use crate::error::ClusterError;
use crate::state_machine::{MembershipContext, Reply};
use crate::status::NodeStatus;

/// How far behind the leader's last index a learner may be when promoted (about a
/// second of writes at a modest rate; the learner catches up the rest as a voter).
const PROMOTE_LAG_MAX: u64 = 1000;

impl RaftLoop {
    pub(super) fn admin(&mut self, command: AdminCommand, reply: ReplyTo) {
        if let AdminCommand::Status = command {
            let text = Bytes::from(self.status().render());
            answer(reply, Outcome::Reply(Reply::Bulk(text)));
            return;
        }
        if self.node.role() != Role::Leader {
            answer(reply, Outcome::NotLeader);
            return;
        }
        let (changes, context) = match command {
            AdminCommand::Status => unreachable!("handled above"),
            AdminCommand::Transfer { id } => {
                match self.node.transfer_leader(id) {
                    // Answered once leadership has moved, or has not (an election timeout
                    // for the transfer, and another for the election it starts).
                    Ok(()) => self.io.pending.transfer_requested(
                        id,
                        reply,
                        Instant::now() + self.election_timeout * 3,
                    ),
                    Err(refusal) => {
                        answer(reply, Outcome::Failed(ClusterError::Refused(refusal)));
                    }
                }
                return;
            }
            AdminCommand::AddLearner { id, address } => {
                let context = MembershipContext {
                    members: vec![(id, address)],
                };
                (vec![ConfChange::AddLearner(id)], context.encode())
            }
            AdminCommand::Promote { id } => {
                // Only a learner that is receiving the log may become a voter; promoting an
                // unknown id would add a voter nobody can reach.
                if !self.node.membership().is_learner(id) {
                    let reason =
                        format!("node {id} is not a learner; add it with RAFT.ADDLEARNER first");
                    let refusal = raft_core::Error::InvalidConfChange { reason };
                    answer(reply, Outcome::Failed(ClusterError::Refused(refusal)));
                    return;
                }
                // A voter that cannot keep up would stall every commit of the joint
                // configuration (a cut-off learner stalls the whole cluster).
                if !self.node.replica_in_sync(id, PROMOTE_LAG_MAX) {
                    answer(
                        reply,
                        Outcome::Failed(ClusterError::LearnerNotInSync { id }),
                    );
                    return;
                }
                (vec![ConfChange::AddVoter(id)], Bytes::new())
            }
            AdminCommand::Remove { id } => {
                // The configuration without `id` must be able to commit: a quorum of its
                // voters in sync with this leader (it counts itself unless removed).
                if !self.quorum_in_sync_without(id) {
                    answer(
                        reply,
                        Outcome::Failed(ClusterError::RemovalLeavesNoQuorum { id }),
                    );
                    return;
                }
                (vec![ConfChange::Remove(id)], Bytes::new())
            }
        };
        match self.node.propose_conf_change(&changes, context) {
            Ok(index) => self.io.track_write(index, self.node.term(), reply),
            Err(refusal) => answer(reply, Outcome::Failed(ClusterError::Refused(refusal))),
        }
    }

    /// Whether the voters left after removing `removed` include a quorum this leader
    /// hears from and that keep up.
    fn quorum_in_sync_without(&self, removed: NodeId) -> bool {
        let own = self.node.id();
        let voters: Vec<NodeId> = self
            .node
            .membership()
            .voters
            .iter()
            .copied()
            .filter(|id| *id != removed)
            .collect();
        let in_sync = voters
            .iter()
            .filter(|id| **id == own || self.node.replica_in_sync(**id, PROMOTE_LAG_MAX))
            .count();
        in_sync > voters.len() / 2
    }

    pub(super) fn status(&self) -> NodeStatus {
        let membership = self.node.membership();
        let ids = |set: &std::collections::BTreeSet<NodeId>| set.iter().copied().collect();
        let leader = self.node.leader();
        NodeStatus {
            node_id: self.node.id(),
            role: self.node.role(),
            term: self.node.term(),
            leader,
            leader_client: leader
                .and_then(|id| self.io.peers.address_of(id, &self.io.machine))
                .map(|address| address.client),
            commit_index: self.node.commit_index(),
            applied_index: self.io.machine.applied_index(),
            first_index: self.node.first_index(),
            last_index: self.node.last_index(),
            voters: ids(&membership.voters),
            voters_outgoing: ids(&membership.voters_outgoing),
            learners: ids(&membership.learners),
            keys: self.io.machine.len() as u64,
            keyspace: self.io.machine.keyspace(super::wall_clock_ms()),
            matched: self.node.replication_status(),
            storage: self.node.store().describe(&self.data_dir),
            elections_won: self.io.metrics.elections_won_total.load(Ordering::Relaxed),
            snapshots_restored: self
                .io
                .metrics
                .snapshots_restored_total
                .load(Ordering::Relaxed),
        }
    }
}
