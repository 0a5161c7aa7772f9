//! The message dispatcher: every message from a peer enters here.
//!
//! Terms are compared first (§5.1): a newer term makes the node a follower before the
//! message is handled (unless it is a vote request ignored under a leader lease, or a
//! pre-vote), and a message from an older term is dropped, answered only where the answer
//! tells a stale leader or pre-candidate the newer term. What remains goes to the handler
//! for its kind, and the invariants are checked after every message handled.

use crate::message::{Message, MessageBody};
use crate::node::Node;
use crate::storage::LogStore;
use crate::types::NodeId;

impl<S: LogStore> Node<S> {
    /// Feeds a message from a peer.
    pub fn step(&mut self, message: Message) {
        self.assert_not_awaiting_advance();
        if message.to != self.id || message.from == self.id {
            return;
        }
        if !self.step_term_check(&message) {
            return;
        }
        self.step_body(message);
        self.check_invariants();
    }

    /// §5.1: compare terms first. Returns whether the message should be handled further.
    fn step_term_check(&mut self, message: &Message) -> bool {
        use MessageBody as B;
        if message.term > self.term {
            let is_vote_request = matches!(message.body, B::PreVote { .. } | B::Vote { .. });
            if is_vote_request {
                let forced = matches!(
                    message.body,
                    B::Vote {
                        leader_transfer: true,
                        ..
                    }
                );
                // Thesis §6.2 / §4.2.3: while we heard from a leader within the minimum
                // election timeout, a vote request is most likely from a disruptive server
                // (for instance one just removed); ignore it without adopting its term.
                let in_lease = self.config.check_quorum
                    && !self.leader.is_none()
                    && self.election_elapsed < self.config.election_ticks;
                if in_lease && !forced {
                    return false;
                }
            }
            match message.body {
                // Pre-votes never change terms; a granted pre-vote answer carries the future
                // term of our own pre-campaign.
                B::PreVote { .. } | B::PreVoteResponse { granted: true } => {}
                B::Append { .. } | B::Heartbeat { .. } | B::InstallSnapshot { .. } => {
                    self.become_follower(message.term, message.from)
                }
                _ => self.become_follower(message.term, NodeId::NONE),
            }
        } else if message.term < self.term {
            match message.body {
                // A stale leader (partitioned, then healed) learns our term and steps down;
                // without this, check-quorum plus pre-vote could leave it stuck.
                B::Append { .. } | B::Heartbeat { .. } | B::InstallSnapshot { .. } => {
                    self.send(message.from, B::HeartbeatResponse { read_round: 0 });
                }
                B::PreVote { .. } => {
                    self.send(message.from, B::PreVoteResponse { granted: false });
                }
                _ => {}
            }
            return false;
        }
        true
    }

    fn step_body(&mut self, message: Message) {
        use MessageBody as B;
        let from = message.from;
        let term = message.term;
        match message.body {
            B::PreVote {
                last_log_index,
                last_log_term,
            } => self.handle_vote_request(from, term, true, last_log_index, last_log_term),
            B::Vote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_vote_request(from, term, false, last_log_index, last_log_term),
            B::PreVoteResponse { granted } => {
                // A grant names the term campaigned for; one for an older pre-campaign
                // must not count towards this one.
                if !granted || term == self.term.next() {
                    self.handle_vote_response(from, true, granted);
                }
            }
            B::VoteResponse { granted } => self.handle_vote_response(from, false, granted),
            B::Append {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                self.become_follower_of(from);
                self.handle_append(from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            B::Heartbeat { commit, read_round } => {
                self.become_follower_of(from);
                self.handle_heartbeat(from, commit, read_round);
            }
            B::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                self.become_follower_of(from);
                self.handle_snapshot_chunk(from, meta, offset, data, done);
            }
            B::AppendResponse(response) => self.handle_append_response(from, response),
            B::HeartbeatResponse { read_round } => self.handle_heartbeat_response(from, read_round),
            B::InstallSnapshotResponse(response) => self.handle_snapshot_response(from, response),
            B::TimeoutNow => self.handle_timeout_now(),
            B::ReadIndex { request_id } => self.handle_forwarded_read(from, request_id),
            B::ReadIndexResponse {
                request_id,
                index,
                clock,
            } => self.handle_read_index_response(from, request_id, index, clock),
        }
    }
}
