//! The follower's side of replication: AppendEntries (§5.3), heartbeats, and receiving a
//! snapshot in chunks (§7).

use bytes::Bytes;

use crate::message::{AppendResponse, InstallSnapshotResponse, MessageBody};
use crate::node::{IncomingSnapshot, Node};
use crate::storage::LogStore;
use crate::types::{Entry, LogIndex, NodeId, Snapshot, SnapshotMeta, Term};

impl<S: LogStore> Node<S> {
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if prev_log_index < self.log.committed {
            // Everything up to our commit index matches any leader's log (Leader
            // Completeness); tell the leader where to continue.
            let match_index = self.log.committed;
            self.send(
                from,
                MessageBody::AppendResponse(AppendResponse::Accepted { match_index }),
            );
            return;
        }
        match self
            .log
            .maybe_append(prev_log_index, prev_log_term, &entries)
        {
            Some((last_new, written_from)) => {
                if let Some(first) = written_from {
                    // A truncation removes membership entries; the new ones take effect now.
                    self.forget_memberships_from(first);
                    let skip = usize::try_from(prev_log_index.distance_to(first) - 1)
                        .expect("entry count fits in usize");
                    self.note_memberships(&entries[skip..]);
                }
                if self.log.commit_to(leader_commit.min(last_new)) {
                    self.fold_committed_memberships();
                }
                self.send(
                    from,
                    MessageBody::AppendResponse(AppendResponse::Accepted {
                        match_index: last_new,
                    }),
                );
            }
            None => {
                let hint_from = prev_log_index.min(self.log.last_index());
                let (hint_index, hint_term) =
                    self.log.find_conflict_by_term(hint_from, prev_log_term);
                self.send(
                    from,
                    MessageBody::AppendResponse(AppendResponse::Rejected {
                        rejected_index: prev_log_index,
                        hint_index,
                        hint_term,
                    }),
                );
            }
        }
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_round: u64) {
        // The leader caps `commit` at what it knows we hold, so adopting it is safe.
        if self.log.commit_to(commit.min(self.log.last_index())) {
            self.fold_committed_memberships();
        }
        self.send(from, MessageBody::HeartbeatResponse { read_round });
    }

    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        if meta.index <= self.log.committed {
            let match_index = self.log.committed;
            self.send_snapshot_response(from, InstallSnapshotResponse::Done { match_index });
            return;
        }
        let same_snapshot = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            incoming.meta.index == meta.index && incoming.meta.term == meta.term
        });
        if offset == 0 && !same_snapshot {
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: meta.clone(),
                data: Vec::new(),
            });
        }
        let Some(incoming) = self.incoming_snapshot.as_mut() else {
            self.send_snapshot_progress(from, meta.index, 0);
            return;
        };
        if incoming.meta.index != meta.index || incoming.meta.term != meta.term {
            self.send_snapshot_progress(from, meta.index, 0);
            return;
        }
        let held = incoming.data.len() as u64;
        if offset != held {
            // A duplicate or a chunk after a lost one: say where we are.
            self.send_snapshot_progress(from, meta.index, held);
            return;
        }
        let total = held + data.len() as u64;
        if total > self.config.snapshot_bytes_max {
            // Refusing is all we can do; the operator must raise the limit.
            self.incoming_snapshot = None;
            return;
        }
        incoming.data.extend_from_slice(&data);
        if !done {
            self.send_snapshot_progress(from, meta.index, total);
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("checked above");
        let snapshot = Snapshot {
            meta: incoming.meta,
            data: Bytes::from(incoming.data),
        };
        let match_index = self.install_snapshot(snapshot);
        self.send_snapshot_response(from, InstallSnapshotResponse::Done { match_index });
    }

    /// Installs a complete snapshot from the leader; returns the index our log now matches.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> LogIndex {
        let index = snapshot.meta.index;
        if self.log.match_term(index, snapshot.meta.term) {
            // Our log already holds the snapshot's last entry: just learn the commit.
            if self.log.commit_to(index) {
                self.fold_committed_memberships();
            }
            return index;
        }
        self.membership = snapshot.meta.membership.clone();
        self.committed_membership = snapshot.meta.membership.clone();
        self.uncommitted_memberships.clear();
        self.log.restore(snapshot);
        index
    }

    fn send_snapshot_progress(&mut self, to: NodeId, snapshot_index: LogIndex, next_offset: u64) {
        self.send_snapshot_response(
            to,
            InstallSnapshotResponse::Progress {
                snapshot_index,
                next_offset,
            },
        );
    }

    fn send_snapshot_response(&mut self, to: NodeId, response: InstallSnapshotResponse) {
        self.send(to, MessageBody::InstallSnapshotResponse(response));
    }
}
