//! Which connection serves each peer: the rules of PROTOCOL.md, "Connections", in one
//! place, shared by the accept path, the peers' tasks and the connections' readers.
//!
//! A pair of nodes uses one connection for both directions. Either node may dial when it
//! has none; when two connections meet, both ends must keep the same one, so the choice
//! depends only on who dialled each and on what the deciding node knows for certain:
//! - A node dials a peer only while it has no connection to it (neither its own nor an
//!   accepted one), so a hello from a peer means the peer has no connection to us.
//! - Hello from a *higher* id arriving while our own dial to it is in progress or
//!   established: refused (closed without a welcome). The lower id's dial wins, and the
//!   higher side, which gets our hello too, accepts that one. If our own connection is
//!   established, it may be dead at the peer's end without our knowing (a crash without a
//!   FIN), so it is probed: a dead one answers the probe with a reset and is replaced.
//! - Any other valid hello is accepted and replaces whatever connection the peer had:
//!   the peer has none it considers alive, so ours is stale or about to be dropped.
//! - A dial of ours that completes while another connection has been accepted meanwhile
//!   is dropped unused (only a restart of the peer can cause that).
//!
//! All decisions are made under one lock, so a node never dials and accepts for the same
//! peer at once. Accepted connections wait in a one-slot hand-off until the peer's task
//! takes them, so a connection accepted from a peer without an address (no task) is kept
//! and used as soon as `set_peer` names it; meanwhile its keepalives are written under the
//! same lock ([`Links::write_parked`]), so the hand-off never happens mid-frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use raft_core::NodeId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::record::WriteSide;

/// An accepted, welcomed connection's write half, for the peer's task.
pub(crate) struct Accepted {
    pub id: u64,
    pub writer: WriteSide,
    /// Cancelled when the connection ends, by either half.
    pub cancel: CancellationToken,
}

/// What the acceptor does with a valid hello.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptDecision {
    /// Write a welcome; `replaced` says whether an older connection was closed for it.
    Accept { replaced: bool },
    /// Close without a welcome: our own connection to the peer wins.
    Refuse,
}

/// What [`Links::write_parked`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParkedWrite {
    Written,
    /// The socket's send buffer is full; nothing was written.
    Skipped,
    /// The connection is no longer in the hand-off: taken by the peer's task, or ended.
    Gone,
    /// The write failed or went out in part; the connection has been cancelled.
    Failed,
}

/// What a peer's task does next.
pub(crate) enum Step {
    /// Serve this accepted connection.
    Adopt(Accepted),
    /// A connection is being accepted; wait for its hand-off.
    Wait,
    /// Nothing connects us: dial (now marked as in progress).
    Dial,
}

struct CurrentConnection {
    id: u64,
    dialled_by_us: bool,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Link {
    /// The connection serving the peer: established, or accepted with its welcome being
    /// written. Invariant: at most one per peer.
    current: Option<CurrentConnection>,
    /// Our own dial is in progress (connect, hello, waiting for the welcome).
    dialing: bool,
    /// The accepted `current` connection, until the peer's task takes it. Its id always
    /// equals `current`'s.
    handoff: Option<Accepted>,
    /// Whether a connection to this peer was ever established (for `reconnects`).
    established_before: bool,
    /// Wakes the peer's task when a hand-off arrives or a pending accept falls through.
    notify: Arc<Notify>,
    /// Asks the peer's writer to write a probe frame.
    probe: Option<Arc<Notify>>,
}

pub(crate) struct Links {
    local_id: NodeId,
    next_connection_id: AtomicU64,
    links: Mutex<HashMap<NodeId, Link>>,
}

impl Links {
    pub fn new(local_id: NodeId) -> Links {
        Links {
            local_id,
            next_connection_id: AtomicU64::new(1),
            links: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Link>> {
        self.links
            .lock()
            .expect("link lock is never held across a panic")
    }

    /// A fresh connection number, unique within this transport.
    pub fn next_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `peer`'s task: returns what wakes it, and records what asks its writer
    /// for a probe. Called by `set_peer`.
    pub fn register(&self, peer: NodeId, probe: Arc<Notify>) -> Arc<Notify> {
        let mut links = self.lock();
        let link = links.entry(peer).or_default();
        link.probe = Some(probe);
        Arc::clone(&link.notify)
    }

    /// `peer`'s task is gone (`remove_peer`); its connection closes as the task ends.
    pub fn unregister(&self, peer: NodeId) {
        let mut links = self.lock();
        if let Some(link) = links.get_mut(&peer) {
            link.probe = None;
            Links::forget_if_idle(&mut links, peer);
        }
    }

    /// Drops `peer`'s entry once nothing refers to it (no task, no connection, no dial),
    /// so that hellos naming ever new ids cannot grow the map without bound: it holds at
    /// most the registered peers plus one entry per open connection.
    fn forget_if_idle(links: &mut HashMap<NodeId, Link>, peer: NodeId) {
        let idle = links
            .get(&peer)
            .is_some_and(|l| l.probe.is_none() && !l.dialing && l.current.is_none());
        if idle {
            links.remove(&peer);
        }
    }

    /// Decides on a valid hello from `peer` on connection `id`. On `Accept` the
    /// connection is `peer`'s current one from now on (so the peer's task will not dial),
    /// and the connection it replaces has been cancelled.
    pub fn accept_begin(
        &self,
        peer: NodeId,
        id: u64,
        cancel: &CancellationToken,
    ) -> AcceptDecision {
        let mut links = self.lock();
        let link = links.entry(peer).or_default();
        let ours_in_play = link.dialing || link.current.as_ref().is_some_and(|c| c.dialled_by_us);
        if self.local_id < peer && ours_in_play {
            if link.current.is_some() {
                if let Some(probe) = &link.probe {
                    probe.notify_one();
                }
            }
            return AcceptDecision::Refuse;
        }
        link.handoff = None;
        let older = link.current.replace(CurrentConnection {
            id,
            dialled_by_us: false,
            cancel: cancel.clone(),
        });
        if let Some(older) = &older {
            older.cancel.cancel();
        }
        AcceptDecision::Accept {
            replaced: older.is_some(),
        }
    }

    /// The welcome is written: hands the connection to `peer`'s task. Returns `None` if
    /// the connection was replaced meanwhile (drop it), else whether it reconnects.
    pub fn accept_finish(&self, peer: NodeId, accepted: Accepted) -> Option<bool> {
        let mut links = self.lock();
        let link = links.entry(peer).or_default();
        if link.current.as_ref().map(|c| c.id) != Some(accepted.id) {
            return None;
        }
        let reconnect = std::mem::replace(&mut link.established_before, true);
        link.handoff = Some(accepted);
        link.notify.notify_one();
        Some(reconnect)
    }

    /// Writes `frame` on accepted connection `id` if it still waits in `peer`'s hand-off:
    /// one non-blocking write under the lock, so the peer's task cannot take the
    /// connection in the middle of a frame. A frame written in part would corrupt the
    /// stream, so that (or an error) empties the hand-off and cancels the connection; so
    /// does a full send buffer under TLS, where the frame was sealed and is owed.
    pub fn write_parked(&self, peer: NodeId, id: u64, frame: &[u8]) -> ParkedWrite {
        let mut links = self.lock();
        let Some(link) = links.get_mut(&peer) else {
            return ParkedWrite::Gone;
        };
        let Some(accepted) = link.handoff.as_ref().filter(|a| a.id == id) else {
            return ParkedWrite::Gone;
        };
        let mut sealed = BytesMut::new();
        match accepted.writer.try_write_sealed(frame, &mut sealed) {
            Ok(written) if written == sealed.len() => ParkedWrite::Written,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => ParkedWrite::Skipped,
            _ => {
                if let Some(accepted) = link.handoff.take() {
                    accepted.cancel.cancel();
                }
                ParkedWrite::Failed
            }
        }
    }

    /// What `peer`'s task should do next; `Dial` marks a dial as in progress, to be
    /// ended by [`Links::dial_finish`] or [`Links::dial_abandon`].
    pub fn next_step(&self, peer: NodeId) -> Step {
        let mut links = self.lock();
        let link = links.entry(peer).or_default();
        if let Some(accepted) = link.handoff.take() {
            return Step::Adopt(accepted);
        }
        if link.current.is_some() {
            return Step::Wait;
        }
        link.dialing = true;
        Step::Dial
    }

    /// Our dial to `peer` got its welcome, as connection `id`. Returns `None` if another
    /// connection was accepted meanwhile (drop ours), else whether it reconnects.
    pub fn dial_finish(&self, peer: NodeId, id: u64, cancel: &CancellationToken) -> Option<bool> {
        let mut links = self.lock();
        let link = links.entry(peer).or_default();
        link.dialing = false;
        if link.current.is_some() {
            return None;
        }
        link.current = Some(CurrentConnection {
            id,
            dialled_by_us: true,
            cancel: cancel.clone(),
        });
        Some(std::mem::replace(&mut link.established_before, true))
    }

    /// Our dial to `peer` failed or was cancelled. Returns whether a connection from the
    /// peer has been accepted meanwhile (then the failure was a lost tie-break, not a
    /// sign of trouble).
    pub fn dial_abandon(&self, peer: NodeId) -> bool {
        let mut links = self.lock();
        let Some(link) = links.get_mut(&peer) else {
            return false;
        };
        link.dialing = false;
        let accepted_meanwhile = link.current.is_some();
        Links::forget_if_idle(&mut links, peer);
        accepted_meanwhile
    }

    /// Connection `id` to `peer` has ended (or is ending): forget it, and wake the peer's
    /// task if it was waiting for that connection's hand-off.
    pub fn ended(&self, peer: NodeId, id: u64) {
        let mut links = self.lock();
        let Some(link) = links.get_mut(&peer) else {
            return;
        };
        if link.current.as_ref().is_some_and(|c| c.id == id) {
            link.current = None;
            link.handoff = None;
            link.notify.notify_one();
            Links::forget_if_idle(&mut links, peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOWER: NodeId = NodeId(1);
    const HIGHER: NodeId = NodeId(2);

    fn accept(links: &Links, peer: NodeId) -> AcceptDecision {
        let id = links.next_id();
        links.accept_begin(peer, id, &CancellationToken::new())
    }

    /// The two ends of a simultaneous dial keep the same connection: the lower id's.
    #[test]
    fn simultaneous_dials_keep_the_lower_ids_connection() {
        let lower = Links::new(LOWER);
        let higher = Links::new(HIGHER);
        assert!(matches!(lower.next_step(HIGHER), Step::Dial));
        assert!(matches!(higher.next_step(LOWER), Step::Dial));
        // Each receives the other's hello while its own dial is in progress.
        assert_eq!(accept(&lower, HIGHER), AcceptDecision::Refuse);
        assert_eq!(
            accept(&higher, LOWER),
            AcceptDecision::Accept { replaced: false }
        );
        // The higher id's dial then fails (refused): a lost tie-break, as the higher id
        // knows since it has accepted the lower id's connection. The lower id's dial gets
        // its welcome.
        assert!(higher.dial_abandon(LOWER));
        let cancel = CancellationToken::new();
        assert_eq!(lower.dial_finish(HIGHER, 7, &cancel), Some(false));
        // A late hello from the higher id still loses against the established dial.
        assert_eq!(accept(&lower, HIGHER), AcceptDecision::Refuse);
        assert!(!cancel.is_cancelled());
    }

    /// A hello from the peer replaces a connection we accepted from it earlier (it was
    /// restarted, or dropped that connection), and one we dialled if the peer is lower.
    #[test]
    fn newer_hello_replaces_the_older_connection() {
        for (local, peer, ours_dialled) in [
            (LOWER, HIGHER, false),
            (HIGHER, LOWER, false),
            (HIGHER, LOWER, true),
        ] {
            let links = Links::new(local);
            let older = CancellationToken::new();
            if ours_dialled {
                assert!(matches!(links.next_step(peer), Step::Dial));
                assert_eq!(links.dial_finish(peer, 1, &older), Some(false));
            } else {
                assert_eq!(
                    links.accept_begin(peer, 1, &older),
                    AcceptDecision::Accept { replaced: false }
                );
            }
            assert_eq!(
                accept(&links, peer),
                AcceptDecision::Accept { replaced: true },
                "{local} from {peer}, ours dialled: {ours_dialled}"
            );
            assert!(older.is_cancelled());
        }
    }

    /// An accepted connection waits in the hand-off until the peer's task takes it; the
    /// task does not dial while one is being accepted, and does once it has ended.
    #[test]
    fn accepted_connection_is_handed_to_the_peer_task() {
        let links = Links::new(HIGHER);
        let cancel = CancellationToken::new();
        let id = links.next_id();
        assert_eq!(
            links.accept_begin(LOWER, id, &cancel),
            AcceptDecision::Accept { replaced: false }
        );
        assert!(matches!(links.next_step(LOWER), Step::Wait));
        links.ended(LOWER, id);
        assert!(matches!(links.next_step(LOWER), Step::Dial));
        assert!(!links.dial_abandon(LOWER), "a plain failure");
        // A dial that completes after a hello was accepted is dropped.
        assert!(matches!(links.next_step(LOWER), Step::Dial));
        assert_eq!(
            accept(&links, LOWER),
            AcceptDecision::Accept { replaced: false }
        );
        assert_eq!(links.dial_finish(LOWER, 99, &cancel), None);
    }

    /// Entries of peers without a task go once their connection ends, so hellos naming
    /// ever new ids leave nothing behind.
    #[test]
    fn entries_without_task_or_connection_are_forgotten() {
        let links = Links::new(LOWER);
        for peer in 2..100 {
            let id = links.next_id();
            let decision = links.accept_begin(NodeId(peer), id, &CancellationToken::new());
            assert_eq!(decision, AcceptDecision::Accept { replaced: false });
            links.ended(NodeId(peer), id);
        }
        links.register(HIGHER, Arc::new(Notify::new()));
        assert_eq!(links.lock().len(), 1, "only the registered peer");
        links.unregister(HIGHER);
        assert!(links.lock().is_empty());
    }
}
