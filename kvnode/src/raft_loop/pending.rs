//! Requests waiting for the log: writes until their entry is applied, reads until the
//! leader confirms a read point and then until this node has applied up to it.
//!
//! Invariant: every request that enters here gets exactly one outcome: its reply, or a
//! failure when the loop can no longer answer it (leadership lost, shutdown).

use std::collections::BTreeMap;
use std::time::Instant;

use raft_core::{LogIndex, NodeId, Term};

use super::read_ids::ReadIds;
use tokio::sync::oneshot;

use super::request::{answer, Captured, Outcome, ReplyTo};
use crate::error::ClusterError;
use crate::metrics::Metrics;
use crate::state_machine::{ReadCommand, Reply, StateMachine};

/// A leadership transfer this node (the leader) was asked for, answered once leadership
/// has moved, or has not.
struct PendingTransfer {
    target: NodeId,
    reply: ReplyTo,
    deadline: Instant,
}

/// Who waits for a read point: a read command, or a capture of the whole state.
enum Reader {
    Command(ReadCommand, ReplyTo),
    Capture(oneshot::Sender<Result<Captured, ClusterError>>),
}

impl Reader {
    fn fail(self, failure: ClusterError) {
        match self {
            Reader::Command(_, reply) => answer(reply, Outcome::Failed(failure)),
            Reader::Capture(reply) => {
                let _ = reply.send(Err(failure));
            }
        }
    }
}

struct PendingWrite {
    term: Term,
    reply: ReplyTo,
    proposed_at: Instant,
}

pub struct Pending {
    /// Proposals by log index, with the term they were proposed in.
    writes: BTreeMap<LogIndex, PendingWrite>,
    /// ReadIndex requests awaiting their read point.
    reads: BTreeMap<u64, Reader>,
    /// Reads with a read point, waiting for the applied index to reach it, with the
    /// confirming leader's clock (the time they are judged at).
    waiting_reads: BTreeMap<LogIndex, Vec<(Reader, u64)>>,
    read_ids: ReadIds,
    transfers: Vec<PendingTransfer>,
}

impl Pending {
    pub fn new(read_ids: ReadIds) -> Pending {
        Pending {
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            waiting_reads: BTreeMap::new(),
            read_ids,
            transfers: Vec::new(),
        }
    }

    /// Waits for leadership to reach `target` (answered by [`Pending::settle_transfers`]).
    pub fn transfer_requested(&mut self, target: NodeId, reply: ReplyTo, deadline: Instant) {
        self.transfers.push(PendingTransfer {
            target,
            reply,
            deadline,
        });
    }

    /// Answers the transfers whose outcome is known: the target leads (OK); this node
    /// leads but gave the transfer up (raft-core abandons it after an election timeout);
    /// another node leads; or the deadline passed with no leader.
    pub fn settle_transfers(&mut self, leader: Option<NodeId>, transferring_to: Option<NodeId>) {
        if self.transfers.is_empty() {
            return;
        }
        let now = Instant::now();
        for transfer in std::mem::take(&mut self.transfers) {
            let failed = |reason| {
                Outcome::Failed(ClusterError::TransferFailed {
                    target: transfer.target,
                    reason,
                })
            };
            let outcome = match leader {
                Some(leader) if leader == transfer.target => Outcome::Reply(Reply::Ok),
                Some(_) if transferring_to == Some(transfer.target) => {
                    self.transfers.push(transfer);
                    continue;
                }
                Some(_) => failed("it did not take over within an election timeout"),
                None if now >= transfer.deadline => failed("no leader was elected in time"),
                None => {
                    self.transfers.push(transfer);
                    continue;
                }
            };
            answer(transfer.reply, outcome);
        }
    }

    pub fn track_write(&mut self, index: LogIndex, term: Term, reply: ReplyTo) {
        let write = PendingWrite {
            term,
            reply,
            proposed_at: Instant::now(),
        };
        self.writes.insert(index, write);
    }

    /// The entry at `index` (of `term`) was applied with `reply`: answers its proposer. If
    /// the entry has another term the slot was overwritten, and the proposal never applied.
    pub fn write_applied(&mut self, index: LogIndex, term: Term, reply: Reply, metrics: &Metrics) {
        let Some(pending) = self.writes.remove(&index) else {
            return;
        };
        let outcome = if pending.term == term {
            metrics
                .proposal_latency
                .observe(pending.proposed_at.elapsed());
            Outcome::Reply(reply)
        } else {
            Outcome::Failed(ClusterError::Overwritten)
        };
        answer(pending.reply, outcome);
    }

    /// An id for a new read, unique across this node's restarts.
    pub fn next_read_id(&mut self) -> u64 {
        self.read_ids.next()
    }

    pub fn read_requested(&mut self, request_id: u64, command: ReadCommand, reply: ReplyTo) {
        self.reads
            .insert(request_id, Reader::Command(command, reply));
    }

    pub fn capture_requested(
        &mut self,
        request_id: u64,
        reply: oneshot::Sender<Result<Captured, ClusterError>>,
    ) {
        self.reads.insert(request_id, Reader::Capture(reply));
    }

    /// The node released a read: with a read point it waits to be served, judged at
    /// `clock` (the confirming leader's); without one it could not be confirmed and fails
    /// (nothing was read, so the client may retry).
    pub fn read_released(&mut self, request_id: u64, index: Option<LogIndex>, clock: u64) {
        let Some(reader) = self.reads.remove(&request_id) else {
            return;
        };
        match index {
            None => reader.fail(ClusterError::ReadNotConfirmed),
            Some(index) => self
                .waiting_reads
                .entry(index)
                .or_default()
                .push((reader, clock)),
        }
    }

    /// Answers every read whose read point `machine` has applied, each judged at
    /// `max(its leader's clock, the machine's applied time)` ([`StateMachine::read`]);
    /// `applied_term` is the term of the last entry applied (for captures).
    pub fn serve_reads(&mut self, machine: &StateMachine, applied_term: Term) {
        let applied = machine.applied_index();
        while let Some(entry) = self.waiting_reads.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for (reader, clock) in entry.remove() {
                match reader {
                    Reader::Command(command, reply) => {
                        answer(reply, Outcome::Reply(machine.read(&command, clock)));
                    }
                    Reader::Capture(reply) => {
                        let captured = Captured {
                            machine: machine.clone(),
                            index: applied,
                            term: applied_term,
                        };
                        let _ = reply.send(Ok(captured));
                    }
                }
            }
        }
    }

    /// Fails every write waiting for its entry (it may still commit, or not).
    pub fn fail_writes(&mut self, reason: impl Fn() -> ClusterError) {
        for (_, pending) in std::mem::take(&mut self.writes) {
            answer(pending.reply, Outcome::Failed(reason()));
        }
    }

    /// Fails everything still waiting, as the loop stops: writes may have been applied
    /// (they are in the log); reads and transfers changed nothing.
    pub fn fail_everything_at_stop(&mut self) {
        self.fail_writes(|| ClusterError::ShuttingDown);
        let stopping = || Outcome::Failed(ClusterError::Stopping);
        for transfer in std::mem::take(&mut self.transfers) {
            answer(transfer.reply, stopping());
        }
        for (_, reader) in std::mem::take(&mut self.reads) {
            reader.fail(ClusterError::Stopping);
        }
        for (_, readers) in std::mem::take(&mut self.waiting_reads) {
            for (reader, _) in readers {
                reader.fail(ClusterError::Stopping);
            }
        }
    }
}
