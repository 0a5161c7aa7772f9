//! One outbound peer: its queues and the task that keeps a connection to it.
//!
//! Each peer has two bounded queues feeding one connection: the control lane (every
//! message but snapshot chunks, `peer_queue_msgs_max` deep) and the snapshot lane
//! ([`SNAPSHOT_LANE_CHUNKS_MAX`] chunks). The writer always drains the control lane first
//! and puts at most one chunk in each write, so a heartbeat or vote waits behind at most one
//! snapshot chunk. `send` uses `try_send` on these queues, which never blocks and works
//! from any thread, async or not.
//!
//! Messages stay queued while the peer is unreachable and go out after reconnecting (Raft
//! tolerates stale and duplicate messages); a full queue makes `send` fail, which is how
//! the caller learns the peer is unreachable.

mod batch;
mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Message, MessageBody, NodeId};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SNAPSHOT_LANE_CHUNKS_MAX;
use crate::error::SendError;
use crate::handshake::ClusterId;
use crate::metrics::{add, PeerCounters};

/// What a peer's task needs to know; fixed for the task's life.
pub(crate) struct PeerContext {
    pub cluster_id: ClusterId,
    pub local_id: NodeId,
    pub peer_id: NodeId,
    pub frame_bytes_max: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    pub counters: Arc<PeerCounters>,
}

/// The receiving ends of a peer's queues, owned by its task across reconnections.
pub(crate) struct PeerQueues {
    pub control: mpsc::Receiver<Message>,
    pub snapshot: mpsc::Receiver<Message>,
}

/// The sending side of one peer, kept in the transport's peer map.
pub(crate) struct PeerHandle {
    control_tx: mpsc::Sender<Message>,
    snapshot_tx: mpsc::Sender<Message>,
    addr_tx: watch::Sender<SocketAddr>,
    cancel: CancellationToken,
    counters: Arc<PeerCounters>,
}

fn is_snapshot_chunk(message: &Message) -> bool {
    matches!(message.body, MessageBody::InstallSnapshot { .. })
}

impl PeerHandle {
    /// Creates the queues and spawns the peer's task on `runtime`, tracked by `tracker`.
    pub fn spawn(
        context: PeerContext,
        addr: SocketAddr,
        queue_msgs_max: usize,
        parent: &CancellationToken,
        tracker: &TaskTracker,
        runtime: &Handle,
    ) -> PeerHandle {
        let (control_tx, control) = mpsc::channel(queue_msgs_max);
        let (snapshot_tx, snapshot) = mpsc::channel(SNAPSHOT_LANE_CHUNKS_MAX);
        let (addr_tx, addr_rx) = watch::channel(addr);
        let cancel = parent.child_token();
        let counters = Arc::clone(&context.counters);
        let queues = PeerQueues { control, snapshot };
        let task = supervisor::supervise(queues, context, addr_rx, cancel.clone());
        tracker.spawn_on(task, runtime);
        PeerHandle {
            control_tx,
            snapshot_tx,
            addr_tx,
            cancel,
            counters,
        }
    }

    /// Queues `message` without blocking.
    ///
    /// # Errors
    /// `QueueFull` (the message is dropped and counted) or `Shutdown`.
    pub fn try_send(&self, message: Message) -> Result<(), SendError> {
        let to = message.to;
        let lane = if is_snapshot_chunk(&message) {
            &self.snapshot_tx
        } else {
            &self.control_tx
        };
        match lane.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                add(&self.counters.drops_queue_full, 1);
                Err(SendError::QueueFull {
                    to,
                    queue_msgs_max: lane.max_capacity(),
                })
            }
            Err(TrySendError::Closed(_)) => Err(SendError::Shutdown),
        }
    }

    /// Points the peer at a new address; the task drops its connection and redials.
    pub fn set_addr(&self, addr: SocketAddr) {
        self.addr_tx.send_if_modified(|current| {
            let changed = *current != addr;
            *current = addr;
            changed
        });
    }

    pub fn counters(&self) -> &PeerCounters {
        &self.counters
    }

    /// Stops the peer's task; its connection closes and queued messages are discarded.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}
