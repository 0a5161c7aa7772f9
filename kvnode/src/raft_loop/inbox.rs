//! The loop's inbox: two lanes, so client load never delays or drops Raft traffic.
//!
//! - The **peer lane** carries peer messages; it has a bound of its own
//!   ([`PEER_LANE_MSGS_MAX`]), and only when it is full is a peer message dropped (Raft
//!   resends; raft-net counts the drop).
//! - The **request lane** carries client requests; it is bounded by `request_queue_max`,
//!   and a request that finds it full is refused with `-TRYAGAIN` at once.
//! - Control signals (a finished sync, shutdown) are flags, never queued behind anything.
//!
//! The loop takes everything waiting in one lock: the whole peer lane, the flags, and up
//! to [`REQUESTS_PER_PASS`] requests. A sender wakes the loop only when it is parked, so
//! under load nobody pays for a wake-up.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use raft_core::Message;

use super::request::Request;
use crate::error::ClusterError;

/// Peer messages waiting for the loop, at most. Far more than a healthy cluster queues
/// (a leader's appends and heartbeats to each peer, and their answers, per tick); a full
/// lane means the loop is stalled and Raft's resends will do.
pub const PEER_LANE_MSGS_MAX: usize = 65_536;
/// Requests taken per pass of the loop; bounds how long a burst can delay the tick, peer
/// messages and syncs (each pass takes the whole peer lane first).
pub const REQUESTS_PER_PASS: usize = 1024;

#[derive(Default)]
struct Lanes {
    peers: Vec<Message>,
    requests: VecDeque<Request>,
    synced: bool,
    shutdown: bool,
    /// The loop is waiting on the condition variable.
    parked: bool,
}

/// What the loop took in one pass.
#[derive(Default)]
pub struct Taken {
    pub peers: Vec<Message>,
    pub requests: Vec<Request>,
    /// The log-sync thread has a result.
    pub synced: bool,
    pub shutdown: bool,
}

struct Shared {
    lanes: Mutex<Lanes>,
    wake: Condvar,
    requests_max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        // Nothing panics while holding the lock (pushes and swaps only).
        self.lanes.lock().expect("the inbox lock is never poisoned")
    }
}

/// The loop's end of the inbox.
pub struct Inbox {
    shared: Arc<Shared>,
}

/// The handle the async side (connections, the peer transport, the sync thread, shutdown)
/// uses to reach the loop; cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    shared: Arc<Shared>,
}

/// A new inbox with a request lane of `requests_max`, and its handle.
pub fn inbox(requests_max: usize) -> (Inbox, RaftHandle) {
    let shared = Arc::new(Shared {
        lanes: Mutex::new(Lanes::default()),
        wake: Condvar::new(),
        requests_max,
    });
    (
        Inbox {
            shared: Arc::clone(&shared),
        },
        RaftHandle { shared },
    )
}

impl RaftHandle {
    /// Queues a client request without blocking.
    ///
    /// # Errors
    /// `Overloaded` when the request lane is full (the client may retry: nothing was
    /// proposed), `Stopping` once the loop is stopping.
    pub fn submit(&self, request: Request) -> Result<(), ClusterError> {
        let mut lanes = self.shared.lock();
        if lanes.shutdown {
            return Err(ClusterError::Stopping);
        }
        if lanes.requests.len() >= self.shared.requests_max {
            return Err(ClusterError::Overloaded("request queue full"));
        }
        lanes.requests.push_back(request);
        self.wake_if_parked(lanes);
        Ok(())
    }

    /// Hands a peer message to the loop; false (dropped) when the peer lane is full.
    pub fn deliver(&self, message: Message) -> bool {
        let mut lanes = self.shared.lock();
        if lanes.peers.len() >= PEER_LANE_MSGS_MAX {
            return false;
        }
        lanes.peers.push(message);
        self.wake_if_parked(lanes);
        true
    }

    /// The log-sync thread has a result waiting.
    pub fn synced(&self) {
        let mut lanes = self.shared.lock();
        lanes.synced = true;
        self.wake_if_parked(lanes);
    }

    /// Asks the loop to stop; later requests are refused.
    pub fn shutdown(&self) {
        let mut lanes = self.shared.lock();
        lanes.shutdown = true;
        self.wake_if_parked(lanes);
    }

    fn wake_if_parked(&self, lanes: MutexGuard<'_, Lanes>) {
        let parked = lanes.parked;
        drop(lanes);
        if parked {
            self.shared.wake.notify_one();
        }
    }
}

impl Inbox {
    /// Takes what waits, into `taken` (whose buffers are reused); if nothing does, waits
    /// up to `timeout` for something to arrive first.
    pub fn take(&self, taken: &mut Taken, timeout: Duration) {
        let mut lanes = self.shared.lock();
        let idle = |lanes: &Lanes| {
            lanes.peers.is_empty() && lanes.requests.is_empty() && !lanes.synced && !lanes.shutdown
        };
        if idle(&lanes) && !timeout.is_zero() {
            lanes.parked = true;
            let (woken, _) = self
                .shared
                .wake
                .wait_timeout_while(lanes, timeout, |lanes| idle(lanes))
                .expect("the inbox lock is never poisoned");
            lanes = woken;
            lanes.parked = false;
        }
        std::mem::swap(&mut taken.peers, &mut lanes.peers);
        let count = lanes.requests.len().min(REQUESTS_PER_PASS);
        taken.requests.extend(lanes.requests.drain(..count));
        taken.synced = std::mem::take(&mut lanes.synced);
        taken.shutdown = lanes.shutdown;
    }

    /// Requests still waiting after the loop stopped taking them (to be refused).
    pub fn take_remaining_requests(&self) -> Vec<Request> {
        self.shared.lock().requests.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_loop::request::Request;
    use raft_core::{MessageBody, NodeId, Term};
    use tokio::sync::oneshot;

    fn status_request() -> Request {
        Request::Status {
            reply: oneshot::channel().0,
        }
    }

    fn message() -> Message {
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(1),
            body: MessageBody::HeartbeatResponse { read_round: 0 },
        }
    }

    #[test]
    fn a_full_request_lane_refuses_requests_but_never_peer_messages() {
        let (inbox, handle) = inbox(2);
        handle.submit(status_request()).expect("room");
        handle.submit(status_request()).expect("room");
        assert!(matches!(
            handle.submit(status_request()),
            Err(ClusterError::Overloaded(_))
        ));
        for _ in 0..10 {
            assert!(handle.deliver(message()), "peer lane has its own room");
        }
        handle.synced();
        let mut taken = Taken::default();
        inbox.take(&mut taken, Duration::ZERO);
        assert_eq!((taken.peers.len(), taken.requests.len()), (10, 2));
        assert!(taken.synced && !taken.shutdown);
        handle.shutdown();
        assert!(matches!(
            handle.submit(status_request()),
            Err(ClusterError::Stopping)
        ));
    }

    #[test]
    fn a_parked_loop_wakes_for_a_peer_message() {
        let (inbox, handle) = inbox(8);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            assert!(handle.deliver(message()));
        });
        let mut taken = Taken::default();
        // Bounded: the message arrives long before the timeout.
        inbox.take(&mut taken, Duration::from_secs(30));
        assert_eq!(taken.peers.len(), 1);
        sender.join().expect("sender");
    }
}
