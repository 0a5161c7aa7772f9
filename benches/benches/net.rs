//! raft-net over loopback: messages per second and round-trip latency for 128 B and 4 KiB
//! frames, beside a raw tokio TCP ping-pong of the same frame sizes on the same runtime.
//!
//! Criterion reports throughput and mean round trip; p50/p99 come from a separate fixed
//! run of round trips per case (criterion exposes no percentiles), printed as a table, and
//! so does the write-call count that shows batching. A second raw baseline, printed only,
//! echoes over two one-way connections, as raft-net protocol version 1 did (one per
//! direction), which costs a pure TCP acknowledgement per message that the one-connection
//! ping-pong piggybacks on its reply; version 2 shares one connection per pair, like the
//! ping-pong, which is what the target is judged against. Run:
//! `cargo bench -p benches --bench net`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use raft_core::{Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term};
use raft_net::codec::{encode_frame, WireBody};
use raft_net::{ClusterId, SendError, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const FRAME_SIZES: [usize; 2] = [128, 4096];
const PERCENTILE_ROUND_TRIPS: usize = 20_000;
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

async fn pair() -> Pair {
    let config = |id| TransportConfig {
        frame_bytes_max: FRAME_MAX,
        ..TransportConfig::new(
            ClusterId(1),
            NodeId(id),
            "127.0.0.1:0".parse().expect("addr"),
        )
    };
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

fn bench_round_trip(c: &mut Criterion, rt: &Runtime, group_name: &str) {
    let mut group = c.benchmark_group(group_name);
    for frame_bytes in FRAME_SIZES {
        let message = message_of_frame_bytes(1, 2, frame_bytes);
        let mut pair = rt.block_on(pair());
        rt.block_on(async { spawn_echo(&mut pair) });
        group.bench_function(BenchmarkId::new("transport", frame_bytes), |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += transport_round_trip(&mut pair, &message).await;
                    }
                    total
                })
            });
        });
        let transport = rt.block_on(async {
            let mut samples = Vec::with_capacity(PERCENTILE_ROUND_TRIPS);
            for _ in 0..PERCENTILE_ROUND_TRIPS {
                samples.push(transport_round_trip(&mut pair, &message).await);
            }
            samples
        });
        let (a_to_b, b_to_a) = (
            pair.a.metrics().peers[&NodeId(2)],
            pair.b.metrics().peers[&NodeId(1)],
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
        rt.block_on(async { tokio::join!(pair.a.shutdown(), pair.b.shutdown()) });
        let (mut client, _) = rt.block_on(raw_pair(frame_bytes));
        let mut frame = vec![3u8; frame_bytes];
        group.bench_function(BenchmarkId::new("raw_tcp", frame_bytes), |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += raw_round_trip(&mut client, &mut frame).await;
                    }
                    total
                })
            });
        });
        let raw = rt.block_on(async {
            let mut samples = Vec::with_capacity(PERCENTILE_ROUND_TRIPS);
            for _ in 0..PERCENTILE_ROUND_TRIPS {
                samples.push(raw_round_trip(&mut client, &mut frame).await);
            }
            samples
        });
        let (mut client, mut back) = rt.block_on(raw_one_way_pair(frame_bytes));
        let raw_one_way = rt.block_on(async {
            let mut samples = Vec::with_capacity(PERCENTILE_ROUND_TRIPS);
            for _ in 0..PERCENTILE_ROUND_TRIPS {
                samples.push(raw_one_way_round_trip(&mut client, &mut back, &mut frame).await);
            }
            samples
        });
        report_percentiles(group_name, frame_bytes, transport, raw, raw_one_way);
    }
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

fn report_percentiles(
    group_name: &str,
    frame_bytes: usize,
    mut transport: Vec<Duration>,
    mut raw: Vec<Duration>,
    mut raw_one_way: Vec<Duration>,
) {
    transport.sort();
    raw.sort();
    raw_one_way.sort();
    let (t50, t99) = (percentile(&transport, 0.5), percentile(&transport, 0.99));
    let (r50, r99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    let (w50, w99) = (
        percentile(&raw_one_way, 0.5),
        percentile(&raw_one_way, 0.99),
    );
    println!(
        "{group_name} {frame_bytes} B over {PERCENTILE_ROUND_TRIPS} round trips: transport p50 {t50:?} p99 {t99:?}; \
         raw tcp p50 {r50:?} p99 {r99:?}; p50 ratio {:.2}; raw tcp over two one-way connections \
         p50 {w50:?} p99 {w99:?}, transport / that {:.2}",
        t50.as_secs_f64() / r50.as_secs_f64(),
        t50.as_secs_f64() / w50.as_secs_f64()
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
    // from the multi-threaded scheduler's (see BENCHMARKS.md).
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    bench_round_trip(&mut c, &single, "net/rtt_current_thread");
    c.final_summary();
}
