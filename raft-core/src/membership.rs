//! Cluster configuration and the joint-consensus quorum rules (Raft thesis §4.3).
//!
//! A configuration is either simple (`voters_outgoing` empty) or joint (both sets
//! non-empty). In a joint configuration every decision — winning an election, committing
//! an entry, confirming a read — needs a majority of `voters` *and* a majority of
//! `voters_outgoing`. Learners receive the log but never count towards any quorum.

use std::collections::BTreeSet;
use std::fmt;

use crate::types::NodeId;

/// The voters and learners of a cluster at one point in the log.
///
/// Invariant: `learners` is disjoint from `voters` and from `voters_outgoing`.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    /// Non-empty only while a joint configuration is in effect.
    pub voters_outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// One requested change to the configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConfChange {
    /// Add a non-voting member that receives the log.
    AddLearner(NodeId),
    /// Add a voter, or promote an existing learner to voter.
    AddVoter(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

/// Result of counting votes (or acknowledgements) against a configuration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

impl Membership {
    /// A simple configuration of the given voters.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every node that takes part in replication, in id order.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    pub fn node_count(&self) -> usize {
        self.voters.len() + self.voters_outgoing.len() + self.learners.len()
    }

    /// The configuration that results from applying `changes` to this (simple) one.
    ///
    /// If the voter set changes, the result is the joint configuration
    /// `C_old,new` (`voters` = new, `voters_outgoing` = old); otherwise (learners only) it
    /// is a simple configuration that can take effect directly.
    ///
    /// # Errors
    /// A description of why the change is not allowed: this configuration is already
    /// joint, the change is a no-op, it would leave no voters, or it would demote a voter
    /// straight to learner (remove it first).
    pub fn apply_changes(&self, changes: &[ConfChange]) -> Result<Membership, String> {
        if self.is_joint() {
            return Err("a joint configuration is still in effect".into());
        }
        if changes.is_empty() {
            return Err("no changes given".into());
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        for change in changes {
            match *change {
                ConfChange::AddLearner(id) => {
                    if id.is_none() {
                        return Err("node id 0 is reserved".into());
                    }
                    if voters.contains(&id) {
                        return Err(format!(
                            "node {id} is a voter; remove it before re-adding it as a learner"
                        ));
                    }
                    learners.insert(id);
                }
                ConfChange::AddVoter(id) => {
                    if id.is_none() {
                        return Err("node id 0 is reserved".into());
                    }
                    learners.remove(&id);
                    voters.insert(id);
                }
                ConfChange::Remove(id) => {
                    if !voters.remove(&id) && !learners.remove(&id) {
                        return Err(format!("node {id} is not a member"));
                    }
                }
            }
        }
        if voters.is_empty() {
            return Err("the change would leave no voters".into());
        }
        if voters == self.voters && learners == self.learners {
            return Err("the change would not alter the configuration".into());
        }
        let voters_outgoing = if voters == self.voters {
            BTreeSet::new()
        } else {
            self.voters.clone()
        };
        Ok(Membership {
            voters,
            voters_outgoing,
            learners,
        })
    }

    /// The simple configuration that ends this joint one: the incoming voters only.
    pub fn leave_joint(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }

    /// Counts votes: `granted(id)` is `Some(true)` for a yes, `Some(false)` for a no and
    /// `None` for "not heard from yet".
    pub fn vote_result(&self, granted: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = majority_vote_result(&self.voters, &granted);
        if !self.is_joint() {
            return incoming;
        }
        let outgoing = majority_vote_result(&self.voters_outgoing, &granted);
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// The highest index that a quorum has reached, given each voter's acknowledged index.
    pub fn committed_index(&self, acked: impl Fn(NodeId) -> u64) -> u64 {
        let incoming = majority_committed_index(&self.voters, &acked);
        if !self.is_joint() {
            return incoming;
        }
        incoming.min(majority_committed_index(&self.voters_outgoing, &acked))
    }

    /// Whether the nodes for which `present` is true form a quorum.
    pub fn has_quorum(&self, present: impl Fn(NodeId) -> bool) -> bool {
        self.vote_result(|id| Some(present(id))) == VoteResult::Won
    }
}

fn majority_vote_result(
    voters: &BTreeSet<NodeId>,
    granted: &impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        // An empty half of a configuration agrees with everything; this keeps the joint
        // rules uniform (etcd-io/raft quorum/majority.go makes the same choice).
        return VoteResult::Won;
    }
    let majority = voters.len() / 2 + 1;
    let (mut yes, mut missing) = (0, 0);
    for id in voters {
        match granted(*id) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    if yes >= majority {
        VoteResult::Won
    } else if yes + missing >= majority {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

fn majority_committed_index(voters: &BTreeSet<NodeId>, acked: &impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    // Configurations are small (a handful of voters), so sorting a tiny vec beats anything
    // cleverer; the k-th largest acknowledged index is on a majority.
    let mut indexes: Vec<u64> = voters.iter().map(|id| acked(*id)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |set: &BTreeSet<NodeId>| {
            set.iter()
                .map(|id| id.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "[{}]", ids(&self.voters))?;
        if self.is_joint() {
            write!(f, "&[{}]", ids(&self.voters_outgoing))?;
        }
        if !self.learners.is_empty() {
            write!(f, "+l[{}]", ids(&self.learners))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> BTreeSet<NodeId> {
        list.iter().map(|&n| NodeId(n)).collect()
    }

    #[test]
    fn committed_index_is_the_majority_minimum() {
        let m = Membership::with_voters(ids(&[1, 2, 3]));
        let acked = |id: NodeId| [0, 5, 3, 9][id.0 as usize];
        assert_eq!(m.committed_index(acked), 5);
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        let m = Membership {
            voters: ids(&[4, 5, 6]),
            voters_outgoing: ids(&[1, 2, 3]),
            learners: BTreeSet::new(),
        };
        // Old majority is at 9, new majority only at 2.
        let acked = |id: NodeId| [0, 9, 9, 9, 2, 2, 0][id.0 as usize];
        assert_eq!(m.committed_index(acked), 2);
    }

    #[test]
    fn joint_election_lost_when_either_half_lost() {
        let m = Membership {
            voters: ids(&[1, 2, 3]),
            voters_outgoing: ids(&[1, 4, 5]),
            learners: BTreeSet::new(),
        };
        let votes = |id: NodeId| match id.0 {
            1 | 2 => Some(true),
            4 | 5 => Some(false),
            _ => None,
        };
        assert_eq!(m.vote_result(votes), VoteResult::Lost);
        let votes = |id: NodeId| match id.0 {
            1 | 2 | 4 => Some(true),
            _ => None,
        };
        assert_eq!(m.vote_result(votes), VoteResult::Won);
    }

    #[test]
    fn changes_to_voters_go_through_joint_and_learners_do_not() {
        let m = Membership::with_voters(ids(&[1, 2, 3]));
        let learner = m
            .apply_changes(&[ConfChange::AddLearner(NodeId(4))])
            .unwrap();
        assert!(!learner.is_joint());
        assert!(learner.is_learner(NodeId(4)));
        let promoted = learner
            .apply_changes(&[ConfChange::AddVoter(NodeId(4))])
            .unwrap();
        assert!(promoted.is_joint());
        assert_eq!(promoted.voters, ids(&[1, 2, 3, 4]));
        assert_eq!(promoted.voters_outgoing, ids(&[1, 2, 3]));
        assert!(promoted.learners.is_empty());
        assert!(promoted
            .apply_changes(&[ConfChange::Remove(NodeId(1))])
            .is_err());
        assert_eq!(promoted.leave_joint().voters, ids(&[1, 2, 3, 4]));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let m = Membership::with_voters(ids(&[1]));
        assert!(m.apply_changes(&[ConfChange::Remove(NodeId(1))]).is_err());
        assert!(m.apply_changes(&[ConfChange::Remove(NodeId(7))]).is_err());
        assert!(m.apply_changes(&[ConfChange::AddVoter(NodeId(1))]).is_err());
        assert!(m
            .apply_changes(&[ConfChange::AddLearner(NodeId(1))])
            .is_err());
    }
}
