//! The raft loop: one OS thread that alone owns the Raft node, the log store and the state
//! machine (no locks). It takes client requests and peer messages from one bounded queue,
//! ticks the node, and carries out each Ready as raft-core's "Asynchronous sync" documents:
//! send the leader's messages, apply what is committed, write the new entries, and hand the
//! sync to the log-sync thread; the messages that promise durable state wait until a sync
//! that covers them has finished. The loop keeps stepping while the disk flushes: acks,
//! heartbeats, reads and new proposals are handled meanwhile, and everything written while
//! one sync runs goes into the next (group commit, one sync at a time). A Ready with a
//! snapshot or a new term or vote is carried out synchronously.
//!
//! A write is answered only when its entry is applied; if the entry at its index turns
//! out to have another term, the slot was overwritten and the client gets TRYAGAIN; if the
//! node loses leadership first, the client gets UNKNOWN.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{
    ConfChange, Entry, EntryPayload, HeldMessages, LogIndex, LogStore, LogStoreMut, Message, Node,
    NodeId, Ready, Role, Snapshot, SnapshotMeta, Term,
};
use raft_net::Transport;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::cmd::AdminCommand;
use crate::config::NodeConfig;
use crate::error::ClusterError;
use crate::metrics::Metrics;
use crate::resp::Frame;
use crate::state_machine::{
    MemberAddress, MembershipContext, ReadCommand, StateMachine, WriteCommand,
};
use crate::storage::{Flush, SnapshotWriter, StagedSnapshot, Storage};

/// Inputs handled per loop iteration before the node's Ready is processed; bounds the
/// latency a burst can add to ticks.
const INBOX_DRAIN_MAX: usize = 4096;
/// A log sync at least this long is logged: commits wait on it (and, when synchronous, so
/// does the whole loop).
const SLOW_SYNC: Duration = Duration::from_millis(100);

/// What a request's sender gets back.
pub enum Outcome {
    Reply(Frame),
    Failed(ClusterError),
    /// This node is not the leader; forward to the leader's client address if known.
    NotLeader {
        leader_client: Option<String>,
    },
}

pub type ReplyTo = oneshot::Sender<Outcome>;

pub enum Request {
    Write {
        command: WriteCommand,
        reply: ReplyTo,
    },
    Read {
        command: ReadCommand,
        linearizable: bool,
        reply: ReplyTo,
    },
    Admin {
        command: AdminCommand,
        reply: ReplyTo,
    },
    Status {
        reply: oneshot::Sender<RaftStatus>,
    },
}

pub enum Input {
    Request(Request),
    Peer(Message),
    /// The log-sync thread finished a sync (the result waits in its own channel).
    Synced,
    /// Stops the loop. The only way to: the log-sync thread holds a sender of the queue,
    /// so the queue never disconnects while the loop runs.
    Shutdown,
}

/// A point-in-time view of the node for INFO, RAFT.STATUS and metrics.
#[derive(Clone, Debug, Default)]
pub struct RaftStatus {
    pub node_id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader: u64,
    pub leader_client: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners: Vec<u64>,
    pub keys: usize,
    /// Leader only: each member's matched index.
    pub matched: Vec<(u64, u64)>,
    pub storage: String,
}

/// The handle the async side uses to reach the loop.
#[derive(Clone)]
pub struct RaftHandle {
    inbox: SyncSender<Input>,
}

impl RaftHandle {
    pub fn new(inbox: SyncSender<Input>) -> RaftHandle {
        RaftHandle { inbox }
    }

    /// Queues a request without blocking; a full queue is an overload the client may retry.
    pub fn submit(&self, request: Request) -> Result<(), ClusterError> {
        match self.inbox.try_send(Input::Request(request)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ClusterError::Overloaded("request queue full")),
            Err(TrySendError::Disconnected(_)) => Err(ClusterError::ShuttingDown),
        }
    }

    /// Hands a peer message to the loop; dropped when the queue is full (Raft resends).
    pub fn deliver(&self, message: Message) -> bool {
        self.inbox.try_send(Input::Peer(message)).is_ok()
    }

    pub fn shutdown(&self) {
        // Blocking is fine here: shutdown happens once, and the loop drains the queue.
        let _ = self.inbox.send(Input::Shutdown);
    }
}

struct PendingWrite {
    term: Term,
    reply: ReplyTo,
    proposed_at: Instant,
}

pub struct RaftLoop {
    config: NodeConfig,
    node: Node<Storage>,
    machine: StateMachine,
    transport: Transport,
    metrics: Arc<Metrics>,
    inbox: Receiver<Input>,
    pending_writes: BTreeMap<LogIndex, PendingWrite>,
    /// ReadIndex requests awaiting their read point.
    pending_reads: BTreeMap<u64, (ReadCommand, ReplyTo)>,
    /// Reads with a read point, waiting for the applied index to reach it.
    waiting_reads: BTreeMap<LogIndex, Vec<(ReadCommand, ReplyTo)>>,
    next_read_id: u64,
    known_peers: BTreeSet<NodeId>,
    last_leader: NodeId,
    was_leader: bool,
    /// The applied index of the last snapshot taken or started (or restored).
    last_snapshot: LogIndex,
    /// Size of that snapshot (0 if unknown, as after a restart).
    last_snapshot_bytes: u64,
    /// Bytes of the entries applied since that snapshot started.
    applied_bytes_since_snapshot: u64,
    snapshots: SnapshotWorker,
    syncs: SyncWorker,
}

/// What a finished sync reports.
struct SyncDone {
    outcome: Result<(), raft_core::StorageError>,
    took: Duration,
}

/// A sync handed to the log-sync thread.
struct RunningSync {
    /// The write count it covers (see [`SyncWorker::written`]).
    covers: u64,
    /// The store's last entry when it began, for `Node::persisted`.
    last: (LogIndex, Term),
}

/// The log-sync thread, and what waits on it. One sync runs at a time; writes made
/// meanwhile are covered by the next one.
struct SyncWorker {
    jobs: SyncSender<Flush>,
    results: Receiver<SyncDone>,
    running: Option<RunningSync>,
    /// The messages that wait for a sync (raft-core's rules, shared with the simulator).
    held: HeldMessages,
}

impl SyncWorker {
    fn start(wake: SyncSender<Input>) -> SyncWorker {
        let (jobs, job_queue) = sync_channel::<Flush>(1);
        let (done, results) = sync_channel(1);
        std::thread::Builder::new()
            .name("log-sync".into())
            .spawn(move || {
                while let Ok(flush) = job_queue.recv() {
                    let started = Instant::now();
                    let outcome = flush.run();
                    let took = started.elapsed();
                    if done.send(SyncDone { outcome, took }).is_err() {
                        break;
                    }
                    // Blocks while the queue is full, which the loop drains; the result
                    // is already in `done`, so a loop waiting for it never waits on this.
                    if wake.send(Input::Synced).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the log-sync thread");
        SyncWorker {
            jobs,
            results,
            running: None,
            held: HeldMessages::default(),
        }
    }
}

/// A copy of the state machine to write as a snapshot at `meta.index`.
struct SnapshotJob {
    meta: SnapshotMeta,
    machine: StateMachine,
}

type StagedResult = Result<(StagedSnapshot, u64), raft_wal::Error>;

/// The thread that encodes and writes snapshots, so the loop keeps heartbeating and
/// committing while a large state is written and synced. One job at a time.
struct SnapshotWorker {
    jobs: SyncSender<SnapshotJob>,
    results: Receiver<StagedResult>,
    busy: bool,
}

impl SnapshotWorker {
    fn start(writer: SnapshotWriter) -> SnapshotWorker {
        let (jobs, job_queue) = sync_channel::<SnapshotJob>(1);
        let (done, results) = sync_channel(1);
        std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                // Ends when the loop drops its sender; a job cut short by the process
                // exiting leaves a temporary file that the next open removes.
                for job in job_queue {
                    let staged = writer.stage(job.meta, &job.machine);
                    // Drops the buckets shared with the live state before the loop hears
                    // of the result, so its next writes find them unshared again.
                    drop(job.machine);
                    if done.send(staged).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the snapshot thread");
        SnapshotWorker {
            jobs,
            results,
            busy: false,
        }
    }
}

impl RaftLoop {
    pub fn new(
        config: NodeConfig,
        node: Node<Storage>,
        machine: StateMachine,
        transport: Transport,
        metrics: Arc<Metrics>,
        inbox: Receiver<Input>,
        wake: SyncSender<Input>,
    ) -> RaftLoop {
        let last_snapshot = node.first_index().prev();
        let snapshots = SnapshotWorker::start(node.store().snapshot_writer());
        let syncs = SyncWorker::start(wake);
        let mut raft_loop = RaftLoop {
            config,
            node,
            machine,
            transport,
            metrics,
            inbox,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            waiting_reads: BTreeMap::new(),
            next_read_id: 1,
            known_peers: BTreeSet::new(),
            last_leader: NodeId::NONE,
            was_leader: false,
            last_snapshot,
            last_snapshot_bytes: 0,
            applied_bytes_since_snapshot: 0,
            snapshots,
            syncs,
        };
        let founders: Vec<(NodeId, MemberAddress)> = raft_loop
            .config
            .members
            .iter()
            .map(|(id, address)| (*id, address.clone()))
            .collect();
        raft_loop.add_peers(&founders);
        let known: Vec<(NodeId, MemberAddress)> = raft_loop
            .machine
            .members()
            .iter()
            .map(|(id, address)| (*id, address.clone()))
            .collect();
        raft_loop.add_peers(&known);
        raft_loop
    }

    /// Runs until shutdown. Panics (aborting the process) on a storage failure.
    pub fn run(mut self) {
        let tick = self.config.heartbeat;
        let mut next_tick = Instant::now() + tick;
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
            // The wake-up may wait for room in a full queue; the result need not.
            if self.syncs.running.is_some() {
                self.finish_sync_if_done();
            }
            self.install_finished_snapshot();
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                next_tick = if now > next_tick + tick {
                    now + tick
                } else {
                    next_tick + tick
                };
            }
            self.handle_ready();
            if stop {
                break;
            }
        }
        self.wait_for_running_sync();
        if self.syncs.held.needs_sync() {
            self.sync_now();
        }
        self.fail_everything_pending(|| ClusterError::ShuttingDown);
        info!(
            node = self.config.node_id.0,
            "raft loop stopped after its last sync"
        );
    }

    /// Returns true on shutdown.
    fn handle_input(&mut self, input: Input) -> bool {
        match input {
            Input::Peer(message) => self.node.step(message),
            Input::Request(request) => self.handle_request(request),
            Input::Synced => self.finish_sync_if_done(),
            Input::Shutdown => return true,
        }
        false
    }

    fn handle_request(&mut self, request: Request) {
        match request {
            Request::Write { command, reply } => self.propose_write(command, reply),
            Request::Read {
                command,
                linearizable,
                reply,
            } => self.read(command, linearizable, reply),
            Request::Admin { command, reply } => self.admin(command, reply),
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn not_leader(&self) -> Outcome {
        let leader_client = self
            .node
            .leader()
            .and_then(|leader| self.address_of(leader))
            .map(|address| address.client);
        match leader_client {
            Some(_) => Outcome::NotLeader { leader_client },
            None => Outcome::Failed(ClusterError::NoLeader),
        }
    }

    fn address_of(&self, id: NodeId) -> Option<MemberAddress> {
        self.machine
            .members()
            .get(&id)
            .or_else(|| self.config.members.get(&id))
            .cloned()
    }

    fn propose_write(&mut self, command: WriteCommand, reply: ReplyTo) {
        if self.node.role() != Role::Leader {
            let _ = reply.send(self.not_leader());
            return;
        }
        match self.node.propose(command.encode()) {
            Ok(index) => self.track_write(index, reply),
            Err(refusal) => {
                let _ = reply.send(Outcome::Failed(ClusterError::Refused(refusal)));
            }
        }
    }

    fn track_write(&mut self, index: LogIndex, reply: ReplyTo) {
        self.metrics.proposals_total.fetch_add(1, Ordering::Relaxed);
        let pending = PendingWrite {
            term: self.node.term(),
            reply,
            proposed_at: Instant::now(),
        };
        self.pending_writes.insert(index, pending);
    }

    fn read(&mut self, command: ReadCommand, linearizable: bool, reply: ReplyTo) {
        if !linearizable {
            let _ = reply.send(Outcome::Reply(self.machine.read(&command)));
            return;
        }
        let request_id = self.next_read_id;
        self.next_read_id += 1;
        match self.node.read_index(request_id) {
            Ok(()) => {
                self.pending_reads.insert(request_id, (command, reply));
            }
            Err(raft_core::Error::NotLeader { .. }) => {
                let _ = reply.send(Outcome::Failed(ClusterError::NoLeader));
            }
            Err(refusal) => {
                let _ = reply.send(Outcome::Failed(ClusterError::Refused(refusal)));
            }
        }
    }

    fn admin(&mut self, command: AdminCommand, reply: ReplyTo) {
        if let AdminCommand::Status = command {
            let _ = reply.send(Outcome::Reply(Frame::Bulk(Bytes::from(render_status(
                &self.status(),
            )))));
            return;
        }
        if self.node.role() != Role::Leader {
            let _ = reply.send(self.not_leader());
            return;
        }
        let (changes, context) = match command {
            AdminCommand::Status => unreachable!("handled above"),
            AdminCommand::Transfer { id } => {
                let outcome = match self.node.transfer_leader(id) {
                    Ok(()) => Outcome::Reply(Frame::ok()),
                    Err(refusal) => Outcome::Failed(ClusterError::Refused(refusal)),
                };
                let _ = reply.send(outcome);
                return;
            }
            AdminCommand::AddLearner { id, address } => {
                let context = MembershipContext {
                    members: vec![(id, address)],
                };
                (vec![ConfChange::AddLearner(id)], context.encode())
            }
            AdminCommand::Promote { id } => {
                // Only a learner that is receiving the log may become a voter; promoting an
                // unknown id would add a voter nobody can reach.
                if !self.node.membership().is_learner(id) {
                    let reason =
                        format!("node {id} is not a learner; add it with RAFT.ADDLEARNER first");
                    let refusal = raft_core::Error::InvalidConfChange { reason };
                    let _ = reply.send(Outcome::Failed(ClusterError::Refused(refusal)));
                    return;
                }
                (vec![ConfChange::AddVoter(id)], Bytes::new())
            }
            AdminCommand::Remove { id } => (vec![ConfChange::Remove(id)], Bytes::new()),
        };
        match self.node.propose_conf_change(&changes, context) {
            Ok(index) => self.track_write(index, reply),
            Err(refusal) => {
                let _ = reply.send(Outcome::Failed(ClusterError::Refused(refusal)));
            }
        }
    }

    fn status(&self) -> RaftStatus {
        let membership = self.node.membership();
        let ids = |set: &BTreeSet<NodeId>| set.iter().map(|id| id.0).collect::<Vec<_>>();
        let leader = self.node.leader().unwrap_or(NodeId::NONE);
        RaftStatus {
            node_id: self.config.node_id.0,
            role: match self.node.role() {
                Role::Follower => "follower",
                Role::PreCandidate => "precandidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            },
            term: self.node.term().0,
            leader: leader.0,
            leader_client: self.address_of(leader).map(|address| address.client),
            commit_index: self.node.commit_index().0,
            applied_index: self.machine.applied_index().0,
            first_index: self.node.first_index().0,
            last_index: self.node.last_index().0,
            voters: ids(&membership.voters),
            voters_outgoing: ids(&membership.voters_outgoing),
            learners: ids(&membership.learners),
            keys: self.machine.len(),
            matched: self
                .node
                .replication_status()
                .into_iter()
                .map(|(id, matched)| (id.0, matched.0))
                .collect(),
            storage: self.node.store().describe(&self.config.data_dir),
        }
    }

    // ----- the Ready cycle -----

    fn handle_ready(&mut self) {
        // Bound: each round either begins a sync (then stops until it finishes) or
        // finishes one inline (a follower, the memory backend), which leaves nothing more
        // to sync.
        loop {
            while self.node.has_ready() {
                let mut ready = self.node.ready();
                self.note_leadership(&ready);
                self.learn_addresses(&ready.entries);
                self.send_all(std::mem::take(&mut ready.messages));
                if ready.snapshot.is_some() || ready.term_or_vote_changed {
                    self.handle_ready_synced(ready);
                } else {
                    self.handle_ready_unsynced(ready);
                }
                self.maybe_snapshot();
            }
            if !self.begin_sync() {
                return;
            }
        }
    }

    /// The common case: write, hand the sync to the log-sync thread, go on.
    fn handle_ready_unsynced(&mut self, ready: Ready) {
        // Committed entries are already durable on a quorum, so they are applied (and
        // their clients answered) without waiting for this node's sync of newer entries.
        self.apply(&ready);
        self.serve_waiting_reads();
        let store = self.node.store_mut();
        if let Err(failure) = store.write_ready(&ready) {
            self.storage_failed(&failure);
        }
        // Rejections, heartbeat and read answers promise nothing durable and leave now: a
        // slow disk must not hold them (a leader hearing no heartbeat answers steps down).
        let free = self
            .syncs
            .held
            .written(ready.must_sync, ready.persisted_messages);
        self.send_all(free);
        self.node.advance_unsynced();
    }

    /// A snapshot, or a new term or vote: persisted and synced before anything else, so
    /// that the node never acts on a term or vote a crash could take back.
    fn handle_ready_synced(&mut self, mut ready: Ready) {
        // The WAL's sync covers what was written since the last one began: the running
        // one must finish first for everything to be durable after this one.
        self.wait_for_running_sync();
        let apply_first = ready.snapshot.is_none();
        if apply_first {
            self.apply(&ready);
            self.serve_waiting_reads();
        }
        self.persist(&ready);
        let released = self.syncs.held.synced_everything();
        self.send_all(released);
        if let Some(snapshot) = &ready.snapshot {
            // Restored before answering, so a joining node knows its peers' addresses
            // (they are in the snapshot's address book) when it replies.
            self.restore(snapshot);
        }
        self.send_all(std::mem::take(&mut ready.persisted_messages));
        if !apply_first {
            self.apply(&ready);
        }
        self.node.advance();
        self.serve_waiting_reads();
    }

    /// Hands a sync of everything written so far to the log-sync thread, unless one is
    /// running or nothing waits for one. Returns true if the sync finished at once (a
    /// follower, the memory backend), which may have committed entries.
    fn begin_sync(&mut self) -> bool {
        if self.syncs.running.is_some() || !self.syncs.held.needs_sync() {
            return false;
        }
        let store = self.node.store_mut();
        let last_index = store.last_index();
        let last = match store.term(last_index) {
            Ok(term) => (last_index, term),
            Err(failure) => self.storage_failed(&failure),
        };
        let flush = match store.begin_sync() {
            Ok(flush) => flush,
            Err(failure) => self.storage_failed(&failure),
        };
        let running = RunningSync {
            covers: self.syncs.held.sync_covers(),
            last,
        };
        self.syncs.running = Some(running);
        // Only a leader gains from syncing off the loop: it commits on its followers'
        // acknowledgements while its own sync runs, and takes new requests meanwhile. A
        // follower's acknowledgement waits for its sync either way, and the two thread
        // hand-offs would only add to it, so a follower syncs here, as before (and so
        // does the memory backend, whose flush is already done).
        if flush.is_done() || self.node.role() != Role::Leader {
            let started = Instant::now();
            let outcome = flush.run();
            self.observe_sync(started.elapsed());
            self.finish_sync(outcome, true);
            return true;
        }
        if self.syncs.jobs.try_send(flush).is_err() {
            self.sync_thread_gone();
        }
        false
    }

    fn finish_sync_if_done(&mut self) {
        match self.syncs.results.try_recv() {
            Ok(done) => {
                self.observe_sync(done.took);
                self.finish_sync(done.outcome, true);
            }
            // A wake-up for a result already taken by `wait_for_running_sync`.
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => self.sync_thread_gone(),
        }
    }

    /// Blocks until the running sync (if any) finishes. Called with a Ready outstanding,
    /// so the node is not told: the synchronous `advance` that follows covers it.
    fn wait_for_running_sync(&mut self) {
        if self.syncs.running.is_none() {
            return;
        }
        match self.syncs.results.recv() {
            Ok(done) => {
                self.observe_sync(done.took);
                self.finish_sync(done.outcome, false);
            }
            Err(_) => self.sync_thread_gone(),
        }
    }

    fn observe_sync(&self, took: Duration) {
        self.metrics.fsync_latency.observe(took);
        if took >= SLOW_SYNC {
            warn!(
                node = self.config.node_id.0,
                millis = took.as_millis() as u64,
                "slow log sync"
            );
        }
    }

    /// What a finished sync covers is durable: tell the node (so a leader counts its own
    /// log) before the messages that promise it leave.
    fn finish_sync(&mut self, outcome: Result<(), raft_core::StorageError>, tell_node: bool) {
        if let Err(failure) = outcome {
            self.storage_failed(&failure);
        }
        let running = self.syncs.running.take().expect("a sync was running");
        if tell_node {
            self.node.persisted(running.last.0, running.last.1);
        }
        let released = self.syncs.held.synced(running.covers);
        self.send_all(released);
    }

    fn sync_thread_gone(&self) -> ! {
        error!(
            node = self.config.node_id.0,
            "the log-sync thread is gone; stopping"
        );
        std::process::abort();
    }

    /// Syncs what was written since the last sync began, on this thread (shutdown).
    fn sync_now(&mut self) {
        if let Err(failure) = self.node.store_mut().sync() {
            self.storage_failed(&failure);
        }
        let released = self.syncs.held.synced_everything();
        self.send_all(released);
    }

    /// Fail-stop: a node that cannot persist must not keep acknowledging.
    fn storage_failed(&self, failure: &raft_core::StorageError) -> ! {
        error!(node = self.config.node_id.0, error = %failure, source = ?std::error::Error::source(failure), "log storage failed; stopping");
        std::process::abort();
    }

    fn note_leadership(&mut self, ready: &Ready) {
        let Some(soft) = ready.soft_state else {
            return;
        };
        if soft.leader != self.last_leader {
            self.last_leader = soft.leader;
            self.metrics
                .leader_changes_total
                .fetch_add(1, Ordering::Relaxed);
            info!(node = self.config.node_id.0, term = soft.term.0, leader = soft.leader.0, role = ?soft.role, "leader changed");
        }
        let is_leader = soft.role == Role::Leader;
        if self.was_leader && !is_leader {
            // Proposals not yet applied may still commit under the next leader, or not.
            self.fail_pending_writes(|| ClusterError::LeaderLost);
        }
        self.was_leader = is_leader;
    }

    fn send_all(&self, messages: Vec<Message>) {
        for message in messages {
            // A full queue or an unknown peer drops the message; Raft retransmits.
            let _ = self.transport.send(message);
        }
    }

    /// Writes and syncs a Ready on this thread (the running sync has finished).
    fn persist(&mut self, ready: &Ready) {
        let store = self.node.store_mut();
        let outcome = (|| {
            store.write_ready(ready)?;
            if ready.must_sync {
                let started = Instant::now();
                store.sync()?;
                Ok(Some(started.elapsed()))
            } else {
                Ok::<_, raft_core::StorageError>(None)
            }
        })();
        match outcome {
            Ok(Some(took)) => self.observe_sync(took),
            Ok(None) => {}
            Err(failure) => self.storage_failed(&failure),
        }
    }

    fn apply(&mut self, ready: &Ready) {
        for entry in &ready.committed_entries {
            let reply = self.apply_entry(entry);
            if let Some(pending) = self.pending_writes.remove(&entry.index) {
                let outcome = if pending.term == entry.term {
                    self.metrics
                        .proposal_latency
                        .observe(pending.proposed_at.elapsed());
                    Outcome::Reply(reply)
                } else {
                    Outcome::Failed(ClusterError::Overwritten)
                };
                let _ = pending.reply.send(outcome);
            }
        }
        for read in &ready.read_states {
            let Some((command, reply)) = self.pending_reads.remove(&read.request_id) else {
                continue;
            };
            match read.index {
                None => {
                    let _ = reply.send(Outcome::Failed(ClusterError::ReadNotConfirmed));
                }
                Some(index) => self
                    .waiting_reads
                    .entry(index)
                    .or_default()
                    .push((command, reply)),
            }
        }
    }

    fn apply_entry(&mut self, entry: &Entry) -> Frame {
        self.applied_bytes_since_snapshot += entry.size_bytes();
        match &entry.payload {
            EntryPayload::Blank => {
                self.machine.apply_blank(entry.index);
                Frame::ok()
            }
            EntryPayload::Command(data) => match WriteCommand::decode(data) {
                Ok(command) => self.machine.apply(entry.index, &command),
                Err(undecodable) => {
                    // Every replica decodes the same bytes the same way, so skipping keeps
                    // them identical; it can only mean a bug or a version mismatch.
                    error!(index = entry.index.0, error = %undecodable, "committed entry does not decode; skipped");
                    self.machine.apply_blank(entry.index);
                    Frame::Error(format!("ERR internal: {undecodable}"))
                }
            },
            EntryPayload::Membership {
                membership,
                context,
            } => {
                let context = MembershipContext::decode(context).unwrap_or_default();
                self.machine
                    .apply_membership(entry.index, &context, &membership.nodes());
                info!(node = self.config.node_id.0, index = entry.index.0, membership = ?membership, "membership applied");
                self.sync_peers();
                Frame::ok()
            }
        }
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        match StateMachine::restore(&snapshot.data) {
            Ok(machine) => {
                info!(
                    node = self.config.node_id.0,
                    index = snapshot.meta.index.0,
                    bytes = snapshot.data.len(),
                    "restored a snapshot from the leader"
                );
                self.machine = machine;
                self.last_snapshot = snapshot.meta.index;
                self.last_snapshot_bytes = snapshot.data.len() as u64;
                self.applied_bytes_since_snapshot = 0;
                self.sync_peers();
            }
            Err(corrupt) => {
                error!(node = self.config.node_id.0, error = %corrupt, "snapshot from the leader does not restore; stopping");
                std::process::abort();
            }
        }
    }

    fn serve_waiting_reads(&mut self) {
        let applied = self.machine.applied_index();
        while let Some(entry) = self.waiting_reads.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for (command, reply) in entry.remove() {
                let _ = reply.send(Outcome::Reply(self.machine.read(&command)));
            }
        }
    }

    /// Starts a snapshot once `snapshot_entries` entries were applied since the last one
    /// and they add up to at least that snapshot's size: rewriting the whole state more
    /// often than the log grows by as much would write more snapshot than log (the rule of
    /// Redis' AOF rewrite), while replay after a restart stays under one snapshot's worth.
    ///
    /// The loop only clones the state machine, which copies bucket handles, not keys or
    /// values (see the key space's layout); the worker streams it to the file, and [`RaftLoop::install_finished_snapshot`] compacts
    /// the log after.
    fn maybe_snapshot(&mut self) {
        let applied = self.machine.applied_index();
        if self.snapshots.busy
            || applied.0 < self.last_snapshot.0 + self.config.snapshot_entries
            || self.applied_bytes_since_snapshot < self.last_snapshot_bytes
        {
            return;
        }
        let meta = self.node.snapshot_meta_at_applied();
        assert_eq!(
            meta.index, applied,
            "raft and the state machine agree on the applied index"
        );
        let started = Instant::now();
        let job = SnapshotJob {
            meta,
            machine: self.machine.clone(),
        };
        info!(
            node = self.config.node_id.0,
            index = applied.0,
            copy_micros = started.elapsed().as_micros() as u64,
            "snapshot started"
        );
        if self.snapshots.jobs.try_send(job).is_err() {
            error!(
                node = self.config.node_id.0,
                "the snapshot thread is gone; stopping"
            );
            std::process::abort();
        }
        self.snapshots.busy = true;
        self.last_snapshot = applied;
        self.applied_bytes_since_snapshot = 0;
    }

    fn install_finished_snapshot(&mut self) {
        let (staged, bytes) = match self.snapshots.results.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(Ok(done)) => done,
            Ok(Err(failure)) => {
                error!(node = self.config.node_id.0, error = %failure, "writing a snapshot failed; stopping");
                std::process::abort();
            }
            Err(TryRecvError::Disconnected) => {
                error!(
                    node = self.config.node_id.0,
                    "the snapshot thread died; stopping"
                );
                std::process::abort();
            }
        };
        self.snapshots.busy = false;
        self.last_snapshot_bytes = bytes;
        let index = staged.index();
        let started = Instant::now();
        match self.node.store_mut().install_snapshot(staged) {
            Ok(true) => {
                self.metrics.snapshots_total.fetch_add(1, Ordering::Relaxed);
                self.metrics.snapshot_bytes.store(bytes, Ordering::Relaxed);
                info!(
                    node = self.config.node_id.0,
                    index = index.0,
                    bytes,
                    install_micros = started.elapsed().as_micros() as u64,
                    "snapshot taken; log compacted"
                );
            }
            // A newer snapshot from the leader was installed while this one was written.
            Ok(false) => {}
            Err(failure) => {
                error!(node = self.config.node_id.0, error = %failure, "installing a snapshot failed; stopping");
                std::process::abort();
            }
        }
    }

    // ----- peers -----

    /// Membership entries carry new members' addresses; the leader needs them as soon as
    /// the entry is appended (the configuration is in effect from then on).
    fn learn_addresses(&mut self, entries: &[Entry]) {
        for entry in entries {
            if let EntryPayload::Membership { context, .. } = &entry.payload {
                if let Ok(context) = MembershipContext::decode(context) {
                    self.add_peers(&context.members);
                }
            }
        }
    }

    fn add_peers(&mut self, members: &[(NodeId, MemberAddress)]) {
        for (id, address) in members {
            if *id == self.config.node_id {
                continue;
            }
            let resolved = crate::config::resolve_addr("peer", &address.peer);
            match resolved.map(|addr| {
                self.transport
                    .set_peer(*id, addr)
                    .map_err(anyhow::Error::from)
            }) {
                Ok(Ok(())) => {
                    self.known_peers.insert(*id);
                }
                Ok(Err(failure)) | Err(failure) => {
                    warn!(peer = id.0, address = %address.peer, error = %failure, "cannot reach peer address");
                }
            }
        }
    }

    /// After a configuration applies: forget peers no longer in it, learn the others.
    fn sync_peers(&mut self) {
        let members = self.node.membership().nodes();
        let stale: Vec<NodeId> = self
            .known_peers
            .iter()
            .copied()
            .filter(|id| !members.contains(id))
            .collect();
        for id in stale {
            self.transport.remove_peer(id);
            self.known_peers.remove(&id);
        }
        let known: Vec<(NodeId, MemberAddress)> = self
            .machine
            .members()
            .iter()
            .filter(|(id, _)| !self.known_peers.contains(id))
            .map(|(id, address)| (*id, address.clone()))
            .collect();
        self.add_peers(&known);
    }

    fn fail_pending_writes(&mut self, reason: impl Fn() -> ClusterError) {
        for (_, pending) in std::mem::take(&mut self.pending_writes) {
            let _ = pending.reply.send(Outcome::Failed(reason()));
        }
    }

    fn fail_everything_pending(&mut self, reason: impl Fn() -> ClusterError) {
        self.fail_pending_writes(&reason);
        for (_, (_, reply)) in std::mem::take(&mut self.pending_reads) {
            let _ = reply.send(Outcome::Failed(reason()));
        }
        for (_, reads) in std::mem::take(&mut self.waiting_reads) {
            for (_, reply) in reads {
                let _ = reply.send(Outcome::Failed(reason()));
            }
        }
    }
}

/// RAFT.STATUS's reply: `key:value` lines, like INFO.
pub fn render_status(status: &RaftStatus) -> String {
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut out = format!(
        "node_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\nleader_client_addr:{}\r\ncommit_index:{}\r\napplied_index:{}\r\nfirst_index:{}\r\nlast_log_index:{}\r\nvoters:{}\r\nvoters_outgoing:{}\r\nlearners:{}\r\nkeys:{}\r\nstorage:{}\r\n",
        status.node_id,
        status.role,
        status.term,
        status.leader,
        status.leader_client.as_deref().unwrap_or(""),
        status.commit_index,
        status.applied_index,
        status.first_index,
        status.last_index,
        list(&status.voters),
        list(&status.voters_outgoing),
        list(&status.learners),
        status.keys,
        status.storage,
    );
    for (peer, matched) in &status.matched {
        out.push_str(&format!(
            "matched_{peer}:{matched}\r\nlag_{peer}:{}\r\n",
            status.last_index.saturating_sub(*matched)
        ));
    }
    out
}

/// Bootstraps an empty store for a founding member: the initial configuration (with every
/// member's addresses in its context) as entry 1 of term 1, the same on every founder.
pub fn bootstrap(store: &mut Storage, config: &NodeConfig) -> anyhow::Result<()> {
    let membership = raft_core::Membership::with_voters(config.members.keys().copied());
    let context = MembershipContext {
        members: config
            .members
            .iter()
            .map(|(id, address)| (*id, address.clone()))
            .collect(),
    };
    let entry = Entry {
        index: LogIndex(1),
        term: Term(1),
        payload: EntryPayload::Membership {
            membership,
            context: context.encode(),
        },
    };
    store.append(&[entry])?;
    store.set_hard_state(raft_core::storage::bootstrap_hard_state())?;
    store.sync()?;
    Ok(())
}
