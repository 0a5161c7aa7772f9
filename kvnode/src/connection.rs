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
//!
//! Every command is checked against the connection's ACL user before it runs (`access`):
//! NOAUTH until it authenticates (unless `default` needs no password), NOPERM for a
//! command or key the user may not use. A connection whose user is deleted is closed, as
//! Redis does, at once if idle.

mod access;
mod backup;
mod forward;
mod local;
mod transaction;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use forward::{ForwardTimeouts, FORWARDER_NAME};

use crate::acl::{Identity, Users};
use crate::clients::{ClientRegistry, Registration};
use crate::cmd::{self, Command, CommandLimits, Context, LocalCommand};
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
    /// The ACL users, as this node last applied them.
    pub users: watch::Receiver<Arc<Users>>,
    pub forward_timeouts: ForwardTimeouts,
    /// Where backups are written while they are read (the node's data directory).
    pub backup_dir: std::path::PathBuf,
    pub cluster_id: u64,
    /// Every open client connection (CLIENT LIST, INFO's `connected_clients`).
    pub clients: Arc<ClientRegistry>,
    /// The most client connections at once (INFO's `maxclients`).
    pub connections_max: usize,
    /// 40 hex digits, new at every start (INFO's `run_id`).
    pub run_id: String,
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
    /// This connection's entry in [`Shared::clients`], listed while the connection lives.
    registration: Registration,
    protocol: Protocol,
    name: Option<Bytes>,
    /// Who the connection authenticated as; `None`: not yet (it runs as `default` if that
    /// needs no password).
    identity: Option<Identity>,
    /// The users as this node applied them (the connection waits on it while idle).
    users: watch::Receiver<Arc<Users>>,
    /// This connection changed the users: the next AUTH or ACL query first waits until
    /// this node has applied everything committed (a follower may lag the leader).
    acl_barrier: bool,
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
    pub fn new(shared: Arc<Shared>, registration: Registration, stop: Stop) -> Connection {
        Connection {
            shared: Arc::clone(&shared),
            id: registration.entry.id,
            registration,
            protocol: Protocol::Resp2,
            name: None,
            identity: None,
            users: shared.users.clone(),
            acl_barrier: false,
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
        // The signals that close the connection, each waited for by one future made once:
        // a future made anew for every read would register with (and lock) a waiter list
        // that every connection shares, once per request.
        let drained = self.stop.drain.clone().cancelled_owned();
        let killed = self.registration.entry.kill.clone().cancelled_owned();
        let users_changed = users_change(self.users.clone());
        tokio::pin!(drained, killed, users_changed);
        // False once the raft loop is gone (its publisher dropped): nothing to wait for.
        let mut users_published = true;
        loop {
            input.reserve(READ_CHUNK_BYTES);
            let read = tokio::select! {
                biased;
                () = &mut drained => {
                    debug!(connection = self.id, "closing client connection: shutting down");
                    return;
                }
                changed = &mut users_changed, if users_published => {
                    match changed {
                        Some(users) => users_changed.set(users_change(users)),
                        None => users_published = false,
                    }
                    if users_published && self.user_deleted() {
                        debug!(connection = self.id, "closing client connection: its user was deleted");
                        return;
                    }
                    continue;
                }
                () = &mut killed => {
                    debug!(connection = self.id, "closing client connection: CLIENT KILL");
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
                let users = self.users.borrow().clone();
                let user = self.user(&users);
                if user == Err(access::Gate::Deleted) {
                    self.closing = true;
                    break;
                }
                let permit = |spec: &cmd::Spec, words: &[Bytes]| {
                    Connection::permit_queued(&user, spec, words)
                };
                match self
                    .session
                    .queue(request.clone(), &self.shared.command_limits, &permit)
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
            let command = match self.admitted(request.clone()) {
                Ok(command) => command,
                Err(Some(refused)) => {
                    pending.push(Pending::Done(refused));
                    continue;
                }
                Err(None) => {
                    self.closing = true;
                    break;
                }
            };
            let submitted = match command {
                Command::Local(LocalCommand::Watch { db, keys }) => {
                    // WATCH reads linearizably, after this connection's earlier writes.
                    self.settle(&mut pending).await;
                    Pending::Done(self.watch(db, keys).await)
                }
                Command::Local(local) => {
                    if access::reads_users(&local) {
                        self.settle(&mut pending).await;
                    }
                    Pending::Done(self.local(local).await)
                }
                Command::Backup(step) => Pending::Done(self.backup(step).await),
                Command::Write(command) => {
                    self.acl_barrier |= command.op.is_acl();
                    self.submit(Retry::Write(command))
                }
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
        self.publish_state();
        frames
    }

    /// Parses a request and checks that this connection may run it: `Err(Some(reply))`
    /// refuses it (a parse error, NOAUTH, NOPERM), `Err(None)` closes the connection (its
    /// user was deleted).
    fn admitted(&self, request: Frame) -> Result<Command, Option<Frame>> {
        let invalid = |error| Some(error_reply(&Error::Command(error)));
        let words = cmd::words(request).map_err(invalid)?;
        let row = cmd::check_row(&words);
        // What CLIENT LIST shows as the last command, known or not.
        self.registration.entry.touch(row.as_ref().ok().copied());
        let spec = &cmd::SPECS[row.map_err(invalid)?];
        let users = self.users.borrow().clone();
        let user = match self.admit(&users, spec, &words) {
            access::Admit::Run(user) => user,
            access::Admit::Refuse(reply) => return Err(Some(reply)),
            access::Admit::Close => return Err(None),
        };
        let context = Context {
            limits: &self.shared.command_limits,
            db: self.session.db,
        };
        let command = cmd::parse_checked(spec, &words, &context).map_err(invalid)?;
        Connection::admit_parsed(user.as_deref(), &command).map_err(Some)?;
        Ok(command)
    }

    /// Shows this connection's state in its registry entry (CLIENT LIST).
    fn publish_state(&self) {
        let protocol = match self.protocol {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        };
        self.registration.entry.set_state(
            self.session.db.0,
            self.session.queued_len(),
            protocol,
            self.stale_reads,
        );
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
                self.identity.as_ref().map(|identity| &identity.credentials),
                &self.stop,
            )
            .await
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

/// Resolves with the receiver once the users change; `None` once their publisher is gone.
async fn users_change(
    mut users: watch::Receiver<Arc<Users>>,
) -> Option<watch::Receiver<Arc<Users>>> {
    users.changed().await.ok().map(|()| users)
}
