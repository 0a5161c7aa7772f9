//! Requests waiting for the log: writes until their entry is applied, reads until the
//! leader confirms a read point and then until this node has applied up to it.
//!
//! Invariant: every request that enters here gets exactly one outcome: its reply, or a
//! failure when the loop can no longer answer it (leadership lost, shutdown).

use std::collections::BTreeMap;
use std::time::Instant;

use raft_core::{LogIndex, Term};

use super::request::{answer, Outcome, ReplyTo};
use crate::error::ClusterError;
use crate::metrics::Metrics;
use crate::state_machine::{ReadCommand, Reply, StateMachine};

struct PendingWrite {
    term: Term,
    reply: ReplyTo,
    proposed_at: Instant,
}

#[derive(Default)]
pub struct Pending {
    /// Proposals by log index, with the term they were proposed in.
    writes: BTreeMap<LogIndex, PendingWrite>,
    /// ReadIndex requests awaiting their read point.
    reads: BTreeMap<u64, (ReadCommand, ReplyTo)>,
    /// Reads with a read point, waiting for the applied index to reach it.
    waiting_reads: BTreeMap<LogIndex, Vec<(ReadCommand, ReplyTo)>>,
    next_read_id: u64,
}

impl Pending {
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

    pub fn next_read_id(&mut self) -> u64 {
        self.next_read_id += 1;
        self.next_read_id
    }

    pub fn read_requested(&mut self, request_id: u64, command: ReadCommand, reply: ReplyTo) {
        self.reads.insert(request_id, (command, reply));
    }

    /// The node released a read: with a read point it waits to be served; without one it
    /// could not be confirmed and fails (nothing was read, so the client may retry).
    pub fn read_released(&mut self, request_id: u64, index: Option<LogIndex>) {
        let Some((command, reply)) = self.reads.remove(&request_id) else {
            return;
        };
        match index {
            None => answer(reply, Outcome::Failed(ClusterError::ReadNotConfirmed)),
            Some(index) => self
                .waiting_reads
                .entry(index)
                .or_default()
                .push((command, reply)),
        }
    }

    /// Answers every read whose read point `machine` has applied.
    pub fn serve_reads(&mut self, machine: &StateMachine) {
        let applied = machine.applied_index();
        while let Some(entry) = self.waiting_reads.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for (command, reply) in entry.remove() {
                answer(reply, Outcome::Reply(machine.read(&command)));
            }
        }
    }

    /// Fails every write waiting for its entry (it may still commit, or not).
    pub fn fail_writes(&mut self, reason: impl Fn() -> ClusterError) {
        for (_, pending) in std::mem::take(&mut self.writes) {
            answer(pending.reply, Outcome::Failed(reason()));
        }
    }

    /// Fails everything still waiting.
    pub fn fail_everything(&mut self, reason: impl Fn() -> ClusterError) {
        self.fail_writes(&reason);
        for (_, (_, reply)) in std::mem::take(&mut self.reads) {
            answer(reply, Outcome::Failed(reason()));
        }
        for (_, reads) in std::mem::take(&mut self.waiting_reads) {
            for (_, reply) in reads {
                answer(reply, Outcome::Failed(reason()));
            }
        }
    }
}
