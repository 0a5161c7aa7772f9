//! The raft loop: one OS thread that alone owns the Raft node, the log store and the state
//! machine (no locks). Each pass it takes what waits in its inbox (peer messages first,
//! then a bounded batch of client requests), ticks the node when a heartbeat interval has
//! passed, and has raft-core's [`Pipeline`] carry out the node's Readys; the log syncs on
//! the `log-sync` thread meanwhile, so the loop never waits for the disk except for a
//! snapshot or a new term or vote. Everything written while one sync runs goes into the
//! next (group commit).
//!
//! A write is answered only when its entry is applied; if the entry at its index turns
//! out to have another term, the slot was overwritten and the client gets TRYAGAIN; if the
//! node loses leadership first, the client gets UNKNOWN.
//!
//! Parts: [`inbox`] (the two lanes in, and the [`RaftHandle`]), [`request`] (what is asked
//! and answered, and how a request starts), `admin` (membership, transfer, status),
//! `pending` (requests waiting for the log; `read_ids` numbers the reads), `io` (the pipeline's I/O: send, write, sync),
//! `leadership` (the leader as published to the connections),
//! `apply` (entries into the state machine, typed replies out), `clock` (the stamps a
//! leader proposes with and its read clock), `reclaim` (batched deletion of expired
//! keys), `peers` (who the
//! transport talks to), `snapshots` (the snapshot thread), [`bootstrap`] (entry 1).

mod admin;
mod apply;
pub mod bootstrap;
mod clock;
pub mod inbox;
mod io;
mod leadership;
mod peers;
mod pending;
mod read_ids;
mod reclaim;
pub mod request;
mod snapshots;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use raft_core::{Node, Pipeline, SyncMode};
use raft_net::Transport;
use tracing::{info, warn};

/// A pass of the loop at least this long is logged (heartbeats are 50 ms apart by default).
const SLOW_PASS: std::time::Duration = std::time::Duration::from_millis(100);

pub use bootstrap::bootstrap;
pub use inbox::{inbox, Inbox, RaftHandle};
pub use leadership::{leader_watch, LeaderView};
pub use request::{Captured, Outcome, ReplyTo, Request};

use crate::config::NodeConfig;
use crate::error::ClusterError;
use crate::metrics::Metrics;
use crate::state_machine::StateMachine;
use crate::storage::Storage;
use inbox::Taken;
use io::LoopIo;

/// The loop's ends of what connects it to the async side.
pub struct LoopEnds {
    pub inbox: Inbox,
    /// The inbox's other end, which the log-sync thread uses to wake the loop.
    pub wake: RaftHandle,
    /// Where the loop publishes who leads.
    pub leader_watch: tokio::sync::watch::Sender<LeaderView>,
    /// Where the loop publishes the ACL users it has applied.
    pub users_watch: tokio::sync::watch::Sender<Arc<crate::acl::Users>>,
}

pub struct RaftLoop {
    node: Node<Storage>,
    pipeline: Pipeline,
    io: LoopIo,
    inbox: Inbox,
    heartbeat: std::time::Duration,
    /// The minimum election timeout.
    election_timeout: std::time::Duration,
    data_dir: PathBuf,
    leader_watch: tokio::sync::watch::Sender<LeaderView>,
    /// A deliberate bug (`test-faults` builds only; see `config::TestFault`).
    test_fault: Option<crate::config::TestFault>,
}

impl RaftLoop {
    /// Sets up the loop and its helper threads (log sync, snapshots).
    ///
    /// # Errors
    /// A helper thread could not be spawned.
    pub fn new(
        config: &NodeConfig,
        node: Node<Storage>,
        machine: StateMachine,
        transport: Transport,
        metrics: Arc<Metrics>,
        ends: LoopEnds,
    ) -> anyhow::Result<RaftLoop> {
        let LoopEnds {
            inbox,
            wake,
            leader_watch,
            users_watch,
        } = ends;
        let io = LoopIo::new(
            config,
            &node,
            machine,
            transport,
            metrics,
            wake,
            users_watch,
        )?;
        Ok(RaftLoop {
            node,
            pipeline: Pipeline::new(SyncMode::Background),
            io,
            inbox,
            heartbeat: config.heartbeat,
            election_timeout: config.heartbeat * config.election_ticks,
            data_dir: config.data_dir.clone(),
            leader_watch,
            test_fault: config.test_fault,
        })
    }

    /// Runs until shutdown. A storage failure aborts the process (fail-stop).
    pub fn run(mut self) {
        let mut taken = Taken::default();
        let mut next_tick = Instant::now() + self.heartbeat;
        loop {
            let wake_at = self
                .io
                .reclaimer
                .wake_at(self.node.role())
                .map_or(next_tick, |at| at.min(next_tick));
            let wait = wake_at.saturating_duration_since(Instant::now());
            self.inbox.take(&mut taken, wait);
            let pass_started = Instant::now();
            let (peer_messages, requests) = (taken.peers.len(), taken.requests.len());
            self.node
                .set_clock(self.io.clock.read_clock(wall_clock_ms()));
            for message in taken.peers.drain(..) {
                self.node.step(message);
            }
            self.finish_sync_if_done();
            for request in taken.requests.drain(..) {
                self.handle_request(request);
            }
            self.io
                .snapshots
                .install_finished(self.node.store_mut(), &self.io.metrics);
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                // A late tick is not made up for: a stalled thread must not fire a burst.
                next_tick = if now > next_tick + self.heartbeat {
                    now + self.heartbeat
                } else {
                    next_tick + self.heartbeat
                };
            }
            self.reclaim_expired();
            self.run_pipeline();
            self.observe_pass(pass_started.elapsed(), peer_messages, requests);
            if taken.shutdown {
                break;
            }
        }
        self.stop();
    }

    fn run_pipeline(&mut self) {
        let Ok(()) = self.pipeline.run(&mut self.node, &mut self.io);
        if std::mem::take(&mut self.io.peers_dirty) {
            self.io.peers.follow(
                &self.io.transport,
                self.node.membership(),
                self.node.leader(),
                &self.io.machine,
            );
        }
        self.publish_leader();
        self.io
            .pending
            .settle_transfers(self.node.leader(), self.node.transfer_target());
    }

    /// A pass that holds the loop this long delays heartbeats and their answers by as
    /// much: worth a log line, since a few of them look like a dead node to the others.
    fn observe_pass(&self, took: std::time::Duration, peer_messages: usize, requests: usize) {
        self.io.metrics.loop_pass_latency.observe(took);
        if took >= SLOW_PASS {
            warn!(
                node = self.io.node_id.0,
                millis = took.as_millis() as u64,
                peer_messages,
                requests,
                "slow raft loop pass"
            );
        }
    }

    fn finish_sync_if_done(&mut self) {
        match self.io.syncs.try_finished() {
            Ok(None) => {}
            Ok(Some(synced)) => {
                self.io.observe_sync(synced);
                let Ok(()) = self.pipeline.synced(&mut self.node, &mut self.io);
            }
            Err(_) => self.io.sync_thread_gone(),
        }
    }

    /// Makes everything written durable (releasing what waits for it), then fails what
    /// can no longer be answered.
    fn stop(mut self) {
        let Ok(()) = self.pipeline.finish(&mut self.node, &mut self.io);
        self.io.pending.fail_everything_at_stop();
        for request in self.inbox.take_remaining_requests() {
            request.refuse(|| ClusterError::Stopping);
        }
        info!(
            node = self.io.node_id.0,
            "raft loop stopped after its last sync"
        );
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it): what a leader's stamps
/// and read clock follow (`clock`). Only the driver reads the clock; apply never does.
pub(crate) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
