//! The public handle: start, peers, send, metrics, shutdown.
//!
//! `Transport` is cheap to clone and `Send + Sync`; `send`, `set_peer`, `remove_peer` and
//! `metrics` are plain functions callable from any thread, inside or outside the runtime.
//! Every task the transport spawns is tracked, and [`Transport::shutdown`] returns only after
//! all of them have ended and every socket is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, Weak};

use raft_core::{Message, NodeId};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::TransportConfig;
use crate::connection::{Inbound, Shared};
use crate::error::{Error, Result, SendError};
use crate::link::Links;
use crate::listener::accept_loop;
use crate::metrics::{add, Metrics, TransportMetrics};
use crate::peer::{PeerContext, PeerHandle, PeerLink, Wire};
use crate::tls::TlsIdentity;

#[derive(Clone)]
pub struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    config: TransportConfig,
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    peers: RwLock<HashMap<NodeId, PeerHandle>>,
    /// Weak: the transport's tasks own it, so that once they have all ended, the inbound
    /// sender inside is dropped and the caller's receiver yields `None` (or the handler,
    /// with whatever it holds, is dropped).
    shared: Weak<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    runtime: Handle,
}

impl Drop for TransportInner {
    /// Dropping the last handle without `shutdown` still stops every task (without waiting).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What an inbound handler did with a message (see [`Transport::start_with_handler`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// Shed (e.g. the consumer's queue was full); counted in `PeerMetrics::drops_inbound`.
    Dropped,
}

impl Transport {
    /// Binds `config.listen_addr`, starts the accept loop, and returns the transport and the
    /// receiver of every message peers send to this node. The receiver yields `None` after
    /// shutdown. A full receiver stops reading the connection whose message waits, so a slow
    /// consumer pushes back on that peer only.
    ///
    /// # Errors
    /// `InvalidConfig` or `Bind`.
    pub async fn start(config: TransportConfig) -> Result<(Transport, mpsc::Receiver<Message>)> {
        // Checked before the channel exists: a zero capacity would panic there.
        config.validate()?;
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_msgs_max);
        let transport = Transport::start_inner(config, Inbound::Channel(inbound_tx)).await?;
        Ok((transport, inbound_rx))
    }

    /// Like [`Transport::start`], but every message a peer sends is passed to `handler` on
    /// the task reading that peer's connection, in the order the peer sent them, instead of
    /// through a channel: a consumer that hands messages to its own thread or queue (as
    /// kvnode does) saves one task hop and wake-up per message.
    ///
    /// `handler` runs on a runtime worker, concurrently for different peers, so it must not
    /// block. A panic in it ends its connection (the peer redials), when the build unwinds.
    /// It cannot push back; when its consumer is full it returns
    /// [`Delivery::Dropped`] (Raft retransmits what matters). It is not called after
    /// [`Transport::shutdown`] has returned.
    ///
    /// # Errors
    /// `InvalidConfig` or `Bind`.
    pub async fn start_with_handler<F>(config: TransportConfig, handler: F) -> Result<Transport>
    where
        F: Fn(Message) -> Delivery + Send + Sync + 'static,
    {
        config.validate()?;
        Transport::start_inner(config, Inbound::Handler(Box::new(handler))).await
    }

    /// Starts a transport whose `config` has been validated.
    async fn start_inner(config: TransportConfig, inbound: Inbound) -> Result<Transport> {
        let addr = config.listen_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let metrics = Arc::new(Metrics::default());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let shared = Arc::new(Shared {
            config: config.clone(),
            metrics: Arc::clone(&metrics),
            inbound,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            links: Links::new(config.node_id),
            tls: RwLock::new(config.security.tls.clone()),
        });
        let connection_permits = Arc::new(Semaphore::new(config.inbound_connections_max));
        tracker.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            connection_permits,
        ));
        let tls = config.security.tls.is_some();
        let secret = config.security.secret.is_some();
        info!(node = %config.node_id, cluster = %config.cluster_id, %local_addr, tls, secret, "raft-net listening");
        let inner = TransportInner {
            config,
            local_addr,
            metrics,
            peers: RwLock::new(HashMap::new()),
            shared: Arc::downgrade(&shared),
            cancel,
            tracker,
            runtime: Handle::current(),
        };
        Ok(Transport {
            inner: Arc::new(inner),
        })
    }

    /// Replaces the TLS identity (certificate, key, CA) that new connections use, dialled or
    /// accepted; established connections keep theirs until they end. For renewing
    /// certificates without a restart (kvnode calls this on SIGHUP).
    ///
    /// # Errors
    /// `TlsReload` if the transport was started without TLS, or if `identity` is for
    /// another node or cluster; `Shutdown` after shutdown.
    pub fn reload_tls(&self, identity: TlsIdentity) -> Result<()> {
        let inner = &*self.inner;
        let config = &inner.config;
        if identity.cluster_id() != config.cluster_id || identity.node_id() != config.node_id {
            return Err(Error::TlsReload {
                reason: "the new identity is for another node id or cluster id",
            });
        }
        let Some(shared) = inner.shared.upgrade() else {
            return Err(Error::Shutdown);
        };
        let mut current = shared
            .tls
            .write()
            .expect("TLS identity lock is never held across a panic");
        if current.is_none() {
            return Err(Error::TlsReload {
                reason: "the transport was started without TLS (a restart can turn it on)",
            });
        }
        *current = Some(identity);
        info!(node = %config.node_id, "peer TLS identity reloaded; new connections use it");
        Ok(())
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// Adds peer `id` at `addr`, or moves an existing peer to a new address (a connection
    /// this node dialled is dropped and redialled; one the peer dialled is kept; queued
    /// messages are kept). If the peer has already connected to this node, that
    /// connection is used at once.
    ///
    /// # Errors
    /// `PeerIsSelf` or `Shutdown`.
    pub fn set_peer(&self, id: NodeId, addr: SocketAddr) -> Result<()> {
        let inner = &*self.inner;
        if id == inner.config.node_id {
            return Err(Error::PeerIsSelf { id });
        }
        if inner.cancel.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let mut peers = inner
            .peers
            .write()
            .expect("peer map lock is never held across a panic");
        if let Some(peer) = peers.get(&id) {
            peer.set_addr(addr);
            return Ok(());
        }
        let config = &inner.config;
        let context = PeerContext {
            peer_id: id,
            frame_bytes_max: config.frame_bytes_max,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            keepalive_interval: config.keepalive_interval,
            counters: inner.metrics.peer(id),
            wire: Arc::new(Wire::new(config.coalesce_window)),
        };
        // Only the tasks' ending drops it, and they end only on shutdown.
        let Some(shared) = inner.shared.upgrade() else {
            return Err(Error::Shutdown);
        };
        let probe = Arc::new(Notify::new());
        let link = PeerLink {
            notify: shared.links.register(id, Arc::clone(&probe)),
            shared,
            probe,
        };
        let queue_msgs_max = config.peer_queue_msgs_max;
        let peer = PeerHandle::spawn(
            context,
            link,
            addr,
            queue_msgs_max,
            &inner.cancel,
            &inner.tracker,
            &inner.runtime,
        );
        peers.insert(id, peer);
        info!(peer = %id, %addr, "peer added");
        Ok(())
    }

    /// Removes peer `id` (say, after a membership change): its connection closes and its
    /// queued messages are dropped. (The peer may still dial this node; its messages are
    /// then received, but nothing is sent to it until `set_peer`.) Returns whether it was known. Its counters remain.
    pub fn remove_peer(&self, id: NodeId) -> bool {
        let removed = self
            .inner
            .peers
            .write()
            .expect("peer map lock is never held across a panic")
            .remove(&id);
        if let Some(peer) = &removed {
            if let Some(shared) = self.inner.shared.upgrade() {
                shared.links.unregister(id);
            }
            peer.stop();
            info!(peer = %id, "peer removed");
        }
        removed.is_some()
    }

    /// Queues `message` for `message.to` without blocking; callable from any thread. When
    /// the peer is connected, idle and quiet (see `TransportConfig::coalesce_window`), the
    /// message is instead written to its socket here, with one non-blocking `write`.
    ///
    /// # Errors
    /// Every error means the message was dropped. `QueueFull` means the peer is unreachable
    /// for now (`SendError::is_unreachable`).
    ///
    /// # Panics
    /// If `message.from` is not this node: the receiver would reject the frame and close
    /// the connection, so this is a caller bug.
    pub fn send(&self, message: Message) -> Result<(), SendError> {
        let inner = &*self.inner;
        assert_eq!(
            message.from, inner.config.node_id,
            "message from {} sent through node {}'s transport",
            message.from, inner.config.node_id
        );
        if inner.cancel.is_cancelled() {
            return Err(SendError::Shutdown);
        }
        let peers = inner
            .peers
            .read()
            .expect("peer map lock is never held across a panic");
        let to = message.to;
        let Some(peer) = peers.get(&to) else {
            return Err(SendError::UnknownPeer { to });
        };
        let payload_bytes = message.body.payload_bytes();
        let frame_bytes_max = inner.config.frame_bytes_max;
        if payload_bytes > u64::try_from(frame_bytes_max).expect("usize fits in u64") {
            add(&peer.counters().drops_oversized, 1);
            return Err(SendError::TooLarge {
                to,
                payload_bytes,
                frame_bytes_max,
            });
        }
        peer.try_send(message)
    }

    /// A snapshot of every counter.
    pub fn metrics(&self) -> TransportMetrics {
        self.inner.metrics.snapshot()
    }

    /// Stops the accept loop, every peer task and every connection, and waits for them all
    /// to finish: when this returns, the listening socket and all connections are closed.
    /// Idempotent; later `send`s return `Shutdown`.
    pub async fn shutdown(&self) {
        let inner = &*self.inner;
        inner.cancel.cancel();
        inner
            .peers
            .write()
            .expect("peer map lock is never held across a panic")
            .clear();
        inner.tracker.close();
        inner.tracker.wait().await;
        info!(node = %inner.config.node_id, "raft-net stopped");
    }
}
