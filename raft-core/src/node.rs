//! The Raft node: one server's consensus state machine.
//!
//! `step`, `tick` and the request methods change state and queue output; `ready` hands the
//! output to the driver and `advance` tells the node it was carried out. Between `ready`
//! and `advance` the node must not be driven (asserted). Role-specific handling lives in
//! `role/`; this file owns the state, the dispatcher and the Ready/advance cycle.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::config::Config;
use crate::error::{Error, Result, StorageError};
use crate::log::{fatal_storage_error, RaftLog};
use crate::membership::{ConfChange, Membership};
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::read_only::ReadOnly;
use crate::ready::{ReadState, Ready, Role, SoftState};
use crate::rng::Rng;
use crate::storage::LogStore;
use crate::types::{Entry, EntryPayload, HardState, LogIndex, NodeId, SnapshotMeta, Term};

/// A snapshot being received from the leader, chunk by chunk.
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

/// What the last `ready` handed out, to be confirmed by `advance`.
struct AdvanceMark {
    snapshot: bool,
    term_or_vote_changed: bool,
    last_entry: Option<LogIndex>,
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
    pub(crate) forwarded_reads: BTreeMap<u64, NodeId>,

    pub(crate) messages: Vec<Message>,
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    previous_soft: SoftState,
    previous_hard: HardState,
    awaiting_advance: Option<AdvanceMark>,
}

impl<S: LogStore> Node<S> {
    /// Starts (or restarts) a node on `store`.
    ///
    /// # Errors
    /// `InvalidConfig` if `config` fails validation.
    ///
    /// # Panics
    /// If the store cannot be read (fail-stop).
    pub fn new(config: Config, store: S) -> Result<Node<S>> {
        config.validate()?;
        let initial = store
            .initial_state()
            .unwrap_or_else(|e| fatal_storage_error(e));
        let hard = initial.hard_state;
        let snapshot_index = initial.snapshot_meta.index;
        let applied = config.applied.max(snapshot_index);
        let committed = hard.commit.max(applied);
        let mut log = RaftLog::new(store, committed, applied);
        // An application that applied beyond the persisted commit index proves those
        // entries were committed; the commit index must still not pass the log's end.
        log.committed = log.committed.min(log.last_index()).max(snapshot_index);
        log.applied = log.applied.min(log.committed);
        let mut node = Node {
            id: config.id,
            rng: Rng::new(config.seed ^ config.id.0.rotate_left(32)),
            config,
            log,
            term: hard.term,
            vote: hard.vote,
            role: Role::Follower,
            leader: NodeId::NONE,
            membership: initial.snapshot_meta.membership.clone(),
            committed_membership: initial.snapshot_meta.membership.clone(),
            uncommitted_memberships: Vec::new(),
            applied_membership: initial.snapshot_meta.membership,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_ticks: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            uncommitted: VecDeque::new(),
            uncommitted_bytes: 0,
            transfer_target: None,
            outgoing_snapshot: None,
            broadcast_pending: false,
            commit_broadcast_pending: false,
            read_only: ReadOnly::default(),
            incoming_snapshot: None,
            forwarded_reads: BTreeMap::new(),
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            read_states: Vec::new(),
            previous_soft: SoftState {
                role: Role::Follower,
                leader: NodeId::NONE,
                term: hard.term,
            },
            previous_hard: hard,
            awaiting_advance: None,
        };
        node.load_memberships_from_log(snapshot_index);
        node.become_follower(hard.term, NodeId::NONE);
        Ok(node)
    }

    /// Rebuilds the configuration history from membership entries in the stored log.
    fn load_memberships_from_log(&mut self, snapshot_index: LogIndex) {
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

    /// For each follower (leader only): (id, matched index) — for status displays.
    pub fn replication_status(&self) -> Vec<(NodeId, LogIndex)> {
        self.progress
            .iter()
            .map(|(id, progress)| (*id, progress.matched))
            .collect()
    }

    // ----- inputs -----

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.assert_not_awaiting_advance();
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
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

    /// Asks for a linearizable read point. The answer arrives as a [`ReadState`] in a later
    /// Ready; serve the read once the applied index reaches its index.
    ///
    /// # Errors
    /// `NotLeader` with no leader known (a follower forwards to the leader it knows);
    /// `ReadQueueFull`.
    pub fn read_index(&mut self, request_id: u64) -> Result<()> {
        self.assert_not_awaiting_advance();
        match self.role {
            Role::Leader => self.leader_read_index(self.id, request_id),
            _ if self.leader.is_none() => Err(Error::NotLeader { leader_hint: None }),
            _ => {
                if self.forwarded_reads.len() >= self.config.pending_reads_max {
                    return Err(Error::ReadQueueFull {
                        limit: self.config.pending_reads_max,
                    });
                }
                self.forwarded_reads.insert(request_id, self.leader);
                let leader = self.leader;
                self.send(leader, MessageBody::ReadIndex { request_id });
                Ok(())
            }
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

    /// Feeds a message from a peer.
    pub fn step(&mut self, message: Message) {
        self.assert_not_awaiting_advance();
        if message.to != self.id || message.from == self.id {
            return;
        }
        if !self.step_term_check(&message) {
            return;
        }
        self.step_body(message);
        self.check_invariants();
    }

    /// §5.1: compare terms first. Returns whether the message should be handled further.
    fn step_term_check(&mut self, message: &Message) -> bool {
        use MessageBody as B;
        if message.term > self.term {
            let is_vote_request = matches!(message.body, B::PreVote { .. } | B::Vote { .. });
            if is_vote_request {
                let forced = matches!(
                    message.body,
                    B::Vote {
                        leader_transfer: true,
                        ..
                    }
                );
                // Thesis §6.2 / §4.2.3: while we heard from a leader within the minimum
                // election timeout, a vote request is most likely from a disruptive server
                // (for instance one just removed); ignore it without adopting its term.
                let in_lease = self.config.check_quorum
                    && !self.leader.is_none()
                    && self.election_elapsed < self.config.election_ticks;
                if in_lease && !forced {
                    return false;
                }
            }
            match message.body {
                // Pre-votes never change terms; a granted pre-vote answer carries the future
                // term of our own pre-campaign.
                B::PreVote { .. } | B::PreVoteResponse { granted: true } => {}
                B::Append { .. } | B::Heartbeat { .. } | B::InstallSnapshot { .. } => {
                    self.become_follower(message.term, message.from)
                }
                _ => self.become_follower(message.term, NodeId::NONE),
            }
        } else if message.term < self.term {
            match message.body {
                // A stale leader (partitioned, then healed) learns our term and steps down;
                // without this, check-quorum plus pre-vote could leave it stuck.
                B::Append { .. } | B::Heartbeat { .. } | B::InstallSnapshot { .. } => {
                    self.send(message.from, B::HeartbeatResponse { read_round: 0 });
                }
                B::PreVote { .. } => {
                    self.send(message.from, B::PreVoteResponse { granted: false });
                }
                _ => {}
            }
            return false;
        }
        true
    }

    fn step_body(&mut self, message: Message) {
        use MessageBody as B;
        let from = message.from;
        let term = message.term;
        match message.body {
            B::PreVote {
                last_log_index,
                last_log_term,
            } => self.handle_vote_request(from, term, true, last_log_index, last_log_term),
            B::Vote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_vote_request(from, term, false, last_log_index, last_log_term),
            B::PreVoteResponse { granted } => {
                // A grant names the term campaigned for; one for an older pre-campaign
                // must not count towards this one.
                if !granted || term == self.term.next() {
                    self.handle_vote_response(from, true, granted);
                }
            }
            B::VoteResponse { granted } => self.handle_vote_response(from, false, granted),
            B::Append {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                self.become_follower_of(from);
                self.handle_append(from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            B::Heartbeat { commit, read_round } => {
                self.become_follower_of(from);
                self.handle_heartbeat(from, commit, read_round);
            }
            B::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                self.become_follower_of(from);
                self.handle_snapshot_chunk(from, meta, offset, data, done);
            }
            B::AppendResponse(response) => self.handle_append_response(from, response),
            B::HeartbeatResponse { read_round } => self.handle_heartbeat_response(from, read_round),
            B::InstallSnapshotResponse(response) => self.handle_snapshot_response(from, response),
            B::TimeoutNow => self.handle_timeout_now(),
            B::ReadIndex { request_id } => self.handle_forwarded_read(from, request_id),
            B::ReadIndexResponse { request_id, index } => {
                if self.forwarded_reads.remove(&request_id).is_some() {
                    self.read_states.push(ReadState { request_id, index });
                }
            }
        }
    }

    // ----- output -----

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

    fn assert_not_awaiting_advance(&self) {
        assert!(
            self.awaiting_advance.is_none(),
            "the node was driven between ready() and advance()"
        );
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
        if leader != self.leader {
            self.abort_forwarded_reads();
        }
        self.leader = leader;
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

    fn abort_forwarded_reads(&mut self) {
        for (request_id, _) in std::mem::take(&mut self.forwarded_reads) {
            self.read_states.push(ReadState {
                request_id,
                index: None,
            });
        }
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

    // ----- membership bookkeeping -----

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
