//! A 3-node raftkv cluster inside one process, with everything real below the state
//! machine: raft-core nodes, raft-wal stores syncing every batch (`SyncPolicy::Always`) in a
//! temp dir, and raft-net transports over loopback TCP. It measures what one client write
//! costs end to end (propose → leader and follower WAL sync → acknowledgement → commit →
//! apply on the leader), and the broadcast time of Raft's timing rule
//! (broadcastTime << electionTimeout, DESIGN.md "Timing").
//!
//! Shape: one OS thread per node owns its `Node<WalStore>` ([`driver`]); a 2-worker tokio
//! runtime (kvnode's, on the 2-core machine) carries the three transports, and one task
//! per node forwards inbound peer messages into the node's bounded inbox, where proposals
//! also arrive. Timing is kvnode's default: a tick every 50 ms, heartbeat every tick,
//! election timeout drawn from [3, 6) ticks, i.e. [150, 300) ms.
//!
//! Never: bind anything but 127.0.0.1, or leave anything behind: [`TcpCluster::shutdown`]
//! (or drop) joins every node thread, shuts every transport down (all sockets closed),
//! ends every task and removes the temp dir.

mod driver;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use raft_core::storage::{bootstrap_entries, bootstrap_hard_state};
use raft_core::{Config, LogIndex, LogStoreMut, Membership, Message, Node, NodeId};
use raft_net::{ClusterId, Transport, TransportConfig};
use raft_wal::{SyncPolicy, WalConfig, WalStore};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use driver::{ClusterView, Driver, Input};
pub use driver::{NodeStats, SAMPLES_MAX};

/// Voters in the cluster.
pub const NODE_COUNT: u64 = 3;
/// One tick; also the heartbeat interval (kvnode's default `heartbeat_ms`).
pub const TICK: Duration = Duration::from_millis(50);
pub const HEARTBEAT_TICKS: u32 = 1;
/// Base election timeout: each term draws from `[ELECTION_TICKS, 2 * ELECTION_TICKS)`.
pub const ELECTION_TICKS: u32 = 3;
/// kvnode's default WAL segment size, so segment rollover is as rare as in production.
pub const WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A node's inbox (peer messages and proposals): as deep as the transport's inbound queue,
/// so the forwarder drops a message only when a node has fallen far behind.
const INBOX_MSGS_MAX: usize = 4096;
/// Tokio workers for the transports: one per core of the 2-core bench machine.
const RUNTIME_WORKERS: usize = 2;
/// How long shutdown waits for a forwarder task, and the runtime for its tasks.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `wait_for_leader` looks.
const LEADER_POLL: Duration = Duration::from_millis(5);

const _: () = assert!(HEARTBEAT_TICKS < ELECTION_TICKS);

/// A proposal committed and applied on the leader.
#[derive(Clone, Copy, Debug)]
pub struct Commit {
    pub index: LogIndex,
    /// From submission (before it entered the leader's inbox) to the leader applying it.
    pub latency: Duration,
}

/// Why a proposal did not commit. All but `Timeout` and `NodeGone` are retryable.
#[derive(Clone, Debug)]
pub enum ProposeError {
    NoLeader,
    NotLeader,
    LeaderLost,
    Overwritten,
    Overloaded,
    Refused(raft_core::Error),
    ShuttingDown,
    Timeout { waited: Duration },
    NodeGone { node: NodeId },
}

impl ProposeError {
    /// Whether retrying after a new leader is known can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ProposeError::Timeout { .. } | ProposeError::NodeGone { .. }
        )
    }
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NoLeader => write!(f, "no leader is known"),
            ProposeError::NotLeader => write!(f, "the node asked is not the leader"),
            ProposeError::LeaderLost => write!(f, "the leader stepped down before applying"),
            ProposeError::Overwritten => write!(f, "the entry was overwritten by a new leader"),
            ProposeError::Overloaded => write!(f, "too many proposals pending"),
            ProposeError::Refused(refused) => write!(f, "refused: {refused}"),
            ProposeError::ShuttingDown => write!(f, "the node is shutting down"),
            ProposeError::Timeout { waited } => write!(f, "no answer within {waited:?}"),
            ProposeError::NodeGone { node } => write!(f, "node {node}'s thread has stopped"),
        }
    }
}

impl std::error::Error for ProposeError {}

struct NodeHandle {
    id: NodeId,
    inbox: SyncSender<Input>,
    thread: Option<JoinHandle<()>>,
    transport: Transport,
    forwarder: Option<tokio::task::JoinHandle<()>>,
    dir: PathBuf,
}

pub struct TcpCluster {
    /// `None` once shut down.
    runtime: Option<Runtime>,
    nodes: Vec<NodeHandle>,
    view: Arc<ClusterView>,
    root: Option<tempfile::TempDir>,
}

impl TcpCluster {
    /// Bootstraps three empty WALs in a fresh temp dir (`$TMPDIR`), binds three transports
    /// on 127.0.0.1:0, introduces them to each other and starts the node threads. No leader
    /// yet: see [`TcpCluster::wait_for_leader`].
    ///
    /// # Errors
    /// If the runtime, temp dir, a WAL, a transport or a thread cannot be created.
    pub fn start() -> anyhow::Result<TcpCluster> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
            .thread_name("tcp-cluster-net")
            .enable_all()
            .build()
            .context("build the transports' tokio runtime")?;
        let root = tempfile::Builder::new()
            .prefix("raftkv-tcp-cluster-")
            .tempdir()
            .context("create the cluster's temp dir")?;
        let mut started = Vec::new();
        for id in (1..=NODE_COUNT).map(NodeId) {
            let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let config = TransportConfig::new(ClusterId(1), id, listen);
            let transport = runtime
                .block_on(Transport::start(config))
                .with_context(|| format!("start node {id}'s transport on {listen}"))?;
            started.push(transport);
        }
        let addresses: Vec<(NodeId, SocketAddr)> = started
            .iter()
            .map(|(transport, _)| (transport.node_id(), transport.local_addr()))
            .collect();
        for (transport, _) in &started {
            for &(peer, address) in &addresses {
                if peer != transport.node_id() {
                    transport
                        .set_peer(peer, address)
                        .with_context(|| format!("add peer {peer} at {address}"))?;
                }
            }
        }
        // From here on, a failure drops `cluster`, which stops what was started.
        let mut cluster = TcpCluster {
            runtime: Some(runtime),
            nodes: Vec::new(),
            view: Arc::new(ClusterView::default()),
            root: Some(root),
        };
        for (transport, inbound) in started {
            let node = cluster.start_node(transport, inbound)?;
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    fn start_node(
        &self,
        transport: Transport,
        inbound: mpsc::Receiver<Message>,
    ) -> anyhow::Result<NodeHandle> {
        let id = transport.node_id();
        let root = self.root.as_ref().expect("set until shutdown");
        let runtime = self.runtime.as_ref().expect("set until shutdown");
        let dir = root.path().join(format!("node-{id}"));
        let store = bootstrap_store(&dir)?;
        let mut config = Config::new(id);
        config.heartbeat_ticks = HEARTBEAT_TICKS;
        config.election_ticks = ELECTION_TICKS;
        let node = Node::new(config, store).with_context(|| format!("create node {id}"))?;
        let (inbox, inbox_rx) = sync_channel(INBOX_MSGS_MAX);
        let forwarder = runtime.spawn(forward(inbound, inbox.clone()));
        let driver = Driver::new(
            node,
            transport.clone(),
            inbox_rx,
            inbox.clone(),
            Arc::clone(&self.view),
        );
        let thread = std::thread::Builder::new()
            .name(format!("raft-node-{id}"))
            .spawn(move || driver.run())
            .with_context(|| format!("spawn node {id}'s thread"))?;
        Ok(NodeHandle {
            id,
            inbox,
            thread: Some(thread),
            transport,
            forwarder: Some(forwarder),
            dir,
        })
    }

    /// Polls until some node is leader, or `timeout` passes.
    ///
    /// # Errors
    /// If no leader is known after `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                bail!("no leader elected within {timeout:?}");
            }
            std::thread::sleep(LEADER_POLL);
        }
    }

    /// The current leader as the nodes last reported it.
    pub fn leader(&self) -> Option<NodeId> {
        match self.view.leader.load(Ordering::SeqCst) {
            0 => None,
            id => Some(NodeId(id)),
        }
    }

    /// Elections won since start; 1 if leadership never changed after the first election.
    pub fn elections_won(&self) -> u64 {
        self.view.elections_won.load(Ordering::SeqCst)
    }

    /// Each node's data directory (removed by `shutdown`).
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|node| node.dir.clone()).collect()
    }

    /// Submits every payload to the leader at once (all in flight together) and waits until
    /// the leader has applied each one. Returns one [`Commit`] per payload, in order.
    ///
    /// # Errors
    /// The first failure seen; proposals already submitted may still commit.
    pub fn commit(
        &self,
        payloads: &[Bytes],
        timeout: Duration,
    ) -> Result<Vec<Commit>, ProposeError> {
        let leader = self.leader().ok_or(ProposeError::NoLeader)?;
        let node = self.node(leader);
        let (reply, replies) = sync_channel(payloads.len());
        for data in payloads {
            let input = Input::Propose {
                data: data.clone(),
                submitted_at: Instant::now(),
                reply: reply.clone(),
            };
            match node.inbox.try_send(input) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(ProposeError::Overloaded),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(ProposeError::NodeGone { node: leader })
                }
            }
        }
        drop(reply);
        let deadline = Instant::now() + timeout;
        let mut commits = Vec::with_capacity(payloads.len());
        for _ in 0..payloads.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match replies.recv_timeout(left) {
                Ok(outcome) => commits.push(outcome?),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ProposeError::Timeout { waited: timeout })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(ProposeError::NodeGone { node: leader })
                }
            }
        }
        commits.sort_by_key(|commit| commit.index);
        Ok(commits)
    }

    /// Takes (and clears) the timings every node collected, in node id order.
    ///
    /// # Errors
    /// If a node does not answer within `timeout`.
    pub fn take_stats(&self, timeout: Duration) -> anyhow::Result<Vec<(NodeId, NodeStats)>> {
        let mut all = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let (reply, answer) = sync_channel(1);
            node.inbox
                .send(Input::TakeStats { reply })
                .map_err(|_| anyhow!("node {}'s thread has stopped", node.id))?;
            let stats = answer
                .recv_timeout(timeout)
                .with_context(|| format!("stats from node {}", node.id))?;
            all.push((node.id, stats));
        }
        Ok(all)
    }

    /// Stops every node thread (after its last sync), shuts every transport down, ends
    /// every task and removes the temp dir.
    ///
    /// # Errors
    /// If a node thread panicked, a task did not end in time, or the temp dir could not
    /// be removed; everything else is still stopped.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown_everything()
    }

    fn node(&self, id: NodeId) -> &NodeHandle {
        self.nodes
            .iter()
            .find(|node| node.id == id)
            .expect("leaders are members")
    }

    fn shutdown_everything(&mut self) -> anyhow::Result<()> {
        let Some(runtime) = self.runtime.take() else {
            return Ok(());
        };
        let mut failures = Vec::new();
        for node in &self.nodes {
            // Blocking is fine: a live node drains its inbox every iteration, and a stopped
            // one has dropped the receiver, which fails the send at once.
            let _ = node.inbox.send(Input::Shutdown);
        }
        for node in &mut self.nodes {
            let thread = node.thread.take().expect("joined only here");
            if thread.join().is_err() {
                failures.push(format!("node {}'s thread panicked", node.id));
            }
        }
        for node in &mut self.nodes {
            runtime.block_on(node.transport.shutdown());
            let forwarder = node.forwarder.take().expect("awaited only here");
            // The timer must be created inside the runtime.
            let ended =
                runtime.block_on(async { tokio::time::timeout(SHUTDOWN_TIMEOUT, forwarder).await });
            if !matches!(ended, Ok(Ok(()))) {
                failures.push(format!("node {}'s forwarder did not end cleanly", node.id));
            }
        }
        runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
        if let Some(root) = self.root.take() {
            let path = root.path().to_path_buf();
            if let Err(failure) = root.close() {
                failures.push(format!("remove {}: {failure}", path.display()));
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(anyhow!("cluster shutdown: {}", failures.join("; "))),
        }
    }
}

impl Drop for TcpCluster {
    fn drop(&mut self) {
        if let Err(failure) = self.shutdown_everything() {
            // Drop cannot return it; `shutdown` is the way to see it.
            eprintln!("{failure:#}");
        }
    }
}

/// Opens an empty WAL in `dir` and writes what every founding member starts with: the
/// initial configuration as entry 1 of term 1, and the bootstrap hard state.
fn bootstrap_store(dir: &Path) -> anyhow::Result<WalStore> {
    let config = WalConfig {
        segment_bytes: WAL_SEGMENT_BYTES,
        sync_policy: SyncPolicy::Always,
        ..WalConfig::default()
    };
    let mut store = WalStore::open(dir, config)
        .with_context(|| format!("open the WAL in {}", dir.display()))?;
    let membership = Membership::with_voters((1..=NODE_COUNT).map(NodeId));
    let bootstrap = || -> Result<(), raft_core::StorageError> {
        store.append(&bootstrap_entries(membership))?;
        store.set_hard_state(bootstrap_hard_state())?;
        store.sync()
    };
    bootstrap().with_context(|| format!("bootstrap the WAL in {}", dir.display()))?;
    Ok(store)
}

/// Moves peer messages from the transport into the node's inbox, stamped with their
/// arrival time. Ends when the transport shuts down (its receiver yields `None`).
async fn forward(mut inbound: mpsc::Receiver<Message>, inbox: SyncSender<Input>) {
    while let Some(message) = inbound.recv().await {
        let input = Input::Peer {
            message,
            arrived_at: Instant::now(),
        };
        // A full inbox drops the message, as a full raft-net queue does: Raft resends.
        let _ = inbox.try_send(input);
    }
}
