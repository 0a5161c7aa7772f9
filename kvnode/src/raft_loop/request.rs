//! What the async side asks of the loop ([`Request`]), what it gets back ([`Outcome`]),
//! and how the loop starts each request: a write is proposed (stamped by the leader's
//! clock, `clock`), a read asks for a read point, anything that needs the leader is
//! turned away with the leader's address.

use raft_core::{LogIndex, Role, Term};
use tokio::sync::oneshot;

use super::{wall_clock_ms, RaftLoop};
use crate::cmd::AdminCommand;
use crate::config::TestFault;
use crate::error::ClusterError;
use crate::state_machine::{
    LogEntry, ReadCommand, Reply, SetCondition, SetReply, StateMachine, WriteCommand, WriteOp,
};
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
    /// A copy of the state at a linearizable point (a read's), for a backup.
    Capture {
        reply: oneshot::Sender<Result<Captured, ClusterError>>,
    },
}

/// The state machine as of a linearizable point, and where in the log that is.
pub struct Captured {
    /// A copy-on-write clone: it shares the key space with the live state.
    pub machine: StateMachine,
    pub index: LogIndex,
    pub term: Term,
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
            Request::Capture { reply } => {
                let _ = reply.send(Err(failure()));
            }
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
            Request::Capture { reply } => self.capture(reply),
        }
    }

    fn propose_write(&mut self, command: WriteCommand, reply: ReplyTo) {
        if self.node.role() != Role::Leader {
            answer(reply, Outcome::NotLeader);
            return;
        }
        let acked_at_once = self.test_fault == Some(TestFault::AckBeforeCommit)
            && matches!(
                command.op,
                WriteOp::Set {
                    condition: SetCondition::Always,
                    reply: SetReply::Ok,
                    ..
                }
            );
        let stamp = self.io.clock.stamp(wall_clock_ms());
        match self.node.propose(LogEntry::encode(stamp, &command)) {
            Ok(_) if acked_at_once => answer(reply, Outcome::Reply(Reply::Ok)),
            Ok(index) => self.io.track_write(index, self.node.term(), reply),
            Err(refusal) => answer(reply, Outcome::Failed(ClusterError::Refused(refusal))),
        }
    }

    /// A capture is a linearizable read of the whole state: it waits for a read point like
    /// any read, then takes a copy-on-write clone.
    fn capture(&mut self, reply: oneshot::Sender<Result<Captured, ClusterError>>) {
        let request_id = self.io.pending.next_read_id();
        match self.node.read_index(request_id) {
            Ok(()) => self.io.pending.capture_requested(request_id, reply),
            Err(raft_core::Error::NotLeader { .. }) => {
                let _ = reply.send(Err(ClusterError::NoLeader));
            }
            Err(refusal) => {
                let _ = reply.send(Err(ClusterError::Refused(refusal)));
            }
        }
    }

    fn read(&mut self, command: ReadCommand, linearizable: bool, reply: ReplyTo) {
        let unconfirmed = self.test_fault == Some(TestFault::ReadsWithoutReadIndex);
        if !linearizable || unconfirmed {
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
