//! Liveness end to end (PROTOCOL.md, "Liveness"), over 127.0.0.1 with ephemeral ports: a
//! silently partitioned connection is closed and replaced within the documented bound and
//! traffic resumes about one redial after the heal; an idle but healthy connection is kept
//! open by keepalives, and a busy one carries none; a peer whose SYNs go nowhere is
//! retried with fresh sockets at the configured pace, and one that answers but refuses is
//! retried about once a second. Partitions come from the proxy in `support/proxy.rs`.
//!
//! Measured times are printed (see them with `--nocapture`) and asserted with generous
//! slack for a loaded machine. Every wait polls to a deadline; the only fixed waits are
//! the spans a scenario needs to pass (a partition's length, an idle spell).

#[path = "support/messages.rs"]
mod messages;
#[path = "support/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use raft_core::{Message, NodeId};
use raft_net::{ClusterId, PeerMetrics, Transport, TransportConfig};
use tokio::sync::mpsc;

use messages::{heartbeat, seq_of};
use proxy::Partition;

const CLUSTER: ClusterId = ClusterId(7);
/// Upper bound for any one wait; generous for a loaded 2-core machine.
const WAIT_MAX: Duration = Duration::from_secs(20);
/// Added to every upper bound on a measured time: timer and scheduling delays on a loaded
/// machine, far below the seconds of kernel backoff these tests rule out.
const SLACK: Duration = Duration::from_millis(400);
const POLL: Duration = Duration::from_millis(2);

/// The liveness settings of one test.
#[derive(Clone, Copy)]
struct Timing {
    keepalive: Duration,
    silence: Duration,
    connect: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

/// Fast enough that a partition test takes about a second.
const FAST: Timing = Timing {
    keepalive: Duration::from_millis(20),
    silence: Duration::from_millis(100),
    connect: Duration::from_millis(50),
    backoff_min: Duration::from_millis(5),
    backoff_max: Duration::from_millis(25),
};

async fn start(id: u64, timing: Timing) -> (Transport, mpsc::Receiver<Message>) {
    start_in(CLUSTER, id, timing).await
}

async fn start_in(
    cluster: ClusterId,
    id: u64,
    timing: Timing,
) -> (Transport, mpsc::Receiver<Message>) {
    let config = TransportConfig {
        keepalive_interval: timing.keepalive,
        silence_timeout: timing.silence,
        connect_timeout: timing.connect,
        backoff_min: timing.backoff_min,
        backoff_max: timing.backoff_max,
        handshake_timeout: Duration::from_secs(1),
        ..TransportConfig::new(cluster, NodeId(id), "127.0.0.1:0".parse().expect("addr"))
    };
    Transport::start(config).await.expect("transport starts")
}

fn peer(transport: &Transport, id: u64) -> PeerMetrics {
    transport
        .metrics()
        .peers
        .get(&NodeId(id))
        .copied()
        .unwrap_or_default()
}

fn connections(m: PeerMetrics) -> u64 {
    m.connects + m.accepts
}

/// Sends numbered heartbeats from `from` to `to` every `POLL` until one arrives in `to_rx`;
/// returns how long that took. (Raft resends; so do we.)
async fn first_delivery(
    from: &Transport,
    to: u64,
    to_rx: &mut mpsc::Receiver<Message>,
) -> Duration {
    let started = Instant::now();
    let mut seq = 0;
    loop {
        assert!(
            started.elapsed() < WAIT_MAX,
            "{} -> {to}: nothing arrives",
            from.node_id()
        );
        let _ = from.send(heartbeat(from.node_id().get(), to, seq)); // a full queue: "not yet"
        seq += 1;
        match tokio::time::timeout(POLL, to_rx.recv()).await {
            Ok(Some(_)) => return started.elapsed(),
            Ok(None) => panic!("receiver closed"),
            Err(_) => {}
        }
    }
}

/// Sends `count` numbered heartbeats from a base no earlier message used, and checks they
/// all arrive in order (skipping stragglers from earlier retries).
async fn exchange_in_order(from: &Transport, to: u64, to_rx: &mut mpsc::Receiver<Message>) {
    const BASE: u64 = 1 << 40;
    for seq in BASE..BASE + 20 {
        from.send(heartbeat(from.node_id().get(), to, seq))
            .expect("queued");
    }
    let mut next = BASE;
    while next < BASE + 20 {
        let message = tokio::time::timeout(WAIT_MAX, to_rx.recv())
            .await
            .expect("arrives before the deadline")
            .expect("receiver open");
        if seq_of(&message) >= BASE {
            assert_eq!(seq_of(&message), next, "in order");
            next += 1;
        }
    }
}

/// Polls until `condition` holds; returns how long after `since` it was first seen.
async fn time_until(what: &str, since: Instant, mut condition: impl FnMut() -> bool) -> Duration {
    while !condition() {
        assert!(since.elapsed() < WAIT_MAX, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
    since.elapsed()
}

/// Two nodes dial each other through proxies that are then cut without closing anything.
/// Each end must close the silent connection `silence_timeout` after it last heard from
/// the other (not before), keep redialling while cut, and after the heal be connected
/// again within about `connect_timeout + backoff_max`, with messages flowing in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_replaced_within_the_bound_and_traffic_resumes_after_heal() {
    let timing = FAST;
    let partition = Partition::new(true);
    let (a, mut a_rx) = start(1, timing).await;
    let (b, mut b_rx) = start(2, timing).await;
    let to_b = partition.proxy(b.local_addr()).await;
    let to_a = partition.proxy(a.local_addr()).await;
    a.set_peer(NodeId(2), to_b.addr()).expect("set_peer");
    b.set_peer(NodeId(1), to_a.addr()).expect("set_peer");
    first_delivery(&a, 2, &mut b_rx).await;
    first_delivery(&b, 1, &mut a_rx).await;
    let (a_before, b_before) = (peer(&a, 2), peer(&b, 1));
    // One last message each way: each end heard something no earlier than its sending.
    let last_sent_to_b = Instant::now();
    exchange_in_order(&a, 2, &mut b_rx).await;
    let last_sent_to_a = Instant::now();
    exchange_in_order(&b, 1, &mut a_rx).await;

    partition.cut();
    let cut_at = Instant::now();
    let (mut a_closed_at, mut b_closed_at) = (None, None);
    time_until("both ends close the silent connection", cut_at, || {
        if a_closed_at.is_none() && peer(&a, 2).silence_closes > a_before.silence_closes {
            a_closed_at = Some(Instant::now());
        }
        if b_closed_at.is_none() && peer(&b, 1).silence_closes > b_before.silence_closes {
            b_closed_at = Some(Instant::now());
        }
        a_closed_at.is_some() && b_closed_at.is_some()
    })
    .await;
    let closed = [
        (1, a_closed_at.expect("seen"), last_sent_to_a),
        (2, b_closed_at.expect("seen"), last_sent_to_b),
    ];
    for (node, closed_at, last_sent) in closed {
        let after_cut = closed_at - cut_at;
        eprintln!("node {node} closed the silent connection {after_cut:?} after the cut");
        // Never before `silence_timeout` of silence; and within it of the cut, plus slack.
        assert!(
            closed_at - last_sent >= timing.silence,
            "node {node} closed early"
        );
        assert!(
            after_cut <= timing.silence + SLACK,
            "node {node} closed late"
        );
    }
    // A partition of five silence timeouts; both ends keep trying to dial meanwhile.
    tokio::time::sleep_until((cut_at + timing.silence * 5).into()).await;
    for (node, m, before) in [(&a, peer(&a, 2), a_before), (&b, peer(&b, 1), b_before)] {
        assert!(
            m.connect_failures >= before.connect_failures + 2,
            "node {} kept dialling: {m:?}",
            node.node_id()
        );
        assert_eq!(
            connections(m),
            connections(before),
            "nothing got through the cut"
        );
    }

    partition.heal();
    let a_to_b = first_delivery(&a, 2, &mut b_rx).await;
    let b_to_a = first_delivery(&b, 1, &mut a_rx).await;
    eprintln!("after the heal: 1 -> 2 flows again in {a_to_b:?}; then 2 -> 1 in {b_to_a:?}");
    assert!(
        a_to_b <= timing.connect + timing.backoff_max + SLACK,
        "reconnected late: {a_to_b:?}"
    );
    exchange_in_order(&a, 2, &mut b_rx).await;
    exchange_in_order(&b, 1, &mut a_rx).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A connection that carries no messages for five silence timeouts stays open: keepalives
/// cross it both ways, from the peer's writer task or, on a connection accepted from a
/// peer this node has no address for, from its reader's task. Both cases run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_healthy_connection_is_kept_open_by_keepalives() {
    tokio::join!(
        idle_connection_stays_open(true),
        idle_connection_stays_open(false)
    );
}

async fn idle_connection_stays_open(acceptor_knows_dialer: bool) {
    // Fifteen keepalive intervals of silence allowed: a loaded machine may delay a few.
    let timing = Timing {
        silence: Duration::from_millis(300),
        ..FAST
    };
    let (a, mut a_rx) = start(1, timing).await;
    let (b, mut b_rx) = start(2, timing).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    if acceptor_knows_dialer {
        b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    }
    first_delivery(&a, 2, &mut b_rx).await;
    let idle_from = Instant::now();
    let idle = timing.silence * 5;
    // Bounded by `idle`; a close fails the test at once.
    while idle_from.elapsed() < idle {
        for (m, node) in [(peer(&a, 2), 1), (peer(&b, 1), 2)] {
            let case = format!("node {node}, acceptor knows dialer: {acceptor_knows_dialer}");
            assert_eq!(m.silence_closes, 0, "{case}: {m:?}");
            assert_eq!(connections(m), 1, "{case}: {m:?}");
        }
        tokio::time::sleep(POLL * 5).await;
    }
    let (sent_by_a, sent_by_b) = (peer(&a, 2).keepalives_sent, peer(&b, 1).keepalives_sent);
    eprintln!("idle for {idle:?} (acceptor knows dialer: {acceptor_knows_dialer}): keepalives 1 -> 2: {sent_by_a}, 2 -> 1: {sent_by_b}");
    // About one per interval; a quarter of that leaves room for a slow machine.
    let expected =
        u64::try_from(idle.as_millis() / timing.keepalive.as_millis() / 4).expect("small");
    assert!(sent_by_a >= expected, "{sent_by_a} < {expected}");
    assert!(sent_by_b >= expected, "{sent_by_b} < {expected}");
    // The connection still works, and node 2 uses it once it knows node 1.
    if !acceptor_knows_dialer {
        b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    }
    exchange_in_order(&a, 2, &mut b_rx).await;
    exchange_in_order(&b, 1, &mut a_rx).await;
    assert_eq!(connections(peer(&a, 2)), 1);
    assert_eq!(connections(peer(&b, 1)), 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// A node that writes more often than `keepalive_interval` sends no keepalive: they cost
/// nothing under load. Its peer, which only reads, keeps the other direction alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connection_carries_no_keepalives() {
    let timing = Timing {
        keepalive: Duration::from_millis(200),
        silence: Duration::from_secs(1),
        ..FAST
    };
    let (a, _a_rx) = start(1, timing).await;
    let (b, mut b_rx) = start(2, timing).await;
    a.set_peer(NodeId(2), b.local_addr()).expect("set_peer");
    b.set_peer(NodeId(1), a.local_addr()).expect("set_peer");
    first_delivery(&a, 2, &mut b_rx).await;
    let (a_before, b_before) = (peer(&a, 2), peer(&b, 1));
    let busy_from = Instant::now();
    let mut seq = 0;
    // Bounded by the span; one message every 10 ms, each awaited.
    while busy_from.elapsed() < Duration::from_secs(1) {
        a.send(heartbeat(1, 2, seq)).expect("sent");
        let message = tokio::time::timeout(WAIT_MAX, b_rx.recv())
            .await
            .expect("arrives")
            .expect("open");
        assert_eq!(seq_of(&message), seq);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (a_after, b_after) = (peer(&a, 2), peer(&b, 1));
    eprintln!(
        "busy for 1 s ({seq} messages): keepalives from the sender {}, from the idle receiver {}",
        a_after.keepalives_sent - a_before.keepalives_sent,
        b_after.keepalives_sent - b_before.keepalives_sent
    );
    assert_eq!(
        a_after.keepalives_sent, a_before.keepalives_sent,
        "{a_after:?}"
    );
    assert!(
        b_after.keepalives_sent >= b_before.keepalives_sent + 2,
        "{b_after:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A peer behind a partition from the start: the kernel drops every SYN, so each attempt
/// ends by `connect_timeout` and the next, on a fresh socket, follows within
/// `backoff_max`, instead of one socket waiting out the kernel's SYN retries (1 s, 3 s,
/// ...). After the heal the next attempt gets through within about one attempt's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peer_is_redialled_with_fresh_sockets_at_the_configured_pace() {
    let timing = FAST;
    let partition = Partition::new(false);
    let (a, _a_rx) = start(1, timing).await;
    let (b, mut b_rx) = start(2, timing).await;
    let to_b = partition.proxy(b.local_addr()).await;
    let window = Duration::from_secs(1);
    a.set_peer(NodeId(2), to_b.addr()).expect("set_peer");
    let dialling_from = Instant::now();
    tokio::time::sleep_until((dialling_from + window).into()).await;
    let m = peer(&a, 2);
    let attempts = m.connect_failures;
    let fastest = window.as_millis() / timing.connect.as_millis() + 1;
    let slowest = window.as_millis() / (timing.connect + timing.backoff_max).as_millis();
    eprintln!("attempts in {window:?} while SYNs are dropped: {attempts} (between {slowest} and {fastest} at the configured pace)");
    assert_eq!(connections(m), 0, "{m:?}");
    assert!(
        u128::from(attempts) <= fastest,
        "faster than connect_timeout allows: {m:?}"
    );
    // A third of the pace still rules out the kernel's SYN retries, which allow one.
    assert!(
        u128::from(attempts) >= slowest / 3,
        "too few attempts: {m:?}"
    );

    partition.heal();
    let resumed = first_delivery(&a, 2, &mut b_rx).await;
    eprintln!("after the heal, the first message arrives in {resumed:?}");
    assert!(
        resumed <= timing.connect + timing.backoff_max + SLACK,
        "reconnected late: {resumed:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// A peer that answers but refuses the hello (here, a node of another cluster) is
/// redialled about once a second, not at the backoff's pace: the network works, so
/// redialling sooner would only repeat the refusal and its warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_dial_is_retried_about_once_a_second() {
    let (a, _a_rx) = start(1, FAST).await;
    let (stranger, _stranger_rx) = start_in(ClusterId(99), 2, FAST).await;
    a.set_peer(NodeId(2), stranger.local_addr())
        .expect("set_peer");
    let from = Instant::now();
    time_until("the first refusal", from, || {
        peer(&a, 2).connect_failures >= 1
    })
    .await;
    let window = Duration::from_millis(1500);
    tokio::time::sleep_until((from + window).into()).await;
    let failures = peer(&a, 2).connect_failures;
    eprintln!("refused attempts in {window:?}: {failures}");
    // At FAST's backoff pace there would be about sixty.
    assert!(failures <= 2, "{failures} attempts");
    a.shutdown().await;
    stranger.shutdown().await;
}
