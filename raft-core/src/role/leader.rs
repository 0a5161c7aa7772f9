//! The leader: proposals, replication with per-follower flow control (§5.3), commitment by
//! counting replicas of current-term entries (§5.4.2), heartbeats and check-quorum
//! (thesis §6.2), snapshots to lagging followers (§7), joint consensus (thesis §4.3),
//! leadership transfer (thesis §3.10) and ReadIndex (thesis §6.4).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::log::fatal_storage_error;
use crate::message::{AppendResponse, InstallSnapshotResponse, MessageBody};
use crate::node::{is_compacted, Node};
use crate::progress::{Progress, ProgressState};
use crate::ready::{ReadState, Role};
use crate::storage::LogStore;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId};

/// Heartbeat responses without progress before a pipelined append or snapshot chunk is
/// presumed lost and re-sent.
const STALLED_HEARTBEATS_MAX: u32 = 3;

impl<S: LogStore> Node<S> {
    pub(crate) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            crate::ready::Role::Candidate,
            "only a candidate can win"
        );
        self.role = Role::Leader;
        self.votes.clear();
        self.reset_timers();
        self.transfer_target = None;
        self.uncommitted.clear();
        self.uncommitted_bytes = 0;
        self.progress.clear();
        self.leader_sync_progress_with_membership();
        // §8: a new leader commits a blank entry of its own term, which also commits every
        // earlier entry it holds and lets it serve reads.
        self.append_own_entry(EntryPayload::Blank);
        self.leader_maybe_leave_joint();
        // Last, once it can take reads: those it forwarded as a follower become its own.
        self.set_leader(self.id);
    }

    /// Adds progress for new members and drops it for removed ones.
    pub(crate) fn leader_sync_progress_with_membership(&mut self) {
        let members = self.membership.nodes();
        self.progress
            .retain(|id, _| members.contains(id) || *id == self.id);
        let next = self.log.last_index().next();
        let window = self.config.inflight_msgs_max;
        for id in members {
            self.progress.entry(id).or_insert_with(|| {
                let mut progress = Progress::new(next, window);
                progress.recent_active = true;
                progress
            });
        }
        let durable = self.log.durable_last_index();
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.update_matched(durable);
            own.become_replicate();
        }
        self.broadcast_pending = true;
    }

    pub(crate) fn leader_stepped_down(&mut self) {
        self.progress.clear();
        self.outgoing_snapshot = None;
        self.transfer_target = None;
        self.uncommitted.clear();
        self.uncommitted_bytes = 0;
        self.broadcast_pending = false;
        self.commit_broadcast_pending = false;
        for (requester, request_id) in self.read_only.take_all() {
            self.answer_read(requester, request_id, None);
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(1);
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.leader_quorum_active() {
                self.become_follower(self.term, NodeId::NONE);
                return;
            }
            if self.transfer_target.is_some() {
                // Thesis §3.10: give up if the transfer did not finish within an election
                // timeout, and accept proposals again.
                self.transfer_target = None;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat(self.read_only.round);
        }
    }

    /// Check-quorum: was a quorum heard from since the last round? Resets the marks.
    fn leader_quorum_active(&mut self) -> bool {
        let own = self.id;
        let active = self
            .membership
            .has_quorum(|id| id == own || self.progress.get(&id).is_some_and(|p| p.recent_active));
        for (id, progress) in self.progress.iter_mut() {
            progress.recent_active = *id == own;
        }
        active
    }

    pub(crate) fn check_can_propose(&self, size_bytes: u64) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader(),
            });
        }
        if let Some(target) = self.transfer_target {
            return Err(Error::TransferInProgress { target });
        }
        if size_bytes > self.config.entry_bytes_max {
            return Err(Error::ProposalTooLarge {
                size_bytes,
                limit_bytes: self.config.entry_bytes_max,
            });
        }
        let limit_bytes = self.config.uncommitted_bytes_max;
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + size_bytes > limit_bytes {
            return Err(Error::ProposalQueueFull {
                uncommitted_bytes: self.uncommitted_bytes,
                limit_bytes,
            });
        }
        Ok(())
    }

    /// Appends an entry of the current term to the leader's log; it is broadcast at the
    /// next `ready` so that proposals arriving together share messages.
    pub(crate) fn append_own_entry(&mut self, payload: EntryPayload) -> LogIndex {
        let entry = Entry {
            index: self.log.last_index().next(),
            term: self.term,
            payload,
        };
        let index = entry.index;
        let size = entry.size_bytes();
        self.uncommitted.push_back((index, size));
        self.uncommitted_bytes += size;
        let entries = [entry];
        self.log.append_unstable(&entries);
        self.note_memberships(&entries);
        self.broadcast_pending = true;
        index
    }

    /// Sends what is pending: new entries to every follower that can take them, the new
    /// commit index, and a heartbeat round for queued reads.
    pub(crate) fn flush_broadcasts(&mut self) {
        let commit_changed = std::mem::take(&mut self.commit_broadcast_pending);
        if std::mem::take(&mut self.broadcast_pending) || commit_changed {
            let own = self.id;
            let peers: Vec<NodeId> = self.progress.keys().copied().collect();
            for peer in peers.into_iter().filter(|peer| *peer != own) {
                let mut sent_any = false;
                // Bounded by the in-flight window: each send fills one slot.
                while self.send_append(peer, commit_changed && !sent_any) {
                    sent_any = true;
                }
            }
        }
        if self.read_only.round_pending() {
            let round = self.read_only.start_round();
            self.broadcast_heartbeat(round);
            self.release_confirmed_reads();
        }
    }

    fn broadcast_heartbeat(&mut self, read_round: u64) {
        let peers: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, progress)| (*id, progress.matched))
            .collect();
        for (peer, matched) in peers {
            let commit = matched.min(self.log.committed);
            self.send(peer, MessageBody::Heartbeat { commit, read_round });
        }
    }

    /// Sends one AppendEntries (or snapshot chunk) to `to` if its flow control allows.
    /// An empty append (commit news only) is sent only if `allow_empty`. Returns whether
    /// a message carrying entries was sent and another might follow.
    fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(progress) = self.progress.get(&to) else {
            return false;
        };
        if progress.is_paused() {
            return false;
        }
        let next = progress.next;
        let prev_log_index = next.prev();
        let last = self.log.last_index();
        if next > last && !allow_empty {
            return false;
        }
        let prev_log_term = self.log.term(prev_log_index);
        let entries = self.log.entries(
            next,
            last.next(),
            self.config.append_entries_max,
            self.config.append_bytes_max,
        );
        let (prev_log_term, entries) = match (prev_log_term, entries) {
            (Ok(term), Ok(entries)) => (term, entries),
            (Err(error), _) | (_, Err(error)) => {
                if is_compacted(&error) {
                    self.send_snapshot(to);
                    return false;
                }
                fatal_storage_error(error)
            }
        };
        let progress = self.progress.get_mut(&to).expect("checked above");
        let carries_entries = !entries.is_empty();
        match progress.state {
            ProgressState::Replicate if carries_entries => {
                let last_sent = entries.last().expect("not empty").index;
                progress.next = last_sent.next();
                progress.inflights.add(last_sent);
            }
            ProgressState::Probe => progress.probe_sent = true,
            _ => {}
        }
        let leader_commit = self.log.committed;
        self.send(
            to,
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            },
        );
        carries_entries && self.progress[&to].state == ProgressState::Replicate
    }

    /// Starts (or resumes) sending the latest snapshot to `to`, one chunk at a time.
    fn send_snapshot(&mut self, to: NodeId) {
        let latest_index = self.log.store.first_index().prev();
        let cached = self
            .outgoing_snapshot
            .as_ref()
            .map(|snapshot| snapshot.meta.index);
        if cached != Some(latest_index) {
            let snapshot = self
                .log
                .store
                .snapshot()
                .unwrap_or_else(|e| fatal_storage_error(e));
            self.outgoing_snapshot = Some(snapshot);
        }
        let snapshot = self.outgoing_snapshot.clone().expect("loaded above");
        let Some(progress) = self.progress.get_mut(&to) else {
            return;
        };
        let offset = match progress.state {
            ProgressState::Snapshot {
                index,
                acked_offset,
            } if index == snapshot.meta.index => acked_offset,
            _ => {
                progress.become_snapshot(snapshot.meta.index);
                0
            }
        };
        let total = snapshot.data.len() as u64;
        let end = offset
            .saturating_add(self.config.snapshot_chunk_bytes)
            .min(total);
        let chunk = snapshot.data.slice(
            usize::try_from(offset).expect("offset within snapshot")
                ..usize::try_from(end).expect("end within snapshot"),
        );
        self.send(
            to,
            MessageBody::InstallSnapshot {
                meta: snapshot.meta,
                offset,
                data: chunk,
                done: end == total,
            },
        );
    }

    /// A follower's progress, marked as heard from (for check-quorum); `None` unless we
    /// lead and it is a member.
    fn active_follower(&mut self, from: NodeId) -> Option<&mut Progress> {
        if self.role != Role::Leader {
            return None;
        }
        let ticks = self.ticks;
        let progress = self.progress.get_mut(&from)?;
        progress.recent_active = true;
        progress.heard_at = ticks;
        Some(progress)
    }

    pub(crate) fn handle_append_response(&mut self, from: NodeId, response: AppendResponse) {
        let Some(progress) = self.active_follower(from) else {
            return;
        };
        match response {
            AppendResponse::Accepted { match_index } => {
                let moved = progress.update_matched(match_index);
                match progress.state {
                    ProgressState::Probe => progress.become_replicate(),
                    ProgressState::Replicate => progress.inflights.free_up_to(match_index),
                    ProgressState::Snapshot { index, .. } if progress.matched >= index => {
                        progress.become_probe();
                    }
                    ProgressState::Snapshot { .. } => {}
                }
                if moved {
                    self.leader_maybe_commit();
                    self.maybe_send_timeout_now(from);
                }
            }
            AppendResponse::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                let stale = match progress.state {
                    ProgressState::Replicate => rejected_index <= progress.matched,
                    ProgressState::Probe => rejected_index != progress.next.prev(),
                    ProgressState::Snapshot { .. } => true,
                };
                if stale {
                    return;
                }
                let probe_at = if hint_term.0 > 0 {
                    self.log.find_conflict_by_term(hint_index, hint_term).0
                } else {
                    hint_index
                };
                let progress = self.progress.get_mut(&from).expect("checked above");
                progress.become_probe();
                progress.next = rejected_index
                    .min(probe_at.next())
                    .max(progress.matched.next());
            }
        }
        while self.send_append(from, false) {}
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        let last = self.log.last_index();
        let Some(progress) = self.active_follower(from) else {
            return;
        };
        progress.read_round_acked = progress.read_round_acked.max(read_round);
        progress.probe_sent = false;
        let outstanding = match progress.state {
            ProgressState::Replicate => !progress.inflights.is_empty(),
            ProgressState::Snapshot { .. } => true,
            ProgressState::Probe => false,
        };
        if outstanding {
            progress.stalled_heartbeats += 1;
            if progress.stalled_heartbeats >= STALLED_HEARTBEATS_MAX {
                progress.stalled_heartbeats = 0;
                if let ProgressState::Snapshot { .. } = progress.state {
                    self.send_snapshot(from);
                } else {
                    progress.become_probe();
                }
            }
        }
        if self.progress[&from].matched < last {
            while self.send_append(from, false) {}
        }
        self.release_confirmed_reads();
    }

    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        response: InstallSnapshotResponse,
    ) {
        let Some(progress) = self.active_follower(from) else {
            return;
        };
        match response {
            InstallSnapshotResponse::Progress {
                snapshot_index,
                next_offset,
            } => {
                if let ProgressState::Snapshot {
                    index,
                    ref mut acked_offset,
                } = progress.state
                {
                    if index == snapshot_index {
                        *acked_offset = next_offset;
                        progress.stalled_heartbeats = 0;
                        self.send_snapshot(from);
                    }
                }
            }
            InstallSnapshotResponse::Done { match_index } => {
                let moved = progress.update_matched(match_index);
                // A `Done` for an older snapshot than the one being sent leaves the follower
                // still short of our log's start: keep sending the current one.
                if let ProgressState::Snapshot { index, .. } = progress.state {
                    if progress.matched >= index {
                        progress.become_probe();
                    }
                }
                if moved {
                    self.leader_maybe_commit();
                }
                while self.send_append(from, false) {}
            }
        }
    }

    /// §5.4.2: advance the commit index to the highest index a quorum holds, but only by
    /// counting replicas of an entry from the current term (never an older one: Figure 8).
    pub(crate) fn leader_maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let quorum_index = LogIndex(self.membership.committed_index(|id| {
            self.progress
                .get(&id)
                .map_or(0, |progress| progress.matched.0)
        }));
        if quorum_index <= self.log.committed {
            return;
        }
        if self.log.term_or_zero(quorum_index) != self.term {
            return;
        }
        self.log.commit_to(quorum_index);
        self.commit_broadcast_pending = true;
        while self
            .uncommitted
            .front()
            .is_some_and(|(index, _)| *index <= quorum_index)
        {
            let (_, size) = self.uncommitted.pop_front().expect("front exists");
            self.uncommitted_bytes -= size;
        }
        self.fold_committed_memberships();
        self.serve_reads_waiting_for_commit();
        self.release_confirmed_reads();
        self.leader_maybe_leave_joint();
        self.leader_maybe_step_down_after_removal();
    }

    /// Thesis §4.3: once the joint configuration commits, the leader moves to the new one.
    fn leader_maybe_leave_joint(&mut self) {
        if self.role != Role::Leader
            || !self.membership.is_joint()
            || !self.uncommitted_memberships.is_empty()
        {
            return;
        }
        let membership = self.membership.leave_joint();
        self.append_own_entry(EntryPayload::Membership {
            membership,
            context: Bytes::new(),
        });
    }

    /// Thesis §4.2.2: a leader removed from the configuration steps down once the
    /// configuration without it is committed.
    fn leader_maybe_step_down_after_removal(&mut self) {
        if self.role == Role::Leader
            && self.uncommitted_memberships.is_empty()
            && !self.membership.is_voter(self.id)
        {
            self.become_follower(self.term, NodeId::NONE);
        }
    }

    pub(crate) fn leader_transfer(&mut self, target: NodeId) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader(),
            });
        }
        if target == self.id {
            return Err(Error::InvalidTransfer {
                target,
                reason: "it is already the leader",
            });
        }
        if !self.membership.is_voter(target) {
            return Err(Error::InvalidTransfer {
                target,
                reason: "it is not a voter",
            });
        }
        if self.transfer_target == Some(target) {
            return Ok(());
        }
        self.transfer_target = Some(target);
        self.election_elapsed = 0;
        if !self.maybe_send_timeout_now(target) {
            while self.send_append(target, false) {}
        }
        Ok(())
    }

    /// Sends TimeoutNow once the transfer target's log has caught up.
    fn maybe_send_timeout_now(&mut self, target: NodeId) -> bool {
        if self.transfer_target != Some(target) {
            return false;
        }
        let caught_up = self
            .progress
            .get(&target)
            .is_some_and(|progress| progress.matched == self.log.last_index());
        if caught_up {
            self.send(target, MessageBody::TimeoutNow);
        }
        caught_up
    }

    pub(crate) fn leader_read_index(&mut self, requester: NodeId, request_id: u64) -> Result<()> {
        if self.read_only.len() >= self.config.pending_reads_max {
            return Err(Error::ReadQueueFull {
                limit: self.config.pending_reads_max,
            });
        }
        if self.log.term_or_zero(self.log.committed) != self.term {
            self.read_only
                .waiting_for_commit
                .push((requester, request_id));
            return Ok(());
        }
        self.enqueue_read(requester, request_id);
        Ok(())
    }

    fn enqueue_read(&mut self, requester: NodeId, request_id: u64) {
        let own = self.id;
        let alone = self.membership.has_quorum(|id| id == own);
        if alone {
            // A single voter is its own quorum: the commit index is already safe.
            let index = self.log.committed;
            self.answer_read(requester, request_id, Some(index));
        } else {
            self.read_only
                .enqueue(requester, request_id, self.log.committed);
        }
    }

    pub(crate) fn handle_forwarded_read(&mut self, from: NodeId, request_id: u64) {
        let refused =
            self.role != Role::Leader || self.leader_read_index(from, request_id).is_err();
        if refused {
            self.send(
                from,
                MessageBody::ReadIndexResponse {
                    request_id,
                    index: None,
                    clock: self.clock,
                },
            );
        }
    }

    fn serve_reads_waiting_for_commit(&mut self) {
        if self.read_only.waiting_for_commit.is_empty() {
            return;
        }
        for (requester, request_id) in std::mem::take(&mut self.read_only.waiting_for_commit) {
            self.enqueue_read(requester, request_id);
        }
    }

    fn release_confirmed_reads(&mut self) {
        let own = self.id;
        let progress = &self.progress;
        let membership = &self.membership;
        let released = self.read_only.release(|round| {
            membership.has_quorum(|id| {
                id == own
                    || progress
                        .get(&id)
                        .is_some_and(|p| p.read_round_acked >= round)
            })
        });
        for read in released {
            self.answer_read(read.requester, read.request_id, Some(read.index));
        }
    }

    fn answer_read(&mut self, requester: NodeId, request_id: u64, index: Option<LogIndex>) {
        let clock = self.clock;
        if requester == self.id {
            self.read_states.push(ReadState {
                request_id,
                index,
                clock,
            });
        } else {
            self.send(
                requester,
                MessageBody::ReadIndexResponse {
                    request_id,
                    index,
                    clock,
                },
            );
        }
    }
}
