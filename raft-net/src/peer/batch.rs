//! Writing to one established connection: coalescing queued messages into one buffer and
//! one `write` call.
//!
//! Each pass waits for one message, then drains whatever else is queued on the control
//! lane into the same buffer (up to [`WRITE_BATCH_BYTES_MAX`]), adds at most one snapshot
//! chunk, and writes the buffer. Under load many messages share one write syscall; when idle,
//! a lone message goes out at once (no timer, so no added latency).

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use raft_core::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{is_snapshot_chunk, PeerContext, PeerQueues};
use crate::codec::{encode_frame, WireBody};
use crate::config::WRITE_BATCH_BYTES_MAX;
use crate::error::display_chain;
use crate::handshake::Handshake;
use crate::metrics::{add, PeerCounters};

/// Why a connection stopped being used.
pub(super) enum ConnectionEnd {
    /// The transport is shutting down or the peer was removed.
    Stopped,
    AddrChanged,
    /// A write failed, or the peer closed or reset the connection.
    Broken(io::Error),
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64")
}

/// Sends the handshake, then batches of queued messages, until the connection ends.
pub(super) async fn run_connection(
    stream: TcpStream,
    queues: &mut PeerQueues,
    context: &PeerContext,
    cancel: &CancellationToken,
    addr_rx: &mut watch::Receiver<SocketAddr>,
) -> ConnectionEnd {
    let (mut reader, mut writer) = stream.into_split();
    let counters = &*context.counters;
    let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES_MAX);
    let handshake = Handshake::new(context.cluster_id, context.local_id, context.peer_id);
    encode_frame(
        &WireBody::Handshake(handshake),
        context.frame_bytes_max,
        &mut batch,
    )
    .expect("a handshake is far smaller than FRAME_BYTES_MIN");
    if let Err(error) = write_batch(&mut writer, &mut batch, counters).await {
        return ConnectionEnd::Broken(error);
    }
    // The acceptor never sends on this connection, so any read result (EOF, reset or
    // stray bytes) means the connection is finished.
    let mut probe = [0u8; 1];
    loop {
        let first = tokio::select! {
            biased;
            () = cancel.cancelled() => return ConnectionEnd::Stopped,
            changed = addr_rx.changed() => return match changed {
                Ok(()) => ConnectionEnd::AddrChanged,
                Err(_) => ConnectionEnd::Stopped,
            },
            message = queues.control.recv() => message,
            message = queues.snapshot.recv() => message,
            read = reader.read(&mut probe) => return ConnectionEnd::Broken(match read {
                Ok(_) => io::Error::new(io::ErrorKind::ConnectionAborted, "peer closed or sent bytes"),
                Err(error) => error,
            }),
        };
        let Some(first) = first else {
            return ConnectionEnd::Stopped;
        };
        let msgs = fill_batch(first, queues, context, &mut batch);
        let bytes = as_u64(batch.len());
        let written = tokio::select! {
            biased;
            () = cancel.cancelled() => return ConnectionEnd::Stopped,
            written = write_batch(&mut writer, &mut batch, counters) => written,
        };
        match written {
            Ok(()) => {
                add(&counters.msgs_sent, msgs);
                add(&counters.bytes_sent, bytes);
            }
            Err(error) => {
                add(&counters.drops_connection_lost, msgs);
                return ConnectionEnd::Broken(error);
            }
        }
    }
}

/// Encodes `first` and whatever is queued behind it into `batch`; returns how many
/// messages went in. Bounded by [`WRITE_BATCH_BYTES_MAX`] and by the queues' capacity.
fn fill_batch(
    first: Message,
    queues: &mut PeerQueues,
    context: &PeerContext,
    batch: &mut BytesMut,
) -> u64 {
    let mut has_chunk = is_snapshot_chunk(&first);
    let mut msgs = fill_batch_encode(first, context, batch);
    while batch.len() < WRITE_BATCH_BYTES_MAX {
        let Ok(message) = queues.control.try_recv() else {
            break;
        };
        msgs += fill_batch_encode(message, context, batch);
    }
    while !has_chunk && batch.len() < WRITE_BATCH_BYTES_MAX {
        let Ok(chunk) = queues.snapshot.try_recv() else {
            break;
        };
        has_chunk = true;
        msgs += fill_batch_encode(chunk, context, batch);
    }
    msgs
}

/// Appends one message; returns 1, or 0 if it was too large to send (dropped, counted).
fn fill_batch_encode(message: Message, context: &PeerContext, batch: &mut BytesMut) -> u64 {
    let kind = message.body.kind();
    match encode_frame(&WireBody::Message(message), context.frame_bytes_max, batch) {
        Ok(_) => 1,
        Err(reason) => {
            add(&context.counters.drops_oversized, 1);
            error!(peer = %context.peer_id, kind, reason = %display_chain(&reason), "dropping message that cannot be sent");
            0
        }
    }
}

/// Writes all of `batch`, counting each successful `write` call (normally one).
async fn write_batch(
    writer: &mut OwnedWriteHalf,
    batch: &mut BytesMut,
    counters: &PeerCounters,
) -> io::Result<()> {
    // Bounded: every pass writes at least one byte or returns.
    while !batch.is_empty() {
        let written = writer.write(batch).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        add(&counters.write_calls, 1);
        batch.advance(written);
    }
    batch.clear();
    Ok(())
}
