//! What the async side asks of the loop ([`Request`]), what it gets back ([`Outcome`]),
//! and how the loop starts each request: a write is proposed (stamped by the leader's
//! clock, `clock`), a read asks for a read point, anything that needs the leader is
//! turned away with the leader's address.

use raft_core::Role;
use tokio::sync::oneshot;

use super::{wall_clock_ms, RaftLoop};
use crate::cmd::AdminCommand;
use crate::error::ClusterError;
use crate::state_machine::{LogEntry, ReadCommand, Reply, WriteCommand};
use crate::status::NodeStatus;

/// What a request's sender gets back.
#[derive(Debug)]
pub enum Outcome {
    Reply(Reply),
    Failed(ClusterError),
    /// This node is not the leader: the connection forwards the request to the leader
    /// (waiting, bounded, for one to be known).
    NotLeader,
}

pub type ReplyTo = oneshot::Sender<Outcome>;

pub enum Request {
    Write {
        command: WriteCommand,
        reply: ReplyTo,
    },
    Read {
        command: ReadCommand,
        linearizable: bool,
        reply: ReplyTo,
    },
    Admin {
        command: AdminCommand,
        reply: ReplyTo,
    },
    Status {
        reply: oneshot::Sender<NodeStatus>,
    },
}

impl Request {
    /// Answers the request with `failure` without running it.
    pub fn refuse(self, failure: impl FnOnce() -> ClusterError) {
        // A requester that gave up has dropped its receiver; nobody is left to tell.
        match self {
            Request::Write { reply, .. }
            | Request::Read { reply, .. }
            | Request::Admin { reply, .. } => {
                let _ = reply.send(Outcome::Failed(failure()));
            }
            Request::Status { .. } => {}
        }
    }
}

/// Sends an outcome to a requester that may have given up (then nobody is left to tell).
pub(super) fn answer(reply: ReplyTo, outcome: Outcome) {
    let _ = reply.send(outcome);
}

impl RaftLoop {
    pub(super) fn handle_request(&mut self, request: Request) {
        match request {
            Request::Write { command, reply } => self.propose_write(command, reply),
            Request::Read {
                command,
                linearizable,
                reply,
            } => self.read(command, linearizable, reply),
            Request::Admin { command, reply } => self.admin(command, reply),
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn propose_write(&mut self, command: WriteCommand, reply: ReplyTo) {
        if self.node.role() != Role::Leader {
            answer(reply, Outcome::NotLeader);
            return;
        }
        let stamp = self.io.clock.stamp(wall_clock_ms());
        match self.node.propose(LogEntry::encode(stamp, &command)) {
            Ok(index) => self.io.track_write(index, self.node.term(), reply),
            Err(refusal) => answer(reply, Outcome::Failed(ClusterError::Refused(refusal))),
        }
    }

    fn read(&mut self, command: ReadCommand, linearizable: bool, reply: ReplyTo) {
        if !linearizable {
            // A stale read: judged by this node's clock, clamped to its applied time.
            let reply_now = self.io.machine.read(&command, wall_clock_ms());
            answer(reply, Outcome::Reply(reply_now));
            return;
        }
        let request_id = self.io.pending.next_read_id();
        match self.node.read_index(request_id) {
            Ok(()) => self.io.pending.read_requested(request_id, command, reply),
            Err(raft_core::Error::NotLeader { .. }) => {
                answer(reply, Outcome::Failed(ClusterError::NoLeader));
            }
            Err(refusal) => answer(reply, Outcome::Failed(ClusterError::Refused(refusal))),
        }
    }
}
