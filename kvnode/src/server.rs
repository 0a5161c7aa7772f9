//! Start-up and shutdown: open storage, bootstrap or restart, start the transport, the
//! raft loop thread, the client and metrics listeners.
//!
//! Shutdown, on SIGTERM or SIGINT, in this order so that every request in flight is
//! answered and nothing acknowledged is lost:
//! 1. stop accepting connections;
//! 2. tell every connection to stop: each finishes the requests it has read (the loop
//!    still answers them), writes the replies and closes; wait for them, at most
//!    [`DRAIN_TIMEOUT`];
//! 3. stop the raft loop: it syncs what it wrote and fails what it can no longer answer
//!    (`-UNKNOWN ... shutting down` for writes whose fate is unknown); connections still
//!    open write those replies (forwarded requests give up at once) and close, within
//!    [`CLOSE_TIMEOUT`];
//! 4. stop the peer transport, and exit 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use raft_core::{LogStore, Node};
use raft_net::{ClusterId, Delivery, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::client_tls::{self, ClientTlsState};
use crate::clients::ClientRegistry;
use crate::cmd::CommandLimits;
use crate::config::NodeConfig;
use crate::connection::ForwardTimeouts;
use crate::connection::{Connection, Shared, Stop};
use crate::metrics::Metrics;
use crate::raft_loop::{bootstrap, inbox, leader_watch, LoopEnds, RaftHandle, RaftLoop, Request};
use crate::state_machine::StateMachine;
use crate::storage::Storage;

/// Bytes a metrics request may send before we answer.
const METRICS_REQUEST_BYTES_MAX: usize = 8 << 10;
/// How long a metrics client may take to send its request.
const METRICS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connections get to finish their requests while the loop still serves them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connections get to write the loop's last answers once it has stopped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(config: NodeConfig) -> Result<()> {
    if let Some(fault) = config.test_fault {
        warn!(
            node = config.node_id.0,
            ?fault,
            "this node runs with a DELIBERATE BUG (test_fault): never in production"
        );
    }
    let mut storage = Storage::open(&config)?;
    if storage.is_empty() && !config.join {
        bootstrap(&mut storage, &config).context("bootstrapping a new cluster")?;
        info!(
            node = config.node_id.0,
            members = config.members.len(),
            "bootstrapped a new cluster"
        );
    }
    let snapshot = storage.snapshot().context("reading the latest snapshot")?;
    let machine = if snapshot.meta.index.0 > 0 {
        StateMachine::restore(&snapshot.data).context("restoring the latest snapshot")?
    } else {
        StateMachine::new()
    };
    let node = Node::new(raft_config(&config, snapshot.meta.index), storage)?;
    info!(
        node = config.node_id.0,
        storage = %node.store().describe(&config.data_dir),
        snapshot = snapshot.meta.index.0,
        last_index = node.last_index().0,
        "starting"
    );

    let mut transport_config = TransportConfig::new(
        ClusterId(config.cluster_id),
        config.node_id,
        config.peer_listen,
    );
    transport_config.frame_bytes_max = config.limits.peer_frame_bytes_max;
    transport_config.security = config.peer_security.clone();
    liveness_from_timing(&mut transport_config, &config);
    warn_about_peer_security(&config);
    let (inbox, raft) = inbox(config.request_queue_max);
    let (leader_publisher, leader_view) = leader_watch();
    let (users_publisher, users_view) = tokio::sync::watch::channel(machine.users().clone());
    // Peer messages go from the task reading their connection straight into the raft
    // loop's inbox; when it is full they are dropped (counted) and Raft resends.
    let deliver = raft.clone();
    let transport = Transport::start_with_handler(transport_config, move |message| {
        if deliver.deliver(message) {
            Delivery::Accepted
        } else {
            Delivery::Dropped
        }
    })
    .await
    .with_context(|| format!("listening for peers on {}", config.peer_listen))?;
    let metrics = Arc::new(Metrics::default());
    let raft_loop = RaftLoop::new(
        &config,
        node,
        machine,
        transport.clone(),
        metrics.clone(),
        LoopEnds {
            inbox,
            wake: raft.clone(),
            leader_watch: leader_publisher,
            users_watch: users_publisher,
        },
    )?;
    let raft_thread = std::thread::Builder::new()
        .name("raft-loop".into())
        .spawn(move || raft_loop.run())
        .context("starting the raft loop thread")?;

    let clients = TcpListener::bind(config.client_listen)
        .await
        .with_context(|| format!("listening for clients on {}", config.client_listen))?;
    warn_about_client_security(&config);
    let client_tls = config.client_tls.clone().map(|tls| {
        Arc::new(ClientTlsState::new(
            tls.files,
            tls.own_host,
            tls.tls,
            tls.handshake_timeout,
        ))
    });
    let shared = Arc::new(Shared {
        raft: raft.clone(),
        metrics: metrics.clone(),
        limits: config.limits.resp(),
        command_limits: CommandLimits {
            key_bytes_max: config.limits.key_bytes_max,
            value_bytes_max: config.limits.value_bytes_max,
            entry_bytes_max: config.limits.entry_bytes_max,
            databases: config.databases,
        },
        password: config.password.clone(),
        started: Instant::now(),
        node_id: config.node_id.0,
        leader_watch: leader_view,
        users: users_view,
        backup_dir: config.data_dir.clone(),
        cluster_id: config.cluster_id,
        forward_timeouts: ForwardTimeouts::from_election(config.heartbeat * config.election_ticks),
        clients: Arc::new(ClientRegistry::default()),
        connections_max: config.connections_max,
        run_id: run_id(),
        client_tls: client_tls.clone(),
    });
    if let Some(addr) = config.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        tokio::spawn(serve_metrics(
            listener,
            raft.clone(),
            metrics.clone(),
            transport.clone(),
        ));
    }
    info!(node = config.node_id.0, clients = %config.client_listen, peers = %config.peer_listen, "serving");

    let stop = Stop::default();
    let connections = TaskTracker::new();
    tokio::select! {
        () = accept_clients(clients, shared, config.connections_max, &stop, &connections) => {}
        () = shutdown_signal() => {}
        () = reload_on_hangup(&config, &transport, client_tls.as_deref()) => {}
    }
    let node_id = config.node_id.0;
    info!(
        node = node_id,
        connections = connections.len(),
        "shutting down: draining client connections"
    );
    stop.drain.cancel();
    connections.close();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_ok();
    raft.shutdown();
    tokio::task::spawn_blocking(move || raft_thread.join())
        .await
        .context("joining the raft loop")?
        .map_err(|_| anyhow::anyhow!("the raft loop panicked"))?;
    if !drained {
        stop.now.cancel();
        if tokio::time::timeout(CLOSE_TIMEOUT, connections.wait())
            .await
            .is_err()
        {
            warn!(
                node = node_id,
                connections = connections.len(),
                "connections still open at exit are closed without their replies"
            );
        }
    }
    transport.shutdown().await;
    info!(node = node_id, "stopped");
    Ok(())
}

/// Says, once at start, how peers prove who they are, and warns where that leaves the peer
/// port open: anyone who can reach an unauthenticated, non-loopback peer port can speak for
/// any node. Also warns about a secret file others can read.
fn warn_about_peer_security(config: &NodeConfig) {
    let security = &config.peer_security;
    let (tls, secret) = (security.tls.is_some(), security.secret.is_some());
    let addr = config.peer_listen;
    if config.peer_port_unprotected() {
        warn!(%addr, "peers are not authenticated: anyone who can reach the peer port can speak for any node; set peer_tls_cert, peer_tls_key and peer_tls_ca, or cluster_secret_file");
    } else {
        info!(%addr, tls, secret, "peer port security");
    }
    if let Some(path) = &config.cluster_secret_file {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode());
        if matches!(mode, Ok(mode) if mode & 0o077 != 0) {
            warn!(path = %path.display(), "the cluster secret file can be read by other users; chmod 600 it");
        }
    }
}

/// Says, once at start, whether the client port is protected, and warns when anyone on a
/// network can use it and read its traffic (no TLS, no password, beyond loopback).
fn warn_about_client_security(config: &NodeConfig) {
    let addr = config.client_listen;
    if config.client_port_unprotected() {
        warn!(%addr, "clients are not authenticated and their traffic is in clear text: anyone who can reach the client port can read and write every key; set password, or client_tls_cert, client_tls_key and client_tls_ca");
    } else {
        let tls = config.client_tls.as_ref();
        info!(
            %addr,
            tls = tls.is_some(),
            client_certificates = tls.is_some_and(|tls| tls.files.auth_clients),
            password = config.password.is_some(),
            "client port security"
        );
    }
}

/// On each SIGHUP, reloads the peer and client TLS files: connections made from then on
/// use the new certificate, key and CA; established ones keep theirs. Files that fail the
/// start-up checks are refused with a warning and the old ones stay. Never returns (unless
/// no SIGHUP handler can be installed).
async fn reload_on_hangup(
    config: &NodeConfig,
    transport: &Transport,
    client_tls: Option<&ClientTlsState>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot handle SIGHUP; certificates are read only at start");
        return std::future::pending().await;
    };
    // Bounded by the process's life: one pass per SIGHUP.
    while hangups.recv().await.is_some() {
        if let Some(client_tls) = client_tls {
            match client_tls.reload() {
                Ok(()) => info!("SIGHUP: client TLS certificate, key and CA reloaded"),
                Err(error) => {
                    warn!(error = %format!("{error:#}"), "SIGHUP: client TLS files refused; keeping the current ones")
                }
            }
        }
        let Some(files) = &config.peer_tls_files else {
            info!("SIGHUP: peer TLS is off; nothing to reload for peers");
            continue;
        };
        let reloaded = crate::config::load_peer_tls(files, config.cluster_id, config.node_id)
            .and_then(|identity| transport.reload_tls(identity).map_err(anyhow::Error::new));
        match reloaded {
            Ok(()) => info!("SIGHUP: peer TLS certificate, key and CA reloaded"),
            Err(error) => {
                warn!(error = %format!("{error:#}"), "SIGHUP: peer TLS files refused; keeping the current ones")
            }
        }
    }
    std::future::pending().await
}

/// raft-net's liveness settings from Raft's timing (PROTOCOL.md, "Liveness"): an idle
/// connection carries a keepalive every heartbeat; one silent for two minimum election
/// timeouts (at least four heartbeats) is closed and redialled; an unreachable peer is
/// dialled again about every heartbeat, so a node cut off knows the leader within about
/// two heartbeats of the heal.
fn liveness_from_timing(transport: &mut TransportConfig, config: &NodeConfig) {
    let heartbeat = config.heartbeat;
    let election = heartbeat * config.election_ticks;
    transport.keepalive_interval = heartbeat;
    transport.silence_timeout = (election * 2).max(heartbeat * 4);
    transport.connect_timeout = heartbeat;
    transport.backoff_min = heartbeat / 5;
    transport.backoff_max = heartbeat;
    transport.tcp_user_timeout = transport
        .tcp_user_timeout
        .max(transport.silence_timeout * 2);
}

/// A fresh 40-hex-digit id for this run, as Redis' `run_id`: it tells a restarted
/// process from the one before (clients and tools compare it), so it only needs to differ
/// between starts, not to be secret.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    let mut state = now ^ u64::from(std::process::id()).rotate_left(40);
    let mut id = String::with_capacity(40);
    while id.len() < 40 {
        state = crate::state_machine::keyspace::splitmix64(state);
        id.push_str(&format!("{state:016x}"));
    }
    id.truncate(40);
    id
}

fn raft_config(config: &NodeConfig, applied: raft_core::LogIndex) -> raft_core::Config {
    let mut raft = raft_core::Config::new(config.node_id);
    raft.election_ticks = config.election_ticks;
    raft.heartbeat_ticks = 1;
    raft.applied = applied;
    raft.entry_bytes_max = config.limits.raft_entry_bytes_max();
    raft.uncommitted_bytes_max = raft.uncommitted_bytes_max.max(raft.entry_bytes_max * 2);
    // Election timeouts need to differ between nodes and runs; nothing else depends on it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    raft.seed = now ^ u64::from(std::process::id()).rotate_left(32);
    raft
}

/// Accepts clients until the future is dropped (at shutdown, which closes the listener).
async fn accept_clients(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections_max: usize,
    stop: &Stop,
    connections: &TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(connections_max));
    let next_id = AtomicU64::new(1);
    loop {
        let (mut stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(failure) => {
                // Out of file descriptors and the like: back off briefly rather than spin.
                warn!(error = %failure, "accepting a client failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared
                .metrics
                .connections_refused_total
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().unwrap_or(addr);
        let fd = i64::from(std::os::fd::AsRawFd::as_raw_fd(&stream));
        let registration = ClientRegistry::register(
            &shared.clients,
            next_id.fetch_add(1, Ordering::Relaxed),
            addr,
            local_addr,
            fd,
        );
        let connection = Connection::new(shared.clone(), registration, stop.clone());
        let metrics = shared.metrics.clone();
        let tls = shared.client_tls.clone();
        let stop = stop.clone();
        // A handshake holds a connection slot: connections_max bounds handshakes too.
        connections.spawn(async move {
            metrics.connections_open.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => connection.serve(stream).await,
                Some(tls) => {
                    let accepted = tokio::select! {
                        biased;
                        () = stop.drain.cancelled() => None,
                        accepted = client_tls::accept(stream, addr, &tls, &metrics) => accepted,
                    };
                    if let Some(stream) = accepted {
                        connection.serve(stream).await;
                    }
                }
            }
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

async fn serve_metrics(
    listener: TcpListener,
    raft: RaftHandle,
    metrics: Arc<Metrics>,
    transport: Transport,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (raft, metrics, transport) = (raft.clone(), metrics.clone(), transport.clone());
        tokio::spawn(async move {
            let _ = answer_metrics(stream, raft, metrics, transport).await;
        });
    }
}

/// Reads until the end of the request head (or the cap, or EOF). Answering after a partial
/// read and closing with request bytes still unread makes the kernel reset the connection,
/// and the client can lose the response.
async fn read_request_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let reading = async {
        while request.len() < METRICS_REQUEST_BYTES_MAX
            && !request.windows(4).any(|window| window == b"\r\n\r\n")
        {
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..read]);
        }
        Ok(())
    };
    match tokio::time::timeout(METRICS_REQUEST_TIMEOUT, reading).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn answer_metrics(
    mut stream: TcpStream,
    raft: RaftHandle,
    metrics: Arc<Metrics>,
    transport: Transport,
) -> std::io::Result<()> {
    read_request_head(&mut stream).await?;
    let (sender, receiver) = oneshot::channel();
    let status = match raft.submit(Request::Status { reply: sender }) {
        Ok(()) => receiver.await.ok(),
        Err(_) => None,
    };
    let Some(status) = status else {
        return stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    };
    let body = metrics.render(&status, &transport.metrics());
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
