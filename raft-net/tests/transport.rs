//! End-to-end tests of the transport over 127.0.0.1 with ephemeral ports.
//!
//! Every test shuts down every transport it started (which waits for all their tasks and
//! closes all their sockets) and bounds every wait with a deadline; none sleeps for
//! correctness, they poll until a deadline.

#[path = "support/messages.rs"]
mod messages;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use raft_core::{Message, NodeId};
use raft_net::codec::{encode_frame, WireBody, PROTOCOL_VERSION};
use raft_net::{
    ClusterId, Delivery, Handshake, PeerMetrics, SendError, Transport, TransportConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use messages::{heartbeat, seq_of};

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
        // Liveness stays on, but tolerant: both ends of a connection share this process,
        // and with the million-message tests running side by side on a loaded machine
        // its runtimes stall for a few hundred milliseconds at times, which silences both
        // ends at once. These tests are about delivery; tests/liveness.rs is about silence.
        keepalive_interval: Duration::from_millis(100),
        silence_timeout: Duration::from_secs(2),
        ..TransportConfig::new(cluster, NodeId(id), "127.0.0.1:0".parse().expect("addr"))
    }
}

async fn start(id: u64) -> (Transport, mpsc::Receiver<Message>) {
    Transport::start(config(CLUSTER, id))
        .await
        .expect("transport starts")
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
                transport
                    .set_peer(peer.node_id(), peer.local_addr())
                    .expect("set_peer");
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
async fn receive_numbered(
    mut rx: mpsc::Receiver<Message>,
    senders: Vec<u64>,
    count: u64,
) -> mpsc::Receiver<Message> {
    let mut next: BTreeMap<NodeId, u64> = senders.iter().map(|&id| (NodeId(id), 0)).collect();
    let total = count * u64::try_from(senders.len()).expect("small");
    for _ in 0..total {
        let message = recv_within(&mut rx).await;
        let expected = next
            .get_mut(&message.from)
            .expect("message from a known sender");
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
        senders.push(send_numbered_from_thread(
            transport.clone(),
            others.clone(),
            per_pair,
        ));
        receivers.push(tokio::spawn(receive_numbered(rx, others, per_pair)));
        transports.push(transport);
    }
    let mut rxs = Vec::new();
    for receiver in receivers {
        rxs.push(receiver.await.expect("receiver task"));
    }
    let refused: u64 = senders
        .into_iter()
        .map(|s| s.join().expect("sender thread"))
        .sum();
    for transport in &transports {
        let metrics = transport.metrics();
        for (peer, m) in &metrics.peers {
            assert_eq!(m.msgs_sent, per_pair, "{} -> {peer}", transport.node_id());
            assert_eq!(
                m.msgs_received,
                per_pair,
                "{peer} -> {}",
                transport.node_id()
            );
            // One connection per pair, carrying both directions, dialled by either end.
            assert_eq!(
                m.connects + m.accepts,
                1,
                "one connection to {peer}, and it stayed up"
            );
            assert_eq!(
                m.reconnects + m.drops_connection_lost + m.drops_oversized,
                0
            );
            assert!(m.write_calls < m.msgs_sent, "batched: {m:?}");
        }
        assert_eq!(metrics.decode_errors + metrics.handshake_rejections, 0);
        assert_eq!(metrics.connections_replaced, 0);
    }
    // Each pair's connection was dialled by one end and accepted by the other.
    for transport in &transports {
        for other in &transports {
            if transport.node_id() != other.node_id() {
                assert_eq!(
                    transport.metrics().peers[&other.node_id()].connects,
                    other.metrics().peers[&transport.node_id()].accepts,
                    "{} and {}",
                    transport.node_id(),
                    other.node_id()
                );
            }
        }
    }
    eprintln!(
        "{n} endpoints: {} messages, {refused} sends refused and retried",
        per_pair * pairs
    );
    for transport in &transports {
        transport.shutdown().await;
    }
    for mut rx in rxs {
        assert!(
            recv_within_closed(&mut rx).await,
            "receiver ends after shutdown"
        );
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

fn frame(body: WireBody) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(&body, FRAME_MAX, &mut buf).expect("fits");
    buf
}

fn hello(cluster: ClusterId, from: u64, to: u64) -> BytesMut {
    frame(WireBody::Handshake(Handshake::new(
        cluster,
        NodeId(from),
        NodeId(to),
    )))
}

/// Waits until the far end closes `stream` (EOF or reset). The acceptor sends at most a
/// welcome (when the hello was valid), and nothing else: returns whether it did.
async fn assert_closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT_MAX, stream.read_to_end(&mut received))
        .await
        .expect("connection closed before the deadline");
    // A reset (`read` failing) may discard a welcome that arrived; nothing else came.
    let _ = read;
    if received.is_empty() {
        return false;
    }
    let mut buf = BytesMut::from(&received[..]);
    let mut frames = raft_net::codec::FrameDecoder::new(FRAME_MAX);
    let first = frames.decode(&mut buf).expect("a valid frame");
    assert!(
        matches!(first, Some((WireBody::Welcome(_), _))),
        "acceptor sent {first:?}"
    );
    assert!(buf.is_empty(), "acceptor sent more than a welcome");
    true
}

#[tokio::test]
async fn restarted_peer_is_reconnected_and_traffic_resumes() {
    let (a, mut a_rx) = start(1).await;
    let (b, mut b_rx) = start(2).await;
    let b_addr = b.local_addr();
    a.set_peer(NodeId(2), b_addr).expect("set_peer");
    a.send(heartbeat(1, 2, 0)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut b_rx).await), 0);

    b.shutdown().await;
    assert!(recv_within_closed(&mut b_rx).await);
    // Restart on the same address; A must notice the loss and redial with backoff.
    let (b2, mut b2_rx) = Transport::start(TransportConfig {
        listen_addr: b_addr,
        ..config(CLUSTER, 2)
    })
    .await
    .expect("restart on the same address");
    b2.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    let deadline = Instant::now() + WAIT_MAX;
    let mut seq = 1;
    let received = loop {
        assert!(Instant::now() < deadline, "no traffic after restart");
        // Messages written into the dying connection may be lost; Raft resends, so do we.
        let _ = a.send(heartbeat(1, 2, seq)); // a full queue just means "not yet"
        seq += 1;
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(20), b2_rx.recv()).await
        {
            break message;
        }
    };
    assert!(seq_of(&received) >= 1);
    assert!(
        a.metrics().peers[&NodeId(2)].reconnects >= 1,
        "{:?}",
        a.metrics()
    );
    b2.send(heartbeat(2, 1, 7)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut a_rx).await), 7);
    a.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test]
async fn wrong_cluster_handshake_is_refused() {
    let (a, mut a_rx) = start(1).await;
    // A transport of another cluster dials A and sends; A must refuse every connection.
    let (other, _other_rx) = Transport::start(config(ClusterId(99), 2))
        .await
        .expect("start");
    other.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    let _ = other.send(heartbeat(2, 1, 0)); // queued or refused: either way it must not arrive
    wait_until("A rejects the handshake", || {
        a.metrics().handshake_rejections >= 1
    })
    .await;
    // The same over a raw socket: the connection is closed after the handshake frame.
    let mut raw = TcpStream::connect(a.local_addr()).await.expect("connect");
    let mut bytes = hello(ClusterId(99), 3, 1);
    bytes.extend_from_slice(&frame(WireBody::Message(heartbeat(3, 1, 0))));
    raw.write_all(&bytes).await.expect("write");
    assert!(!assert_closed_by_peer(&mut raw).await, "no welcome");
    assert!(a.metrics().handshake_rejections >= 2);
    assert!(
        a_rx.try_recv().is_err(),
        "no message from another cluster gets through"
    );
    other.shutdown().await;
    a.shutdown().await;
}

/// Bad input on one connection closes that connection (counted) while a healthy peer's
/// connection keeps delivering.
#[tokio::test]
async fn bad_input_closes_only_its_connection() {
    let (a, mut a_rx) = start(1).await;
    let (b, _b_rx) = start(2).await;
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    let mut oversized = hello(CLUSTER, 3, 1);
    oversized.put_u32(u32::try_from(FRAME_MAX + 1).expect("small"));
    let mut forged = hello(CLUSTER, 3, 1);
    forged.extend_from_slice(&frame(WireBody::Message(heartbeat(4, 1, 0))));
    let mut wrong_version = hello(CLUSTER, 3, 1);
    let message_frame = frame(WireBody::Message(heartbeat(3, 1, 0)));
    let mut bumped = message_frame.clone();
    bumped[4] = PROTOCOL_VERSION + 1;
    wrong_version.extend_from_slice(&bumped);
    let mut truncated = hello(CLUSTER, 3, 1);
    truncated.extend_from_slice(&message_frame[..message_frame.len() - 2]);
    let cases: Vec<(&str, BytesMut, bool)> = vec![
        (
            "garbage",
            BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]),
            false,
        ),
        ("oversized length", oversized, false),
        ("forged sender", forged, false),
        ("wrong version", wrong_version, false),
        ("truncated then closed", truncated, true),
    ];
    for (round, (name, bytes, close_after)) in cases.into_iter().enumerate() {
        let before = a.metrics();
        let mut raw = TcpStream::connect(a.local_addr()).await.expect("connect");
        raw.write_all(&bytes).await.expect("write");
        if close_after {
            raw.shutdown().await.expect("half-close");
        }
        let welcomed = assert_closed_by_peer(&mut raw).await;
        // Only garbage fails before the hello is accepted.
        assert!(!(welcomed && name == "garbage"), "garbage was welcomed");
        let closed = |m: &raft_net::TransportMetrics| {
            m.decode_errors + m.frames_rejected + m.handshake_rejections
        };
        wait_until(name, || closed(&a.metrics()) == closed(&before) + 1).await;
        let seq = u64::try_from(round).expect("small");
        b.send(heartbeat(2, 1, seq)).expect("queued");
        let message = recv_within(&mut a_rx).await;
        assert_eq!(
            (message.from, seq_of(&message)),
            (NodeId(2), seq),
            "after {name}"
        );
    }
    let metrics = a.metrics();
    // Garbage reads as an absurd length prefix: a decode error before any handshake.
    assert_eq!(
        (metrics.decode_errors, metrics.frames_rejected),
        (4, 1),
        "{metrics:?}"
    );
    assert_eq!(
        metrics.peers[&NodeId(3)].decode_errors,
        3,
        "counted against the peer"
    );
    assert_eq!(
        metrics.peers[&NodeId(2)].connects + metrics.peers[&NodeId(2)].reconnects,
        0
    );
    assert_eq!(
        b.metrics().peers[&NodeId(1)].connects,
        1,
        "healthy connection untouched"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn frames_split_across_reads_are_reassembled() {
    let (a, mut a_rx) = start(1).await;
    let mut bytes = hello(CLUSTER, 2, 1);
    for seq in 0..3 {
        bytes.extend_from_slice(&frame(WireBody::Message(heartbeat(2, 1, seq))));
    }
    let mut raw = TcpStream::connect(a.local_addr()).await.expect("connect");
    raw.set_nodelay(true).expect("nodelay");
    for (i, byte) in bytes.iter().enumerate() {
        raw.write_all(&[*byte]).await.expect("write");
        if i % 7 == 0 {
            // Give the reader a chance to see each partial frame on its own.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for seq in 0..3 {
        assert_eq!(seq_of(&recv_within(&mut a_rx).await), seq);
    }
    a.shutdown().await;
}

#[tokio::test]
async fn handshake_timeout_closes_silent_connection() {
    let (a, _a_rx) = start(1).await;
    let mut raw = TcpStream::connect(a.local_addr()).await.expect("connect");
    assert!(!assert_closed_by_peer(&mut raw).await, "no welcome");
    wait_until("timeout counted", || a.metrics().handshake_rejections == 1).await;
    a.shutdown().await;
}

#[tokio::test]
async fn unreachable_peer_fills_its_queue_and_send_reports_it() {
    let queue = 8;
    let (a, _a_rx) = Transport::start(TransportConfig {
        peer_queue_msgs_max: queue,
        ..config(CLUSTER, 1)
    })
    .await
    .expect("start");
    // A port nobody listens on: bind one, note it, close it.
    let dead: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    a.set_peer(NodeId(2), dead).expect("set_peer");
    for seq in 0..8 {
        a.send(heartbeat(1, 2, seq)).expect("room in the queue");
    }
    let refused = a.send(heartbeat(1, 2, 8)).expect_err("queue full");
    assert!(refused.is_unreachable(), "{refused}");
    assert_eq!(
        a.send(heartbeat(1, 3, 0)),
        Err(SendError::UnknownPeer { to: NodeId(3) })
    );
    wait_until("connect failures counted", || {
        a.metrics().peers[&NodeId(2)].connect_failures >= 2
    })
    .await;
    assert_eq!(a.metrics().peers[&NodeId(2)].drops_queue_full, 1);

    // Membership change: point peer 2 at a live node; the queued messages go out.
    let (b, mut b_rx) = start(2).await;
    a.set_peer(NodeId(2), b.local_addr())
        .expect("update address");
    for seq in 0..8 {
        assert_eq!(seq_of(&recv_within(&mut b_rx).await), seq);
    }
    assert!(a.remove_peer(NodeId(2)));
    assert_eq!(
        a.send(heartbeat(1, 2, 9)),
        Err(SendError::UnknownPeer { to: NodeId(2) })
    );
    assert!(!a.remove_peer(NodeId(2)));
    a.shutdown().await;
    b.shutdown().await;
}

/// A consumer that stops reading stalls only TCP: the sender's queue fills and `send` says
/// so, nothing accepted is lost, and everything arrives once the consumer resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_backpressures_the_sender() {
    let small = |id| TransportConfig {
        peer_queue_msgs_max: 64,
        inbound_queue_msgs_max: 16,
        ..config(CLUSTER, id)
    };
    let (a, _a_rx) = Transport::start(small(1)).await.expect("start");
    let (b, mut b_rx) = Transport::start(small(2)).await.expect("start");
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    let deadline = Instant::now() + WAIT_MAX;
    let mut accepted = 0u64;
    // Bounded by the deadline; socket buffers hold a few MB, so this takes ~10^5 sends.
    loop {
        assert!(Instant::now() < deadline, "queue never filled");
        match a.send(heartbeat(1, 2, accepted)) {
            Ok(()) => accepted += 1,
            Err(SendError::QueueFull { .. }) => break,
            Err(other) => panic!("{other}"),
        }
        if accepted % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(a.metrics().peers[&NodeId(2)].drops_queue_full >= 1);
    for seq in 0..accepted {
        assert_eq!(seq_of(&recv_within(&mut b_rx).await), seq);
    }
    assert!(b_rx.try_recv().is_err());
    a.shutdown().await;
    b.shutdown().await;
}

/// Node 2 answers through a handler that sends each message straight back from the task
/// reading it (as the round-trip bench's echo does): every message arrives once and in
/// order, sends made inside the handler work, nothing is dropped, and the handler is not
/// called after shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_sees_every_message_in_order_and_can_send_from_inside() {
    const COUNT: u64 = 20_000;
    const WINDOW: u64 = 100;
    let (a, mut a_rx) = start(1).await;
    let echo: Arc<OnceLock<Transport>> = Arc::default();
    let calls = Arc::new(AtomicU64::new(0));
    let b = Transport::start_with_handler(config(CLUSTER, 2), {
        let (echo, calls) = (Arc::clone(&echo), Arc::clone(&calls));
        move |mut message| {
            assert_eq!(seq_of(&message), calls.fetch_add(1, Ordering::SeqCst));
            std::mem::swap(&mut message.from, &mut message.to);
            // At most `WINDOW` messages are in flight, far below node 2's queue (4096).
            echo.get()
                .expect("set before any peer connects")
                .send(message)
                .expect("echo");
            Delivery::Accepted
        }
    })
    .await
    .expect("start b");
    assert!(echo.set(b.clone()).is_ok(), "set once");
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    for window_start in (0..COUNT).step_by(WINDOW as usize) {
        for seq in window_start..window_start + WINDOW {
            a.send(heartbeat(1, 2, seq))
                .expect("a window fits the queue");
        }
        for seq in window_start..window_start + WINDOW {
            let echoed = recv_within(&mut a_rx).await;
            assert_eq!((echoed.from, seq_of(&echoed)), (NodeId(2), seq));
        }
    }
    let received = b.metrics().peers[&NodeId(1)];
    assert_eq!(received.msgs_received, COUNT);
    assert_eq!(received.drops_inbound, 0);
    assert_eq!(calls.load(Ordering::SeqCst), COUNT);
    b.shutdown().await;
    let after_shutdown = calls.load(Ordering::SeqCst);
    // Whatever becomes of this message (queued, refused, lost with the connection), the
    // stopped node must not hand it to its handler.
    let _ = a.send(heartbeat(1, 2, COUNT));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        after_shutdown,
        "handler called after shutdown"
    );
    assert!(a_rx.try_recv().is_err());
    a.shutdown().await;
}

/// Both ways of starting check the configuration first.
#[tokio::test]
async fn invalid_config_is_refused_with_a_channel_or_a_handler() {
    let invalid = || TransportConfig {
        inbound_queue_msgs_max: 0,
        peer_queue_msgs_max: 0,
        ..config(CLUSTER, 1)
    };
    assert!(matches!(
        Transport::start(invalid()).await,
        Err(raft_net::Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        Transport::start_with_handler(invalid(), |_| Delivery::Accepted).await,
        Err(raft_net::Error::InvalidConfig { .. })
    ));
}

/// What the handler refuses is counted per peer and not retried by the transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_drops_are_counted() {
    const COUNT: u64 = 1_000;
    let kept = Arc::new(Mutex::new(Vec::new()));
    let b = Transport::start_with_handler(config(CLUSTER, 2), {
        let kept = Arc::clone(&kept);
        move |message| {
            let seq = seq_of(&message);
            if seq % 3 == 0 {
                return Delivery::Dropped;
            }
            kept.lock().expect("not poisoned").push(seq);
            Delivery::Accepted
        }
    })
    .await
    .expect("start b");
    let (a, _a_rx) = start(1).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    send_numbered_from_thread(a.clone(), vec![2], COUNT)
        .join()
        .expect("sender thread");
    let dropped = COUNT.div_ceil(3);
    wait_until("every message has reached the handler", || {
        b.metrics().peers.get(&NodeId(1)).map(|m| m.msgs_received) == Some(COUNT)
    })
    .await;
    assert_eq!(b.metrics().peers[&NodeId(1)].drops_inbound, dropped);
    let expected: Vec<u64> = (0..COUNT).filter(|seq| seq % 3 != 0).collect();
    assert_eq!(*kept.lock().expect("not poisoned"), expected);
    a.shutdown().await;
    b.shutdown().await;
}

/// A handler that panics ends only its connection: the peer redials on a new connection,
/// and what it sends next is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_ends_its_connection_and_the_peer_redials() {
    const POISON: u64 = 1_000_000;
    let (tx, mut delivered) = mpsc::unbounded_channel();
    let b = Transport::start_with_handler(config(CLUSTER, 2), move |message| {
        let seq = seq_of(&message);
        assert_ne!(seq, POISON, "the test's handler fails on this message");
        let _ = tx.send(seq);
        Delivery::Accepted
    })
    .await
    .expect("start b");
    let (a, _a_rx) = start(1).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    // Node 2 knows node 1 too, so its end of the connection keeps a writer half that only
    // the reader's ending closes.
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    // Sends numbered messages until one is delivered (lost ones are Raft's to resend).
    let mut seq = 0;
    let mut deliver_one = async || {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            assert!(Instant::now() < deadline, "nothing delivered");
            let _ = a.send(heartbeat(1, 2, seq));
            seq += 1;
            if let Ok(Some(delivered)) =
                tokio::time::timeout(Duration::from_millis(50), delivered.recv()).await
            {
                return delivered;
            }
        }
    };
    deliver_one().await;
    let connections = |m: PeerMetrics| m.connects + m.accepts;
    let before = connections(a.metrics().peers[&NodeId(2)]);
    a.send(heartbeat(1, 2, POISON)).expect("queued");
    deliver_one().await;
    assert!(
        connections(a.metrics().peers[&NodeId(2)]) > before,
        "delivered after the panic over the same connection"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_listener_and_refuses_sends() {
    let (a, mut a_rx) = start(1).await;
    let (b, _b_rx) = start(2).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    let addr = a.local_addr();
    a.shutdown().await;
    assert!(recv_within_closed(&mut a_rx).await);
    assert_eq!(a.send(heartbeat(1, 2, 0)), Err(SendError::Shutdown));
    assert!(a.set_peer(NodeId(3), addr).is_err());
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    a.shutdown().await; // idempotent
    b.shutdown().await;
}

/// Node 1 (with `coalesce_window`) connected to node 2, the handshake and a first message
/// through, so what follows measures an established, idle connection. Node 1's inbound
/// receiver is returned too, to keep it open for the whole test.
async fn connected_pair(
    coalesce_window: Duration,
) -> (
    Transport,
    mpsc::Receiver<Message>,
    Transport,
    mpsc::Receiver<Message>,
) {
    let (a, a_rx) = Transport::start(TransportConfig {
        coalesce_window,
        ..config(CLUSTER, 1)
    })
    .await
    .expect("start");
    let (b, mut b_rx) = start(2).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    a.send(heartbeat(1, 2, 0)).expect("queued");
    recv_within(&mut b_rx).await;
    (a, a_rx, b, b_rx)
}

/// Sends 100 heartbeats back to back, checks they arrive in order, and returns the
/// sender's counters for peer 2 before and after.
async fn burst_of_100(
    a: &Transport,
    b_rx: &mut mpsc::Receiver<Message>,
) -> (PeerMetrics, PeerMetrics) {
    let before = a.metrics().peers[&NodeId(2)];
    for seq in 1..=100 {
        a.send(heartbeat(1, 2, seq)).expect("sent or queued");
    }
    for seq in 1..=100 {
        assert_eq!(seq_of(&recv_within(b_rx).await), seq);
    }
    let after = a.metrics().peers[&NodeId(2)];
    assert_eq!(after.msgs_sent - before.msgs_sent, 100);
    (before, after)
}

/// On a single-threaded runtime the writer cannot run while this task queues, so 100
/// messages queued back to back leave in one batch: one `write` call, not one each. The
/// coalescing window is stretched so that even the burst's first message is queued (by
/// default it would go straight out, being the first after a quiet spell; the next test).
#[tokio::test(flavor = "current_thread")]
async fn queued_batch_costs_one_write_call() {
    let (a, _a_rx, b, mut b_rx) = connected_pair(WAIT_MAX * 2).await;
    let (before, after) = burst_of_100(&a, &mut b_rx).await;
    assert_eq!(
        after.write_calls - before.write_calls,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.write_calls_from_send, 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// With the default window, a burst after a quiet spell costs two writes: its first
/// message goes straight from `send` to the socket, the other 99 queue behind it and leave
/// together. (More than two only if this thread stalls for over the 5 µs window before
/// the second send; on the single-threaded runtime the writer cannot drain the queue
/// mid-burst, so from the second queued message on, nothing can be written directly.)
#[tokio::test(flavor = "current_thread")]
async fn burst_after_quiet_spell_costs_two_writes() {
    let (a, _a_rx, b, mut b_rx) = connected_pair(config(CLUSTER, 1).coalesce_window).await;
    let (before, after) = burst_of_100(&a, &mut b_rx).await;
    let direct = after.write_calls_from_send - before.write_calls_from_send;
    let writes = after.write_calls - before.write_calls;
    assert!(
        direct >= 1,
        "the first message after a quiet spell goes direct"
    );
    assert_eq!(
        writes,
        direct + 1,
        "the rest share one write: {before:?} -> {after:?}"
    );
    assert!(writes <= 4, "a burst is coalesced: {before:?} -> {after:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Messages spaced by a round trip (Raft's request/response rhythm) find the peer idle:
/// `send` writes each one itself, skipping the writer task, and order is kept.
#[tokio::test(flavor = "current_thread")]
async fn idle_peer_is_written_by_send_itself() {
    let (a, _a_rx, b, mut b_rx) = connected_pair(Duration::ZERO).await;
    let before = a.metrics().peers[&NodeId(2)];
    for seq in 1..=50 {
        a.send(heartbeat(1, 2, seq)).expect("sent");
        assert_eq!(seq_of(&recv_within(&mut b_rx).await), seq);
    }
    let after = a.metrics().peers[&NodeId(2)];
    assert_eq!(after.msgs_sent - before.msgs_sent, 50);
    assert_eq!(after.write_calls - before.write_calls, 50);
    assert_eq!(
        after.write_calls_from_send - before.write_calls_from_send,
        50,
        "{before:?} -> {after:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Sends `seq` from `from` to `to` until it arrives (a message written into a dying
/// connection may be lost; Raft resends, so do we), then returns.
async fn deliver_eventually(
    from: &Transport,
    to_rx: &mut mpsc::Receiver<Message>,
    to: u64,
    seq: u64,
) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        assert!(
            Instant::now() < deadline,
            "{} -> {to}: nothing arrives",
            from.node_id()
        );
        let _ = from.send(heartbeat(from.node_id().get(), to, seq)); // full queue: "not yet"
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(20), to_rx.recv()).await
        {
            if seq_of(&message) == seq {
                return;
            }
        }
    }
}

/// Both nodes know each other and both may dial, yet the pair ends up with one
/// connection: node 1's messages and node 2's replies travel over it, no connection is
/// replaced, and each end counts the same connection (dialled by one, accepted by the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_uses_one_connection_for_both_directions() {
    let mut nodes = mesh(2).await;
    let (b, mut b_rx) = nodes.pop().expect("node 2");
    let (a, mut a_rx) = nodes.pop().expect("node 1");
    for seq in 0..100 {
        a.send(heartbeat(1, 2, seq)).expect("queued");
        assert_eq!(seq_of(&recv_within(&mut b_rx).await), seq);
        b.send(heartbeat(2, 1, seq)).expect("queued");
        assert_eq!(seq_of(&recv_within(&mut a_rx).await), seq);
    }
    let (ma, mb) = (a.metrics(), b.metrics());
    let (a_to_b, b_to_a) = (ma.peers[&NodeId(2)], mb.peers[&NodeId(1)]);
    assert_eq!(a_to_b.connects + a_to_b.accepts, 1, "{ma:?}");
    assert_eq!(b_to_a.connects + b_to_a.accepts, 1, "{mb:?}");
    assert_eq!(a_to_b.connects, b_to_a.accepts, "the same connection");
    assert_eq!(a_to_b.reconnects + b_to_a.reconnects, 0);
    // Every connection either side accepted and kept is that one; others were refused.
    assert_eq!(
        ma.connections_accepted + mb.connections_accepted,
        1 + ma.connections_refused + mb.connections_refused,
        "{ma:?} {mb:?}"
    );
    assert_eq!(ma.connections_replaced + mb.connections_replaced, 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// Raw-socket stand-in for a peer: dials `addr` as node `from` and returns the stream.
async fn raw_hello(addr: SocketAddr, from: u64, to: u64) -> TcpStream {
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    raw.write_all(&hello(CLUSTER, from, to))
        .await
        .expect("write");
    raw
}

/// Reads one frame from a raw socket (bounded by the deadline).
async fn raw_read_frame(raw: &mut TcpStream) -> WireBody {
    let mut frames = raft_net::codec::FrameDecoder::new(FRAME_MAX);
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some((body, _)) = frames.decode(&mut buf).expect("valid frames") {
            return body;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, raw.read_buf(&mut buf))
            .await
            .expect("a frame before the deadline")
            .expect("read");
        assert!(read > 0, "closed before a whole frame");
    }
}

/// The dial rule for a late or simultaneous dial: node 1 has its own connection to node
/// 2, so a hello from node 2 loses (the lower id's dial wins) and is closed without a
/// welcome and counted; node 1's connection keeps working in both directions.
#[tokio::test]
async fn lower_id_refuses_a_dial_while_its_own_connection_stands() {
    let (a, mut a_rx) = start(1).await;
    let (b, mut b_rx) = start(2).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    a.send(heartbeat(1, 2, 0)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut b_rx).await), 0);
    let mut raw = raw_hello(a.local_addr(), 2, 1).await;
    assert!(
        !assert_closed_by_peer(&mut raw).await,
        "refused: no welcome"
    );
    wait_until("refusal counted", || a.metrics().connections_refused == 1).await;
    // Node 2 learns node 1's address and uses the connection node 1 dialled.
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    b.send(heartbeat(2, 1, 1)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut a_rx).await), 1);
    a.send(heartbeat(1, 2, 2)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut b_rx).await), 2);
    let (a_to_b, b_to_a) = (a.metrics().peers[&NodeId(2)], b.metrics().peers[&NodeId(1)]);
    assert_eq!((a_to_b.connects, a_to_b.accepts), (1, 0));
    assert_eq!((b_to_a.connects, b_to_a.accepts), (0, 1));
    assert_eq!(a.metrics().connections_replaced, 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// The other side of the rule, and stale-connection replacement: node 2 dialled node 1;
/// a new hello from node 1 (standing in for a restarted node 1) is welcomed and replaces
/// node 2's connection, which closes, and node 2's messages go to the new connection.
#[tokio::test]
async fn newer_dial_replaces_the_stale_connection() {
    let (a, mut a_rx) = start(1).await;
    let (b, _b_rx) = start(2).await;
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    b.send(heartbeat(2, 1, 0)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut a_rx).await), 0);
    let mut raw = raw_hello(b.local_addr(), 1, 2).await;
    assert!(
        matches!(raw_read_frame(&mut raw).await, WireBody::Welcome(w) if w.from == NodeId(2) && w.to == NodeId(1)),
        "welcomed"
    );
    wait_until("the old connection is replaced", || {
        b.metrics().connections_replaced == 1
    })
    .await;
    b.send(heartbeat(2, 1, 1)).expect("queued");
    match raw_read_frame(&mut raw).await {
        WireBody::Message(message) => assert_eq!(seq_of(&message), 1),
        other => panic!("expected a message, got {other:?}"),
    }
    assert!(
        a_rx.try_recv().is_err(),
        "it went to the new connection only"
    );
    let m = b.metrics().peers[&NodeId(1)];
    assert_eq!((m.connects, m.accepts, m.reconnects), (1, 1, 1), "{m:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Restarts one node of a pair that knows each other, then checks traffic both ways.
/// `restart_dialer` picks the node that dialled the pair's connection (node 1, whose peer
/// was set first) or the one that accepted it (node 2).
async fn restart_and_check_both_ways(restart_dialer: bool) {
    let (a, mut a_rx) = start(1).await;
    let (b, mut b_rx) = start(2).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    a.send(heartbeat(1, 2, 0)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut b_rx).await), 0);
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    b.send(heartbeat(2, 1, 0)).expect("queued");
    assert_eq!(seq_of(&recv_within(&mut a_rx).await), 0);
    assert_eq!(a.metrics().peers[&NodeId(2)].connects, 1, "node 1 dialled");
    assert_eq!(b.metrics().peers[&NodeId(1)].accepts, 1, "node 2 accepted");
    let (stays, mut stays_rx, goes, goes_rx) = if restart_dialer {
        (b, b_rx, a, a_rx)
    } else {
        (a, a_rx, b, b_rx)
    };
    let (goes_id, addr) = (goes.node_id(), goes.local_addr());
    goes.shutdown().await;
    drop(goes_rx);
    let (back, mut back_rx) = Transport::start(TransportConfig {
        listen_addr: addr,
        ..config(CLUSTER, goes_id.get())
    })
    .await
    .expect("restart on the same address");
    back.set_peer(stays.node_id(), stays.local_addr())
        .expect("set_peer");
    let stays_id = stays.node_id().get();
    deliver_eventually(&stays, &mut back_rx, goes_id.get(), 1).await;
    deliver_eventually(&back, &mut stays_rx, stays_id, 2).await;
    for seq in 3..50 {
        stays
            .send(heartbeat(stays_id, goes_id.get(), seq))
            .expect("queued");
        assert_eq!(seq_of(&recv_within(&mut back_rx).await), seq);
        back.send(heartbeat(goes_id.get(), stays_id, seq))
            .expect("queued");
        assert_eq!(seq_of(&recv_within(&mut stays_rx).await), seq);
    }
    let m = stays.metrics().peers[&goes_id];
    assert!(m.reconnects >= 1, "{m:?}");
    let n = back.metrics().peers[&stays.node_id()];
    assert_eq!(
        n.connects + n.accepts,
        1,
        "the restarted node uses one connection: {n:?}"
    );
    stays.shutdown().await;
    back.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_dialer_reconnects_and_traffic_resumes_both_ways() {
    restart_and_check_both_ways(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_acceptor_reconnects_and_traffic_resumes_both_ways() {
    restart_and_check_both_ways(false).await;
}
