//! Writing to one established connection: coalescing queued messages into one buffer and
//! one `write` call.
//!
//! Each pass waits for one message, then drains whatever else is queued on the control
//! lane into the same buffer (up to [`WRITE_BATCH_BYTES_MAX`]), adds at most one snapshot
//! chunk, and writes the buffer. Under load many messages share one write syscall; when idle,
//! a lone message goes out at once (no timer, so no added latency).
//!
//! Once the handshake is done the connection is published to the peer's `Wire`, so
//! that `send` can write to it directly while nothing is queued; it is withdrawn before the
//! connection is dropped. A frame `send` wrote only in part leaves its tail at the head of
//! the control lane, which this writer drains before anything else.
//!
//! Under TLS the batch is sealed into TLS records just before it is written (`record`);
//! a tail, already sealed by `send`, goes out ahead of it as it is.
//!
//! When nothing has been written to the connection (by this writer or by `send`) for
//! `keepalive_interval`, the writer writes a keepalive frame (see `liveness`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::sync::{watch, Notify};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::wire::{Outbound, Wire};
use super::{is_snapshot_chunk, PeerContext, PeerQueues};
use crate::codec::{encode_frame, WireBody};
use crate::config::WRITE_BATCH_BYTES_MAX;
use crate::error::display_chain;
use crate::liveness::Due;
use crate::metrics::{add, PeerCounters};
use crate::record::WriteSide;

/// Why a connection stopped being used.
pub(super) enum ConnectionEnd {
    /// The transport is shutting down or the peer was removed.
    Stopped,
    AddrChanged,
    /// A write failed, the reader saw the connection end, or a newer connection replaced
    /// this one.
    Broken(io::Error),
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64")
}

/// Closes the direct path when the connection it points to is being dropped, however
/// `run_connection` ends (including being dropped mid-await).
struct WithdrawOnDrop<'a>(&'a Wire);

impl Drop for WithdrawOnDrop<'_> {
    fn drop(&mut self) {
        self.0.withdraw();
    }
}

/// The write half of an established connection (its welcome read or written).
pub(super) struct Writer {
    pub half: WriteSide,
    /// Cancelled when the connection ends; this writer cancels it too when it stops, so
    /// the reader half stops with it.
    pub cancel: CancellationToken,
    /// Whether we dialled it: only then does a new peer address end it (the peer dialled
    /// an accepted connection, so our address for the peer played no part).
    pub dialled: bool,
}

/// Cancels the connection when the writer stops, however it stops.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Writes batches of queued messages, probes when asked and keepalives when idle, until
/// the connection ends.
pub(super) async fn run_connection(
    writer: Writer,
    queues: &mut PeerQueues,
    context: &PeerContext,
    probe: &Notify,
    cancel: &CancellationToken,
    addr_rx: &mut watch::Receiver<SocketAddr>,
) -> ConnectionEnd {
    let Writer {
        half,
        cancel: connection_cancel,
        dialled,
    } = writer;
    let _stop_reader = CancelOnDrop(connection_cancel.clone());
    let half = Arc::new(half);
    let counters = &*context.counters;
    let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES_MAX);
    // The batch as TLS records (TLS only; stays empty otherwise).
    let mut sealed = BytesMut::new();
    // Declared after `half`, so it is dropped (withdrawing the shared handle) first.
    let _withdraw = WithdrawOnDrop(&context.wire);
    let connection = context.wire.publish(Arc::clone(&half));
    // Created once, not per pass: polling a fresh `cancelled()` or `changed()` future
    // registers a waiter under a lock, which showed up as per-message cost.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let connection_ended = connection_cancel.cancelled();
    tokio::pin!(connection_ended);
    let addr_changed = addr_rx.changed();
    tokio::pin!(addr_changed);
    // Fires at most once per interval; re-armed from the last write when it does.
    let keepalive = tokio::time::sleep(context.keepalive_interval);
    tokio::pin!(keepalive);
    loop {
        let first = tokio::select! {
            biased;
            () = &mut cancelled => return ConnectionEnd::Stopped,
            () = &mut connection_ended => return ConnectionEnd::Broken(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed by the peer, replaced, or failed while reading",
            )),
            changed = &mut addr_changed, if dialled => return match changed {
                Ok(()) => ConnectionEnd::AddrChanged,
                Err(_) => ConnectionEnd::Stopped,
            },
            // Control before snapshot (`biased`): a direct write's unwritten tail sits at the
            // head of the control lane and must be the next bytes on the connection.
            item = queues.control.recv() => item,
            message = queues.snapshot.recv() => message.map(Outbound::Message),
            () = probe.notified() => {
                // Anything queued makes the probe unneeded: its write tests the connection.
                if !context.wire.reserve_if_idle() {
                    continue;
                }
                Some(Outbound::Probe)
            }
            () = &mut keepalive => {
                let Some(due) = run_connection_keepalive(context, keepalive.as_mut()) else {
                    continue;
                };
                Some(due)
            }
        };
        let Some(first) = first else {
            return ConnectionEnd::Stopped;
        };
        let filled = fill_batch(first, queues, context, connection, &mut batch);
        let written = tokio::select! {
            biased;
            () = &mut cancelled => Err(io::Error::other("transport stopped")),
            () = &mut connection_ended => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection ended during a write",
            )),
            written = write_batch(&half, &mut batch, filled.raw_bytes, &mut sealed, counters) => written,
        };
        if let Err(error) = run_connection_account(context, &filled, written) {
            batch.clear();
            sealed.clear();
            if cancel.is_cancelled() {
                return ConnectionEnd::Stopped;
            }
            return ConnectionEnd::Broken(error);
        }
    }
}

/// The keepalive timer fired: returns the keepalive to write if one is due (the socket is
/// then reserved for it), and re-arms the timer for the next check either way.
fn run_connection_keepalive(context: &PeerContext, timer: Pin<&mut Sleep>) -> Option<Outbound> {
    let now = Instant::now();
    let interval = context.keepalive_interval;
    match context.wire.keepalive_due(interval, now) {
        Due::Now => {
            timer.reset((now + interval).into());
            Some(Outbound::Keepalive)
        }
        Due::At(deadline) => {
            timer.reset(deadline.into());
            None
        }
    }
}

/// Settles one batch's write: hands the socket back to `send` (see `wire`), records when
/// it was written, and counts what went out or was lost. Returns the write's result.
fn run_connection_account(
    context: &PeerContext,
    filled: &Filled,
    written: io::Result<()>,
) -> io::Result<()> {
    let counters = &*context.counters;
    let wrote_at = written.is_ok().then(Instant::now);
    context.wire.written(filled.items, wrote_at);
    if written.is_ok() {
        add(&counters.msgs_sent, filled.msgs);
        add(&counters.bytes_sent, filled.bytes);
        add(&counters.keepalives_sent, filled.keepalives);
    } else {
        add(&counters.drops_connection_lost, filled.msgs);
    }
    written
}

/// What one batch holds.
#[derive(Debug, PartialEq, Eq)]
struct Filled {
    /// Queue items taken (each was counted as unwritten).
    items: usize,
    /// Messages whose frame the batch completes (dropped oversized ones excluded).
    msgs: u64,
    /// Those messages' whole frame lengths (a tail counts its whole frame).
    bytes: u64,
    /// Keepalive frames (not messages: counted in neither `msgs` nor `bytes`).
    keepalives: u64,
    /// Leading bytes of the batch that are already wire bytes (a tail), not frames to seal.
    raw_bytes: usize,
}

/// Encodes `first` and whatever is queued behind it into `batch`, for connection number
/// `connection`. Bounded by [`WRITE_BATCH_BYTES_MAX`] and by the queues' capacity.
fn fill_batch(
    first: Outbound,
    queues: &mut PeerQueues,
    context: &PeerContext,
    connection: u64,
    batch: &mut BytesMut,
) -> Filled {
    let mut has_chunk = matches!(&first, Outbound::Message(m) if is_snapshot_chunk(m));
    let mut filled = Filled {
        items: 0,
        msgs: 0,
        bytes: 0,
        keepalives: 0,
        raw_bytes: 0,
    };
    fill_batch_add(first, context, connection, batch, &mut filled);
    while batch.len() < WRITE_BATCH_BYTES_MAX {
        let Ok(item) = queues.control.try_recv() else {
            break;
        };
        fill_batch_add(item, context, connection, batch, &mut filled);
    }
    while !has_chunk && batch.len() < WRITE_BATCH_BYTES_MAX {
        let Ok(chunk) = queues.snapshot.try_recv() else {
            break;
        };
        has_chunk = true;
        fill_batch_add(
            Outbound::Message(chunk),
            context,
            connection,
            batch,
            &mut filled,
        );
    }
    filled
}

/// Appends one item. Dropped and counted instead: an oversized message, and the tail of a
/// frame begun on an earlier connection (the receiver would read it as garbage).
fn fill_batch_add(
    item: Outbound,
    context: &PeerContext,
    connection: u64,
    batch: &mut BytesMut,
    filled: &mut Filled,
) {
    filled.items += 1;
    let frame_bytes = match item {
        Outbound::Tail {
            bytes,
            frame_bytes,
            connection: begun_on,
        } => {
            if begun_on != connection {
                add(&context.counters.drops_connection_lost, 1);
                return;
            }
            // A tail is queued only while nothing else is unwritten, so it heads its batch;
            // the bytes after it are sealed, it is not.
            assert_eq!(
                batch.len(),
                0,
                "a tail must head its batch, but {} bytes precede it",
                batch.len()
            );
            batch.extend_from_slice(&bytes);
            filled.raw_bytes = bytes.len();
            frame_bytes
        }
        Outbound::Probe => {
            encode_frame(&WireBody::Probe, context.frame_bytes_max, batch)
                .expect("a probe is far smaller than FRAME_BYTES_MIN");
            // Not a message: counted in neither `msgs_sent` nor `bytes_sent`.
            return;
        }
        Outbound::Keepalive => {
            encode_frame(&WireBody::Keepalive, context.frame_bytes_max, batch)
                .expect("a keepalive is far smaller than FRAME_BYTES_MIN");
            filled.keepalives += 1;
            return;
        }
        Outbound::Message(message) => {
            let kind = message.body.kind();
            match encode_frame(&WireBody::Message(message), context.frame_bytes_max, batch) {
                Ok(frame_bytes) => frame_bytes,
                Err(reason) => {
                    add(&context.counters.drops_oversized, 1);
                    error!(peer = %context.peer_id, kind, reason = %display_chain(&reason), "dropping message that cannot be sent");
                    return;
                }
            }
        }
    };
    filled.msgs += 1;
    filled.bytes += as_u64(frame_bytes);
}

/// Writes all of `batch` (under TLS, its first `raw_bytes` as they are and the rest sealed
/// into `sealed`), counting each successful `write` call (normally one).
async fn write_batch(
    writer: &WriteSide,
    batch: &mut BytesMut,
    raw_bytes: usize,
    sealed: &mut BytesMut,
    counters: &PeerCounters,
) -> io::Result<()> {
    let out = if writer.session.is_tls() {
        sealed.clear();
        sealed.extend_from_slice(&batch[..raw_bytes]);
        writer.session.seal(&batch[raw_bytes..], sealed)?;
        batch.clear();
        sealed
    } else {
        batch
    };
    // Bounded: every pass writes at least one byte, waits for room, or returns.
    while !out.is_empty() {
        match writer.half.try_write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                add(&counters.write_calls, 1);
                out.advance(written);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                writer.half.writable().await?
            }
            Err(error) => return Err(error),
        }
    }
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameDecoder;
    use bytes::Bytes;
    use raft_core::{LogIndex, Message, MessageBody, NodeId, SnapshotMeta, Term};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::mpsc;

    const CHUNK_BYTES: usize = 32 * 1024;

    fn context() -> PeerContext {
        PeerContext {
            peer_id: NodeId(2),
            frame_bytes_max: 1024 * 1024,
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            keepalive_interval: Duration::from_millis(50),
            counters: Arc::new(PeerCounters::default()),
            wire: Arc::new(Wire::new(Duration::ZERO)),
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
                control_tx
                    .try_send(Outbound::Message(heartbeat()))
                    .expect("room");
            }
            let first = if first_is_chunk { chunk() } else { heartbeat() };
            let mut batch = BytesMut::new();
            let msgs = fill_batch(
                Outbound::Message(first),
                &mut queues,
                &context(),
                1,
                &mut batch,
            )
            .msgs;
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
            control_tx
                .try_send(Outbound::Message(chunk_as_append()))
                .expect("room");
        }
        let mut batch = BytesMut::new();
        let msgs = fill_batch(
            Outbound::Message(chunk_as_append()),
            &mut queues,
            &context(),
            1,
            &mut batch,
        )
        .msgs;
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
        let filled = fill_batch(
            Outbound::Message(chunk()),
            &mut queues,
            &context,
            1,
            &mut batch,
        );
        assert_eq!((filled.items, filled.msgs), (1, 0));
        assert!(batch.is_empty());
        let dropped = context
            .counters
            .drops_oversized
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped, 1);
    }

    /// A frame's tail is written only on the connection its head went out on: after a
    /// reconnect it would be garbage to the receiver, so it is dropped and counted.
    #[test]
    fn tail_from_an_earlier_connection_is_dropped() {
        let (control_tx, control) = mpsc::channel(4);
        let (_snapshot_tx, snapshot) = mpsc::channel(1);
        let mut queues = PeerQueues { control, snapshot };
        control_tx
            .try_send(Outbound::Message(heartbeat()))
            .expect("room");
        let context = context();
        let tail = |connection| Outbound::Tail {
            bytes: Bytes::from_static(b"rest"),
            frame_bytes: 10,
            connection,
        };
        let mut batch = BytesMut::new();
        let stale = fill_batch(tail(1), &mut queues, &context, 2, &mut batch);
        assert_eq!(
            (stale.items, stale.msgs),
            (2, 1),
            "the heartbeat still goes"
        );
        assert_eq!(kinds(&mut batch), (1, 0));
        let lost = context
            .counters
            .drops_connection_lost
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(lost, 1);
        let mut batch = BytesMut::new();
        let current = fill_batch(tail(2), &mut queues, &context, 2, &mut batch);
        assert_eq!((current.items, current.msgs, current.bytes), (1, 1, 10));
        assert_eq!(&batch[..], b"rest");
    }
}
