//! The Raft node: one server's consensus state machine.
//!
//! `step`, `tick` and the request methods change state and queue output; `ready` hands the
//! output to the driver and `advance` tells the node it was carried out. Between `ready`
//! and `advance` the node must not be driven (asserted). Role-specific handling lives in
//! `role/`; this file owns the state, its accessors, the helpers every role shares and
//! `check_invariants`. The rest of the node, one concept a file:
//! - `start`: construction and restart from the store;
//! - `requests`: ticks and the client's requests;
//! - `step`: the message dispatcher, terms first (§5.1);
//! - `forwarded_reads`: a follower's ReadIndex requests, forwarded to the leader;
//! - `ready_cycle`: `ready`, `advance` and `persisted`;
//! - `membership_history`: the configurations in the log, committed and not.

mod forwarded_reads;
mod membership_history;
mod ready_cycle;
mod requests;
mod start;
mod step;

use std::collections::{BTreeMap, VecDeque};

use crate::config::Config;
use crate::error::StorageError;
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::read_only::ReadOnly;
use crate::ready::{ReadState, Role, SoftState};
use crate::rng::Rng;
use crate::storage::LogStore;
use crate::types::{HardState, LogIndex, NodeId, SnapshotMeta, Term};

/// A snapshot being received from the leader, chunk by chunk.
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

pub struct Node<S: LogStore> {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) log: RaftLog<S>,
    pub(crate) term: Term,
    /// Whom we voted for in `term`. At most one vote per term, durable before it is sent.
    pub(crate) vote: NodeId,
    pub(crate) role: Role,
    pub(crate) leader: NodeId,

    /// The configuration in effect: the latest one in the log (§6: in effect once appended).
    pub(crate) membership: Membership,
    /// The configuration in effect at `log.committed`.
    pub(crate) committed_membership: Membership,
    /// Membership entries above the commit index, ascending; dropped on truncation.
    pub(crate) uncommitted_memberships: Vec<(LogIndex, Membership)>,
    /// The configuration as of the last entry handed to the application (for snapshots).
    pub(crate) applied_membership: Membership,

    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_election_ticks: u32,
    rng: Rng,

    /// Candidate and pre-candidate: votes received in this campaign.
    pub(crate) votes: BTreeMap<NodeId, bool>,

    /// Leader: replication state of every member (including itself).
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Leader: sizes of entries proposed in this term and not yet committed.
    pub(crate) uncommitted: VecDeque<(LogIndex, u64)>,
    pub(crate) uncommitted_bytes: u64,
    /// Leader: a transfer of leadership in progress. It is abandoned when `election_elapsed`
    /// (reset when the transfer began) reaches an election timeout.
    pub(crate) transfer_target: Option<NodeId>,
    /// Leader: the latest snapshot, read from the store once and shared by every follower
    /// that needs it (the store may read it from disk).
    pub(crate) outgoing_snapshot: Option<crate::types::Snapshot>,
    /// Leader: new entries or a new commit index still to be broadcast.
    pub(crate) broadcast_pending: bool,
    pub(crate) commit_broadcast_pending: bool,
    pub(crate) read_only: ReadOnly,

    /// Follower: a snapshot arriving in chunks.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Follower: read requests forwarded to the leader, awaiting its answer.
    pub(crate) forwarded_reads: BTreeMap<u64, forwarded_reads::ForwardedRead>,
    /// Ticks since the node started: the age of forwarded reads.
    pub(crate) ticks: u64,
    /// The driver's clock, opaque to the core (kvnode: wall-clock milliseconds), as of the
    /// last [`Node::set_clock`]; a leader stamps the reads it confirms with it.
    pub(crate) clock: u64,

    pub(crate) messages: Vec<Message>,
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    previous_soft: SoftState,
    previous_hard: HardState,
    awaiting_advance: Option<ready_cycle::AdvanceMark>,
}

impl<S: LogStore> Node<S> {
    // ----- accessors -----

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> Term {
        self.term
    }

    pub fn leader(&self) -> Option<NodeId> {
        (!self.leader.is_none()).then_some(self.leader)
    }

    /// Leader only: the node leadership is being handed to, until it takes over or the
    /// transfer is abandoned (after an election timeout, thesis §3.10).
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer_target
    }

    pub fn commit_index(&self) -> LogIndex {
        self.log.committed
    }

    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }

    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    pub fn store(&self) -> &S {
        &self.log.store
    }

    /// The store, for the driver to persist a Ready or compact the log.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.log.store
    }

    /// Stops the node and returns its store (what a restart would find).
    pub fn into_store(self) -> S {
        self.log.store
    }

    /// The term of the entry at `index`, if the log still holds it.
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index).ok()
    }

    /// Metadata for a snapshot of the application state as of the last applied entry.
    pub fn snapshot_meta_at_applied(&self) -> SnapshotMeta {
        let index = self.log.applied;
        SnapshotMeta {
            index,
            term: self.log.term_or_zero(index),
            membership: self.applied_membership.clone(),
        }
    }

    /// Leader only: whether `id` is in sync, as etcd requires of a learner before it may
    /// become a voter: heard from within the last election timeout, and its log matching
    /// the leader's up to at most `lag_max` entries behind the last index. A voter added
    /// while cut off or far behind would stall every commit of the joint configuration.
    pub fn replica_in_sync(&self, id: NodeId, lag_max: u64) -> bool {
        let election = u64::from(self.config.election_ticks);
        self.progress.get(&id).is_some_and(|progress| {
            progress.heard_at > 0
                && self.ticks.saturating_sub(progress.heard_at) <= election
                && self.log.last_index().0.saturating_sub(progress.matched.0) <= lag_max
        })
    }

    /// For each follower (leader only): (id, matched index) — for status displays.
    pub fn replication_status(&self) -> Vec<(NodeId, LogIndex)> {
        self.progress
            .iter()
            .map(|(id, progress)| (*id, progress.matched))
            .collect()
    }

    // ----- shared helpers -----

    /// Queues a message. A leader's messages may leave before its own log is durable (it
    /// counts itself only once it is); everything any other role sends — votes, append
    /// acknowledgements — promises durable state and waits for the sync.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = match body {
            // A granted pre-vote answer carries the term being campaigned for.
            MessageBody::PreVote { .. } => self.term.next(),
            _ => self.term,
        };
        self.send_with_term(to, term, body);
    }

    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if self.role == Role::Leader {
            self.messages.push(message);
        } else {
            self.persisted_messages.push(message);
        }
    }

    pub(crate) fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.randomized_election_ticks = self.rng.in_range(base, 2 * base);
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        if term != self.term {
            assert!(
                term > self.term,
                "term went backwards: {term:?} < {:?}",
                self.term
            );
            self.term = term;
            self.vote = NodeId::NONE;
        }
        self.role = Role::Follower;
        self.set_leader(leader);
        self.votes.clear();
        self.incoming_snapshot = None;
        self.reset_timers();
        if was_leader {
            self.leader_stepped_down();
        }
    }

    /// A message from the current term's leader: follow it.
    fn become_follower_of(&mut self, leader: NodeId) {
        if self.role != Role::Follower || self.leader != leader {
            self.become_follower(self.term, leader);
        }
        self.election_elapsed = 0;
    }

    /// Whether this node may campaign: a voter, with no snapshot half-installed.
    ///
    /// Thesis §4.2.2: a server that is not in its latest configuration must still start
    /// elections while that configuration is uncommitted, because it may still be needed
    /// (a removed leader holding the only copy of the entry that removes it, say). Votes
    /// are still counted by the latest configuration.
    pub(crate) fn is_promotable(&self) -> bool {
        let voter =
            self.membership.is_voter(self.id) || self.committed_membership.is_voter(self.id);
        voter && self.log.unstable_snapshot().is_none()
    }

    /// Test and debug builds check every invariant after each step; release builds keep
    /// the O(1) ones only.
    pub(crate) fn check_invariants(&self) {
        self.log.check_invariants();
        if self.role == Role::Leader {
            assert_eq!(self.leader, self.id, "a leader must name itself as leader");
        }
        debug_assert!(
            self.uncommitted_memberships
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0),
            "membership history must ascend"
        );
        debug_assert!(
            self.uncommitted_memberships
                .iter()
                .all(|(index, _)| *index > self.log.committed),
            "uncommitted membership entries must lie above the commit index"
        );
    }
}

/// Maps a storage error met while reading for replication: compaction is expected (the
/// follower needs a snapshot); anything else is fatal.
pub(crate) fn is_compacted(error: &StorageError) -> bool {
    matches!(error, StorageError::Compacted { .. })
}
