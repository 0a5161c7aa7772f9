//! Peers proving who they are (PROTOCOL.md, "Proving identity"), end to end over
//! 127.0.0.1: mutual TLS with certificates that name their node, and the cluster secret.
//!
//! The attacker in these tests is a stranger: a task of this process that can reach the
//! peer port and knows the cluster id and the protocol (it writes raw frames), but holds
//! no key the cluster trusts. In every case its connection must be refused, logged and
//! counted, it must never replace the real node's connection nor get a message delivered,
//! and the real peers' traffic must keep flowing. Every wait is bounded by a deadline.

#[path = "support/messages.rs"]
mod messages;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytes::BytesMut;
use raft_core::{Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term};
use raft_net::certgen::{Authority, Issued, Validity};
use raft_net::codec::{encode_frame, FrameDecoder, WireBody};
use raft_net::secret::{Nonce, Proof};
use raft_net::tls::naming::node_dns_name;
use raft_net::{
    ClusterId, ClusterSecret, Handshake, PeerSecurity, TlsIdentity, Transport, TransportConfig,
    TransportMetrics,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use messages::{heartbeat, seq_of};

const CLUSTER: ClusterId = ClusterId(42);
const FRAME_MAX: usize = 64 * 1024;
const WAIT_MAX: Duration = Duration::from_secs(20);
/// Sequence numbers the stranger uses, far above anything the real node 2 sends.
const STRANGER_SEQ: u64 = 1 << 40;

fn config(id: u64, security: PeerSecurity) -> TransportConfig {
    TransportConfig {
        frame_bytes_max: FRAME_MAX,
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(100),
        handshake_timeout: Duration::from_secs(2),
        // Tolerant liveness, as in tests/transport.rs: these tests are about identity.
        keepalive_interval: Duration::from_millis(100),
        silence_timeout: Duration::from_secs(2),
        security,
        ..TransportConfig::new(CLUSTER, NodeId(id), "127.0.0.1:0".parse().expect("addr"))
    }
}

fn identity(ca: &Authority, id: u64) -> TlsIdentity {
    ca.identity(CLUSTER, NodeId(id)).expect("identity")
}

async fn start(id: u64, security: PeerSecurity) -> (Transport, mpsc::Receiver<Message>) {
    Transport::start(config(id, security)).await.expect("start")
}

fn tls_security(ca: &Authority, id: u64) -> PeerSecurity {
    PeerSecurity {
        tls: Some(identity(ca, id)),
        secret: None,
    }
}

fn secret(fill: u8) -> ClusterSecret {
    ClusterSecret::new(&[fill; 32]).expect("secret")
}

fn secret_security(fill: u8) -> PeerSecurity {
    PeerSecurity {
        tls: None,
        secret: Some(secret(fill)),
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn recv_within(rx: &mut mpsc::Receiver<Message>) -> Message {
    tokio::time::timeout(WAIT_MAX, rx.recv())
        .await
        .expect("message arrives before the deadline")
        .expect("transport still running")
}

fn frame(body: WireBody) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(&body, FRAME_MAX, &mut buf).expect("fits");
    buf
}

/// Node 1 and node 2, node 2 dialling node 1, with one message through: the connection the
/// stranger will try to take over.
struct Pair {
    a: Transport,
    a_rx: mpsc::Receiver<Message>,
    b: Transport,
    _b_rx: mpsc::Receiver<Message>,
    /// The next sequence number node 2 sends.
    seq: u64,
}

impl Pair {
    async fn start(a_security: PeerSecurity, b_security: PeerSecurity) -> Pair {
        let (a, a_rx) = start(1, a_security).await;
        let (b, b_rx) = start(2, b_security).await;
        b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
        let mut pair = Pair {
            a,
            a_rx,
            b,
            _b_rx: b_rx,
            seq: 0,
        };
        pair.check_flow("the start").await;
        pair
    }

    /// Node 2's next message reaches node 1, in order, after whatever came before.
    async fn check_flow(&mut self, after: &str) {
        self.b
            .send(heartbeat(2, 1, self.seq))
            .expect("queued or sent");
        let message = recv_within(&mut self.a_rx).await;
        assert_eq!(message.from, NodeId(2), "after {after}");
        assert_eq!(seq_of(&message), self.seq, "after {after}");
        self.seq += 1;
    }

    /// The real connection is the one it was, and nothing of the stranger's got through.
    async fn check_untouched(mut self) {
        self.check_flow("the last attempt").await;
        let m = self.a.metrics();
        let peer = m.peers[&NodeId(2)];
        assert_eq!(m.connections_replaced, 0, "{m:?}");
        assert_eq!(
            (peer.accepts, peer.reconnects, peer.msgs_received),
            (1, 0, self.seq),
            "{peer:?}"
        );
        while let Ok(message) = self.a_rx.try_recv() {
            assert!(seq_of(&message) < STRANGER_SEQ, "stranger's {message:?}");
        }
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

/// Reads until the far end closes (bounded), and returns the frames it sent before.
/// Under TLS the close may come as an alert or a reset: then whatever was decoded counts.
async fn frames_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<WireBody> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT_MAX, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "connection closed before the deadline");
    let mut buf = BytesMut::from(&received[..]);
    let mut decoder = FrameDecoder::new(FRAME_MAX);
    let mut frames = Vec::new();
    while let Ok(Some((body, _))) = decoder.decode(&mut buf) {
        frames.push(body);
    }
    frames
}

fn assert_no_welcome(frames: &[WireBody], attempt: &str) {
    assert!(
        !frames.iter().any(|f| matches!(f, WireBody::Welcome(_))),
        "{attempt}: the stranger was welcomed: {frames:?}"
    );
}

/// The stranger's bytes after its hello: its forged messages as node 2.
fn forged_messages() -> BytesMut {
    let mut bytes = BytesMut::new();
    for i in 0..3 {
        bytes.extend_from_slice(&frame(WireBody::Message(heartbeat(2, 1, STRANGER_SEQ + i))));
    }
    bytes
}

/// A TLS client for the stranger: trusts `ca_pem` and presents `client` (if any).
fn stranger_tls_config(ca_pem: &str, client: Option<&Issued>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("CA PEM")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots);
    match client {
        Some(issued) => {
            let chain = vec![issued.cert_der.clone()];
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    }
}

/// Connects to node `server`'s TLS port as a stranger. The handshake may fail at once, or
/// (TLS 1.3: the server judges the client's certificate after the client is done) only
/// show on the first read.
async fn stranger_tls(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    server: u64,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(node_dns_name(CLUSTER, NodeId(server))).expect("name");
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// Writes a hello claiming node 2 and forged messages on `stream`; returns what came back
/// before the close.
async fn claim_node_2(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> Vec<WireBody> {
    let mut bytes = frame(WireBody::Handshake(Handshake::new(
        CLUSTER,
        NodeId(2),
        NodeId(1),
    )));
    bytes.extend_from_slice(&forged_messages());
    // The server may already have closed (it refused our certificate): that is a refusal.
    if stream.write_all(&bytes).await.is_err() {
        return Vec::new();
    }
    let _ = stream.flush().await; // as above
    frames_until_closed(stream).await
}

/// Waits until `counter` of node 1's metrics has grown by one since `before`.
async fn wait_counted(
    a: &Transport,
    before: &TransportMetrics,
    what: &str,
    counter: fn(&TransportMetrics) -> u64,
) {
    wait_until(what, || counter(&a.metrics()) == counter(before) + 1).await;
}

/// With TLS on, a stranger cannot speak for node 2: not in plain TCP, not with a
/// certificate from another CA, an expired one, or a valid certificate of node 3's (a
/// node whose certificate names another id), and not with TLS garbage. Each attempt is
/// refused and counted while node 2's own connection keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_stranger_cannot_replace_a_connection_or_deliver_a_message() {
    let ca = Authority::new("cluster CA").expect("CA");
    let other_ca = Authority::new("stranger's CA").expect("CA");
    let mut pair = Pair::start(tls_security(&ca, 1), tls_security(&ca, 2)).await;
    let addr = pair.a.local_addr();
    let ca_pem = ca.cert_pem();
    let auth = |m: &TransportMetrics| m.auth_rejections;
    let tls = |m: &TransportMetrics| m.tls_rejections;

    let issue =
        |ca: &Authority, id, validity| ca.issue(CLUSTER, NodeId(id), validity).expect("issue");
    let node_3 = issue(&ca, 3, Validity::Current);
    let expired_2 = issue(&ca, 2, Validity::Expired);
    let foreign_2 = issue(&other_ca, 2, Validity::Current);
    let certificate_attempts: Vec<(&str, Option<&Issued>)> = vec![
        ("node 3's certificate claiming node 2", Some(&node_3)),
        ("an expired certificate of node 2", Some(&expired_2)),
        ("another CA's certificate of node 2", Some(&foreign_2)),
        ("no certificate", None),
    ];
    for (attempt, client) in certificate_attempts {
        let before = pair.a.metrics();
        let config = stranger_tls_config(&ca_pem, client);
        if let Ok(mut stream) = stranger_tls(addr, config, 1).await {
            assert_no_welcome(&claim_node_2(&mut stream).await, attempt);
        }
        wait_counted(&pair.a, &before, attempt, auth).await;
        pair.check_flow(attempt).await;
    }

    let mut garbage_tls = vec![0x16, 0x03, 0x01, 0x00, 0x20];
    garbage_tls.extend_from_slice(&[0xee; 32]);
    let mut plain = frame(WireBody::Handshake(Handshake::new(
        CLUSTER,
        NodeId(2),
        NodeId(1),
    )));
    plain.extend_from_slice(&forged_messages());
    let raw_attempts: Vec<(&str, Vec<u8>)> = vec![
        ("a plain-TCP hello on the TLS port", plain.to_vec()),
        ("TLS garbage", garbage_tls),
        ("an HTTP request", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
    ];
    for (attempt, bytes) in raw_attempts {
        let before = pair.a.metrics();
        let mut raw = TcpStream::connect(addr).await.expect("connect");
        raw.write_all(&bytes).await.expect("write");
        assert_no_welcome(&frames_until_closed(&mut raw).await, attempt);
        wait_counted(&pair.a, &before, attempt, tls).await;
        pair.check_flow(attempt).await;
    }
    pair.check_untouched().await;
}

/// With the cluster secret, a stranger who knows the protocol and the cluster id but not
/// the secret gets a challenge and nothing else: a made-up proof, no proof, or messages
/// instead of a proof are refused and counted, and node 2's connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_stranger_cannot_replace_a_connection_or_deliver_a_message() {
    let mut pair = Pair::start(secret_security(7), secret_security(7)).await;
    let addr = pair.a.local_addr();
    let hello_with_nonce = || {
        let hello = Handshake::new(CLUSTER, NodeId(2), NodeId(1)).with_nonce(Nonce::random());
        frame(WireBody::Handshake(hello))
    };
    let mut made_up_proof = hello_with_nonce();
    made_up_proof.extend_from_slice(&frame(WireBody::Proof(Proof([0x42; 32]))));
    made_up_proof.extend_from_slice(&forged_messages());
    let mut messages_instead = hello_with_nonce();
    messages_instead.extend_from_slice(&forged_messages());
    let mut no_nonce = frame(WireBody::Handshake(Handshake::new(
        CLUSTER,
        NodeId(2),
        NodeId(1),
    )));
    no_nonce.extend_from_slice(&forged_messages());
    let attempts: Vec<(&str, BytesMut, bool)> = vec![
        ("a made-up proof", made_up_proof, true),
        ("messages instead of a proof", messages_instead, false),
        ("a hello without a nonce", no_nonce, true),
    ];
    for (attempt, bytes, auth_failure) in attempts {
        let before = pair.a.metrics();
        let mut raw = TcpStream::connect(addr).await.expect("connect");
        raw.write_all(&bytes).await.expect("write");
        let frames = frames_until_closed(&mut raw).await;
        assert_no_welcome(&frames, attempt);
        assert!(
            frames.iter().all(|f| matches!(f, WireBody::Challenge(_))),
            "{attempt}: {frames:?}"
        );
        if auth_failure {
            wait_counted(&pair.a, &before, attempt, |m| m.auth_rejections).await;
        } else {
            wait_counted(&pair.a, &before, attempt, |m| m.handshake_rejections).await;
        }
        pair.check_flow(attempt).await;
    }

    // A real transport with another secret: refused by node 1, and it refuses node 1's
    // proof in turn when node 1 dials it.
    let before = pair.a.metrics();
    let (other, _other_rx) = start(3, secret_security(8)).await;
    other.set_peer(NodeId(1), addr).expect("set_peer");
    pair.a
        .set_peer(NodeId(3), other.local_addr())
        .expect("set_peer");
    let _ = other.send(heartbeat(3, 1, STRANGER_SEQ)); // queued or refused: must not arrive
                                                       // Each end finds out as the dialer (the acceptor just sees the dialer hang up).
    wait_until("both ends refuse the other's proof", || {
        pair.a.metrics().auth_rejections > before.auth_rejections
            && other.metrics().auth_rejections >= 1
    })
    .await;
    pair.check_flow("a node with another secret").await;
    let to_3 = pair.a.metrics().peers[&NodeId(3)];
    assert_eq!((to_3.connects, to_3.accepts), (0, 0), "{to_3:?}");
    other.shutdown().await;
    pair.check_untouched().await;
}

/// The dialer's side of the naming rule: node 1 believes node 2 is at an address where a
/// node with node 3's (valid) certificate listens. Node 1 refuses that certificate, so no
/// connection to "node 2" exists and nothing is sent to the wrong node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialer_refuses_a_certificate_that_names_another_node() {
    let ca = Authority::new("cluster CA").expect("CA");
    let (a, _a_rx) = start(1, tls_security(&ca, 1)).await;
    let (impostor, mut impostor_rx) = start(3, tls_security(&ca, 3)).await;
    a.set_peer(NodeId(2), impostor.local_addr())
        .expect("set_peer");
    let _ = a.send(heartbeat(1, 2, 0)); // queued: there is no connection to send it on
    wait_until("node 1 refuses the certificate", || {
        let m = a.metrics();
        m.auth_rejections >= 1 && m.peers[&NodeId(2)].connect_failures >= 1
    })
    .await;
    let to_2 = a.metrics().peers[&NodeId(2)];
    assert_eq!((to_2.connects, to_2.msgs_sent), (0, 0), "{to_2:?}");
    assert!(impostor_rx.try_recv().is_err());
    impostor.shutdown().await;
    a.shutdown().await;
}

/// A TLS node dialling a plain node, and a plain node dialling a TLS node: each refusal
/// says which side is misconfigured and is counted; nothing connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_plain_nodes_refuse_each_other_clearly() {
    let ca = Authority::new("cluster CA").expect("CA");
    let (tls_node, _tls_rx) = start(1, tls_security(&ca, 1)).await;
    let (plain, _plain_rx) = start(2, PeerSecurity::default()).await;
    tls_node
        .set_peer(NodeId(2), plain.local_addr())
        .expect("set_peer");
    plain
        .set_peer(NodeId(1), tls_node.local_addr())
        .expect("set_peer");
    wait_until("each refuses the other's dial", || {
        plain.metrics().tls_rejections >= 1 && tls_node.metrics().tls_rejections >= 1
    })
    .await;
    for transport in [&tls_node, &plain] {
        let m = transport.metrics();
        assert!(
            m.peers.values().all(|p| p.connects + p.accepts == 0),
            "{m:?}"
        );
    }
    tls_node.shutdown().await;
    plain.shutdown().await;
}

/// Sends `count` numbered heartbeats from `from` and checks they all arrive in order.
async fn exchange_in_order(
    from: &Transport,
    to_rx: &mut mpsc::Receiver<Message>,
    to: u64,
    count: u64,
) {
    let id = from.node_id().get();
    let sender = {
        let from = from.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            for seq in 0..count {
                // Bounded by the deadline: a full queue clears as the writer drains it.
                while from.send(heartbeat(id, to, seq)).is_err() {
                    assert!(Instant::now() < deadline, "sender stuck at {seq}");
                    std::thread::yield_now();
                }
            }
        })
    };
    for seq in 0..count {
        assert_eq!(seq_of(&recv_within(to_rx).await), seq);
    }
    sender.join().expect("sender thread");
}

/// TLS and the secret together: traffic flows both ways over one connection without loss
/// or reordering, by batches and by `send`'s direct writes (which seal their own
/// records); then a reloaded identity serves the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_secret_carries_traffic_both_ways_and_reloads() {
    let ca = Authority::new("cluster CA").expect("CA");
    let both = |id| PeerSecurity {
        tls: Some(identity(&ca, id)),
        secret: Some(secret(7)),
    };
    let (a, mut a_rx) = start(1, both(1)).await;
    let (b, mut b_rx) = start(2, both(2)).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    exchange_in_order(&a, &mut b_rx, 2, 20_000).await;
    exchange_in_order(&b, &mut a_rx, 1, 20_000).await;
    // Idle, quiet sends go out by `send` itself.
    for seq in 0..20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
        a.send(heartbeat(1, 2, seq)).expect("sent");
        assert_eq!(seq_of(&recv_within(&mut b_rx).await), seq);
    }
    let m = a.metrics().peers[&NodeId(2)];
    assert!(m.write_calls_from_send > 0, "{m:?}");
    assert_eq!(m.connects + m.accepts, 1, "{m:?}");
    assert_eq!(m.drops_connection_lost, 0, "{m:?}");

    // Reloading: the wrong node's identity is refused; node 2's fresh one is taken, and
    // serves the connection node 2 makes after node 1 restarts.
    assert!(b.reload_tls(identity(&ca, 3)).is_err());
    b.reload_tls(identity(&ca, 2)).expect("reload");
    let (a_id, a_addr) = (a.node_id(), a.local_addr());
    a.shutdown().await;
    drop(a_rx);
    let (a2, mut a2_rx) = Transport::start(TransportConfig {
        listen_addr: a_addr,
        ..config(a_id.get(), both(1))
    })
    .await
    .expect("restart");
    let deadline = Instant::now() + WAIT_MAX;
    let mut seq = 0;
    loop {
        assert!(Instant::now() < deadline, "no traffic after the reload");
        let _ = b.send(heartbeat(2, 1, seq)); // a full queue just means "not yet"
        seq += 1;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), a2_rx.recv()).await {
            break;
        }
    }
    assert!(b.metrics().peers[&NodeId(1)].reconnects >= 1);
    let plain = start(4, PeerSecurity::default()).await.0;
    assert!(
        plain.reload_tls(identity(&ca, 4)).is_err(),
        "TLS cannot be switched on"
    );
    plain.shutdown().await;
    a2.shutdown().await;
    b.shutdown().await;
}

/// An append carrying `ENTRY_BYTES` of data, numbered by its `prev_log_index`: large
/// enough that a direct write often finds too little room in a filling socket buffer.
fn bulky(seq: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Append {
            prev_log_index: LogIndex(seq),
            prev_log_term: Term(1),
            entries: vec![Entry {
                index: LogIndex(seq + 1),
                term: Term(1),
                payload: EntryPayload::Command(Bytes::from(vec![0x5a; ENTRY_BYTES])),
            }],
            leader_commit: LogIndex(0),
        },
    }
}

const ENTRY_BYTES: usize = 24 * 1024;

fn bulky_seq(message: &Message) -> u64 {
    match &message.body {
        MessageBody::Append { prev_log_index, .. } => prev_log_index.0,
        other => panic!("unexpected body {other:?}"),
    }
}

/// The TLS stream stays whole under backpressure: a consumer that reads in slow bursts
/// fills the socket buffers, so batches are written in part and `send`'s direct writes
/// (on at every idle moment here: no coalescing window) meet a full buffer, when the
/// sealed record they made must still go out first, as a tail. Every message arrives, in
/// order, on the one connection, and the receiver never sees a broken record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_stream_stays_whole_when_a_slow_consumer_fills_the_socket() {
    const COUNT: u64 = 4_000;
    let ca = Authority::new("cluster CA").expect("CA");
    let tight = |id| TransportConfig {
        coalesce_window: Duration::ZERO,
        inbound_queue_msgs_max: 4,
        peer_queue_msgs_max: 16,
        ..config(id, tls_security(&ca, id))
    };
    let (a, _a_rx) = Transport::start(tight(1)).await.expect("start");
    let (b, mut b_rx) = Transport::start(tight(2)).await.expect("start");
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            for seq in 0..COUNT {
                // Bounded by the deadline: the consumer drains between its pauses.
                while a.send(bulky(seq)).is_err() {
                    assert!(Instant::now() < deadline, "sender stuck at {seq}");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    for seq in 0..COUNT {
        if seq % 200 == 0 {
            // A pause long enough for the socket buffers to fill.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(bulky_seq(&recv_within(&mut b_rx).await), seq);
    }
    sender.join().expect("sender thread");
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(ma.tls_rejections + mb.tls_rejections, 0, "{ma:?} {mb:?}");
    let to_b = ma.peers[&NodeId(2)];
    assert_eq!(to_b.connects, 1, "{to_b:?}");
    assert_eq!(to_b.reconnects + to_b.drops_connection_lost, 0, "{to_b:?}");
    assert!(to_b.write_calls_from_send > 0, "{to_b:?}");
    a.shutdown().await;
    b.shutdown().await;
}
