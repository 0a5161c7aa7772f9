//! The output batch a node hands to its driver.
//!
//! Drivers do not carry these duties out by hand: [`crate::pipeline::Pipeline`] does, in
//! the orders below, calling the driver's I/O. What follows is the contract it keeps.
//!
//! The duties for one [`Ready`], in this order (compare etcd-io/raft's README, "Usage"):
//! 1. Send `messages` right away. These are a leader's appends and heartbeats, and
//!    answers that promise nothing durable; they may leave before step 2 finishes.
//! 2. Persist: `snapshot` (if any) via `apply_snapshot`, then `entries` via `append`,
//!    then `hard_state` via `set_hard_state`; then `sync` if `must_sync`.
//! 3. Only then send `persisted_messages` (votes, append acknowledgements): they promise
//!    that what they acknowledge is on disk.
//! 4. Restore the state machine from `snapshot` if one was given, then apply
//!    `committed_entries` in order, exactly once, and release `read_states` once the
//!    applied index reaches each one's index.
//! 5. Call `Node::advance`.
//!
//! When there is no `snapshot`, step 4 may come before step 2: committed entries are
//! durable on a quorum already, so applying them (and answering their clients) need not
//! wait for this node's sync of the newer entries in the same Ready.
//!
//! # Asynchronous sync
//!
//! A driver may instead sync on another thread and keep stepping the node meanwhile. For
//! a Ready without a `snapshot`:
//! - write (do not sync) what step 2 lists, in Ready order, so the store reads back the
//!   new entries at once; then call `Node::advance_unsynced` in place of step 5;
//! - of `persisted_messages`, send those that do not `waits_for_sync` at once, and hold the
//!   rest until a sync that *began after their Ready's writes* has finished (a sync makes
//!   durable everything written before it began); send held batches in Ready order;
//! - when a sync finishes, call `Node::persisted` with the store's last index and that
//!   entry's term as they were when the sync began (before releasing the messages it
//!   covers), so a leader can count its own log.
//!
//! A Ready with a `snapshot`, or with `term_or_vote_changed`, is carried out in the
//! synchronous order after every sync in flight has finished, and confirmed with
//! `advance`. Elections are rare, and this way nothing a node says after a term or vote
//! change depends on a sync still running: a single voter becomes leader without asking
//! anyone, and a crash must not let it lead the same term twice with two different logs.
//! (The `messages` of such a Ready, sent first as always, may still leave before its
//! sync: a leader's appends promise nothing, and a re-elected single voter would send the
//! same blank entry at the same index.)
//!
//! Why the rest is as safe as the synchronous order: every message still leaves only once
//! the state it promises is durable, so the only difference is that a promise may arrive
//! after the node has moved on (truncated a suffix for a newer leader), which is no
//! different from a network that delays the message; a leader counts its own entries only
//! once they are durable; and a crash leaves a prefix of the writes that includes every
//! write before the last finished sync, which is a state the synchronous driver could also
//! have crashed in (what is lost is log entries nobody was promised, never a term or vote).

use crate::message::Message;
use crate::types::{Entry, HardState, LogIndex, NodeId, Snapshot, Term};

/// What a node believes about itself, for status displays and the driver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile state that changed; nothing here needs persisting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SoftState {
    pub role: Role,
    pub leader: NodeId,
    pub term: Term,
}

/// The answer to a `read_index` request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadState {
    pub request_id: u64,
    /// Serve the read once the applied index reaches this; `None` if the read could not
    /// be confirmed (leadership lost or unknown) and must be retried.
    pub index: Option<LogIndex>,
    /// The confirming leader's clock ([`crate::Node::set_clock`]) when it confirmed the
    /// read point: a driver that keeps time in its state machine (expiry) judges the read
    /// at this time, so every node judges reads by the leader's clock.
    pub clock: u64,
}

#[derive(Default, Debug)]
pub struct Ready {
    /// Present if role, leader or term changed since the last Ready.
    pub soft_state: Option<SoftState>,
    /// Present if term, vote or commit changed.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader, to persist and restore.
    pub snapshot: Option<Snapshot>,
    /// Entries to append to stable storage (may overwrite a conflicting suffix).
    pub entries: Vec<Entry>,
    /// Whether this batch must be synced before `persisted_messages` are sent.
    pub must_sync: bool,
    /// The hard state's term or vote changed. A driver that syncs asynchronously syncs
    /// such a Ready before going on, so that a node never acts in a term (a single voter
    /// leads without asking anyone) that a crash could take back.
    pub term_or_vote_changed: bool,
    /// Messages that may be sent before persisting.
    pub messages: Vec<Message>,
    /// Messages that may only be sent after persisting.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in index order.
    pub committed_entries: Vec<Entry>,
    /// Released ReadIndex requests.
    pub read_states: Vec<ReadState>,
}
