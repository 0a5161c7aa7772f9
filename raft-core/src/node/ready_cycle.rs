//! The Ready/advance cycle: handing output to the driver and learning what it did.
//!
//! `ready` takes the pending output and records what it handed out in `awaiting_advance`;
//! until `advance` (or `advance_unsynced`) confirms it, the node must not be driven, which
//! every input asserts. `persisted` reports a sync that finished on another thread.
//! A leader counts its own log toward a quorum only as far as it is durable. The driver's
//! duties, and why asynchronous sync is safe, are in `crate::ready`.

use crate::node::Node;
use crate::ready::{Ready, Role, SoftState};
use crate::storage::LogStore;
use crate::types::{EntryPayload, LogIndex, Term};

/// What the last `ready` handed out, to be confirmed by `advance`.
pub(super) struct AdvanceMark {
    snapshot: bool,
    term_or_vote_changed: bool,
    last_entry: Option<LogIndex>,
}

impl<S: LogStore> Node<S> {
    /// Whether `ready` would hand out anything.
    pub fn has_ready(&self) -> bool {
        self.previous_soft != self.soft_state()
            || self.previous_hard != self.hard_state()
            || self.log.unstable_snapshot().is_some()
            || !self.log.unstable_entries().is_empty()
            || !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || !self.read_states.is_empty()
            || self.broadcast_pending
            || self.commit_broadcast_pending
            || self.read_only.round_pending()
            || (self.log.has_next_committed_entries() && self.log.unstable_snapshot().is_none())
    }

    /// Takes the pending output. See [`Ready`] for the driver's duties, then call `advance`.
    pub fn ready(&mut self) -> Ready {
        self.assert_not_awaiting_advance();
        if self.role == Role::Leader {
            self.flush_broadcasts();
        }
        let mut ready = Ready::default();
        let soft = self.soft_state();
        if soft != self.previous_soft {
            ready.soft_state = Some(soft);
            self.previous_soft = soft;
        }
        let hard = self.hard_state();
        if hard != self.previous_hard {
            ready.term_or_vote_changed =
                hard.term != self.previous_hard.term || hard.vote != self.previous_hard.vote;
            ready.must_sync = ready.term_or_vote_changed;
            ready.hard_state = Some(hard);
            self.previous_hard = hard;
        }
        ready.snapshot = self.log.unstable_snapshot().cloned();
        ready.entries = self.log.unstable_entries().to_vec();
        ready.must_sync |= ready.snapshot.is_some() || !ready.entries.is_empty();
        ready.messages = std::mem::take(&mut self.messages);
        ready.persisted_messages = std::mem::take(&mut self.persisted_messages);
        ready.committed_entries = self.log.next_committed_entries(self.config.apply_bytes_max);
        if let Some(last) = ready.committed_entries.last() {
            self.log.applied = last.index;
        }
        if let Some(snapshot) = &ready.snapshot {
            self.applied_membership = snapshot.meta.membership.clone();
        }
        for entry in &ready.committed_entries {
            if let EntryPayload::Membership { membership, .. } = &entry.payload {
                self.applied_membership = membership.clone();
            }
        }
        ready.read_states = std::mem::take(&mut self.read_states);
        self.awaiting_advance = Some(AdvanceMark {
            snapshot: ready.snapshot.is_some(),
            term_or_vote_changed: ready.term_or_vote_changed,
            last_entry: ready.entries.last().map(|entry| entry.index),
        });
        ready
    }

    /// Confirms that the last Ready's duties are done (persisted and synced, sent, applied).
    ///
    /// # Panics
    /// If no Ready is outstanding, or the store does not hold what the Ready asked to persist.
    pub fn advance(&mut self) {
        self.advance_with(true);
    }

    /// Like [`Node::advance`], for a driver that syncs off its own thread (see
    /// [`Ready`]'s "Asynchronous sync"): the Ready's entries and hard state are written to
    /// the store, and readable there, but not yet durable. The leader does not count them
    /// for itself until [`Node::persisted`] says they are.
    ///
    /// # Panics
    /// As `advance`; also if the Ready carried a snapshot or changed the term or vote:
    /// those are synced before the node goes on, then confirmed with `advance` (see
    /// [`Ready::term_or_vote_changed`]).
    pub fn advance_unsynced(&mut self) {
        assert!(
            !self
                .awaiting_advance
                .as_ref()
                .is_some_and(|mark| mark.snapshot || mark.term_or_vote_changed),
            "a Ready with a snapshot or a new term or vote must be synced, then confirmed with advance()"
        );
        self.advance_with(false);
    }

    fn advance_with(&mut self, synced: bool) {
        let mark = self
            .awaiting_advance
            .take()
            .expect("advance called without an outstanding ready");
        self.log
            .mark_persisted(mark.snapshot, mark.last_entry, synced);
        if synced {
            self.leader_count_own_log();
        }
        self.check_invariants();
    }

    /// The driver's report that a sync finished: the store is durable through `index`, the
    /// last entry it held when the sync began, which then had `term`. A report about an entry
    /// since replaced is ignored. Only a leader's commit depends on it (a follower's
    /// acknowledgements are held by the driver until the sync that covers them).
    ///
    /// # Panics
    /// If called between `ready` and `advance`.
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        self.assert_not_awaiting_advance();
        self.log.mark_durable(index, term);
        self.leader_count_own_log();
        self.check_invariants();
    }

    /// A leader counts its own log toward a quorum only as far as it is durable (§10.2.1
    /// of the Raft thesis: its appends may leave before its own write).
    fn leader_count_own_log(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let durable = self.log.durable_last_index();
        if let Some(own) = self.progress.get_mut(&self.id) {
            own.update_matched(durable);
        }
        self.leader_maybe_commit();
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    pub(super) fn assert_not_awaiting_advance(&self) {
        assert!(
            self.awaiting_advance.is_none(),
            "the node was driven between ready() and advance()"
        );
    }
}
