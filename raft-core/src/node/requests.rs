//! The driver's inputs other than peer messages: ticks, and the client's requests
//! (proposals, membership changes, reads, leadership transfer, campaigns).
//!
//! Each input first asserts that no Ready is outstanding. A refused request returns an
//! error and changes nothing; role-specific work is left to `role/`.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::membership::ConfChange;
use crate::node::Node;
use crate::ready::Role;
use crate::storage::LogStore;
use crate::types::{EntryPayload, LogIndex, NodeId};

impl<S: LogStore> Node<S> {
    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.assert_not_awaiting_advance();
        self.ticks += 1;
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
        self.expire_forwarded_reads();
    }

    /// Tells the node the driver's clock (opaque here; kvnode passes wall-clock
    /// milliseconds). Nothing in the algorithm depends on it: a leader only stamps the
    /// reads it confirms with it ([`crate::ReadState::clock`]).
    pub fn set_clock(&mut self, clock: u64) {
        self.clock = clock;
    }

    /// Proposes an application command; returns the index it will occupy if committed.
    ///
    /// # Errors
    /// `NotLeader`, `TransferInProgress`, `ProposalTooLarge`, `ProposalQueueFull`: in every
    /// case nothing was appended.
    pub fn propose(&mut self, data: Bytes) -> Result<LogIndex> {
        self.assert_not_awaiting_advance();
        self.check_can_propose(u64::try_from(data.len()).expect("usize fits in u64"))?;
        Ok(self.append_own_entry(EntryPayload::Command(data)))
    }

    /// Proposes a membership change. Voter changes go through a joint configuration that the
    /// leader leaves on its own once it commits; learner-only changes take effect directly.
    ///
    /// # Errors
    /// `NotLeader`, `TransferInProgress`, `ConfChangeInProgress` (one change at a time),
    /// `InvalidConfChange`.
    pub fn propose_conf_change(
        &mut self,
        changes: &[ConfChange],
        context: Bytes,
    ) -> Result<LogIndex> {
        self.assert_not_awaiting_advance();
        self.check_can_propose(u64::try_from(context.len()).expect("usize fits in u64"))?;
        if let Some(&(pending_index, _)) = self.uncommitted_memberships.last() {
            return Err(Error::ConfChangeInProgress { pending_index });
        }
        if self.membership.is_joint() {
            return Err(Error::ConfChangeInProgress {
                pending_index: self.log.committed,
            });
        }
        let membership = self
            .membership
            .apply_changes(changes)
            .map_err(|reason| Error::InvalidConfChange { reason })?;
        Ok(self.append_own_entry(EntryPayload::Membership {
            membership,
            context,
        }))
    }

    /// Asks for a linearizable read point. The answer arrives as a
    /// [`ReadState`](crate::ready::ReadState) in a later Ready; serve the read once the
    /// applied index reaches its index.
    ///
    /// # Errors
    /// `NotLeader` with no leader known (a follower forwards to the leader it knows);
    /// `ReadQueueFull`.
    pub fn read_index(&mut self, request_id: u64) -> Result<()> {
        self.assert_not_awaiting_advance();
        match self.role {
            Role::Leader => self.leader_read_index(self.id, request_id),
            _ if self.leader.is_none() => Err(Error::NotLeader { leader_hint: None }),
            _ => self.read_index_forward(request_id),
        }
    }

    /// Hands leadership to `target` (thesis §3.10).
    ///
    /// # Errors
    /// `NotLeader`; `InvalidTransfer` if the target is this node or not a voter.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<()> {
        self.assert_not_awaiting_advance();
        self.leader_transfer(target)
    }

    /// Starts an election now instead of waiting for the timeout (with a pre-vote first if
    /// configured). Does nothing on a leader or a node that may not campaign.
    pub fn campaign(&mut self) {
        self.assert_not_awaiting_advance();
        if self.role != Role::Leader {
            self.start_campaign(self.config.pre_vote, false);
        }
    }
}
