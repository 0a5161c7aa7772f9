//! Applying committed entries to the state machine, and answering their proposers with
//! the typed replies the state machine returns. A command entry is an envelope with the
//! leader's stamp (or a legacy stamp-less entry), decoded by [`LogEntry::decode`].

use std::sync::Arc;

use raft_core::{Entry, EntryPayload, Snapshot};
use tracing::{error, info};

use super::io::LoopIo;
use crate::cmd::CommandError;
use crate::state_machine::{LogEntry, MembershipContext, Reply, StateMachine};

impl LoopIo {
    pub(super) fn apply_entries(&mut self, entries: &[Entry]) {
        for entry in entries {
            let reply = self.apply_entry(entry);
            self.applied_term = entry.term;
            self.pending
                .write_applied(entry.index, entry.term, reply, &self.metrics);
        }
    }

    fn apply_entry(&mut self, entry: &Entry) -> Reply {
        self.snapshots.applied(entry.size_bytes());
        match &entry.payload {
            EntryPayload::Blank => {
                self.machine.apply_blank(entry.index);
                Reply::Ok
            }
            EntryPayload::Command(data) => match LogEntry::decode(data) {
                Ok(decoded) => {
                    let reply = self.machine.apply_entry(entry.index, &decoded);
                    self.clock.observe(self.machine.time_ms());
                    if decoded.command.op.is_acl() {
                        self.publish_users();
                    }
                    reply
                }
                Err(undecodable) => {
                    // Every replica decodes the same bytes the same way, so skipping keeps
                    // them identical; it can only mean a bug or a version mismatch.
                    error!(index = entry.index.0, error = %undecodable, "committed entry does not decode; skipped");
                    self.machine.apply_blank(entry.index);
                    Reply::Error(CommandError::Internal {
                        reason: undecodable.to_string(),
                    })
                }
            },
            EntryPayload::Membership {
                membership,
                context,
            } => {
                let context = MembershipContext::decode(context).unwrap_or_default();
                self.machine
                    .apply_membership(entry.index, &context, &membership.nodes());
                info!(node = self.node_id.0, index = entry.index.0, membership = ?membership, "membership applied");
                self.peers_dirty = true;
                Reply::Ok
            }
        }
    }

    /// Publishes the users to the connections. Called as soon as an ACL entry is applied,
    /// before its proposer is answered: a client whose ACL SETUSER was answered finds the
    /// user on this node at once.
    fn publish_users(&mut self) {
        self.users_watch
            .send_replace(Arc::clone(self.machine.users()));
    }

    /// Replaces the state machine with a leader's snapshot (already durable). A snapshot
    /// that does not restore stops the node: it cannot go on without the leader's state.
    pub(super) fn restore_snapshot(&mut self, snapshot: &Snapshot) {
        match StateMachine::restore(&snapshot.data) {
            Ok(machine) => {
                info!(
                    node = self.node_id.0,
                    index = snapshot.meta.index.0,
                    bytes = snapshot.data.len(),
                    "restored a snapshot from the leader"
                );
                self.machine = machine;
                self.publish_users();
                self.applied_term = snapshot.meta.term;
                self.metrics
                    .snapshots_restored_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.clock.observe(self.machine.time_ms());
                self.snapshots
                    .restored(snapshot.meta.index, snapshot.data.len() as u64);
                self.peers_dirty = true;
            }
            Err(corrupt) => {
                error!(node = self.node_id.0, error = %corrupt, "snapshot from the leader does not restore; stopping");
                std::process::abort();
            }
        }
    }
}
