//! The socket a peer's writer task shares with `send`, and the rule for who may write to it.
//!
//! Handing a message to the writer task costs a wake-up (on a multi-threaded runtime often
//! a futex wake of a parked worker) before the first byte leaves. So `send` writes a
//! message to the socket itself when that can neither reorder nor interleave frames, and
//! would not cost batching:
//! - the connection is established (its handshake written) and published here;
//! - nothing is unwritten: both queues are empty and the writer task holds no batch
//!   ([`WireState::unwritten`] is 0), so no earlier message can be overtaken;
//! - the previous `send` to this peer was at least `coalesce_window` ago: a message that
//!   follows its predecessor more closely is queued, so a burst still leaves in one write
//!   by the writer task (only the burst's first message goes straight out).
//!
//! The write is a non-blocking `try_write` made while holding this peer's lock, so two
//! direct writes never interleave, and the writer task writes only while items it took
//! are unwritten, when `send` does not. (The lock is held across one non-blocking syscall;
//! the writer task takes it once per batch.) If the kernel takes part of the frame, the rest is queued (as an
//! [`Outbound::Tail`]) where the writer task sends it before anything else; if it takes
//! nothing, the message is queued as usual.
//!
//! Under TLS the frame is sealed into a TLS record before the write, and a sealed record
//! must reach the socket: so if the kernel takes none of it, the whole record is queued as
//! the tail (a message is never re-encoded once sealed).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::codec::{encode_frame, WireBody};
use crate::error::EncodeError;
use crate::liveness::{due, Due};
use crate::record::WriteSide;
use bytes::{Bytes, BytesMut};
use raft_core::Message;

/// What the control lane carries.
pub(crate) enum Outbound {
    Message(Message),
    /// The unwritten end of a frame `send` wrote only in part; it must be the next bytes on
    /// connection `connection` (a [`Wire::publish`] number) and is garbage on any other, so
    /// the writer drops it if that connection ended first. `frame_bytes` is the whole
    /// frame's length, counted once this is sent.
    Tail {
        bytes: Bytes,
        frame_bytes: usize,
        connection: u64,
    },
    /// A probe frame (see `link`), written by the writer when asked.
    Probe,
    /// A keepalive frame, written by the writer when nothing else has been written for
    /// `keepalive_interval` (see `liveness`).
    Keepalive,
}

/// Shared by a peer's handle (for `send`) and its writer task.
pub(crate) struct Wire {
    state: Mutex<WireState>,
    coalesce_window: Duration,
}

pub(crate) struct WireState {
    /// The established connection, published by the writer task once its handshake is
    /// done and withdrawn before that connection is dropped; `None` while (re)connecting.
    stream: Option<Arc<WriteSide>>,
    /// How many connections have been published; the number of the current one.
    connection: u64,
    /// Queued items (both lanes) plus items the writer task has taken but not yet written
    /// or dropped. Invariant: while it is positive, only the writer task writes the socket.
    pub unwritten: usize,
    /// When the last control-lane `send` to this peer returned.
    last_send: Option<Instant>,
    /// When bytes were last written to the current connection, by `send` or the writer
    /// task (or when it was published); a keepalive is due `keepalive_interval` after.
    last_write: Instant,
    /// Reused encoding buffer for direct writes; empty between calls.
    encoded: BytesMut,
    /// Reused buffer for the TLS records of a direct write; empty between calls.
    sealed: BytesMut,
}

/// The result of [`WireState::try_write_direct`].
pub(crate) enum Direct {
    /// The whole frame was written.
    Written {
        frame_bytes: usize,
    },
    /// Part was written (under TLS, possibly none of a sealed record); the rest must be
    /// queued first.
    Partial {
        tail: Outbound,
        /// Whether the write call took any bytes.
        wrote: bool,
    },
    /// Nothing was written (the socket's send buffer is full); queue `message`.
    Declined(Message),
    /// The connection failed; the message is lost (Raft retransmits).
    Failed(io::Error),
    TooLarge(EncodeError),
}

impl Wire {
    pub fn new(coalesce_window: Duration) -> Wire {
        Wire {
            state: Mutex::new(WireState {
                stream: None,
                connection: 0,
                unwritten: 0,
                last_send: None,
                last_write: Instant::now(),
                encoded: BytesMut::new(),
                sealed: BytesMut::new(),
            }),
            coalesce_window,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, WireState> {
        self.state
            .lock()
            .expect("peer wire lock is never held across a panic")
    }

    pub fn coalesce_window(&self) -> Duration {
        self.coalesce_window
    }

    /// Opens the direct path on a connection whose handshake has been written; returns the
    /// connection's number, which tails written on it carry.
    pub fn publish(&self, stream: Arc<WriteSide>) -> u64 {
        let mut state = self.lock();
        state.connection += 1;
        state.stream = Some(stream);
        // The handshake just crossed it.
        state.last_write = Instant::now();
        state.connection
    }

    /// Closes the direct path; the writer task calls this before dropping its connection.
    pub fn withdraw(&self) {
        self.lock().stream = None;
    }

    /// The writer task has written (or dropped) `items` it took from the queues; `wrote_at`
    /// is when its write completed, if it wrote.
    pub fn written(&self, items: usize, wrote_at: Option<Instant>) {
        let mut state = self.lock();
        assert!(
            state.unwritten >= items,
            "writer finished {items} items but only {} were unwritten",
            state.unwritten
        );
        state.unwritten -= items;
        if let Some(at) = wrote_at {
            state.last_write = at;
        }
    }

    /// Reserves the socket for a frame of the writer task's own (a probe or a keepalive),
    /// as for an item it takes from the queues, but only if nothing is unwritten: a queued
    /// item may be the tail of a frame `send` wrote in part, which must be the next bytes
    /// on the connection, and anything queued will be written next anyway. Returns whether
    /// it reserved; if so the writer must write the frame and then call [`Wire::written`].
    pub fn reserve_if_idle(&self) -> bool {
        WireState::reserve_if_idle(&mut self.lock())
    }

    /// Whether a keepalive is due at `now`: nothing written for `interval` and nothing
    /// waiting to be. If so, the socket is reserved as by [`Wire::reserve_if_idle`].
    pub fn keepalive_due(&self, interval: Duration, now: Instant) -> Due {
        let mut state = self.lock();
        match due(state.last_write, interval, now) {
            Due::Now if state.reserve_if_idle() => Due::Now,
            // Something queued is about to be written: check again an interval from now.
            Due::Now => Due::At(now + interval),
            at => at,
        }
    }
}

impl WireState {
    /// Whether the peer has been quiet for `window` at `now`: no control-lane `send` to
    /// it ended within that time (or there was none).
    pub fn is_quiet(&self, now: Instant, window: Duration) -> bool {
        self.last_send
            .is_none_or(|last| now.saturating_duration_since(last) >= window)
    }

    /// Records the end of a control-lane `send`. The end, not the start: a direct write
    /// takes a few microseconds of kernel time, and measuring from its start would make
    /// every message of a burst look quiet.
    pub fn note_send_end(&mut self, now: Instant) {
        self.last_send = Some(now);
    }

    fn reserve_if_idle(&mut self) -> bool {
        let idle = self.unwritten == 0;
        if idle {
            self.unwritten = 1;
        }
        idle
    }

    /// Whether `send` may write to the socket now (given a quiet peer).
    pub fn direct_open(&self) -> bool {
        self.unwritten == 0 && self.stream.is_some()
    }

    /// Encodes `message` and writes it with one non-blocking `write`, at `now`. Call only
    /// when [`WireState::direct_open`] holds, with the lock held for the whole call.
    pub fn try_write_direct(
        &mut self,
        message: Message,
        frame_bytes_max: usize,
        now: Instant,
    ) -> Direct {
        let stream = Arc::clone(self.stream.as_ref().expect("direct path is open"));
        let body = WireBody::Message(message);
        self.encoded.clear();
        let frame_bytes = match encode_frame(&body, frame_bytes_max, &mut self.encoded) {
            Ok(frame_bytes) => frame_bytes,
            Err(reason) => return Direct::TooLarge(reason),
        };
        let tls = stream.session.is_tls();
        let written = if tls {
            stream.try_write_sealed(&self.encoded, &mut self.sealed)
        } else {
            stream.half.try_write(&self.encoded)
        };
        let out = if tls { &self.sealed } else { &self.encoded };
        if matches!(written, Ok(n) if n > 0) {
            self.last_write = now;
        }
        let direct = match written {
            Ok(n) if n == out.len() => Direct::Written { frame_bytes },
            // Only a sealed record can be refused whole (`try_write_sealed`): it is owed.
            Ok(0) if !tls => Direct::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => Direct::Partial {
                tail: Outbound::Tail {
                    bytes: Bytes::copy_from_slice(&out[n..]),
                    frame_bytes,
                    connection: self.connection,
                },
                wrote: n > 0,
            },
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let WireBody::Message(message) = body else {
                    unreachable!("body was built as a message above")
                };
                Direct::Declined(message)
            }
            Err(error) => {
                // Later sends queue until the writer task has reconnected.
                self.stream = None;
                Direct::Failed(error)
            }
        };
        self.encoded.clear();
        self.sealed.clear();
        direct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's own frames never go ahead of a queued item: it may be the rest of a
    /// frame `send` began, which must be the next bytes on the connection.
    #[test]
    fn keepalive_and_probe_wait_for_queued_items() {
        let wire = Wire::new(Duration::ZERO);
        let interval = Duration::from_millis(50);
        let later = Instant::now() + interval * 2;
        wire.lock().unwritten = 1; // say, the tail of a direct write
        assert_eq!(
            wire.keepalive_due(interval, later),
            Due::At(later + interval)
        );
        assert!(!wire.reserve_if_idle());
        assert_eq!(wire.lock().unwritten, 1);
        wire.written(1, None);
        assert_eq!(wire.keepalive_due(interval, later), Due::Now);
        assert_eq!(wire.lock().unwritten, 1, "reserved for the keepalive");
        assert!(
            !wire.reserve_if_idle(),
            "a probe waits behind the keepalive"
        );
    }
}
