//! One peer: its queues and the task that keeps the pair's one connection and writes to
//! it (the connection's reader is a task of its own; see `connection`).
//!
//! Each peer has two bounded queues feeding one connection: the control lane (every
//! message but snapshot chunks, `peer_queue_msgs_max` deep) and the snapshot lane
//! ([`SNAPSHOT_LANE_CHUNKS_MAX`] chunks). The writer always drains the control lane first
//! and puts at most one chunk in each write, so a heartbeat or vote waits behind at most one
//! snapshot chunk. `send` uses `try_send` on these queues, which never blocks and works
//! from any thread, async or not.
//!
//! When the peer is connected, idle and quiet, `send` skips the queue and writes the frame
//! to the socket itself (see `wire`), which saves the hand-off to the writer task.
//!
//! Messages stay queued while the peer is unreachable and go out after reconnecting (Raft
//! tolerates stale and duplicate messages); a full queue makes `send` fail, which is how
//! the caller learns the peer is unreachable.

mod batch;
mod supervisor;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_core::{Message, MessageBody, NodeId};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tracing::{error, info};

use crate::config::{DIRECT_WRITE_PAYLOAD_BYTES_MAX, SNAPSHOT_LANE_CHUNKS_MAX};
use crate::error::{display_chain, SendError};
use crate::metrics::{add, PeerCounters};
pub(crate) use supervisor::PeerLink;
pub(crate) use wire::Wire;
use wire::{Direct, Outbound, WireState};

/// What a peer's task needs to know; fixed for the task's life.
pub(crate) struct PeerContext {
    pub peer_id: NodeId,
    pub frame_bytes_max: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub keepalive_interval: Duration,
    pub counters: Arc<PeerCounters>,
    pub wire: Arc<Wire>,
}

/// The receiving ends of a peer's queues, owned by its task across reconnections.
pub(crate) struct PeerQueues {
    pub control: mpsc::Receiver<Outbound>,
    pub snapshot: mpsc::Receiver<Message>,
}

/// The sending side of one peer, kept in the transport's peer map.
pub(crate) struct PeerHandle {
    control_tx: mpsc::Sender<Outbound>,
    snapshot_tx: mpsc::Sender<Message>,
    addr_tx: watch::Sender<SocketAddr>,
    cancel: CancellationToken,
    counters: Arc<PeerCounters>,
    wire: Arc<Wire>,
    peer_id: NodeId,
    frame_bytes_max: usize,
}

fn is_snapshot_chunk(message: &Message) -> bool {
    matches!(message.body, MessageBody::InstallSnapshot { .. })
}

impl PeerHandle {
    /// Creates the queues and spawns the peer's task on `runtime`, tracked by `tracker`.
    pub fn spawn(
        context: PeerContext,
        link: PeerLink,
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
        let wire = Arc::clone(&context.wire);
        let (peer_id, frame_bytes_max) = (context.peer_id, context.frame_bytes_max);
        let queues = PeerQueues { control, snapshot };
        let task = supervisor::supervise(queues, context, link, addr_rx, cancel.clone());
        tracker.spawn_on(task, runtime);
        PeerHandle {
            control_tx,
            snapshot_tx,
            addr_tx,
            cancel,
            counters,
            wire,
            peer_id,
            frame_bytes_max,
        }
    }

    /// Writes `message` to the socket at once if the peer is idle and quiet (see `wire`),
    /// otherwise queues it; never blocks (the direct write is non-blocking).
    ///
    /// # Errors
    /// `QueueFull` (the message is dropped and counted) or `Shutdown`.
    pub fn try_send(&self, message: Message) -> Result<(), SendError> {
        let mut state = self.wire.lock();
        if is_snapshot_chunk(&message) {
            return self.try_send_enqueue(&mut state, &self.snapshot_tx, message);
        }
        let now = Instant::now();
        let quiet = state.is_quiet(now, self.wire.coalesce_window());
        let small = message.body.payload_bytes()
            <= u64::try_from(DIRECT_WRITE_PAYLOAD_BYTES_MAX).expect("usize fits in u64");
        if !(quiet && small && state.direct_open()) {
            state.note_send_end(now);
            return self.try_send_enqueue(&mut state, &self.control_tx, Outbound::Message(message));
        }
        let sent = self.try_send_direct(&mut state, message, now);
        state.note_send_end(Instant::now());
        sent
    }

    /// Writes `message` straight to the socket at `now` (the caller checked that the path
    /// is open), queueing whatever the kernel did not take.
    fn try_send_direct(
        &self,
        state: &mut WireState,
        message: Message,
        now: Instant,
    ) -> Result<(), SendError> {
        let counters = &*self.counters;
        match state.try_write_direct(message, self.frame_bytes_max, now) {
            Direct::Written { frame_bytes } => {
                add(&counters.write_calls, 1);
                add(&counters.write_calls_from_send, 1);
                add(&counters.msgs_sent, 1);
                add(
                    &counters.bytes_sent,
                    u64::try_from(frame_bytes).expect("usize fits in u64"),
                );
                Ok(())
            }
            Direct::Partial { tail, wrote } => {
                add(&counters.write_calls, u64::from(wrote));
                add(&counters.write_calls_from_send, u64::from(wrote));
                // Not refused for lack of room: nothing was unwritten, so the lane is empty.
                self.try_send_enqueue(state, &self.control_tx, tail)
            }
            Direct::Declined(message) => {
                self.try_send_enqueue(state, &self.control_tx, Outbound::Message(message))
            }
            Direct::Failed(cause) => {
                add(&counters.drops_connection_lost, 1);
                info!(peer = %self.peer_id, error = %cause, "direct write to peer failed; its writer will reconnect");
                Ok(())
            }
            Direct::TooLarge(reason) => {
                add(&counters.drops_oversized, 1);
                error!(peer = %self.peer_id, reason = %display_chain(&reason), "dropping message that cannot be sent");
                Ok(())
            }
        }
    }

    /// Queues `item` on `lane`, counting it as unwritten; the caller holds the wire lock, so
    /// no direct write can slip in between the check and the queueing.
    fn try_send_enqueue<T>(
        &self,
        state: &mut WireState,
        lane: &mpsc::Sender<T>,
        item: T,
    ) -> Result<(), SendError> {
        match lane.try_send(item) {
            Ok(()) => {
                state.unwritten += 1;
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                add(&self.counters.drops_queue_full, 1);
                Err(SendError::QueueFull {
                    to: self.peer_id,
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
