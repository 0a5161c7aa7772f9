//! One client connection: read what the client sent, decode every complete request
//! (pipelining), execute them in order, write all replies with one write. At shutdown
//! ([`Stop`]) it reads nothing more, finishes and answers what it has read, and closes.
//!
//! Writes in a pipeline are submitted together so they share a log batch; a read waits
//! for the writes before it on the same connection, so a client always sees its own
//! writes. A write sent to a follower is forwarded to the leader's client port and the
//! leader's answer relayed (one hop: a forwarded request is never forwarded again).
//! The selected database and MULTI/EXEC/WATCH live in `transaction`; EXEC is one write,
//! forwarded whole like any other.

mod backup;
mod forward;
mod transaction;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use forward::{ForwardTimeouts, FORWARDER_NAME};

use crate::cmd::{
    self, check_credentials, hello_reply, ClientCommand, Command, CommandLimits, Context,
    LocalCommand,
};
use crate::error::{error_reply, ClusterError, Error};
use crate::metrics::Metrics;
use crate::raft_loop::{LeaderView, Outcome, RaftHandle, Request};
use crate::resp::{encode, Frame, Limits, Protocol, RequestDecoder};
use crate::state_machine::{DbIndex, ReadCommand, ReadOp, WriteCommand};
use crate::status::NodeStatus;
use forward::{Forwarded, Forwarder};
use transaction::{ExecPlan, Queued, Session};

/// Times one batch may be proposed here again because this node became the leader while
/// it was being forwarded.
const RESUBMITS_MAX: usize = 2;
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
    /// Who leads, as the raft loop last saw it.
    pub leader_watch: watch::Receiver<LeaderView>,
    pub forward_timeouts: ForwardTimeouts,
    /// Where backups are written while they are read (the node's data directory).
    pub backup_dir: std::path::PathBuf,
    pub cluster_id: u64,
    /// TLS on the client port, which forwarding to the leader's client port uses too.
    pub client_tls: Option<Arc<crate::client_tls::ClientTlsState>>,
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
        retry: Retry,
    },
}

/// How to send a request again: to the leader, or here once this node leads.
#[derive(Clone)]
enum Retry {
    Write(WriteCommand),
    /// An admin command, forwarded as the client sent it.
    Admin(crate::cmd::AdminCommand, Frame),
    /// Reads are never forwarded: the raft loop asks the leader for a read point itself.
    Never,
}

impl Retry {
    /// What a forwarding node sends the leader.
    fn forwarded(&self) -> Frame {
        match self {
            Retry::Write(command) => Frame::Array(vec![
                Frame::bulk(crate::cmd::internal::PROPOSE),
                Frame::Bulk(command.encode()),
            ]),
            Retry::Admin(_, request) => request.clone(),
            Retry::Never => unreachable!("settle answers a read's NotLeader itself"),
        }
    }

    fn request(self, reply: oneshot::Sender<Outcome>) -> Request {
        match self {
            Retry::Write(command) => Request::Write { command, reply },
            Retry::Admin(command, _) => Request::Admin { command, reply },
            Retry::Never => unreachable!("settle answers a read's NotLeader itself"),
        }
    }
}

pub struct Connection {
    shared: Arc<Shared>,
    id: u64,
    protocol: Protocol,
    name: Option<Bytes>,
    authenticated: bool,
    stale_reads: bool,
    closing: bool,
    forwarder: Forwarder,
    stop: Stop,
    /// The backup this connection is reading, if any.
    backup: Option<backup::BackupFile>,
    /// The selected database and the transaction state (`transaction`).
    session: Session,
}

impl Connection {
    pub fn new(shared: Arc<Shared>, id: u64, stop: Stop) -> Connection {
        let authenticated = shared.password.is_none();
        Connection {
            shared: Arc::clone(&shared),
            id,
            protocol: Protocol::Resp2,
            name: None,
            authenticated,
            stale_reads: false,
            closing: false,
            forwarder: Forwarder::new(
                shared.leader_watch.clone(),
                shared.forward_timeouts,
                shared.client_tls.clone(),
            ),
            stop,
            backup: None,
            session: Session::default(),
        }
    }

    /// Serves the client until it disconnects, sends QUIT, sends bytes that are not RESP,
    /// or the server shuts down. `stream` is a TCP stream or a TLS one (monomorphised, so
    /// the plain path is what it was).
    pub async fn serve<S>(mut self, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
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
            // Flushing sends what TLS holds back when the socket is full (a no-op for TCP).
            if stream.write_all(&output).await.is_err() || stream.flush().await.is_err() {
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
        // EXECs whose replies are merged with the answers the connection gave itself.
        let mut execs: Vec<(usize, ExecPlan)> = Vec::new();
        for request in batch {
            self.shared
                .metrics
                .commands_total
                .fetch_add(1, Ordering::Relaxed);
            if self.closing {
                break;
            }
            if self.session.in_transaction() {
                match self
                    .session
                    .queue(request.clone(), &self.shared.command_limits)
                {
                    Queued::Reply(frame) => {
                        pending.push(Pending::Done(frame));
                        continue;
                    }
                    Queued::Exec(plan) => {
                        self.exec(plan, &mut pending, &mut execs).await;
                        continue;
                    }
                    Queued::Run => {}
                }
            }
            let context = Context {
                limits: &self.shared.command_limits,
                db: self.session.db,
            };
            let command = match cmd::parse(request.clone(), &context) {
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
                Command::Local(LocalCommand::Watch { db, keys }) => {
                    // WATCH reads linearizably, after this connection's earlier writes.
                    self.settle(&mut pending).await;
                    Pending::Done(self.watch(db, keys).await)
                }
                Command::Local(local) => Pending::Done(self.local(local).await),
                Command::Backup(step) => Pending::Done(self.backup(step).await),
                Command::Write(command) => self.submit(Retry::Write(command)),
                Command::Admin(command) => self.submit(Retry::Admin(command, request)),
                Command::Read(command) => {
                    // A read must observe this connection's earlier writes: settle them first.
                    self.settle(&mut pending).await;
                    let linearizable = !self.stale_reads;
                    self.submit_with(Retry::Never, |reply| Request::Read {
                        command,
                        linearizable,
                        reply,
                    })
                }
            };
            pending.push(submitted);
        }
        self.settle(&mut pending).await;
        let mut frames: Vec<Frame> = pending
            .into_iter()
            .map(|item| match item {
                Pending::Done(frame) => frame,
                Pending::Waiting { .. } => unreachable!("settled above"),
            })
            .collect();
        for (position, plan) in execs {
            let logged = std::mem::replace(&mut frames[position], Frame::Null);
            frames[position] = plan.merge(Some(logged));
        }
        frames
    }

    /// Runs a planned EXEC: one write, or an answer at once when nothing needs the log.
    /// A transaction that SELECTs is waited for: the database changes only if it ran.
    async fn exec(
        &mut self,
        plan: ExecPlan,
        pending: &mut Vec<Pending>,
        execs: &mut Vec<(usize, ExecPlan)>,
    ) {
        let Some(command) = plan.command.clone() else {
            if let Some(db) = plan.select {
                self.session.db = db;
            }
            pending.push(Pending::Done(plan.merge(None)));
            return;
        };
        let position = pending.len();
        pending.push(self.submit(Retry::Write(command)));
        if let Some(db) = plan.select {
            self.settle(pending).await;
            if matches!(pending[position], Pending::Done(Frame::Array(_))) {
                self.session.db = db;
            }
        }
        execs.push((position, plan));
    }

    /// WATCH: reads the keys' revisions linearizably (whatever READONLY says) and
    /// remembers them for the next EXEC.
    async fn watch(&mut self, db: DbIndex, keys: Vec<Bytes>) -> Frame {
        let (sender, receiver) = oneshot::channel();
        let command = ReadCommand {
            db,
            op: ReadOp::Revisions { keys: keys.clone() },
        };
        let request = Request::Read {
            command,
            linearizable: true,
            reply: sender,
        };
        if let Err(refused) = self.shared.raft.submit(request) {
            return error_reply(&Error::Cluster(refused));
        }
        match receiver.await {
            Ok(Outcome::Reply(revisions)) => {
                self.session
                    .watch(db, keys, revisions, &self.shared.command_limits)
            }
            Ok(Outcome::Failed(failure)) => error_reply(&Error::Cluster(failure)),
            Ok(Outcome::NotLeader) => error_reply(&Error::Cluster(ClusterError::NoLeader)),
            Err(_) => error_reply(&Error::Cluster(ClusterError::ShuttingDown)),
        }
    }

    /// Hands a write or admin command to the raft loop, keeping what it takes to forward
    /// it later.
    fn submit(&self, retry: Retry) -> Pending {
        let request = retry.clone();
        self.submit_with(retry, |reply| request.request(reply))
    }

    fn submit_with(
        &self,
        retry: Retry,
        make: impl FnOnce(oneshot::Sender<Outcome>) -> Request,
    ) -> Pending {
        let (sender, receiver) = oneshot::channel();
        match self.shared.raft.submit(make(sender)) {
            Ok(()) => Pending::Waiting {
                reply: receiver,
                retry,
            },
            Err(refused) => Pending::Done(error_reply(&Error::Cluster(refused))),
        }
    }

    /// Waits for every submitted request; those only the leader can serve are forwarded
    /// to it together (one pipeline), or proposed here again if this node leads by then.
    async fn settle(&mut self, pending: &mut [Pending]) {
        let mut resubmits = 0;
        loop {
            let mut not_leader = Vec::new();
            for (position, item) in pending.iter_mut().enumerate() {
                let Pending::Waiting { reply, retry } = item else {
                    continue;
                };
                let frame = match reply.await {
                    Ok(Outcome::Reply(reply)) => Frame::from(reply),
                    Ok(Outcome::Failed(failure)) => error_reply(&Error::Cluster(failure)),
                    Ok(Outcome::NotLeader) if matches!(retry, Retry::Never) => {
                        error_reply(&Error::Cluster(ClusterError::NoLeader))
                    }
                    Ok(Outcome::NotLeader) => {
                        not_leader.push(position);
                        continue;
                    }
                    Err(_) => error_reply(&Error::Cluster(ClusterError::ShuttingDown)),
                };
                *item = Pending::Done(frame);
            }
            if not_leader.is_empty() {
                return;
            }
            if resubmits == RESUBMITS_MAX {
                // Refused by this node's loop each time: never proposed.
                let no_leader = error_reply(&Error::Cluster(ClusterError::NoLeader));
                for position in not_leader {
                    pending[position] = Pending::Done(no_leader.clone());
                }
                return;
            }
            let retries: Vec<Retry> = not_leader
                .iter()
                .map(|&position| match &pending[position] {
                    Pending::Waiting { retry, .. } => retry.clone(),
                    Pending::Done(_) => unreachable!("still waiting"),
                })
                .collect();
            match self.forward(&retries).await {
                Forwarded::Replies(replies) => {
                    for (position, reply) in not_leader.into_iter().zip(replies) {
                        pending[position] = Pending::Done(reply);
                    }
                    return;
                }
                Forwarded::Resubmit => {
                    resubmits += 1;
                    for (position, retry) in not_leader.into_iter().zip(retries) {
                        pending[position] = self.submit(retry);
                    }
                }
            }
        }
    }

    async fn forward(&mut self, retries: &[Retry]) -> Forwarded {
        // A forwarded request is never forwarded again: one hop.
        if self.name.as_deref() == Some(FORWARDER_NAME) {
            let reply = error_reply(&Error::Cluster(ClusterError::NoLeader));
            return Forwarded::Replies(vec![reply; retries.len()]);
        }
        self.shared
            .metrics
            .forwarded_total
            .fetch_add(retries.len() as u64, Ordering::Relaxed);
        let requests: Vec<Frame> = retries.iter().map(Retry::forwarded).collect();
        let follow_leadership = retries.iter().all(|retry| matches!(retry, Retry::Write(_)));
        self.forwarder
            .forward(
                &requests,
                follow_leadership,
                &self.shared.limits,
                self.shared.password.as_deref(),
                &self.stop,
            )
            .await
    }

    async fn local(&mut self, command: LocalCommand) -> Frame {
        if let Some(reply) = command.stateless_reply() {
            match command {
                LocalCommand::Quit => self.closing = true,
                LocalCommand::ReadOnly => self.stale_reads = true,
                LocalCommand::ReadWrite => self.stale_reads = false,
                LocalCommand::Select(db) => self.session.db = db,
                _ => {}
            }
            return reply;
        }
        match command {
            LocalCommand::Multi => self.session.multi(),
            LocalCommand::Exec | LocalCommand::Discard => Session::not_in_transaction(&command),
            LocalCommand::Unwatch => {
                self.session.unwatch();
                Frame::ok()
            }
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

    async fn backup(&mut self, step: cmd::internal::BackupCommand) -> Frame {
        use cmd::internal::BackupCommand;
        let failed = |reason: String| Frame::Error(format!("ERR backup failed: {reason}"));
        match step {
            BackupCommand::Begin => {
                let (sender, receiver) = oneshot::channel();
                if let Err(refused) = self.shared.raft.submit(Request::Capture { reply: sender }) {
                    return error_reply(&Error::Cluster(refused));
                }
                let captured = match receiver.await {
                    Ok(Ok(captured)) => captured,
                    Ok(Err(failure)) => return error_reply(&Error::Cluster(failure)),
                    Err(_) => return error_reply(&Error::Cluster(ClusterError::Stopping)),
                };
                let dir = self.shared.backup_dir.clone();
                let written =
                    tokio::task::spawn_blocking(move || backup::BackupFile::write(&dir, captured))
                        .await;
                let file = match written {
                    Ok(Ok(file)) => file,
                    Ok(Err(failure)) => return failed(failure.to_string()),
                    Err(failure) => return failed(failure.to_string()),
                };
                let reply = Frame::Array(
                    [file.index, file.term, self.shared.cluster_id, file.bytes]
                        .into_iter()
                        .map(|n| Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX)))
                        .collect(),
                );
                self.backup = Some(file);
                reply
            }
            BackupCommand::Read { offset } => {
                let Some(file) = self.backup.as_ref().map(backup::BackupFile::share) else {
                    return Frame::Error(
                        "ERR no backup on this connection: send RAFTKV.BACKUP first".into(),
                    );
                };
                if offset >= file.bytes {
                    self.backup = None;
                    return Frame::Bulk(Bytes::new());
                }
                match tokio::task::spawn_blocking(move || file.chunk(offset)).await {
                    Ok(Ok(chunk)) => Frame::Bulk(chunk),
                    Ok(Err(failure)) => failed(failure.to_string()),
                    Err(failure) => failed(failure.to_string()),
                }
            }
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
