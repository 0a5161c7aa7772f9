//! One client connection: read what the client sent, decode every complete request
//! (pipelining), execute them in order, write all replies with one write. At shutdown
//! ([`Stop`]) it reads nothing more, finishes and answers what it has read, and closes.
//!
//! Writes in a pipeline are submitted together so they share a log batch; a read waits
//! for the writes before it on the same connection, so a client always sees its own
//! writes. A write sent to a follower is forwarded to the leader's client port and the
//! leader's answer relayed (one hop: a forwarded request is never forwarded again).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::cmd::{
    self, check_credentials, hello_reply, ClientCommand, Command, CommandLimits, LocalCommand,
};
use crate::error::{error_reply, ClusterError, Error};
use crate::metrics::Metrics;
use crate::raft_loop::{Outcome, RaftHandle, Request};
use crate::resp::{decode_frame, encode, Frame, Limits, Protocol, RequestDecoder};
use crate::status::NodeStatus;

/// The client name a forwarding node uses, so the leader does not forward again.
const FORWARDER_NAME: &[u8] = b"raftkv-forwarder";
/// How long a forwarded request may take before the client is told the outcome is unknown.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read per syscall.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// What every connection shares.
pub struct Shared {
    pub raft: RaftHandle,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub command_limits: CommandLimits,
    pub password: Option<String>,
    pub started: std::time::Instant,
    pub node_id: u64,
}

/// The server's shutdown signals, shared by every connection.
#[derive(Clone, Default)]
pub struct Stop {
    /// Read no more requests: answer those already read, then close.
    pub drain: CancellationToken,
    /// The raft loop has stopped: give up on forwarded requests too.
    pub now: CancellationToken,
}

enum Pending {
    Done(Frame),
    Waiting {
        reply: oneshot::Receiver<Outcome>,
        request: Frame,
    },
}

pub struct Connection {
    shared: Arc<Shared>,
    id: u64,
    protocol: Protocol,
    name: Option<Bytes>,
    authenticated: bool,
    stale_reads: bool,
    closing: bool,
    forwarder: Option<Forwarder>,
    stop: Stop,
}

impl Connection {
    pub fn new(shared: Arc<Shared>, id: u64, stop: Stop) -> Connection {
        let authenticated = shared.password.is_none();
        Connection {
            shared,
            id,
            protocol: Protocol::Resp2,
            name: None,
            authenticated,
            stale_reads: false,
            closing: false,
            forwarder: None,
            stop,
        }
    }

    /// Serves the client until it disconnects, sends QUIT, sends bytes that are not RESP,
    /// or the server shuts down.
    pub async fn serve(mut self, mut stream: TcpStream) {
        let mut decoder = RequestDecoder::new(self.shared.limits.clone());
        let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let mut output = BytesMut::new();
        loop {
            input.reserve(READ_CHUNK_BYTES);
            let read = tokio::select! {
                biased;
                () = self.stop.drain.cancelled() => {
                    debug!(connection = self.id, "closing client connection: shutting down");
                    return;
                }
                read = stream.read_buf(&mut input) => read,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let mut batch = Vec::new();
            let mut protocol_error = None;
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => batch.push(frame),
                    Ok(None) => break,
                    Err(bad) => {
                        protocol_error = Some(error_reply(&Error::Protocol(bad)));
                        break;
                    }
                }
            }
            for reply in self.execute(batch).await {
                encode(&reply, self.protocol, &mut output);
            }
            if let Some(reply) = &protocol_error {
                encode(reply, self.protocol, &mut output);
            }
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
            if protocol_error.is_some() || self.closing {
                debug!(connection = self.id, "closing client connection");
                return;
            }
        }
    }

    async fn execute(&mut self, batch: Vec<Frame>) -> Vec<Frame> {
        let mut pending: Vec<Pending> = Vec::with_capacity(batch.len());
        for request in batch {
            self.shared
                .metrics
                .commands_total
                .fetch_add(1, Ordering::Relaxed);
            if self.closing {
                break;
            }
            let command = match cmd::parse(request.clone(), &self.shared.command_limits) {
                Ok(command) => command,
                Err(invalid) => {
                    pending.push(Pending::Done(error_reply(&Error::Command(invalid))));
                    continue;
                }
            };
            if !self.authenticated && !command.allowed_before_auth() {
                pending.push(Pending::Done(error_reply(&Error::Command(
                    cmd::CommandError::NoAuth,
                ))));
                continue;
            }
            let submitted = match command {
                Command::Local(local) => Pending::Done(self.local(local).await),
                Command::Write(command) => {
                    self.submit(request, |reply| Request::Write { command, reply })
                }
                Command::Admin(command) => {
                    self.submit(request, |reply| Request::Admin { command, reply })
                }
                Command::Read(command) => {
                    // A read must observe this connection's earlier writes: settle them first.
                    self.settle(&mut pending).await;
                    let linearizable = !self.stale_reads;
                    self.submit(request, |reply| Request::Read {
                        command,
                        linearizable,
                        reply,
                    })
                }
            };
            pending.push(submitted);
        }
        self.settle(&mut pending).await;
        pending
            .into_iter()
            .map(|item| match item {
                Pending::Done(frame) => frame,
                Pending::Waiting { .. } => unreachable!("settled above"),
            })
            .collect()
    }

    fn submit(
        &self,
        request: Frame,
        make: impl FnOnce(oneshot::Sender<Outcome>) -> Request,
    ) -> Pending {
        let (sender, receiver) = oneshot::channel();
        match self.shared.raft.submit(make(sender)) {
            Ok(()) => Pending::Waiting {
                reply: receiver,
                request,
            },
            Err(refused) => Pending::Done(error_reply(&Error::Cluster(refused))),
        }
    }

    /// Waits for every submitted request, forwarding those the leader must handle.
    async fn settle(&mut self, pending: &mut [Pending]) {
        for item in pending.iter_mut() {
            let Pending::Waiting { reply, request } = item else {
                continue;
            };
            let frame = match reply.await {
                Ok(Outcome::Reply(reply)) => Frame::from(reply),
                Ok(Outcome::Failed(failure)) => error_reply(&Error::Cluster(failure)),
                Ok(Outcome::NotLeader { leader_client }) => {
                    let request = std::mem::replace(request, Frame::Null);
                    self.forward(request, leader_client).await
                }
                Err(_) => error_reply(&Error::Cluster(ClusterError::ShuttingDown)),
            };
            *item = Pending::Done(frame);
        }
    }

    async fn forward(&mut self, request: Frame, leader_client: Option<String>) -> Frame {
        let is_forwarded = self.name.as_deref() == Some(FORWARDER_NAME);
        let Some(leader) = leader_client.filter(|_| !is_forwarded) else {
            return error_reply(&Error::Cluster(ClusterError::NoLeader));
        };
        self.shared
            .metrics
            .forwarded_total
            .fetch_add(1, Ordering::Relaxed);
        if self.forwarder.as_ref().is_none_or(|f| f.leader != leader) {
            self.forwarder = None;
        }
        let limits = self.shared.limits.clone();
        if self.forwarder.is_none() {
            // Nothing was sent if we cannot connect: the client may safely retry.
            let connecting = tokio::time::timeout(
                FORWARD_TIMEOUT,
                Forwarder::connect(&leader, &limits, self.shared.password.as_deref()),
            );
            match connecting.await {
                Ok(Ok(forwarder)) => self.forwarder = Some(forwarder),
                Ok(Err(reason)) => {
                    return error_reply(&Error::Cluster(ClusterError::LeaderUnreachable {
                        leader,
                        reason,
                    }))
                }
                Err(_) => {
                    let reason = "connecting timed out".to_string();
                    return error_reply(&Error::Cluster(ClusterError::LeaderUnreachable {
                        leader,
                        reason,
                    }));
                }
            }
        }
        let forwarder = self.forwarder.as_mut().expect("connected above");
        let attempt = tokio::time::timeout(FORWARD_TIMEOUT, forwarder.call(&request, &limits));
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            () = self.stop.now.cancelled() => Ok(Err("this node is shutting down".to_owned())),
        };
        match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(reason)) => {
                self.forwarder = None;
                error_reply(&Error::Cluster(ClusterError::ForwardFailed {
                    leader,
                    reason,
                }))
            }
            Err(_) => {
                self.forwarder = None;
                error_reply(&Error::Cluster(ClusterError::ForwardFailed {
                    leader,
                    reason: "timed out".into(),
                }))
            }
        }
    }

    async fn local(&mut self, command: LocalCommand) -> Frame {
        if let Some(reply) = command.stateless_reply() {
            match command {
                LocalCommand::Quit => self.closing = true,
                LocalCommand::ReadOnly => self.stale_reads = true,
                LocalCommand::ReadWrite => self.stale_reads = false,
                _ => {}
            }
            return reply;
        }
        match command {
            LocalCommand::Hello(hello) => {
                if let Some(credentials) = &hello.auth {
                    if let Err(refused) = check_credentials(
                        self.shared.password.as_deref().map(str::as_bytes),
                        credentials,
                    ) {
                        return error_reply(&Error::Command(refused));
                    }
                    self.authenticated = true;
                }
                if !self.authenticated {
                    return error_reply(&Error::Command(cmd::CommandError::NoAuth));
                }
                if let Some(protocol) = hello.protocol {
                    self.protocol = protocol;
                }
                if let Some(name) = hello.client_name {
                    self.name = Some(name);
                }
                let role = match self.status().await {
                    Some(status) if status.is_leader() => "master",
                    _ => "replica",
                };
                hello_reply(self.protocol, self.id, role)
            }
            LocalCommand::Auth(credentials) => {
                match check_credentials(
                    self.shared.password.as_deref().map(str::as_bytes),
                    &credentials,
                ) {
                    Ok(()) => {
                        self.authenticated = true;
                        Frame::ok()
                    }
                    Err(refused) => error_reply(&Error::Command(refused)),
                }
            }
            LocalCommand::Client(client) => match client {
                ClientCommand::SetName(name) => {
                    self.name = (!name.is_empty()).then_some(name);
                    Frame::ok()
                }
                ClientCommand::GetName => self.name.clone().map_or(Frame::Null, Frame::Bulk),
                ClientCommand::Id => Frame::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
                ClientCommand::SetInfo { .. } => Frame::ok(),
            },
            LocalCommand::Info { sections } => match self.status().await {
                Some(status) => Frame::Bulk(Bytes::from(crate::info::render(
                    &sections,
                    &status,
                    &self.shared,
                ))),
                None => error_reply(&Error::Cluster(ClusterError::Overloaded(
                    "status unavailable",
                ))),
            },
            other => unreachable!("{other:?} has a stateless reply"),
        }
    }

    async fn status(&self) -> Option<NodeStatus> {
        let (sender, receiver) = oneshot::channel();
        self.shared
            .raft
            .submit(Request::Status { reply: sender })
            .ok()?;
        receiver.await.ok()
    }
}

/// A connection to the leader's client port carrying forwarded requests.
struct Forwarder {
    leader: String,
    stream: TcpStream,
    buffer: BytesMut,
}

impl Forwarder {
    /// Connects to the leader's client port, authenticating with the cluster's password
    /// (every node is configured with the same one) and naming itself a forwarder.
    async fn connect(
        leader: &str,
        limits: &Limits,
        password: Option<&str>,
    ) -> Result<Forwarder, String> {
        let stream = TcpStream::connect(leader)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut forwarder = Forwarder {
            leader: leader.to_string(),
            stream,
            buffer: BytesMut::new(),
        };
        if let Some(password) = password {
            let auth = Frame::Array(vec![Frame::bulk("AUTH"), Frame::bulk(password)]);
            if let Frame::Error(refused) = forwarder.call(&auth, limits).await? {
                return Err(format!(
                    "the leader refused this node's password: {refused}"
                ));
            }
        }
        let hello = Frame::Array(vec![
            Frame::bulk("CLIENT"),
            Frame::bulk("SETNAME"),
            Frame::Bulk(Bytes::from_static(FORWARDER_NAME)),
        ]);
        forwarder.call(&hello, limits).await?;
        Ok(forwarder)
    }

    async fn call(&mut self, request: &Frame, limits: &Limits) -> Result<Frame, String> {
        let mut out = BytesMut::new();
        encode(request, Protocol::Resp2, &mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
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
