//! Raft's safety properties (Figure 3 of the paper), checked after every simulation step.
//!
//! - Election Safety: at most one leader per term.
//! - Leader Append-Only: a leader never overwrites or deletes entries in its log.
//! - Log Matching: two logs holding an entry with the same index and term hold the same
//!   entry there and identical logs before it (checked by induction: each (index, term)
//!   always carries the same content and the same predecessor term).
//! - Leader Completeness: a new leader holds every entry committed in earlier terms.
//! - State Machine Safety: no two nodes apply different entries at one index.
//! - Linearizable reads: a ReadIndex read point covers every write committed before the
//!   read was requested.

use std::collections::BTreeMap;

use raft_core::{Entry, LogIndex, LogStore, Node, NodeId, Role, Term};

use crate::app::entry_digest;

#[derive(Default)]
pub struct Checker {
    /// term -> the node that led in it.
    leaders: BTreeMap<Term, NodeId>,
    /// (node, term) -> (last index, last term) when last seen leading in that term.
    leader_logs: BTreeMap<(NodeId, Term), (LogIndex, Term)>,
    /// (index, term) -> (content digest, term of the previous entry).
    entries: BTreeMap<(LogIndex, Term), (u64, Term)>,
    /// index -> term, for every index some node has called committed.
    committed: BTreeMap<LogIndex, Term>,
    /// Highest index any node has called committed.
    pub committed_max: LogIndex,
    /// index -> (term, content digest) of what was applied there.
    applied: BTreeMap<LogIndex, (Term, u64)>,
    /// index -> application digest after applying it.
    pub app_digests: BTreeMap<LogIndex, u64>,
    /// Requested read id -> commit index when it was requested.
    reads: BTreeMap<u64, LogIndex>,
    pub reads_confirmed: u64,
}

pub type Verdict = Result<(), String>;

impl Checker {
    /// Checks a node's role, log and commit index after it was stepped.
    pub fn after_step<S: LogStore>(&mut self, node: &Node<S>) -> Verdict {
        let id = node.id();
        if node.role() == Role::Leader {
            let term = node.term();
            if let Some(other) = self.leaders.insert(term, id) {
                if other != id {
                    return Err(format!(
                        "Election Safety: {other:?} and {id:?} both led in {term:?}"
                    ));
                }
            } else {
                self.check_leader_completeness(node)?;
            }
            let last = node.last_index();
            let last_term = node.log_term(last).unwrap_or(Term::ZERO);
            if let Some((prev_last, prev_term)) =
                self.leader_logs.insert((id, term), (last, last_term))
            {
                let still_there = node.log_term(prev_last).is_none_or(|t| t == prev_term);
                if last < prev_last || !still_there {
                    return Err(format!(
                        "Leader Append-Only: leader {id:?} of {term:?} went from last {prev_last:?}@{prev_term:?} to {last:?}"
                    ));
                }
            }
        }
        self.record_commit(node)
    }

    fn check_leader_completeness<S: LogStore>(&self, node: &Node<S>) -> Verdict {
        let first = node.first_index();
        for (&index, &term) in self.committed.range(first..) {
            match node.log_term(index) {
                Some(found) if found == term => {}
                found => {
                    return Err(format!(
                        "Leader Completeness: new leader {:?} of {:?} has {found:?} at committed {index:?} (committed in {term:?})",
                        node.id(),
                        node.term()
                    ))
                }
            }
        }
        Ok(())
    }

    fn record_commit<S: LogStore>(&mut self, node: &Node<S>) -> Verdict {
        let commit = node.commit_index();
        if commit <= self.committed_max {
            return Ok(());
        }
        let from = self.committed_max.next().max(node.first_index());
        for index in from.0..=commit.0 {
            let index = LogIndex(index);
            if let Some(term) = node.log_term(index) {
                if let Some(&known) = self.committed.get(&index) {
                    if known != term {
                        return Err(format!(
                            "State Machine Safety: {:?} commits {index:?}@{term:?}, already committed @{known:?}",
                            node.id()
                        ));
                    }
                }
                self.committed.insert(index, term);
            }
        }
        self.committed_max = commit;
        Ok(())
    }

    /// Log Matching, for entries a node has just written to `store`.
    pub fn persisted_entries<S: LogStore>(
        &mut self,
        node: NodeId,
        store: &S,
        entries: &[Entry],
    ) -> Verdict {
        for entry in entries {
            let prev_term = if entry.index.0 == 1 {
                Term::ZERO
            } else {
                match store.term(entry.index.prev()) {
                    Ok(term) => term,
                    Err(_) => continue,
                }
            };
            let fingerprint = (entry_digest(entry), prev_term);
            if let Some(&known) = self.entries.get(&(entry.index, entry.term)) {
                if known != fingerprint {
                    return Err(format!(
                        "Log Matching: {:?} holds {:?} with (digest, prev term) {fingerprint:?}, elsewhere {known:?}",
                        node,
                        entry
                    ));
                }
            } else {
                self.entries.insert((entry.index, entry.term), fingerprint);
            }
        }
        Ok(())
    }

    /// State Machine Safety, for an entry a node applies.
    pub fn applied(&mut self, node: NodeId, entry: &Entry, app_digest: u64) -> Verdict {
        let fingerprint = (entry.term, entry_digest(entry));
        if let Some(&known) = self.applied.get(&entry.index) {
            if known != fingerprint {
                return Err(format!(
                    "State Machine Safety: {node:?} applied {entry:?}, another node applied {known:?} at that index"
                ));
            }
        } else {
            self.applied.insert(entry.index, fingerprint);
        }
        if let Some(&known) = self.app_digests.get(&entry.index) {
            if known != app_digest {
                return Err(format!(
                    "State Machine Safety: {node:?} reached a different state at {:?}",
                    entry.index
                ));
            }
        } else {
            self.app_digests.insert(entry.index, app_digest);
        }
        Ok(())
    }

    /// A snapshot restored on a node must equal the state others reached at its index.
    pub fn restored(&mut self, node: NodeId, index: LogIndex, app_digest: u64) -> Verdict {
        match self.app_digests.get(&index) {
            Some(&known) if known != app_digest => Err(format!(
                "State Machine Safety: {node:?} restored a snapshot at {index:?} that differs from the applied state"
            )),
            _ => Ok(()),
        }
    }

    pub fn read_requested(&mut self, request_id: u64) {
        self.reads.insert(request_id, self.committed_max);
    }

    pub fn read_released(
        &mut self,
        node: NodeId,
        request_id: u64,
        index: Option<LogIndex>,
    ) -> Verdict {
        let Some(required) = self.reads.remove(&request_id) else {
            return Err(format!(
                "{node:?} released read {request_id} that was never requested (or twice)"
            ));
        };
        if let Some(index) = index {
            if index < required {
                return Err(format!(
                    "Linearizability: read {request_id} on {node:?} got read point {index:?}, but {required:?} was committed before it was requested"
                ));
            }
            self.reads_confirmed += 1;
        }
        Ok(())
    }
}
