//! The loop's side of raft-core's pipeline ([`ReadyIo`]): what carrying out a Ready means
//! for this server. Messages go to raft-net; the log is written to the storage backend and
//! synced on the log-sync thread; committed entries are applied to the state machine
//! (`apply`). Fail-stop: a failed write or sync of the log ends the process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_core::{
    Entry, EntryPayload, LogIndex, LogStoreMut, Message, Node, NodeId, ReadState, Ready, ReadyIo,
    Role, Snapshot, StorageError, SyncStart, Term,
};
use raft_net::{SendError, Transport};
use raft_wal::{SyncThread, Synced};
use tracing::{error, info, warn};

use super::clock::LoopClock;
use super::inbox::RaftHandle;
use super::peers::Peers;
use super::pending::Pending;
use super::read_ids::ReadIds;
use super::reclaim::Reclaimer;
use super::request::ReplyTo;
use super::snapshots::Snapshots;
use crate::config::NodeConfig;
use crate::error::ClusterError;
use crate::metrics::{Metrics, SendFailure};
use crate::state_machine::{MembershipContext, StateMachine};
use crate::storage::Storage;

/// A log sync at least this long is logged: commits wait on it.
const SLOW_SYNC: Duration = Duration::from_millis(100);
/// A kind of peer send failure is logged at most this often (each one is counted).
const SEND_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Everything the loop owns besides the node and its pipeline.
pub struct LoopIo {
    pub node_id: NodeId,
    pub machine: StateMachine,
    pub transport: Transport,
    pub metrics: Arc<Metrics>,
    pub pending: Pending,
    pub peers: Peers,
    pub snapshots: Snapshots,
    pub syncs: SyncThread,
    /// The peer set must be brought up to date (the address book changed).
    pub peers_dirty: bool,
    /// The term of the last entry applied (or of the snapshot restored).
    pub applied_term: Term,
    /// The largest time in the log: stamps and the read clock.
    pub clock: LoopClock,
    pub reclaimer: Reclaimer,
    /// Where the ACL users are published to the connections (`apply`).
    pub users_watch: tokio::sync::watch::Sender<Arc<crate::acl::Users>>,
    last_leader: NodeId,
    was_leader: bool,
    /// When each kind of send failure was last logged.
    send_failures_logged: [Option<Instant>; SendFailure::KINDS],
}

impl LoopIo {
    /// Sets up the loop's I/O and its helper threads (log sync, snapshots).
    ///
    /// # Errors
    /// A helper thread cannot be spawned, or the read-id incarnation cannot be recorded.
    pub fn new(
        config: &NodeConfig,
        node: &Node<Storage>,
        machine: StateMachine,
        transport: Transport,
        metrics: Arc<Metrics>,
        wake: RaftHandle,
        users_watch: tokio::sync::watch::Sender<Arc<crate::acl::Users>>,
    ) -> anyhow::Result<LoopIo> {
        let snapshots = Snapshots::start(
            config.node_id,
            node.store().snapshot_writer(),
            node.first_index().prev(),
            config.snapshot_entries,
        );
        let clock = LoopClock::start(&machine, node.store(), node.last_index());
        Ok(LoopIo {
            node_id: config.node_id,
            clock,
            reclaimer: Reclaimer::new(config.limits.entry_bytes_max),
            users_watch,
            machine,
            transport,
            metrics,
            pending: Pending::new(ReadIds::open(&config.data_dir)?),
            peers: Peers::new(config.node_id, &config.members),
            snapshots,
            syncs: SyncThread::start("log-sync", move || wake.synced())?,
            peers_dirty: true,
            applied_term: node.snapshot_meta_at_applied().term,
            last_leader: NodeId::NONE,
            was_leader: false,
            send_failures_logged: [None; SendFailure::KINDS],
        })
    }

    pub fn track_write(&mut self, index: LogIndex, term: Term, reply: ReplyTo) {
        self.metrics.proposals_total.fetch_add(1, Ordering::Relaxed);
        self.pending.track_write(index, term, reply);
    }

    /// Takes a finished sync's result: fail-stop if it failed.
    pub fn observe_sync(&self, synced: Synced) {
        if let Err(failure) = synced.outcome {
            self.storage_failed(&StorageError::Backend(Box::new(failure)));
        }
        self.observe_sync_time(synced.took);
    }

    fn observe_sync_time(&self, took: Duration) {
        self.metrics.fsync_latency.observe(took);
        if took >= SLOW_SYNC {
            warn!(
                node = self.node_id.0,
                millis = took.as_millis() as u64,
                "slow log sync"
            );
        }
    }

    /// Fail-stop: a node that cannot persist must not keep acknowledging.
    pub fn storage_failed(&self, failure: &StorageError) -> ! {
        error!(node = self.node_id.0, error = %failure, source = ?std::error::Error::source(failure), "log storage failed; stopping");
        std::process::abort();
    }

    pub fn sync_thread_gone(&self) -> ! {
        error!(
            node = self.node_id.0,
            "the log-sync thread is gone; stopping"
        );
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
            info!(node = self.node_id.0, term = soft.term.0, leader = soft.leader.0, role = ?soft.role, "leader changed");
        }
        let is_leader = soft.role == Role::Leader;
        if is_leader && !self.was_leader {
            self.metrics
                .elections_won_total
                .fetch_add(1, Ordering::Relaxed);
        }
        if self.was_leader && !is_leader {
            // Proposals not yet applied may still commit under the next leader, or not.
            self.pending.fail_writes(|| ClusterError::LeaderLost);
        }
        self.was_leader = is_leader;
    }

    /// Membership entries carry new members' addresses; a leader needs them as soon as the
    /// entry is appended (the configuration is in effect from then on).
    fn learn_addresses(&mut self, entries: &[Entry]) -> bool {
        let mut learned = false;
        for entry in entries {
            if let EntryPayload::Membership { context, .. } = &entry.payload {
                if let Ok(context) = MembershipContext::decode(context) {
                    self.peers.learn(&context.members);
                }
                learned = true;
            }
        }
        learned
    }

    /// Counts a failed send and logs it, at most once per interval per kind (a down peer
    /// fails every send to it).
    fn send_failed(&mut self, failure: &SendError) {
        let kind = SendFailure::of(failure);
        self.metrics.peer_send_failures[kind as usize].fetch_add(1, Ordering::Relaxed);
        let logged = &mut self.send_failures_logged[kind as usize];
        if logged.is_none_or(|at| at.elapsed() >= SEND_FAILURE_LOG_INTERVAL) {
            *logged = Some(Instant::now());
            warn!(node = self.node_id.0, error = %failure, "a message to a peer was dropped (Raft resends; each drop is counted in raftkv_peer_send_failures_total)");
        }
    }
}

impl ReadyIo<Storage> for LoopIo {
    /// The loop never stops part-way: storage failures end the process.
    type Stop = std::convert::Infallible;

    fn observe(&mut self, node: &Node<Storage>, ready: &Ready) {
        self.note_leadership(ready);
        self.clock.observe_entries(&ready.entries);
        let learned = self.learn_addresses(&ready.entries);
        if learned || ready.soft_state.is_some() || ready.snapshot.is_some() {
            self.peers.follow(
                &self.transport,
                node.membership(),
                node.leader(),
                &self.machine,
            );
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if let Err(failure) = self.transport.send(message) {
                self.send_failed(&failure);
            }
        }
    }

    fn apply(&mut self, entries: &[Entry], read_states: &[ReadState]) -> Result<(), Self::Stop> {
        self.apply_entries(entries);
        for read in read_states {
            self.pending
                .read_released(read.request_id, read.index, read.clock);
        }
        self.pending.serve_reads(&self.machine, self.applied_term);
        Ok(())
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), Self::Stop> {
        self.restore_snapshot(snapshot);
        Ok(())
    }

    fn write(&mut self, store: &mut Storage, ready: &Ready) -> Result<(), Self::Stop> {
        if let Err(failure) = store.write_ready(ready) {
            self.storage_failed(&failure);
        }
        Ok(())
    }

    fn sync(&mut self, store: &mut Storage) -> Result<(), Self::Stop> {
        let started = Instant::now();
        if let Err(failure) = store.sync() {
            self.storage_failed(&failure);
        }
        self.observe_sync_time(started.elapsed());
        Ok(())
    }

    fn begin_sync(&mut self, store: &mut Storage) -> Result<SyncStart, Self::Stop> {
        match store.begin_sync() {
            Err(failure) => self.storage_failed(&failure),
            Ok(None) => Ok(SyncStart::Done),
            Ok(Some(flush)) => {
                if self.syncs.submit(flush).is_err() {
                    self.sync_thread_gone();
                }
                Ok(SyncStart::Running)
            }
        }
    }

    fn wait_for_sync(&mut self) -> Result<(), Self::Stop> {
        match self.syncs.wait() {
            Ok(synced) => self.observe_sync(synced),
            Err(_) => self.sync_thread_gone(),
        }
        Ok(())
    }

    fn after_ready(&mut self, node: &mut Node<Storage>) -> Result<bool, Self::Stop> {
        self.snapshots.maybe_start(node, &self.machine);
        Ok(false)
    }
}
