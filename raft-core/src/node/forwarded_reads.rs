//! A follower's ReadIndex requests (thesis §6.4), forwarded to the leader it follows.
//!
//! Rules, so that no read waits longer than the situation that could answer it lasts:
//! - A forwarded request waits for the answer of the leader it was sent to; an answer
//!   from any other node, or for a request no longer waiting, is ignored.
//! - Whenever a new leader is known ([`Node::set_leader`]), the waiting requests follow
//!   it: sent again to that leader, or into this node's own read queue if it became the
//!   leader. While no leader is known (an election) they keep waiting: the leader they
//!   went to may still answer, which is as good as ever (it confirmed it led after the
//!   request arrived).
//! - A request unanswered for [`FORWARDED_READ_TIMEOUT_ELECTIONS`] election timeouts is
//!   answered with `None` so the client retries: its leader is cut off, or no leader has
//!   been found, or its answers do not arrive (a one-way partition).
//!
//! At most `pending_reads_max` requests wait at once. The leader's side is in
//! `role/leader.rs`.

use crate::error::{Error, Result};
use crate::message::MessageBody;
use crate::node::Node;
use crate::ready::{ReadState, Role};
use crate::storage::LogStore;
use crate::types::{LogIndex, NodeId};

/// Election timeouts (the configured minimum) a forwarded read may wait for its answer.
pub const FORWARDED_READ_TIMEOUT_ELECTIONS: u64 = 2;

/// A read forwarded to `leader` at tick `sent_at`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForwardedRead {
    leader: NodeId,
    sent_at: u64,
}

impl<S: LogStore> Node<S> {
    /// The follower's side of `read_index`: forwards the request to the leader.
    ///
    /// # Errors
    /// `ReadQueueFull` if `pending_reads_max` requests already wait.
    pub(super) fn read_index_forward(&mut self, request_id: u64) -> Result<()> {
        if self.forwarded_reads.len() >= self.config.pending_reads_max {
            return Err(Error::ReadQueueFull {
                limit: self.config.pending_reads_max,
            });
        }
        self.forward_read(request_id, self.leader);
        Ok(())
    }

    fn forward_read(&mut self, request_id: u64, leader: NodeId) {
        let read = ForwardedRead {
            leader,
            sent_at: self.ticks,
        };
        self.forwarded_reads.insert(request_id, read);
        self.send(leader, MessageBody::ReadIndex { request_id });
    }

    /// The leader's answer to a forwarded read, released if the request still waits for
    /// an answer from that leader.
    pub(super) fn handle_read_index_response(
        &mut self,
        from: NodeId,
        request_id: u64,
        index: Option<LogIndex>,
        clock: u64,
    ) {
        let waiting = self
            .forwarded_reads
            .get(&request_id)
            .is_some_and(|read| read.leader == from);
        if waiting {
            self.forwarded_reads.remove(&request_id);
            self.read_states.push(ReadState {
                request_id,
                index,
                clock,
            });
        }
    }

    /// Sets the leader this node follows (none, another node, or itself once it has
    /// become leader) and moves the waiting forwarded reads along to a new leader.
    pub(crate) fn set_leader(&mut self, leader: NodeId) {
        if leader == self.leader {
            return;
        }
        self.leader = leader;
        if leader.is_none() {
            return;
        }
        let waiting = std::mem::take(&mut self.forwarded_reads);
        for (request_id, _) in waiting {
            if leader == self.id {
                debug_assert_eq!(self.role, Role::Leader);
                if self.leader_read_index(self.id, request_id).is_err() {
                    self.release_forwarded_read_unanswered(request_id);
                }
            } else {
                self.forward_read(request_id, leader);
            }
        }
    }

    /// Answers reads that have waited too long for their leader (see the module rules).
    pub(crate) fn expire_forwarded_reads(&mut self) {
        let timeout = FORWARDED_READ_TIMEOUT_ELECTIONS * u64::from(self.config.election_ticks);
        let now = self.ticks;
        let expired: Vec<u64> = self
            .forwarded_reads
            .iter()
            .filter(|(_, read)| now.saturating_sub(read.sent_at) >= timeout)
            .map(|(request_id, _)| *request_id)
            .collect();
        for request_id in expired {
            self.forwarded_reads.remove(&request_id);
            self.release_forwarded_read_unanswered(request_id);
        }
    }

    fn release_forwarded_read_unanswered(&mut self, request_id: u64) {
        self.read_states.push(ReadState {
            request_id,
            index: None,
            clock: self.clock,
        });
    }
}
