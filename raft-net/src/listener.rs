//! The accept loop and the task that serves one accepted connection.
//!
//! Each accepted connection gets its own task, which reads bytes, runs them through an
//! [`InboundDecoder`] and hands messages to the caller's bounded channel. When that channel
//! is full the task waits, stops reading, and TCP flow control pushes back on that one
//! sender; other connections keep their own pace. Any [`RejectReason`] closes only the
//! connection it arose on, with a warning and a counter.
//!
//! A peer has at most one live inbound connection: a newer handshake from the same node id
//! closes the older connection (after a restart the old one may linger half-open).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use raft_core::{Message, NodeId};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::TransportConfig;
use crate::error::{display_chain, RejectReason};
use crate::inbound::{InboundDecoder, InboundEvent};
use crate::metrics::{add, Metrics, PeerCounters};

/// Spare room ensured before each read: large enough that a burst of small frames arrives
/// in one read, small enough to be irrelevant per connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Pause after a failed `accept` (say, out of file descriptors) so the loop cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

pub(crate) struct ListenerContext {
    pub config: TransportConfig,
    pub metrics: Arc<Metrics>,
    pub inbound_tx: mpsc::Sender<Message>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    /// One permit per open inbound connection (`inbound_connections_max`).
    pub connection_permits: Arc<Semaphore>,
    /// The live inbound connection of each peer: its id and its cancel token.
    pub live: Mutex<HashMap<NodeId, (u64, CancellationToken)>>,
}

/// Accepts until cancelled. Each pass handles one accept result.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: Arc<ListenerContext>) {
    let mut next_connection_id = 0u64;
    loop {
        let accepted = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                warn!(error = %error, "accepting a peer connection failed");
                tokio::select! {
                    () = ctx.cancel.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        add(&ctx.metrics.connections_accepted, 1);
        let Ok(permit) = Arc::clone(&ctx.connection_permits).try_acquire_owned() else {
            add(&ctx.metrics.connections_over_limit, 1);
            warn!(%remote, limit = ctx.config.inbound_connections_max, "too many peer connections; closing new one");
            continue;
        };
        next_connection_id += 1;
        let task = serve_connection(stream, remote, next_connection_id, permit, Arc::clone(&ctx));
        ctx.tracker.spawn(task);
    }
}

/// How a connection ended without a rejection.
enum Closed {
    Eof,
    Cancelled,
    ReceiverGone,
    Io(io::Error),
}

/// Serves one accepted connection until it ends, then logs and counts how it ended.
async fn serve_connection(
    mut stream: TcpStream,
    remote: SocketAddr,
    connection_id: u64,
    _permit: OwnedSemaphorePermit,
    ctx: Arc<ListenerContext>,
) {
    let config = &ctx.config;
    let mut decoder =
        InboundDecoder::new(config.cluster_id, config.node_id, config.frame_bytes_max);
    let cancel = ctx.cancel.child_token();
    let mut counters = None;
    let outcome = serve_connection_loop(
        &mut stream,
        &mut decoder,
        &cancel,
        &ctx,
        connection_id,
        &mut counters,
    )
    .await;
    let peer = decoder.peer();
    if let Some(peer) = peer {
        let mut live = ctx
            .live
            .lock()
            .expect("live-connection lock is never held across a panic");
        if live.get(&peer).is_some_and(|(id, _)| *id == connection_id) {
            live.remove(&peer);
        }
    }
    match outcome {
        Ok(Closed::Eof) => info!(%remote, ?peer, "peer closed its connection"),
        Ok(Closed::Cancelled) => {
            debug!(%remote, ?peer, "peer connection closed (shutdown or replaced)")
        }
        Ok(Closed::ReceiverGone) => debug!(%remote, ?peer, "inbound receiver dropped; closing"),
        Ok(Closed::Io(error)) => info!(%remote, ?peer, error = %error, "peer connection failed"),
        Err(reason) => {
            warn!(%remote, ?peer, reason = %display_chain(&reason), "closing peer connection");
            ctx.metrics
                .count_rejection(reason.class(), counters.as_deref());
        }
    }
}

/// Reads, decodes and forwards until the connection ends. Each pass forwards every whole
/// frame buffered (bounded by the buffer, at least 5 bytes a frame), then reads once.
async fn serve_connection_loop(
    stream: &mut TcpStream,
    decoder: &mut InboundDecoder,
    cancel: &CancellationToken,
    ctx: &ListenerContext,
    connection_id: u64,
    counters: &mut Option<Arc<PeerCounters>>,
) -> Result<Closed, RejectReason> {
    // Dropped once the handshake is accepted. Built once, not per read: `select!` evaluates
    // a disabled branch's future too, and a fresh `Sleep` per read showed up per message.
    let mut handshake_timer = Some(Box::pin(tokio::time::sleep(ctx.config.handshake_timeout)));
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    // Created once: a fresh `cancelled()` per pass would register a waiter under a lock.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        while let Some(event) = decoder.next_event(&mut buf)? {
            match event {
                InboundEvent::Established { peer } => {
                    handshake_timer = None;
                    *counters = Some(ctx.metrics.peer(peer));
                    serve_connection_replace_older(ctx, peer, connection_id, cancel);
                    debug!(%peer, "peer connection established");
                }
                InboundEvent::Message {
                    message,
                    wire_bytes,
                } => {
                    let peer_counters = counters.as_ref().expect("messages follow the handshake");
                    add(&peer_counters.msgs_received, 1);
                    add(
                        &peer_counters.bytes_received,
                        u64::try_from(wire_bytes).expect("usize fits in u64"),
                    );
                    // Fast path without a wait; only a full channel needs the select.
                    let message = match ctx.inbound_tx.try_send(message) {
                        Ok(()) => continue,
                        Err(TrySendError::Closed(_)) => return Ok(Closed::ReceiverGone),
                        Err(TrySendError::Full(message)) => message,
                    };
                    tokio::select! {
                        biased;
                        () = &mut cancelled => return Ok(Closed::Cancelled),
                        sent = ctx.inbound_tx.send(message) => if sent.is_err() {
                            return Ok(Closed::ReceiverGone);
                        },
                    }
                }
            }
        }
        buf.reserve(READ_CHUNK_BYTES);
        let read = tokio::select! {
            biased;
            () = &mut cancelled => return Ok(Closed::Cancelled),
            () = async { handshake_timer.as_mut().expect("branch enabled only while set").await }, if handshake_timer.is_some() => {
                let timeout_ms = ctx.config.handshake_timeout.as_millis();
                return Err(RejectReason::HandshakeTimeout { timeout_ms });
            }
            read = stream.read_buf(&mut buf) => read,
        };
        match read {
            Ok(0) => return decoder.finish(&buf).map(|()| Closed::Eof),
            Ok(_) => {}
            Err(error) => return Ok(Closed::Io(error)),
        }
    }
}

/// Records this connection as `peer`'s live one and closes the one it replaces.
fn serve_connection_replace_older(
    ctx: &ListenerContext,
    peer: NodeId,
    connection_id: u64,
    cancel: &CancellationToken,
) {
    let mut live = ctx
        .live
        .lock()
        .expect("live-connection lock is never held across a panic");
    if let Some((older_id, older)) = live.insert(peer, (connection_id, cancel.clone())) {
        info!(%peer, older_id, connection_id, "new connection from peer replaces its older one");
        older.cancel();
    }
}
