//! A follower's ReadIndex requests (thesis §6.4), forwarded to the leader it follows.
//!
//! A forwarded request waits in `forwarded_reads` until the leader answers with a read
//! point (or `None`), or until `become_follower` changes the leader this node follows,
//! when it is answered with `None` so that the client retries; an answer arriving after
//! that is ignored. At most `pending_reads_max` requests wait at once. The leader's side
//! is in `role/leader.rs`.

use crate::error::{Error, Result};
use crate::message::MessageBody;
use crate::node::Node;
use crate::ready::ReadState;
use crate::storage::LogStore;
use crate::types::LogIndex;

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
        self.forwarded_reads.insert(request_id, self.leader);
        let leader = self.leader;
        self.send(leader, MessageBody::ReadIndex { request_id });
        Ok(())
    }

    /// The leader's answer to a forwarded read, released if the request still waits.
    pub(super) fn handle_read_index_response(&mut self, request_id: u64, index: Option<LogIndex>) {
        if self.forwarded_reads.remove(&request_id).is_some() {
            self.read_states.push(ReadState { request_id, index });
        }
    }

    /// Answers every waiting request with `None`: the leader they went to is no longer
    /// the one this node follows.
    pub(super) fn abort_forwarded_reads(&mut self) {
        for (request_id, _) in std::mem::take(&mut self.forwarded_reads) {
            self.read_states.push(ReadState {
                request_id,
                index: None,
            });
        }
    }
}
