//! The accept loop and the task that serves one accepted connection.
//!
//! Each accepted connection gets its own task. It reads the dialer's hello (within
//! `handshake_timeout`), asks [`Links`](crate::link::Links) whether to accept it (one
//! connection per pair; see that module), writes the welcome, hands the write half to
//! the peer's task, and then stays as the connection's reader (writing keepalives on it
//! too, until the peer's task takes it: see `liveness`). A hello that is invalid
//! closes the connection with a warning and a counter; a valid one that loses the
//! tie-break is closed without a welcome and counted (`connections_refused`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::codec::{encode_frame, WireBody};
use crate::connection::{log_end, read_until_closed, Closed, ReadSide, Shared};
use crate::handshake::Handshake;
use crate::inbound::InboundDecoder;
use crate::link::{AcceptDecision, Accepted};
use crate::liveness::keep_parked_alive;
use crate::metrics::add;
use crate::socket;

/// Pause after a failed `accept` (say, out of file descriptors) so the loop cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts until cancelled. Each pass handles one accept result.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    connection_permits: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                warn!(error = %error, "accepting a peer connection failed");
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        add(&shared.metrics.connections_accepted, 1);
        let Ok(permit) = Arc::clone(&connection_permits).try_acquire_owned() else {
            add(&shared.metrics.connections_over_limit, 1);
            warn!(%remote, limit = shared.config.inbound_connections_max, "too many peer connections; closing new one");
            continue;
        };
        let task = serve_connection(stream, remote, permit, Arc::clone(&shared));
        shared.tracker.spawn(task);
    }
}

/// Serves one accepted connection until it ends: handshake, welcome, then reading.
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let config = &shared.config;
    if let Err(error) = socket::configure(&stream, config) {
        log_end(remote, None, Ok(Closed::Io(error)), &shared.metrics, None);
        return;
    }
    let (reader, mut writer) = stream.into_split();
    let decoder = InboundDecoder::new(config.cluster_id, config.node_id, config.frame_bytes_max);
    let mut side = ReadSide::new(reader, decoder, remote);
    let cancel = shared.cancel.child_token();
    let peer = match side.read_handshake(config.handshake_timeout, &cancel).await {
        Ok(Ok(peer)) => peer,
        Ok(Err(closed)) => return log_end(remote, None, Ok(closed), &shared.metrics, None),
        Err(reason) => return log_end(remote, None, Err(reason), &shared.metrics, None),
    };
    let id = shared.links.next_id();
    match shared.links.accept_begin(peer, id, &cancel) {
        AcceptDecision::Refuse => {
            add(&shared.metrics.connections_refused, 1);
            debug!(%remote, %peer, "refusing peer's connection: ours to it wins the tie-break");
            return;
        }
        AcceptDecision::Accept { replaced } => {
            if replaced {
                add(&shared.metrics.connections_replaced, 1);
                debug!(%remote, %peer, "new connection from peer replaces the older one");
            }
        }
    }
    if let Err(error) = serve_connection_welcome(&mut writer, &shared, peer).await {
        shared.links.ended(peer, id);
        return log_end(
            remote,
            Some(peer),
            Ok(Closed::Io(error)),
            &shared.metrics,
            None,
        );
    }
    let accepted = Accepted {
        id,
        writer,
        cancel: cancel.clone(),
    };
    let Some(reconnect) = shared.links.accept_finish(peer, accepted) else {
        return log_end(
            remote,
            Some(peer),
            Ok(Closed::Cancelled),
            &shared.metrics,
            None,
        );
    };
    let counters = shared.metrics.peer(peer);
    add(&counters.accepts, 1);
    add(&counters.reconnects, u64::from(reconnect));
    debug!(%remote, %peer, "peer connection established");
    let reader = read_until_closed(side, peer, id, cancel.clone(), Arc::clone(&shared));
    let parked = keep_parked_alive(&shared, peer, id, &cancel, &counters);
    tokio::join!(reader, parked);
}

/// Writes the welcome, within `handshake_timeout` (a new connection's send buffer is
/// empty, so this is one `write` unless the peer is gone).
async fn serve_connection_welcome(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    peer: raft_core::NodeId,
) -> io::Result<()> {
    let config = &shared.config;
    let welcome = Handshake::new(config.cluster_id, config.node_id, peer);
    let mut frame = BytesMut::new();
    encode_frame(
        &WireBody::Welcome(welcome),
        config.frame_bytes_max,
        &mut frame,
    )
    .expect("a welcome is far smaller than FRAME_BYTES_MIN");
    tokio::time::timeout(config.handshake_timeout, writer.write_all(&frame))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "welcome not written in time"))?
}
