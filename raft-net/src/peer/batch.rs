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
    // Created once, not per pass: polling a fresh `cancelled()` or `changed()` future
    // registers a waiter under a lock, which showed up as per-message cost.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let addr_changed = addr_rx.changed();
    tokio::pin!(addr_changed);
    loop {
        let first = tokio::select! {
            biased;
            () = &mut cancelled => return ConnectionEnd::Stopped,
            changed = &mut addr_changed => return match changed {
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
            () = &mut cancelled => return ConnectionEnd::Stopped,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameDecoder;
    use crate::handshake::ClusterId;
    use bytes::Bytes;
    use raft_core::{LogIndex, MessageBody, NodeId, SnapshotMeta, Term};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::mpsc;

    const CHUNK_BYTES: usize = 32 * 1024;

    fn context() -> PeerContext {
        PeerContext {
            cluster_id: ClusterId(1),
            local_id: NodeId(1),
            peer_id: NodeId(2),
            frame_bytes_max: 1024 * 1024,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            connect_timeout: Duration::from_millis(1),
            counters: Arc::new(PeerCounters::default()),
        }
    }

    fn message(body: MessageBody) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body,
        }
    }

    fn heartbeat() -> Message {
        message(MessageBody::Heartbeat {
            commit: LogIndex(1),
            read_round: 1,
        })
    }

    fn chunk() -> Message {
        message(MessageBody::InstallSnapshot {
            meta: SnapshotMeta::default(),
            offset: 0,
            data: Bytes::from(vec![0u8; CHUNK_BYTES]),
            done: false,
        })
    }

    /// Counts (heartbeats, chunks) in an encoded batch.
    fn kinds(batch: &mut BytesMut) -> (usize, usize) {
        let mut decoder = FrameDecoder::new(1024 * 1024);
        let (mut heartbeats, mut chunks) = (0, 0);
        while let Some((WireBody::Message(m), _)) = decoder.decode(batch).expect("valid") {
            match m.body {
                MessageBody::Heartbeat { .. } => heartbeats += 1,
                _ => chunks += 1,
            }
        }
        (heartbeats, chunks)
    }

    /// Heartbeats queued behind snapshot chunks go out in the next write with at most one
    /// chunk ahead of them, whichever lane the batch started from.
    #[test]
    fn batch_takes_all_control_messages_and_at_most_one_chunk() {
        for first_is_chunk in [false, true] {
            let (control_tx, control) = mpsc::channel(64);
            let (snapshot_tx, snapshot) = mpsc::channel(8);
            let mut queues = PeerQueues { control, snapshot };
            for _ in 0..3 {
                snapshot_tx.try_send(chunk()).expect("room");
            }
            for _ in 0..5 {
                control_tx.try_send(heartbeat()).expect("room");
            }
            let first = if first_is_chunk { chunk() } else { heartbeat() };
            let mut batch = BytesMut::new();
            let msgs = fill_batch(first, &mut queues, &context(), &mut batch);
            let expected_heartbeats = if first_is_chunk { 5 } else { 6 };
            assert_eq!(
                msgs,
                expected_heartbeats + 1,
                "first_is_chunk={first_is_chunk}"
            );
            assert_eq!(kinds(&mut batch), (expected_heartbeats as usize, 1));
            let left = 3 - usize::from(!first_is_chunk);
            assert_eq!(
                queues.snapshot.len(),
                left,
                "other chunks wait for the next batch"
            );
        }
    }

    #[test]
    fn batch_stops_growing_at_the_byte_limit() {
        let (control_tx, control) = mpsc::channel(64);
        let (_snapshot_tx, snapshot) = mpsc::channel(1);
        let mut queues = PeerQueues { control, snapshot };
        for _ in 0..20 {
            control_tx.try_send(chunk_as_append()).expect("room");
        }
        let mut batch = BytesMut::new();
        let msgs = fill_batch(chunk_as_append(), &mut queues, &context(), &mut batch);
        assert!(batch.len() >= WRITE_BATCH_BYTES_MAX, "{}", batch.len());
        assert!(
            batch.len() < WRITE_BATCH_BYTES_MAX + 2 * CHUNK_BYTES,
            "{}",
            batch.len()
        );
        assert_eq!(
            u64::try_from(queues.control.len()).expect("small") + msgs,
            21
        );
    }

    fn chunk_as_append() -> Message {
        message(MessageBody::Append {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![raft_core::Entry {
                index: LogIndex(1),
                term: Term(1),
                payload: raft_core::EntryPayload::Command(Bytes::from(vec![1u8; CHUNK_BYTES])),
            }],
            leader_commit: LogIndex(0),
        })
    }

    #[test]
    fn oversized_message_is_dropped_and_counted() {
        let (_control_tx, control) = mpsc::channel(1);
        let (_snapshot_tx, snapshot) = mpsc::channel(1);
        let mut queues = PeerQueues { control, snapshot };
        let context = PeerContext {
            frame_bytes_max: 1024,
            ..context()
        };
        let mut batch = BytesMut::new();
        assert_eq!(fill_batch(chunk(), &mut queues, &context, &mut batch), 0);
        assert!(batch.is_empty());
        let dropped = context
            .counters
            .drops_oversized
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped, 1);
    }
}
