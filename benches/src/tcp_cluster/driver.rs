//! One node's driver: an OS thread that alone owns a `Node<WalStore>` and carries out its
//! Readys through raft-core's `Pipeline` with background syncs on a `raft_wal::SyncThread`,
//! the order kvnode's raft loop runs, without a state machine. Proposals and peer messages
//! share one bounded inbox; what arrives while a sync runs goes into the next one (group
//! commit).
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
    AppendResponse, Entry, LogIndex, LogStoreMut, Message, MessageBody, Node, NodeId, Pipeline,
    ReadState, Ready, ReadyIo, Role, Snapshot, SyncMode, SyncStart, Term,
};
use raft_net::Transport;
use raft_wal::{SyncThread, WalStore};

use super::{Commit, ProposeError, TICK};

/// Inputs handled per loop iteration before the Ready is processed; bounds how long a
/// burst can delay ticks.
const INBOX_DRAIN_MAX: usize = 4096;
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
    /// The sync thread has a result (taken from it, not from here).
    Synced,
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
    pipeline: Pipeline,
    io: DriverIo,
    inbox: Receiver<Input>,
}

/// Everything of the driver but the node and its pipeline: the I/O the pipeline calls.
struct DriverIo {
    id: NodeId,
    transport: Transport,
    view: std::sync::Arc<ClusterView>,
    syncs: SyncThread,
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
        wake: SyncSender<Input>,
        view: std::sync::Arc<ClusterView>,
    ) -> Driver {
        let id = node.id();
        // A full inbox drops the wake-up; the loop also looks for a result every pass.
        let syncs = SyncThread::start(&format!("bench-sync-{id}"), move || {
            let _ = wake.try_send(Input::Synced);
        })
        .expect("spawning a log-sync thread");
        Driver {
            node,
            pipeline: Pipeline::new(SyncMode::Background),
            io: DriverIo {
                id,
                transport,
                view,
                syncs,
                pending: BTreeMap::new(),
                appends_in_flight: BTreeMap::new(),
                stats: NodeStats::default(),
                is_leader: false,
            },
            inbox,
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
            self.finish_sync_if_done();
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
            self.run_pipeline();
            if stop {
                break;
            }
        }
        let Driver {
            node, pipeline, io, ..
        } = &mut self;
        let Ok(()) = pipeline.finish(node, io);
        self.io.fail_pending(ProposeError::ShuttingDown);
    }

    fn run_pipeline(&mut self) {
        let Ok(()) = self.pipeline.run(&mut self.node, &mut self.io);
    }

    fn finish_sync_if_done(&mut self) {
        let finished = self
            .io
            .syncs
            .try_finished()
            .unwrap_or_else(|gone| panic!("node {}: {gone}", self.io.id));
        if let Some(synced) = finished {
            self.io.observe_sync(synced);
            let Ok(()) = self.pipeline.synced(&mut self.node, &mut self.io);
        }
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
                    self.io
                        .note_append_acknowledged(message.from, match_index, arrived_at);
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
                let _ = reply.try_send(std::mem::take(&mut self.io.stats));
            }
            Input::Synced => self.finish_sync_if_done(),
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
        } else if self.io.pending.len() >= PENDING_PROPOSALS_MAX {
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
                    self.io.pending.insert(index, pending);
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
}

impl DriverIo {
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

    fn note_role(&mut self, role: Role) {
        let id = self.id.0;
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

    /// Fail-stop: a node that cannot persist must not acknowledge, so this panics.
    fn observe_sync(&mut self, synced: raft_wal::Synced) {
        if let Err(failure) = synced.outcome {
            panic!("node {}: WAL sync failed: {failure:?}", self.id);
        }
        push_sample(&mut self.stats.sync, synced.took);
    }

    fn fail_pending(&mut self, reason: ProposeError) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            // A proposer that gave up has dropped its receiver; nobody is left to tell.
            let _ = pending.reply.try_send(Err(reason.clone()));
        }
    }
}

impl ReadyIo<WalStore> for DriverIo {
    /// The bench never stops part-way: a storage failure panics (fail-stop).
    type Stop = std::convert::Infallible;

    fn observe(&mut self, _node: &Node<WalStore>, ready: &Ready) {
        if let Some(soft) = ready.soft_state {
            self.note_role(soft.role);
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
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

    fn apply(&mut self, entries: &[Entry], _read_states: &[ReadState]) -> Result<(), Self::Stop> {
        let applied_at = Instant::now();
        for entry in entries {
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
        Ok(())
    }

    /// The bench's snapshots carry no data: there is no state machine to restore.
    fn restore(&mut self, _snapshot: &Snapshot) -> Result<(), Self::Stop> {
        Ok(())
    }

    fn write(&mut self, store: &mut WalStore, ready: &Ready) -> Result<(), Self::Stop> {
        store
            .write_ready(ready)
            .unwrap_or_else(|failure| panic!("node {}: WAL write failed: {failure:?}", self.id));
        Ok(())
    }

    fn sync(&mut self, store: &mut WalStore) -> Result<(), Self::Stop> {
        let started = Instant::now();
        store
            .sync()
            .unwrap_or_else(|failure| panic!("node {}: WAL sync failed: {failure:?}", self.id));
        push_sample(&mut self.stats.sync, started.elapsed());
        Ok(())
    }

    fn begin_sync(&mut self, store: &mut WalStore) -> Result<SyncStart, Self::Stop> {
        let flush = store
            .begin_sync()
            .unwrap_or_else(|failure| panic!("node {}: WAL sync failed: {failure:?}", self.id));
        self.syncs
            .submit(flush)
            .unwrap_or_else(|gone| panic!("node {}: {gone}", self.id));
        Ok(SyncStart::Running)
    }

    fn wait_for_sync(&mut self) -> Result<(), Self::Stop> {
        let synced = self
            .syncs
            .wait()
            .unwrap_or_else(|gone| panic!("node {}: {gone}", self.id));
        self.observe_sync(synced);
        Ok(())
    }

    /// Compacts the log behind the applied index now and then, bounding WAL size and
    /// memory in long runs; the compaction is made durable with the next sync.
    fn after_ready(&mut self, node: &mut Node<WalStore>) -> Result<bool, Self::Stop> {
        let applied = node.applied_index();
        if applied.0 < node.first_index().0 + COMPACT_EVERY_ENTRIES {
            return Ok(false);
        }
        let meta = node.snapshot_meta_at_applied();
        node.store_mut()
            .apply_snapshot(Snapshot {
                meta,
                data: Bytes::new(),
            })
            .unwrap_or_else(|failure| {
                panic!("node {}: WAL compaction failed: {failure:?}", self.id)
            });
        Ok(true)
    }
}
