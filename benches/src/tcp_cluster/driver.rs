//! One node's driver: an OS thread that alone owns a `Node<WalStore>` and carries out each
//! Ready in the order raft-core documents (send the leader's messages, persist with one
//! sync per Ready, send the messages that wait on persistence, apply, advance), like
//! kvnode's raft loop without a state machine. Proposals and peer messages share one
//! bounded inbox, so proposals that arrive during a sync all go into the next Ready
//! (group commit).
//!
//! It also times what the bench reports: each proposal from submission to the leader
//! applying it, each WAL sync, and the broadcast time — from the leader handing a one-entry
//! AppendEntries to the transport until the follower's acknowledgement (sent only after the
//! follower's sync) arrives at the leader's transport.
//!
//! Every sample list is capped ([`SAMPLES_MAX`]); the thread stops on `Input::Shutdown` or
//! when every sender is gone. A storage failure panics the thread (fail-stop), which the
//! cluster reports when it joins it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{
    AppendResponse, Entry, LogIndex, LogStoreMut, Message, MessageBody, Node, NodeId, Ready, Role,
    Snapshot, Term,
};
use raft_net::Transport;
use raft_wal::WalStore;

use super::{Commit, ProposeError, TICK};

/// Inputs handled per loop iteration before the Ready is processed; bounds how long a
/// burst can delay ticks.
const INBOX_DRAIN_MAX: usize = 4096;
/// Ready rounds per loop iteration; a node that still has output after this many rounds
/// finishes it on the next iteration.
const READY_ROUNDS_MAX: usize = 1024;
/// Proposals awaiting their commit on the leader; more are refused as overload.
const PENDING_PROPOSALS_MAX: usize = 65_536;
/// One-entry appends whose acknowledgement is being awaited, for the broadcast time.
const APPENDS_TRACKED_MAX: usize = 4096;
/// Samples kept per statistic between two `TakeStats`; later ones are dropped.
pub const SAMPLES_MAX: usize = 100_000;
/// Applied entries past the log's start before a node compacts, bounding WAL size and
/// memory in long bench runs.
const COMPACT_EVERY_ENTRIES: u64 = 50_000;

/// What a node thread is asked to do.
pub(super) enum Input {
    Peer {
        message: Message,
        /// When the forwarder took it from the transport: acknowledgements are timed on
        /// arrival, not when a node busy syncing gets round to them.
        arrived_at: Instant,
    },
    Propose {
        data: Bytes,
        submitted_at: Instant,
        /// Sized by the proposer for everything it has in flight, so a reply never blocks.
        reply: SyncSender<Result<Commit, ProposeError>>,
    },
    TakeStats {
        reply: SyncSender<NodeStats>,
    },
    Shutdown,
}

/// Timings one node collected since the last `take_stats`.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// Leader only: one-entry AppendEntries, from the hand-off to the transport until the
    /// follower's acceptance (sent after its WAL sync) arrives back.
    pub broadcast: Vec<Duration>,
    /// This node's WAL syncs, one per Ready that had to sync.
    pub sync: Vec<Duration>,
}

/// Leadership as the cluster handle sees it, shared with every node thread.
#[derive(Debug, Default)]
pub(super) struct ClusterView {
    /// The node that most recently became leader and has not stepped down; 0 if none.
    pub leader: AtomicU64,
    /// Elections won since start (the first one included).
    pub elections_won: AtomicU64,
}

struct Pending {
    term: Term,
    submitted_at: Instant,
    reply: SyncSender<Result<Commit, ProposeError>>,
}

pub(super) struct Driver {
    node: Node<WalStore>,
    transport: Transport,
    inbox: Receiver<Input>,
    view: std::sync::Arc<ClusterView>,
    pending: BTreeMap<LogIndex, Pending>,
    /// (follower, entry index) of one-entry appends sent and not yet acknowledged.
    appends_in_flight: BTreeMap<(NodeId, LogIndex), Instant>,
    stats: NodeStats,
    is_leader: bool,
}

fn push_sample(samples: &mut Vec<Duration>, sample: Duration) {
    if samples.len() < SAMPLES_MAX {
        samples.push(sample);
    }
}

impl Driver {
    pub(super) fn new(
        node: Node<WalStore>,
        transport: Transport,
        inbox: Receiver<Input>,
        view: std::sync::Arc<ClusterView>,
    ) -> Driver {
        Driver {
            node,
            transport,
            inbox,
            view,
            pending: BTreeMap::new(),
            appends_in_flight: BTreeMap::new(),
            stats: NodeStats::default(),
            is_leader: false,
        }
    }

    /// Runs until `Input::Shutdown` or until every sender is gone.
    pub(super) fn run(mut self) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut stop = match self.inbox.recv_timeout(wait) {
                Ok(input) => self.handle_input(input),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            for _ in 0..INBOX_DRAIN_MAX {
                match self.inbox.try_recv() {
                    Ok(input) => stop |= self.handle_input(input),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                // A late tick is not made up for: a stalled thread should not fire a burst.
                next_tick = if now > next_tick + TICK {
                    now + TICK
                } else {
                    next_tick + TICK
                };
            }
            self.handle_ready();
            if stop {
                break;
            }
        }
        self.fail_pending(ProposeError::ShuttingDown);
    }

    /// Returns true on shutdown.
    fn handle_input(&mut self, input: Input) -> bool {
        match input {
            Input::Peer {
                message,
                arrived_at,
            } => {
                if let MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) =
                    message.body
                {
                    self.note_append_acknowledged(message.from, match_index, arrived_at);
                }
                self.node.step(message);
            }
            Input::Propose {
                data,
                submitted_at,
                reply,
            } => self.propose(data, submitted_at, reply),
            Input::TakeStats { reply } => {
                // The caller waits on a channel with room for this one answer.
                let _ = reply.try_send(std::mem::take(&mut self.stats));
            }
            Input::Shutdown => return true,
        }
        false
    }

    fn propose(
        &mut self,
        data: Bytes,
        submitted_at: Instant,
        reply: SyncSender<Result<Commit, ProposeError>>,
    ) {
        let refusal = if self.node.role() != Role::Leader {
            Some(ProposeError::NotLeader)
        } else if self.pending.len() >= PENDING_PROPOSALS_MAX {
            Some(ProposeError::Overloaded)
        } else {
            match self.node.propose(data) {
                Ok(index) => {
                    let term = self.node.term();
                    let pending = Pending {
                        term,
                        submitted_at,
                        reply,
                    };
                    self.pending.insert(index, pending);
                    return;
                }
                Err(refused) => Some(ProposeError::Refused(refused)),
            }
        };
        if let Some(refusal) = refusal {
            // A proposer that gave up has dropped its receiver; nobody is left to tell.
            let _ = reply.try_send(Err(refusal));
        }
    }

    fn note_append_acknowledged(
        &mut self,
        from: NodeId,
        match_index: LogIndex,
        arrived_at: Instant,
    ) {
        let acknowledged: Vec<((NodeId, LogIndex), Instant)> = self
            .appends_in_flight
            .range((from, LogIndex::ZERO)..=(from, match_index))
            .map(|(key, sent_at)| (*key, *sent_at))
            .collect();
        for (key, sent_at) in acknowledged {
            self.appends_in_flight.remove(&key);
            let round_trip = arrived_at.saturating_duration_since(sent_at);
            push_sample(&mut self.stats.broadcast, round_trip);
        }
    }

    fn handle_ready(&mut self) {
        for _ in 0..READY_ROUNDS_MAX {
            if !self.node.has_ready() {
                return;
            }
            let mut ready = self.node.ready();
            if let Some(soft) = ready.soft_state {
                self.note_role(soft.role);
            }
            self.send_all(std::mem::take(&mut ready.messages));
            // As kvnode does: committed entries are durable on a quorum already, so they
            // are answered before this node syncs the Ready's newer entries.
            let apply_first = ready.snapshot.is_none();
            if apply_first {
                self.apply(&ready.committed_entries);
            }
            self.persist(&ready);
            self.send_all(std::mem::take(&mut ready.persisted_messages));
            if !apply_first {
                self.apply(&ready.committed_entries);
            }
            self.node.advance();
            self.maybe_compact();
        }
    }

    fn note_role(&mut self, role: Role) {
        let id = self.node.id().0;
        let is_leader = role == Role::Leader;
        if is_leader && !self.is_leader {
            self.view.leader.store(id, Ordering::SeqCst);
            self.view.elections_won.fetch_add(1, Ordering::SeqCst);
        }
        if !is_leader && self.is_leader {
            // Only clear the view if no newer leader has already claimed it.
            let _ = self
                .view
                .leader
                .compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst);
            self.appends_in_flight.clear();
            // Entries not yet applied may still commit under the next leader, or not.
            self.fail_pending(ProposeError::LeaderLost);
        }
        self.is_leader = is_leader;
    }

    fn send_all(&mut self, messages: Vec<Message>) {
        for message in messages {
            if let MessageBody::Append { entries, .. } = &message.body {
                if let [only] = entries.as_slice() {
                    if self.appends_in_flight.len() < APPENDS_TRACKED_MAX {
                        self.appends_in_flight
                            .entry((message.to, only.index))
                            .or_insert_with(Instant::now);
                    }
                }
            }
            // A full queue or an unknown peer drops the message; Raft retransmits.
            let _ = self.transport.send(message);
        }
    }

    /// Fail-stop: a node that cannot persist must not acknowledge, so this panics.
    fn persist(&mut self, ready: &Ready) {
        let id = self.node.id();
        let store = self.node.store_mut();
        store
            .write_ready(ready)
            .unwrap_or_else(|failure| panic!("node {id}: WAL write failed: {failure:?}"));
        if ready.must_sync {
            let started = Instant::now();
            store
                .sync()
                .unwrap_or_else(|failure| panic!("node {id}: WAL sync failed: {failure:?}"));
            push_sample(&mut self.stats.sync, started.elapsed());
        }
    }

    fn apply(&mut self, committed: &[Entry]) {
        let applied_at = Instant::now();
        for entry in committed {
            let Some(pending) = self.pending.remove(&entry.index) else {
                continue;
            };
            let outcome = if pending.term == entry.term {
                Ok(Commit {
                    index: entry.index,
                    latency: applied_at.saturating_duration_since(pending.submitted_at),
                })
            } else {
                Err(ProposeError::Overwritten)
            };
            // A proposer that gave up has dropped its receiver; nobody is left to tell.
            let _ = pending.reply.try_send(outcome);
        }
    }

    fn maybe_compact(&mut self) {
        let applied = self.node.applied_index();
        if applied.0 < self.node.first_index().0 + COMPACT_EVERY_ENTRIES {
            return;
        }
        let id = self.node.id();
        let meta = self.node.snapshot_meta_at_applied();
        let store = self.node.store_mut();
        store
            .apply_snapshot(Snapshot {
                meta,
                data: Bytes::new(),
            })
            .and_then(|()| store.sync())
            .unwrap_or_else(|failure| panic!("node {id}: WAL compaction failed: {failure:?}"));
    }

    fn fail_pending(&mut self, reason: ProposeError) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            // A proposer that gave up has dropped its receiver; nobody is left to tell.
            let _ = pending.reply.try_send(Err(reason.clone()));
        }
    }
}
