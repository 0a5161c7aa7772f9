//! raft-net over loopback: messages per second and round-trip latency for 128 B and 4 KiB
//! frames, beside a raw tokio TCP ping-pong of the same frame sizes on the same runtime.
//!
//! In the round trips, B echoes from its inbound handler (as kvnode receives, and as the raw
//! echo server answers from the task reading its socket); an echo through B's inbound
//! channel and a consumer task is measured beside it. Criterion reports throughput and mean
//! round trip; p50/p99 come from separate fixed passes of round trips (criterion exposes no
//! percentiles), interleaved across the setups in blocks and printed as a line per case,
//! and so does the write-call count that shows batching. A second raw baseline, printed only,
//! echoes over two one-way connections, as raft-net protocol version 1 did (one per
//! direction), which costs a pure TCP acknowledgement per message that the one-connection
//! ping-pong piggybacks on its reply; version 2 shares one connection per pair, like the
//! ping-pong, which is what the target is judged against. The handler echo is measured once
//! more with mutual TLS between A and B (protocol version 4's `security.tls`), interleaved
//! with the rest, for TLS's cost per round trip. Run: `cargo bench -p benches --bench net`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use raft_core::{Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term};
use raft_net::certgen::Authority;
use raft_net::codec::{encode_frame, WireBody};
use raft_net::{ClusterId, Delivery, PeerSecurity, SendError, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const FRAME_SIZES: [usize; 2] = [128, 4096];
const PERCENTILE_ROUND_TRIPS: usize = 20_000;
const PERCENTILE_BLOCKS: usize = 20;
const FRAME_MAX: usize = 1024 * 1024;

/// The runtime kvnode uses: multi-threaded, one worker per core of the 2-core machine.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// An Append carrying one command, sized so its whole frame (prefix included) is
/// `frame_bytes` long.
fn message_of_frame_bytes(from: u64, to: u64, frame_bytes: usize) -> Message {
    let make = |data_bytes: usize| Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Append {
            prev_log_index: LogIndex(1),
            prev_log_term: Term(1),
            entries: vec![Entry {
                index: LogIndex(2),
                term: Term(1),
                payload: EntryPayload::Command(Bytes::from(vec![7u8; data_bytes])),
            }],
            leader_commit: LogIndex(1),
        },
    };
    let mut buf = bytes::BytesMut::new();
    let overhead = encode_frame(&WireBody::Message(make(0)), FRAME_MAX, &mut buf).expect("fits");
    // Varint lengths grow by a byte at 128; adjust until exact (bounded: a few steps).
    let mut data_bytes = frame_bytes - overhead;
    for _ in 0..4 {
        buf.clear();
        let len =
            encode_frame(&WireBody::Message(make(data_bytes)), FRAME_MAX, &mut buf).expect("fits");
        if len == frame_bytes {
            break;
        }
        data_bytes = data_bytes + frame_bytes - len;
    }
    make(data_bytes)
}

struct Pair {
    a: Transport,
    a_rx: mpsc::Receiver<Message>,
    b: Transport,
    b_rx: Option<mpsc::Receiver<Message>>,
}

/// The transport settings of every pair. Liveness is stretched: a current-thread runtime
/// runs only inside `block_on`, so between criterion's phases nothing reads or writes
/// keepalives, and the default 200 ms silence timeout would close a connection then and
/// lose the next round trip's message (the bench does not resend).
fn config(id: u64) -> TransportConfig {
    TransportConfig {
        frame_bytes_max: FRAME_MAX,
        keepalive_interval: Duration::from_secs(1),
        silence_timeout: Duration::from_secs(60),
        tcp_user_timeout: Duration::from_secs(120),
        ..TransportConfig::new(
            ClusterId(1),
            NodeId(id),
            "127.0.0.1:0".parse().expect("addr"),
        )
    }
}

/// Mutual TLS for node `id`, with a certificate from `ca`.
fn tls_security(ca: &Authority, id: u64) -> PeerSecurity {
    PeerSecurity {
        tls: Some(ca.identity(ClusterId(1), NodeId(id)).expect("identity")),
        secret: None,
    }
}

async fn pair() -> Pair {
    let (a, a_rx) = Transport::start(config(1)).await.expect("start a");
    let (b, b_rx) = Transport::start(config(2)).await.expect("start b");
    a.set_peer(NodeId(2), b.local_addr()).expect("peer");
    b.set_peer(NodeId(1), a.local_addr()).expect("peer");
    Pair {
        a,
        a_rx,
        b,
        b_rx: Some(b_rx),
    }
}

/// Sends with backpressure: a full queue means "yield and try again".
async fn send_until_queued(transport: &Transport, message: &Message) {
    loop {
        match transport.send(message.clone()) {
            Ok(()) => return,
            Err(SendError::QueueFull { .. }) => tokio::task::yield_now().await,
            Err(other) => panic!("send: {other}"),
        }
    }
}

/// Time for `n` messages A -> B, all received (by a separate task, as kvnode's raft loop
/// would be).
async fn transport_stream(pair: &mut Pair, message: &Message, n: u64) -> Duration {
    let mut b_rx = pair.b_rx.take().expect("receiver kept for streaming");
    let start = Instant::now();
    let receiver = tokio::spawn(async move {
        for _ in 0..n {
            b_rx.recv().await.expect("running");
        }
        b_rx
    });
    for _ in 0..n {
        send_until_queued(&pair.a, message).await;
    }
    pair.b_rx = Some(receiver.await.expect("receiver task"));
    start.elapsed()
}

/// B answers every message by sending it back.
fn spawn_echo(pair: &mut Pair) {
    let mut b_rx = pair.b_rx.take().expect("receiver");
    let b = pair.b.clone();
    tokio::spawn(async move {
        while let Some(mut message) = b_rx.recv().await {
            std::mem::swap(&mut message.from, &mut message.to);
            send_until_queued(&b, &message).await;
        }
    });
}

/// A pair whose B answers every message from the task that reads it, through an inbound
/// handler (as kvnode takes its peers' messages), the way the raw echo server answers from
/// the task that reads its socket.
async fn handler_echo_pair(ca: Option<&Authority>) -> Pair {
    let secured = |id| TransportConfig {
        security: ca.map(|ca| tls_security(ca, id)).unwrap_or_default(),
        ..config(id)
    };
    let (a, a_rx) = Transport::start(secured(1)).await.expect("start a");
    let slot: Arc<OnceLock<Transport>> = Arc::default();
    let b = Transport::start_with_handler(secured(2), {
        let slot = Arc::clone(&slot);
        move |mut message| {
            std::mem::swap(&mut message.from, &mut message.to);
            // One message is in flight, so the queue cannot be full.
            match slot.get().map(|b| b.send(message)) {
                Some(Ok(())) => Delivery::Accepted,
                _ => Delivery::Dropped,
            }
        }
    })
    .await
    .expect("start b");
    assert!(slot.set(b.clone()).is_ok(), "set once");
    a.set_peer(NodeId(2), b.local_addr()).expect("peer");
    b.set_peer(NodeId(1), a.local_addr()).expect("peer");
    Pair {
        a,
        a_rx,
        b,
        b_rx: None,
    }
}

async fn transport_round_trip(pair: &mut Pair, message: &Message) -> Duration {
    let start = Instant::now();
    send_until_queued(&pair.a, message).await;
    pair.a_rx.recv().await.expect("echo");
    start.elapsed()
}

/// A raw TCP connection to an echo server that reads and returns `frame_bytes`-byte frames.
async fn raw_pair(frame_bytes: usize) -> (TcpStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; frame_bytes];
        while socket.read_exact(&mut buf).await.is_ok() {
            if socket.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let client = TcpStream::connect(addr).await.expect("connect");
    client.set_nodelay(true).expect("nodelay");
    (client, addr)
}

/// Raw TCP in raft-net's topology: two connections, each carrying bytes one way (A's
/// requests on one, the echo's replies on the other), so no reply can carry the TCP
/// acknowledgement of its request. Returns (A's sending end, A's receiving end).
async fn raw_one_way_pair(frame_bytes: usize) -> (TcpStream, TcpStream) {
    let requests = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let replies = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (requests_addr, replies_addr) = (
        requests.local_addr().expect("addr"),
        replies.local_addr().expect("addr"),
    );
    tokio::spawn(async move {
        let (mut inbound, _) = requests.accept().await.expect("accept");
        let mut outbound = TcpStream::connect(replies_addr).await.expect("connect");
        outbound.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; frame_bytes];
        while inbound.read_exact(&mut buf).await.is_ok() {
            if outbound.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let client = TcpStream::connect(requests_addr).await.expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let (back, _) = replies.accept().await.expect("accept");
    (client, back)
}

async fn raw_one_way_round_trip(
    client: &mut TcpStream,
    back: &mut TcpStream,
    frame: &mut [u8],
) -> Duration {
    let start = Instant::now();
    client.write_all(frame).await.expect("write");
    back.read_exact(frame).await.expect("read");
    start.elapsed()
}

async fn raw_round_trip(client: &mut TcpStream, frame: &mut [u8]) -> Duration {
    let start = Instant::now();
    client.write_all(frame).await.expect("write");
    client.read_exact(frame).await.expect("read");
    start.elapsed()
}

/// Raw streaming baseline: `n` frames through a 64 KiB BufWriter, read back by the echo
/// server and returned; measures the same one-way volume the transport stream moves.
async fn raw_stream(frame_bytes: usize, n: u64) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; frame_bytes];
        for _ in 0..n {
            socket.read_exact(&mut buf).await.expect("read");
        }
    });
    let start = Instant::now();
    let mut writer =
        BufWriter::with_capacity(64 * 1024, TcpStream::connect(addr).await.expect("connect"));
    let frame = vec![1u8; frame_bytes];
    for _ in 0..n {
        writer.write_all(&frame).await.expect("write");
    }
    writer.flush().await.expect("flush");
    reader.await.expect("reader");
    start.elapsed()
}

fn bench_throughput(c: &mut Criterion, rt: &Runtime) {
    let mut group = c.benchmark_group("net/stream");
    group.throughput(Throughput::Elements(1));
    for frame_bytes in FRAME_SIZES {
        let message = message_of_frame_bytes(1, 2, frame_bytes);
        let mut pair = rt.block_on(pair());
        group.bench_function(BenchmarkId::new("transport", frame_bytes), |bench| {
            bench.iter_custom(|iters| rt.block_on(transport_stream(&mut pair, &message, iters)));
        });
        let peer = pair.a.metrics().peers[&NodeId(2)];
        println!(
            "batching {frame_bytes} B: {} messages in {} write calls ({:.1} messages per write)",
            peer.msgs_sent,
            peer.write_calls,
            peer.msgs_sent as f64 / peer.write_calls.max(1) as f64
        );
        rt.block_on(async { tokio::join!(pair.a.shutdown(), pair.b.shutdown()) });
        group.bench_function(BenchmarkId::new("raw_tcp", frame_bytes), |bench| {
            bench.iter_custom(|iters| rt.block_on(raw_stream(frame_bytes, iters)));
        });
    }
    group.finish();
}

#[derive(Clone, Copy)]
enum Setup {
    /// raft-net, B echoing from its inbound handler.
    HandlerEcho,
    /// raft-net, B echoing from a task reading its inbound channel.
    ChannelEcho,
    /// The raw ping-pong the target is judged against.
    Raw,
    /// Raw TCP over two one-way connections (printed only).
    RawOneWay,
    /// `HandlerEcho` with mutual TLS between A and B.
    TlsHandlerEcho,
}

impl Setup {
    const ALL: [Setup; 5] = [
        Setup::HandlerEcho,
        Setup::ChannelEcho,
        Setup::Raw,
        Setup::RawOneWay,
        Setup::TlsHandlerEcho,
    ];
}

/// The four round-trip setups of one frame size, all connected at once so that their
/// percentile passes can be interleaved.
struct RoundTrips {
    message: Message,
    handler_echo: Pair,
    tls_handler_echo: Pair,
    channel_echo: Pair,
    raw: TcpStream,
    one_way: (TcpStream, TcpStream),
    frame: Vec<u8>,
}

impl RoundTrips {
    async fn connect(frame_bytes: usize) -> RoundTrips {
        let mut channel_echo = pair().await;
        spawn_echo(&mut channel_echo);
        let ca = Authority::new("net bench CA").expect("CA");
        RoundTrips {
            message: message_of_frame_bytes(1, 2, frame_bytes),
            handler_echo: handler_echo_pair(None).await,
            tls_handler_echo: handler_echo_pair(Some(&ca)).await,
            channel_echo,
            raw: raw_pair(frame_bytes).await.0,
            one_way: raw_one_way_pair(frame_bytes).await,
            frame: vec![3u8; frame_bytes],
        }
    }

    async fn round_trip(&mut self, setup: Setup) -> Duration {
        match setup {
            Setup::HandlerEcho => transport_round_trip(&mut self.handler_echo, &self.message).await,
            Setup::ChannelEcho => transport_round_trip(&mut self.channel_echo, &self.message).await,
            Setup::TlsHandlerEcho => {
                transport_round_trip(&mut self.tls_handler_echo, &self.message).await
            }
            Setup::Raw => raw_round_trip(&mut self.raw, &mut self.frame).await,
            Setup::RawOneWay => {
                let (client, back) = &mut self.one_way;
                raw_one_way_round_trip(client, back, &mut self.frame).await
            }
        }
    }

    /// Samples of each setup (in `Setup::ALL` order), taken in `PERCENTILE_BLOCKS` rounds
    /// of `PERCENTILE_ROUND_TRIPS / PERCENTILE_BLOCKS` round trips per setup: a change in
    /// the machine's state (another process, a CPU frequency step) then shows in every
    /// setup alike instead of in whichever happened to run at that moment.
    async fn percentile_samples(&mut self) -> [Vec<Duration>; 5] {
        let per_block = PERCENTILE_ROUND_TRIPS / PERCENTILE_BLOCKS;
        let mut samples: [Vec<Duration>; 5] =
            std::array::from_fn(|_| Vec::with_capacity(PERCENTILE_ROUND_TRIPS));
        for _ in 0..PERCENTILE_BLOCKS {
            for (setup, samples) in Setup::ALL.into_iter().zip(&mut samples) {
                for _ in 0..per_block {
                    samples.push(self.round_trip(setup).await);
                }
            }
        }
        samples
    }

    async fn shutdown(self) {
        let pairs = [self.handler_echo, self.channel_echo, self.tls_handler_echo];
        for pair in pairs {
            tokio::join!(pair.a.shutdown(), pair.b.shutdown());
        }
    }
}

fn bench_round_trip(c: &mut Criterion, rt: &Runtime, group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    for frame_bytes in FRAME_SIZES {
        let mut trips = rt.block_on(RoundTrips::connect(frame_bytes));
        let measured = [
            ("transport", Setup::HandlerEcho),
            ("transport_channel_echo", Setup::ChannelEcho),
            ("raw_tcp", Setup::Raw),
            ("transport_tls", Setup::TlsHandlerEcho),
        ];
        for (name, setup) in measured {
            group.bench_function(BenchmarkId::new(name, frame_bytes), |bench| {
                bench.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += trips.round_trip(setup).await;
                        }
                        total
                    })
                });
            });
        }
        let samples = rt.block_on(trips.percentile_samples());
        let (a_to_b, b_to_a) = (
            trips.handler_echo.a.metrics().peers[&NodeId(2)],
            trips.handler_echo.b.metrics().peers[&NodeId(1)],
        );
        println!(
            "{group_name} {frame_bytes} B: write calls made by send itself: A {} of {}, B {} of {}; \
             connections: A dialled {} and accepted {}, B dialled {} and accepted {}",
            a_to_b.write_calls_from_send,
            a_to_b.write_calls,
            b_to_a.write_calls_from_send,
            b_to_a.write_calls,
            a_to_b.connects,
            a_to_b.accepts,
            b_to_a.connects,
            b_to_a.accepts
        );
        report_percentiles(group_name, frame_bytes, samples);
        rt.block_on(trips.shutdown());
    }
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

fn report_percentiles(group_name: &str, frame_bytes: usize, mut samples: [Vec<Duration>; 5]) {
    for setup in &mut samples {
        setup.sort();
    }
    let [handler, channel, raw, one_way, tls] =
        samples.map(|sorted| (percentile(&sorted, 0.5), percentile(&sorted, 0.99)));
    let ratio = |(p50, _): (Duration, Duration)| p50.as_secs_f64() / raw.0.as_secs_f64();
    println!(
        "{group_name} {frame_bytes} B over {PERCENTILE_ROUND_TRIPS} round trips each, interleaved: \
         transport p50 {:?} p99 {:?}; raw tcp p50 {:?} p99 {:?}; p50 ratio {:.2}; \
         transport with a channel and consumer task on the echo side p50 {:?} p99 {:?} (ratio {:.2}); \
         raw tcp over two one-way connections p50 {:?} p99 {:?} (ratio {:.2})",
        handler.0,
        handler.1,
        raw.0,
        raw.1,
        ratio(handler),
        channel.0,
        channel.1,
        ratio(channel),
        one_way.0,
        one_way.1,
        ratio(one_way),
    );
    println!(
        "{group_name} {frame_bytes} B: transport over mutual TLS p50 {:?} p99 {:?}; \
         p50 {:.2}x plain transport's, {:.2}x raw tcp's",
        tls.0,
        tls.1,
        tls.0.as_secs_f64() / handler.0.as_secs_f64(),
        ratio(tls),
    );
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rt = runtime();
    bench_throughput(&mut c, &rt);
    bench_round_trip(&mut c, &rt, "net/rtt");
    drop(rt);
    // The same on one thread: no cross-thread wake-ups, which isolates raft-net's own cost
    // from the multi-threaded scheduler's (see docs/bench/layers.md, "raft-net").
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_round_trip(&mut c, &single, "net/rtt_current_thread");
    c.final_summary();
}
