//! Reading one connection, whichever end dialled it: the handshake frame, then messages
//! handed to the caller (its bounded channel, or its handler) until the connection ends.
//!
//! When that channel is full the reader waits, stops reading, and TCP flow control pushes
//! back on that one peer; other connections keep their own pace, and the same
//! connection's other direction is unaffected (writes never wait for reads). A handler is
//! called on the reader task itself, which saves the consumer a task wake-up per message;
//! it never waits, so it sheds load by dropping instead (counted). Any [`RejectReason`]
//! closes only the connection it arose on, with a warning and a counter.
//!
//! Under TLS the reader reads TLS records and opens them (`record`) before decoding; the
//! handshake's own replies (a challenge or a proof) are written by the reader's caller
//! as the decoder asks for them.
//!
//! The reader also watches for silence (see `liveness`): once nothing at all has arrived
//! for `silence_timeout`, it closes the connection with a reset, so the peer's task
//! redials. Time spent waiting for a full inbound channel is not silence: the reader was
//! not reading then.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raft_core::{Message, NodeId};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::TransportConfig;
use crate::error::{display_chain, RejectReason};
use crate::inbound::{InboundDecoder, InboundEvent};
use crate::link::Links;
use crate::liveness::{due, Due};
use crate::metrics::{add, Metrics, PeerCounters};
use crate::record::{Opened, Session, WriteSide};
use crate::socket::reset_on_close;
use crate::tls::TlsIdentity;
use crate::transport::Delivery;

/// Spare room ensured before each read: large enough that a burst of small frames arrives
/// in one read, small enough to be irrelevant per connection.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What every connection task needs; one per transport.
pub(crate) struct Shared {
    pub config: TransportConfig,
    pub metrics: Arc<Metrics>,
    pub inbound: Inbound,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub links: Links,
    /// The TLS identity new connections use (`None`: plain TCP); replaced by a reload,
    /// which leaves established connections as they are.
    pub tls: std::sync::RwLock<Option<TlsIdentity>>,
}

impl Shared {
    /// The TLS identity for a new connection, if the peer port uses TLS.
    pub fn tls_identity(&self) -> Option<TlsIdentity> {
        self.tls
            .read()
            .expect("TLS identity lock is never held across a panic")
            .clone()
    }
}

/// Where decoded messages go (see [`crate::Transport::start`] and
/// [`crate::Transport::start_with_handler`]).
pub(crate) enum Inbound {
    Channel(mpsc::Sender<Message>),
    Handler(Box<dyn Fn(Message) -> Delivery + Send + Sync>),
}

/// How a connection ended without a rejection.
pub(crate) enum Closed {
    Eof,
    /// Shutdown, removal of the peer, replacement by a newer connection, or the writer
    /// half failed.
    Cancelled,
    ReceiverGone,
    Io(io::Error),
    /// Nothing was received for `silent_for` (at least `silence_timeout`).
    Silent {
        silent_for: Duration,
    },
}

/// One connection's read half and what has been read from it but not yet decoded.
pub(crate) struct ReadSide {
    pub reader: OwnedReadHalf,
    /// Plaintext frames not yet decoded.
    pub buf: BytesMut,
    /// TLS only: bytes read from the socket, not yet opened (empty between reads).
    pub wire: BytesMut,
    pub decoder: InboundDecoder,
    pub remote: SocketAddr,
    pub session: Session,
}

/// When a handshake must be done by, and how long that was (for the log line).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HandshakeDeadline {
    pub at: tokio::time::Instant,
    pub timeout: Duration,
}

impl HandshakeDeadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> HandshakeDeadline {
        HandshakeDeadline {
            at: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    pub fn expired(&self) -> RejectReason {
        RejectReason::HandshakeTimeout {
            timeout_ms: self.timeout.as_millis(),
        }
    }
}

/// What one read from the socket brought.
enum Read {
    /// New plaintext is buffered (possibly none yet, under TLS).
    Bytes,
    /// The stream ended (EOF, or a TLS close_notify).
    End,
}

impl ReadSide {
    pub fn new(
        reader: OwnedReadHalf,
        decoder: InboundDecoder,
        remote: SocketAddr,
        session: Session,
    ) -> ReadSide {
        let wire_bytes = if session.is_tls() {
            READ_CHUNK_BYTES
        } else {
            0
        };
        ReadSide {
            reader,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            wire: BytesMut::with_capacity(wire_bytes),
            decoder,
            remote,
            session,
        }
    }

    /// Reads once from the socket into the buffer that read feeds: the plaintext buffer,
    /// or under TLS the wire buffer (opened by [`ReadSide::read_open`]).
    async fn read_socket(&mut self) -> io::Result<usize> {
        let target = if self.session.is_tls() {
            &mut self.wire
        } else {
            &mut self.buf
        };
        target.reserve(READ_CHUNK_BYTES);
        self.reader.read_buf(target).await
    }

    /// Accounts for a read of `read` bytes: opens TLS records into the plaintext buffer.
    fn read_open(&mut self, read: usize) -> Result<Read, RejectReason> {
        if read == 0 {
            return Ok(Read::End);
        }
        match self.session.open(&mut self.wire, &mut self.buf)? {
            Opened::Open => Ok(Read::Bytes),
            Opened::Closed => Ok(Read::End),
        }
    }

    /// Reads until the handshake is complete on this side, writing to `writer` the frames
    /// the decoder asks for (a challenge or a proof), until `deadline`; returns the peer.
    /// Frames behind the handshake stay buffered for [`ReadSide::read_messages`].
    ///
    /// # Errors
    /// The rejection, or `Ok(Err(closed))` if the stream ended or failed first.
    pub async fn read_handshake(
        &mut self,
        deadline: HandshakeDeadline,
        cancel: &CancellationToken,
        writer: &mut WriteSide,
        frame_bytes_max: usize,
    ) -> Result<Result<NodeId, Closed>, RejectReason> {
        // Plaintext that arrived with the TLS handshake is already inside the session.
        self.session.open(&mut self.wire, &mut self.buf)?;
        // Bounded by the deadline; each pass decodes what is buffered, then reads once.
        loop {
            match self.decoder.next_event(&mut self.buf)? {
                Some(InboundEvent::Established { peer }) => return Ok(Ok(peer)),
                Some(InboundEvent::Respond(body)) => {
                    let written = writer.write_frame(&body, frame_bytes_max, deadline.remaining());
                    if let Err(error) = written.await {
                        return Ok(Err(Closed::Io(error)));
                    }
                    continue;
                }
                Some(InboundEvent::Message { .. }) => {
                    unreachable!("the decoder yields no message before the handshake")
                }
                None => {}
            }
            let read = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(Err(Closed::Cancelled)),
                () = tokio::time::sleep_until(deadline.at) => return Err(deadline.expired()),
                read = self.read_socket() => read,
            };
            match read.map(|read| self.read_open(read)) {
                Ok(Ok(Read::End)) => {
                    return self.decoder.finish(&self.buf).map(|()| Err(Closed::Eof))
                }
                Ok(Ok(Read::Bytes)) => {}
                Ok(Err(reason)) => return Err(reason),
                Err(error) => return Ok(Err(Closed::Io(error))),
            }
        }
    }

    /// Reads, decodes and forwards messages until the connection ends or falls silent for
    /// `silence_timeout`. Each pass forwards every whole frame buffered (bounded by the
    /// buffer, at least 5 bytes a frame), then reads once.
    ///
    /// # Errors
    /// Why the connection must be closed.
    pub async fn read_messages(
        &mut self,
        cancel: &CancellationToken,
        shared: &Shared,
        counters: &PeerCounters,
    ) -> Result<Closed, RejectReason> {
        // Created once: a fresh `cancelled()` per pass would register a waiter under a lock.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let silence_timeout = shared.config.silence_timeout;
        // When bytes last arrived (or the reader last resumed reading); the timer below is
        // re-armed only when it fires, not per read (see `liveness`).
        let mut heard = Instant::now();
        let silence = tokio::time::sleep(silence_timeout);
        tokio::pin!(silence);
        loop {
            while let Some(event) = self.decoder.next_event(&mut self.buf)? {
                let InboundEvent::Message {
                    message,
                    wire_bytes,
                } = event
                else {
                    unreachable!("the decoder yields one handshake event, already taken")
                };
                add(&counters.msgs_received, 1);
                add(
                    &counters.bytes_received,
                    u64::try_from(wire_bytes).expect("usize fits in u64"),
                );
                let inbound_tx = match &shared.inbound {
                    Inbound::Channel(tx) => tx,
                    Inbound::Handler(handler) => {
                        if handler(message) == Delivery::Dropped {
                            add(&counters.drops_inbound, 1);
                        }
                        continue;
                    }
                };
                // Fast path without a wait; only a full channel needs the select.
                let message = match inbound_tx.try_send(message) {
                    Ok(()) => continue,
                    Err(TrySendError::Closed(_)) => return Ok(Closed::ReceiverGone),
                    Err(TrySendError::Full(message)) => message,
                };
                tokio::select! {
                    biased;
                    () = &mut cancelled => return Ok(Closed::Cancelled),
                    sent = inbound_tx.send(message) => if sent.is_err() {
                        return Ok(Closed::ReceiverGone);
                    },
                }
                // The wait was ours, not the peer's silence.
                heard = Instant::now();
            }
            let read = tokio::select! {
                biased;
                () = &mut cancelled => return Ok(Closed::Cancelled),
                // Before the timer: bytes already waiting are not silence.
                read = self.read_socket() => read,
                () = &mut silence => match due(heard, silence_timeout, Instant::now()) {
                    Due::Now => return Ok(self.read_messages_silent(heard)),
                    Due::At(deadline) => {
                        silence.as_mut().reset(deadline.into());
                        continue;
                    }
                },
            };
            match read.map(|read| self.read_open(read)) {
                Ok(Ok(Read::End)) => return self.decoder.finish(&self.buf).map(|()| Closed::Eof),
                Ok(Ok(Read::Bytes)) => heard = Instant::now(),
                Ok(Err(reason)) => return Err(reason),
                Err(error) => return Ok(Closed::Io(error)),
            }
        }
    }

    /// The connection is declared dead: it will close with a reset (see `socket`).
    fn read_messages_silent(&self, heard: Instant) -> Closed {
        if let Err(error) = reset_on_close(self.reader.as_ref()) {
            debug!(remote = %self.remote, error = %error, "cannot set zero linger; closing normally");
        }
        Closed::Silent {
            silent_for: heard.elapsed(),
        }
    }
}

/// Logs how a connection ended and counts a rejection or a silence; `counters` are the
/// peer's, once its handshake frame was accepted.
pub(crate) fn log_end(
    remote: SocketAddr,
    peer: Option<NodeId>,
    outcome: Result<Closed, RejectReason>,
    metrics: &Metrics,
    counters: Option<&PeerCounters>,
) {
    match outcome {
        Ok(Closed::Eof) => info!(%remote, ?peer, "peer closed its connection"),
        Ok(Closed::Cancelled) => {
            debug!(%remote, ?peer, "peer connection closed (shutdown, replaced or write failed)")
        }
        Ok(Closed::ReceiverGone) => debug!(%remote, ?peer, "inbound receiver dropped; closing"),
        Ok(Closed::Io(error)) => info!(%remote, ?peer, error = %error, "peer connection failed"),
        Ok(Closed::Silent { silent_for }) => {
            let silent_ms = silent_for.as_millis();
            info!(%remote, ?peer, silent_ms, "nothing received from peer; closing the connection to redial");
            if let Some(counters) = counters {
                add(&counters.silence_closes, 1);
            }
        }
        Err(reason) => {
            warn!(%remote, ?peer, reason = %display_chain(&reason), "closing peer connection");
            metrics.count_rejection(reason.class(), counters);
        }
    }
}

/// Ends a connection when its reader stops: cancels the writer half and forgets the
/// connection, so the peer's task redials. A guard, so that this also happens when the
/// caller's inbound handler panics (in a build that unwinds; kvnode's aborts).
struct Ending<'a> {
    cancel: &'a CancellationToken,
    links: &'a Links,
    peer: NodeId,
    id: u64,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.links.ended(self.peer, self.id);
    }
}

/// Reads messages from an established connection until it ends, then cancels `cancel`
/// (stopping the writer half), forgets the connection and logs how it ended. The reader
/// task of every connection, dialled or accepted, runs this.
pub(crate) async fn read_until_closed(
    mut side: ReadSide,
    peer: NodeId,
    id: u64,
    cancel: CancellationToken,
    shared: Arc<Shared>,
) {
    let counters = shared.metrics.peer(peer);
    let ending = Ending {
        cancel: &cancel,
        links: &shared.links,
        peer,
        id,
    };
    let outcome = side.read_messages(&cancel, &shared, &counters).await;
    drop(ending);
    log_end(
        side.remote,
        Some(peer),
        outcome,
        &shared.metrics,
        Some(&counters),
    );
}
