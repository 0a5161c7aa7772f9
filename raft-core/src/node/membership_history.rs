//! The configuration history kept alongside the log (§6; thesis chapter 4).
//!
//! A configuration takes effect as soon as its entry is appended, committed or not, so the
//! node tracks: `committed_membership` (in effect at the commit index), the membership
//! entries above the commit index (`uncommitted_memberships`, ascending, dropped when a
//! truncation removes them) and `membership`, the latest of them all; `ready` keeps
//! `applied_membership`, the one as of the last entry handed to the application, for
//! snapshots. The history is rebuilt from the stored log at start, updated as entries are
//! appended, truncated and committed, and its invariants are checked in
//! `Node::check_invariants`.

use crate::log::fatal_storage_error;
use crate::membership::Membership;
use crate::node::Node;
use crate::ready::Role;
use crate::storage::LogStore;
use crate::types::{Entry, EntryPayload, LogIndex};

impl<S: LogStore> Node<S> {
    /// Rebuilds the configuration history from membership entries in the stored log.
    pub(super) fn load_memberships_from_log(&mut self, snapshot_index: LogIndex) {
        let mut next = snapshot_index.next();
        let end = self.log.last_index().next();
        while next < end {
            let batch = self
                .log
                .entries(next, end, u64::MAX, 4 << 20)
                .unwrap_or_else(|e| fatal_storage_error(e));
            next = next.plus(batch.len() as u64);
            self.note_memberships(&batch);
        }
        self.fold_committed_memberships();
        self.applied_membership = self.membership_at(self.log.applied);
    }

    /// Records the membership entries among `entries` (just appended) and puts the latest
    /// in effect.
    pub(crate) fn note_memberships(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let EntryPayload::Membership { membership, .. } = &entry.payload {
                self.uncommitted_memberships
                    .retain(|(index, _)| *index < entry.index);
                self.uncommitted_memberships
                    .push((entry.index, membership.clone()));
            }
        }
        self.refresh_membership();
    }

    /// After a truncation at `from`, forgets the membership entries it removed.
    pub(crate) fn forget_memberships_from(&mut self, from: LogIndex) {
        self.uncommitted_memberships
            .retain(|(index, _)| *index < from);
        self.refresh_membership();
    }

    /// Moves membership entries at or below the commit index into `committed_membership`.
    pub(crate) fn fold_committed_memberships(&mut self) {
        let committed = self.log.committed;
        while let Some((index, _)) = self.uncommitted_memberships.first() {
            if *index > committed {
                break;
            }
            let (_, membership) = self.uncommitted_memberships.remove(0);
            self.committed_membership = membership;
        }
        self.refresh_membership();
    }

    fn membership_at(&self, index: LogIndex) -> Membership {
        self.uncommitted_memberships
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map(|(_, membership)| membership.clone())
            .unwrap_or_else(|| self.committed_membership.clone())
    }

    fn refresh_membership(&mut self) {
        let latest = self
            .uncommitted_memberships
            .last()
            .map(|(_, membership)| membership.clone())
            .unwrap_or_else(|| self.committed_membership.clone());
        if latest != self.membership {
            self.membership = latest;
            if self.role == Role::Leader {
                self.leader_sync_progress_with_membership();
            }
        }
    }
}
