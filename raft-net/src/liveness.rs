//! Liveness: how each end shows the other that it is alive, and when a connection is
//! declared dead (PROTOCOL.md, "Liveness").
//!
//! - Every established connection carries bytes each way at least every
//!   `keepalive_interval`. Whoever writes to it (the peer's writer task, or `send` itself)
//!   records when, and once nothing has been written for an interval the writer task adds
//!   a keepalive frame. An accepted connection that no peer task has taken yet (this node
//!   has no address for the peer) is kept alive by [`keep_parked_alive`] instead, so the
//!   peer does not take it for dead.
//! - A connection on which nothing at all has been received for `silence_timeout` is
//!   closed with a reset and redialled with a fresh socket: its peer is dead, paused or cut
//!   off. Left alone, TCP would notice only when its retransmission backoff (seconds, and
//!   growing with the length of a partition) next let a segment through.
//!
//! Neither timer is re-armed on every write or read, which would cost a timer update per
//! batch under load: writes and reads record an `Instant`, and a timer that fires before
//! its deadline (traffic came meanwhile) is re-armed for the deadline it finds. A busy
//! connection therefore costs one timer wake-up per interval and no keepalive.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use raft_core::NodeId;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::codec::{encode_frame, WireBody};
use crate::connection::Shared;
use crate::link::ParkedWrite;
use crate::metrics::{add, PeerCounters};

/// Whether an action owed `period` after `last` is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Now,
    /// Not before this instant (the timer is re-armed for it).
    At(Instant),
}

/// Whether something that must happen once `period` has passed since `last` (a keepalive
/// after the last write, a silence verdict after the last read) is due at `now`.
pub(crate) fn due(last: Instant, period: Duration, now: Instant) -> Due {
    let deadline = last + period;
    if now >= deadline {
        Due::Now
    } else {
        Due::At(deadline)
    }
}

/// The frame [`keep_parked_alive`] writes: always the same six bytes.
fn keepalive_frame(frame_bytes_max: usize) -> BytesMut {
    let mut frame = BytesMut::new();
    encode_frame(&WireBody::Keepalive, frame_bytes_max, &mut frame)
        .expect("a keepalive is far smaller than FRAME_BYTES_MIN");
    frame
}

/// Writes a keepalive every `keepalive_interval` on accepted connection `id` while it waits
/// in `peer`'s hand-off (nothing else writes to it then), and returns once the peer's task
/// has taken it, or it has ended. Without this, a peer this node has no address for would
/// hear nothing on the connection it dialled, and close it as silent.
pub(crate) async fn keep_parked_alive(
    shared: &Shared,
    peer: NodeId,
    id: u64,
    cancel: &CancellationToken,
    counters: &PeerCounters,
) {
    let frame = keepalive_frame(shared.config.frame_bytes_max);
    let interval = shared.config.keepalive_interval;
    // Bounded by the connection's life: each pass sleeps one interval.
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match shared.links.write_parked(peer, id, &frame) {
            ParkedWrite::Written => add(&counters.keepalives_sent, 1),
            // The send buffer is full, so the peer has bytes to read; try next interval.
            ParkedWrite::Skipped => {}
            ParkedWrite::Gone => return,
            ParkedWrite::Failed => {
                debug!(%peer, "keepalive on a parked connection failed; it is closed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_the_period_has_passed_since_the_last_event() {
        let last = Instant::now();
        let period = Duration::from_millis(50);
        let cases = [
            ("just happened", Duration::ZERO, Due::At(last + period)),
            ("halfway", period / 2, Due::At(last + period)),
            ("exactly the period", period, Due::Now),
            ("long overdue", period * 10, Due::Now),
        ];
        for (name, elapsed, want) in cases {
            assert_eq!(due(last, period, last + elapsed), want, "{name}");
        }
    }

    /// The parked keepalive is the frame PROTOCOL.md shows.
    #[test]
    fn keepalive_frame_matches_protocol_md() {
        assert_eq!(&keepalive_frame(1024)[..], &[0, 0, 0, 2, 4, 4][..]);
    }
}
