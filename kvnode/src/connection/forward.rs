//! Forwarding what only the leader can do, following leadership as the raft loop sees it
//! ([`LeaderView`], published on a watch channel).
//!
//! A follower sends writes to the leader as `RAFTKV.PROPOSE <command bytes>` and admin
//! commands as the client sent them, pipelined on one connection per client connection,
//! and relays the replies. Rules, so that nothing waits on a leader that is gone:
//! - No leader known: wait for one, at most `leader_wait` (about two election timeouts),
//!   then `-TRYAGAIN` (nothing was sent).
//! - This node is the leader by now: nothing was sent, so the caller proposes locally.
//! - Connecting fails: nothing was sent; try again (at most [`ATTEMPTS_MAX`] times, waiting
//!   for leadership to move meanwhile), then `-TRYAGAIN`.
//! - Sent, and another node is known to lead before the target's reply: the target gets a
//!   short grace (a leader that stepped down answers at once: applied, or `-UNKNOWN`), then
//!   `-UNKNOWN` (the write may have been appended there and may still commit); likewise
//!   after `reply` (ten election timeouts) or when this node shuts down. Admin commands
//!   are exempt from the first rule: a leadership transfer succeeds by moving it.
//!
//! With client TLS on, the connection to the leader is TLS too: the leader's certificate
//! is verified against `client_tls_ca` for the host of its advertised client address, and
//! with `client_tls_auth_clients` this node shows its own client port certificate.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use raft_core::NodeId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Stop;
use crate::client_tls::{connect, ClientTlsState, DialedStream};
use crate::cmd::Credentials;
use crate::error::{error_reply, ClusterError, Error};
use crate::raft_loop::LeaderView;
use crate::resp::{decode_frame, encode, Frame, Limits, Protocol};

/// The client name a forwarding node uses, so the leader does not forward again.
pub const FORWARDER_NAME: &[u8] = b"raftkv-forwarder";
/// Connection attempts per forwarded batch.
const ATTEMPTS_MAX: usize = 3;
/// Bytes read per syscall.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// How long forwarding waits, derived from the election timeout.
#[derive(Clone, Copy, Debug)]
pub struct ForwardTimeouts {
    /// For a leader to be known (and between connection attempts).
    pub leader_wait: Duration,
    /// For the leader's replies once sent.
    pub reply: Duration,
    /// For the replies of a leader that has just lost leadership.
    pub grace: Duration,
}

impl ForwardTimeouts {
    /// From the minimum election timeout (terms draw from `[election, 2 × election)`).
    pub fn from_election(election: Duration) -> ForwardTimeouts {
        ForwardTimeouts {
            leader_wait: election * 4,
            reply: election * 10,
            grace: election / 2,
        }
    }
}

/// What forwarding a batch came to.
pub enum Forwarded {
    /// One reply per request, in order.
    Replies(Vec<Frame>),
    /// This node leads now and nothing was sent: propose them here.
    Resubmit,
}

/// A client connection's way to the leader.
pub struct Forwarder {
    leader_watch: watch::Receiver<LeaderView>,
    timeouts: ForwardTimeouts,
    connection: Option<LeaderConnection>,
    /// The client port's TLS, when on: the leader's port speaks it too.
    tls: Option<Arc<ClientTlsState>>,
}

impl Forwarder {
    pub fn new(
        leader_watch: watch::Receiver<LeaderView>,
        timeouts: ForwardTimeouts,
        tls: Option<Arc<ClientTlsState>>,
    ) -> Forwarder {
        Forwarder {
            leader_watch,
            timeouts,
            connection: None,
            tls,
        }
    }

    /// Drops the connection to the leader (it authenticated as the client's previous user).
    pub fn reset(&mut self) {
        self.connection = None;
    }

    /// Sends `requests` to the leader and returns its replies, by the module's rules.
    pub async fn forward(
        &mut self,
        requests: &[Frame],
        follow_leadership: bool,
        limits: &Limits,
        credentials: Option<&Credentials>,
        stop: &Stop,
    ) -> Forwarded {
        let not_sent = |failure: ClusterError| {
            let reply = error_reply(&Error::Cluster(failure));
            Forwarded::Replies(vec![reply; requests.len()])
        };
        let mut last_failure = ClusterError::NoLeader;
        for _ in 0..ATTEMPTS_MAX {
            let Some(view) = self.wait_for_leader(stop).await else {
                return not_sent(ClusterError::NoLeader);
            };
            if view.is_self {
                return Forwarded::Resubmit;
            }
            let (Some(target), Some(address)) = (view.id, view.client) else {
                return not_sent(ClusterError::NoLeader);
            };
            if self.connection.as_ref().is_none_or(|c| c.leader != target) {
                self.connection = None;
                match self.connect(target, &address, limits, credentials).await {
                    Ok(connection) => self.connection = Some(connection),
                    Err(reason) => {
                        last_failure = ClusterError::LeaderUnreachable {
                            leader: address,
                            reason,
                        };
                        self.wait_for_change(stop).await;
                        continue;
                    }
                }
            }
            let follow = follow_leadership.then_some(target);
            return Forwarded::Replies(self.exchange(follow, requests, limits, stop).await);
        }
        not_sent(last_failure)
    }

    /// The leader as the loop sees it, waiting (bounded) while none is known.
    async fn wait_for_leader(&mut self, stop: &Stop) -> Option<LeaderView> {
        let deadline = Instant::now() + self.timeouts.leader_wait;
        loop {
            let view = self.leader_watch.borrow_and_update().clone();
            if view.id.is_some() {
                return Some(view);
            }
            tokio::select! {
                changed = self.leader_watch.changed() => changed.ok()?,
                () = tokio::time::sleep_until(deadline) => return None,
                () = stop.now.cancelled() => return None,
            }
        }
    }

    /// Waits until the leader view changes, at most `leader_wait`.
    async fn wait_for_change(&mut self, stop: &Stop) {
        tokio::select! {
            _ = self.leader_watch.changed() => {}
            () = tokio::time::sleep(self.timeouts.leader_wait) => {}
            () = stop.now.cancelled() => {}
        }
    }

    async fn connect(
        &self,
        leader: NodeId,
        address: &str,
        limits: &Limits,
        credentials: Option<&Credentials>,
    ) -> Result<LeaderConnection, String> {
        let tls = self.tls.as_ref().map(|tls| tls.current().forward);
        let connecting = LeaderConnection::connect(leader, address, tls, limits, credentials);
        match tokio::time::timeout(self.timeouts.leader_wait, connecting).await {
            Ok(connected) => connected,
            Err(_) => Err("connecting timed out".to_owned()),
        }
    }

    /// Sends every request, then reads the replies; what is not answered by the time
    /// leadership has moved away from `follow` (and the grace passed), the timeout passes
    /// or the node stops is `-UNKNOWN`.
    async fn exchange(
        &mut self,
        follow: Option<NodeId>,
        requests: &[Frame],
        limits: &Limits,
        stop: &Stop,
    ) -> Vec<Frame> {
        let connection = self.connection.as_mut().expect("connected");
        let address = connection.address.clone();
        let unknown = |reason: String| {
            error_reply(&Error::Cluster(ClusterError::ForwardFailed {
                leader: address.clone(),
                reason,
            }))
        };
        let mut replies = Vec::with_capacity(requests.len());
        if let Err(reason) = connection.send(requests).await {
            self.connection = None;
            return vec![unknown(reason); requests.len()];
        }
        let deadline = Instant::now() + self.timeouts.reply;
        let watch = &mut self.leader_watch;
        let grace = self.timeouts.grace;
        let moved_away = async {
            let Some(target) = follow else {
                return std::future::pending().await;
            };
            // Moved away means another leader is known: while none is (a campaign, maybe
            // one this node starts and loses), the target may well still answer.
            loop {
                if watch.changed().await.is_err() {
                    return std::future::pending().await;
                }
                if watch.borrow().id.is_some_and(|leader| leader != target) {
                    tokio::time::sleep(grace).await;
                    return target;
                }
            }
        };
        tokio::pin!(moved_away);
        let mut failure = None;
        while replies.len() < requests.len() {
            tokio::select! {
                reply = connection.receive(limits) => match reply {
                    Ok(reply) => replies.push(reply),
                    Err(reason) => {
                        failure = Some(reason);
                        break;
                    }
                },
                target = &mut moved_away => {
                    failure = Some(format!("leadership moved away from node {target}"));
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    failure = Some("timed out".to_owned());
                    break;
                }
                () = stop.now.cancelled() => {
                    failure = Some("this node is shutting down".to_owned());
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            self.connection = None;
            while replies.len() < requests.len() {
                replies.push(unknown(reason.clone()));
            }
        }
        replies
    }
}

/// A connection to the leader's client port carrying forwarded requests.
struct LeaderConnection {
    leader: NodeId,
    address: String,
    stream: DialedStream,
    buffer: BytesMut,
}

impl LeaderConnection {
    /// Connects to the leader's client port and, in one HELLO (which any user may send),
    /// authenticates as the client's own user (replaying what the client authenticated
    /// with; none if it runs as a `default` without password) and names itself a
    /// forwarder. The leader then checks what it is sent as it would the client's own
    /// commands (`crate::acl::logged`).
    async fn connect(
        leader: NodeId,
        address: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        limits: &Limits,
        credentials: Option<&Credentials>,
    ) -> Result<LeaderConnection, String> {
        let stream = connect(address, tls).await.map_err(|e| e.to_string())?;
        let mut connection = LeaderConnection {
            leader,
            address: address.to_owned(),
            stream,
            buffer: BytesMut::new(),
        };
        let mut hello = vec![Frame::bulk("HELLO"), Frame::bulk("2")];
        if let Some(credentials) = credentials {
            hello.push(Frame::bulk("AUTH"));
            hello.push(Frame::Bulk(credentials.username.clone()));
            hello.push(Frame::Bulk(credentials.password.clone()));
        }
        hello.push(Frame::bulk("SETNAME"));
        hello.push(Frame::Bulk(Bytes::from_static(FORWARDER_NAME)));
        let setup = [Frame::Array(hello)];
        connection.send(&setup).await?;
        for _ in &setup {
            if let Frame::Error(refused) = connection.receive(limits).await? {
                return Err(format!("the leader refused this node: {refused}"));
            }
        }
        Ok(connection)
    }

    async fn send(&mut self, requests: &[Frame]) -> Result<(), String> {
        let mut out = BytesMut::new();
        for request in requests {
            encode(request, Protocol::Resp2, &mut out);
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        // Sends what TLS holds back when the socket is full (a no-op for TCP).
        self.stream.flush().await.map_err(|e| e.to_string())
    }

    /// The next reply. Cancel-safe: a partly read reply stays in the buffer.
    async fn receive(&mut self, limits: &Limits) -> Result<Frame, String> {
        loop {
            if let Some(reply) =
                decode_frame(&mut self.buffer, limits).map_err(|e| e.to_string())?
            {
                return Ok(reply);
            }
            self.buffer.reserve(READ_CHUNK_BYTES);
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) => return Err("the leader closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}
