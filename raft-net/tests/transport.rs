//! End-to-end tests of the transport over 127.0.0.1 with ephemeral ports.
//!
//! Every test shuts down every transport it started (which waits for all their tasks and
//! closes all their sockets) and bounds every wait with a deadline; none sleeps for
//! correctness, they poll until a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use raft_core::{LogIndex, Message, MessageBody, NodeId, Term};
use raft_net::codec::{encode_frame, WireBody, PROTOCOL_VERSION};
use raft_net::{ClusterId, Handshake, SendError, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const CLUSTER: ClusterId = ClusterId(42);
const FRAME_MAX: usize = 64 * 1024;
/// Upper bound for any one wait in these tests; generous for a loaded 2-core machine.
const WAIT_MAX: Duration = Duration::from_secs(20);

fn config(cluster: ClusterId, id: u64) -> TransportConfig {
    TransportConfig {
        frame_bytes_max: FRAME_MAX,
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(100),
        handshake_timeout: Duration::from_millis(500),
        ..TransportConfig::new(cluster, NodeId(id), "127.0.0.1:0".parse().expect("addr"))
    }
}

async fn start(id: u64) -> (Transport, mpsc::Receiver<Message>) {
    Transport::start(config(CLUSTER, id)).await.expect("transport starts")
}

fn heartbeat(from: u64, to: u64, seq: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(seq),
            read_round: seq,
        },
    }
}

fn seq_of(message: &Message) -> u64 {
    match message.body {
        MessageBody::Heartbeat { read_round, .. } => read_round,
        ref other => panic!("unexpected body {other:?}"),
    }
}

async fn recv_within(rx: &mut mpsc::Receiver<Message>) -> Message {
    tokio::time::timeout(WAIT_MAX, rx.recv())
        .await
        .expect("message arrives before the deadline")
        .expect("transport still running")
}

/// Polls `condition` every few milliseconds until it holds or `WAIT_MAX` passes.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A full mesh of `n` transports, ids 1..=n.
async fn mesh(n: u64) -> Vec<(Transport, mpsc::Receiver<Message>)> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(start(id).await);
    }
    for (transport, _) in &nodes {
        for (peer, _) in &nodes {
            if peer.node_id() != transport.node_id() {
                transport.set_peer(peer.node_id(), peer.local_addr()).expect("set_peer");
            }
        }
    }
    nodes
}

/// Sends `count` numbered heartbeats to each of `peers` from a plain OS thread, retrying
/// on `QueueFull` after yielding (the caller must respect backpressure to lose nothing).
/// Returns how many sends were refused and retried.
fn send_numbered_from_thread(
    transport: Transport,
    peers: Vec<u64>,
    count: u64,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let from = transport.node_id().get();
        let mut refused = 0u64;
        for seq in 0..count {
            for &to in &peers {
                loop {
                    match transport.send(heartbeat(from, to, seq)) {
                        Ok(()) => break,
                        Err(SendError::QueueFull { .. }) => {
                            refused += 1;
                            assert!(Instant::now() < deadline, "sender stuck at {seq}");
                            thread::yield_now();
                        }
                        Err(other) => panic!("send failed: {other}"),
                    }
                }
            }
        }
        refused
    })
}

/// Receives exactly `count` messages from each of `senders`, checking that each sender's
/// sequence arrives complete and in order.
async fn receive_numbered(mut rx: mpsc::Receiver<Message>, senders: Vec<u64>, count: u64) -> mpsc::Receiver<Message> {
    let mut next: BTreeMap<NodeId, u64> = senders.iter().map(|&id| (NodeId(id), 0)).collect();
    let total = count * u64::try_from(senders.len()).expect("small");
    for _ in 0..total {
        let message = recv_within(&mut rx).await;
        let expected = next.get_mut(&message.from).expect("message from a known sender");
        assert_eq!(seq_of(&message), *expected, "from {}", message.from);
        *expected += 1;
    }
    assert!(next.values().all(|&n| n == count), "{next:?}");
    rx
}

/// `n` endpoints in a full mesh exchange `total` messages in all, spread evenly over the
/// ordered pairs; none may be lost, duplicated or reordered, and no connection may drop.
async fn exchange(n: u64, total: u64) {
    let nodes = mesh(n).await;
    let pairs = n * (n - 1);
    let per_pair = total.div_ceil(pairs);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut transports = Vec::new();
    for (transport, rx) in nodes {
        let me = transport.node_id().get();
        let others: Vec<u64> = (1..=n).filter(|&id| id != me).collect();
        senders.push(send_numbered_from_thread(transport.clone(), others.clone(), per_pair));
        receivers.push(tokio::spawn(receive_numbered(rx, others, per_pair)));
        transports.push(transport);
    }
    let mut rxs = Vec::new();
    for receiver in receivers {
        rxs.push(receiver.await.expect("receiver task"));
    }
    let refused: u64 = senders.into_iter().map(|s| s.join().expect("sender thread")).sum();
    for transport in &transports {
        let metrics = transport.metrics();
        for (peer, m) in &metrics.peers {
            assert_eq!(m.msgs_sent, per_pair, "{} -> {peer}", transport.node_id());
            assert_eq!(m.msgs_received, per_pair, "{peer} -> {}", transport.node_id());
            assert_eq!(m.connects, 1, "connection to {peer} stayed up");
            assert_eq!(m.reconnects + m.drops_connection_lost + m.drops_oversized, 0);
            assert!(m.write_calls < m.msgs_sent, "batched: {m:?}");
        }
        assert_eq!(metrics.decode_errors + metrics.handshake_rejections, 0);
    }
    eprintln!("{n} endpoints: {} messages, {refused} sends refused and retried", per_pair * pairs);
    for transport in &transports {
        transport.shutdown().await;
    }
    for mut rx in rxs {
        assert!(recv_within_closed(&mut rx).await, "receiver ends after shutdown");
    }
}

async fn recv_within_closed(rx: &mut mpsc::Receiver<Message>) -> bool {
    matches!(tokio::time::timeout(WAIT_MAX, rx.recv()).await, Ok(None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_exchange_a_million_messages_without_loss() {
    exchange(2, 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_exchange_a_million_messages_without_loss() {
    exchange(3, 1_000_000).await;
}
