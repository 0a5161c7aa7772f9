//! Elections: timeouts, pre-vote and vote campaigns, and answering vote requests (§5.2,
//! §5.4.1, thesis §9.6 for pre-vote).

use crate::membership::VoteResult;
use crate::message::MessageBody;
use crate::node::Node;
use crate::ready::Role;
use crate::storage::LogStore;
use crate::types::{LogIndex, NodeId, Term};

impl<S: LogStore> Node<S> {
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.randomized_election_ticks && self.is_promotable() {
            self.reset_timers();
            self.start_campaign(self.config.pre_vote, false);
        } else if self.election_elapsed >= self.randomized_election_ticks {
            self.reset_timers();
        }
    }

    /// Starts a pre-vote (if `pre`) or a real election.
    pub(crate) fn start_campaign(&mut self, pre: bool, leader_transfer: bool) {
        if !self.is_promotable() {
            return;
        }
        if pre {
            self.role = Role::PreCandidate;
            // A pre-candidate keeps its term and vote; it only asks.
            self.set_leader(NodeId::NONE);
            self.votes.clear();
        } else {
            let next = self.term.next();
            self.become_follower(next, NodeId::NONE);
            self.role = Role::Candidate;
            self.vote = self.id;
        }
        self.votes.insert(self.id, true);
        if self.tally() == VoteResult::Won {
            self.on_campaign_won(pre);
            return;
        }
        let last_log_index = self.log.last_index();
        let last_log_term = self.log.last_term();
        let voters: Vec<NodeId> = self.membership.nodes().into_iter().collect();
        for voter in voters {
            if voter == self.id || !self.membership.is_voter(voter) {
                continue;
            }
            let body = if pre {
                MessageBody::PreVote {
                    last_log_index,
                    last_log_term,
                }
            } else {
                MessageBody::Vote {
                    last_log_index,
                    last_log_term,
                    leader_transfer,
                }
            };
            self.send(voter, body);
        }
    }

    fn tally(&self) -> VoteResult {
        self.membership
            .vote_result(|id| self.votes.get(&id).copied())
    }

    fn on_campaign_won(&mut self, pre: bool) {
        if pre {
            self.start_campaign(false, false);
        } else {
            self.become_leader();
        }
    }

    /// Answers RequestVote / PreVote. Terms were already reconciled by the dispatcher.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        message_term: Term,
        pre: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        // One vote per term (§5.2): we may grant if we already voted for this candidate,
        // or have voted for nobody and follow no leader in this term. A pre-vote for a
        // later term promises nothing, so it only needs the log check.
        let can_vote = self.vote == from
            || (self.vote.is_none() && self.leader.is_none())
            || (pre && message_term > self.term);
        // §5.4.1, the election restriction: never vote for a log less up to date than ours.
        let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);
        if pre {
            let term = if granted { message_term } else { self.term };
            self.send_with_term(from, term, MessageBody::PreVoteResponse { granted });
            return;
        }
        if granted {
            self.vote = from;
            self.election_elapsed = 0;
        }
        self.send(from, MessageBody::VoteResponse { granted });
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, pre: bool, granted: bool) {
        let expected = if pre {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        match self.tally() {
            VoteResult::Won => self.on_campaign_won(pre),
            VoteResult::Lost => self.become_follower(self.term, NodeId::NONE),
            VoteResult::Pending => {}
        }
    }

    /// The leader hands over to us (thesis §3.10): campaign at once, skipping pre-vote.
    pub(crate) fn handle_timeout_now(&mut self) {
        if self.role == Role::Leader || !self.is_promotable() {
            return;
        }
        self.start_campaign(false, true);
    }
}
