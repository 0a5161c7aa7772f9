//! Starting a node, fresh or after a restart, from what its store holds.
//!
//! A node starts as a follower of no one in the stored term, with the stored vote. Its
//! commit and applied indexes are clamped so that `applied <= committed <= last_index()`
//! holds from the start, and neither falls below the snapshot's index. The configuration
//! history is rebuilt from the snapshot and the membership entries in the stored log.

use std::collections::{BTreeMap, VecDeque};

use crate::config::Config;
use crate::error::Result;
use crate::log::{fatal_storage_error, RaftLog};
use crate::node::Node;
use crate::read_only::ReadOnly;
use crate::ready::{Role, SoftState};
use crate::rng::Rng;
use crate::storage::LogStore;
use crate::types::NodeId;

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
            ticks: 0,
            clock: 0,
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
}
