//! Hostile bytes on the client port: garbage, a 4 GiB bulk length, a 1M-element array
//! header, a half-sent command then a disconnect, and many connections each declaring a
//! large value and then stalling. Each gets a clear `-ERR` or a closed connection; other
//! clients keep being served (PING, SET and GET on a fresh connection, including through a
//! follower); and the node's resident memory stays bounded.

#[path = "support/cluster.rs"]
mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use support::{rss_kib, Client, Cluster, Options, Reply};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Resident memory the node may reach while under attack.
const RSS_KIB_MAX: u64 = 200 * 1024;
/// Stalled connections each declaring a near-limit value (8,000,000 bytes).
const STALLED_CONNECTIONS: usize = 50;

/// What the server did with one hostile request.
#[derive(Debug)]
enum Verdict {
    Error(String),
    Closed,
}

/// Sends `bytes` on a fresh connection and reads what comes back: an error reply, or the
/// connection closing. Anything else (a success, or silence past the timeout) fails.
fn send_hostile(addr: SocketAddr, bytes: &[u8]) -> Verdict {
    let mut client = Client::connect_with(addr, Duration::from_secs(5)).expect("connect");
    if let Err(e) = client.write_raw(bytes) {
        // The server may close while we are still writing.
        assert!(
            matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "writing hostile bytes: {e}"
        );
        return Verdict::Closed;
    }
    match client.read_reply() {
        Ok(Reply::Error(e)) => Verdict::Error(e),
        Ok(other) => panic!("hostile input {:?} got {other:?}", preview(bytes)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            Verdict::Closed
        }
        Err(e) => panic!(
            "hostile input {:?}: no error and no close: {e}",
            preview(bytes)
        ),
    }
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned()
}

/// PING, SET, GET on fresh connections to `ids` all work.
fn still_serving(cluster: &Cluster, ids: &[u64], tag: &str) {
    for id in ids {
        let mut client = cluster.client(*id);
        assert_eq!(
            client.cmd(&["PING"]).expect("PING"),
            Reply::Simple("PONG".into())
        );
        let key = format!("alive:{tag}:{id}");
        let set = client.cmd(&["SET", &key, tag]).expect("SET");
        assert!(set.is_ok(), "SET after {tag} on node {id}: {set:?}");
        let got = client.cmd(&["GET", &key]).expect("GET");
        assert_eq!(got.bulk_string().as_deref(), Some(tag), "GET after {tag}");
    }
}

/// After a protocol error the server closes the connection: the next read sees EOF.
fn expect_closed_after_error(addr: SocketAddr, bytes: &[u8], what: &str) {
    let mut client = Client::connect_with(addr, Duration::from_secs(5)).expect("connect");
    // Ignore write errors: the server may already have closed.
    let _ = client.write_raw(bytes);
    let reply = client.read_reply();
    match &reply {
        Ok(Reply::Error(e)) => assert!(e.starts_with("ERR"), "{what}: {e}"),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        other => panic!("{what}: expected -ERR or close, got {other:?}"),
    }
    let after = client.read_reply();
    assert!(
        matches!(&after, Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset)),
        "{what}: the connection is closed after the protocol error, got {after:?}"
    );
}

#[test]
fn hostile_client_input_gets_errors_and_the_node_keeps_serving_in_bounded_memory() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let pid = cluster.nodes[&leader].pid().expect("leader pid");
    let addr = cluster.addr(leader);
    still_serving(&cluster, &[leader, follower], "start");
    let rss_start = rss_kib(pid);

    // Garbage bytes: an inline line of junk is an unknown command; binary junk without a
    // line end past 64 KiB is a too-big inline request.
    let verdict = send_hostile(addr, b"\x00\x01\x02garbage \xff\xfe\x80\r\n");
    assert!(
        matches!(&verdict, Verdict::Error(e) if e.starts_with("ERR"))
            || matches!(verdict, Verdict::Closed),
        "garbage line: {verdict:?}"
    );
    let junk: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + 1) as u8 | 0x80).collect();
    let verdict = send_hostile(addr, &junk);
    assert!(
        matches!(&verdict, Verdict::Error(e) if e.starts_with("ERR"))
            || matches!(verdict, Verdict::Closed),
        "200 KB of binary junk: {verdict:?}"
    );
    let verdict = send_hostile(addr, b"*2\r\n:5\r\n$1\r\nx\r\n");
    assert!(
        matches!(&verdict, Verdict::Error(e) if e.starts_with("ERR")),
        "a non-bulk element: {verdict:?}"
    );
    still_serving(&cluster, &[leader, follower], "garbage");

    // A 4 GiB bulk length: refused before anything is allocated, connection closed.
    expect_closed_after_error(addr, b"*1\r\n$4294967296\r\n", "4 GiB bulk length");
    // A 1M-element array header.
    expect_closed_after_error(addr, b"*1000000\r\n", "1M-element array");
    // Both again through a follower.
    let follower_addr = cluster.addr(follower);
    expect_closed_after_error(
        follower_addr,
        b"*1\r\n$4294967296\r\n",
        "4 GiB bulk (follower)",
    );
    expect_closed_after_error(follower_addr, b"*1000000\r\n", "1M array (follower)");
    still_serving(&cluster, &[leader, follower], "lengths");

    // A half-sent command, then disconnect: nothing is applied.
    {
        let mut client = Client::connect(addr).expect("connect");
        client
            .write_raw(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nval")
            .expect("half a command");
    }
    still_serving(&cluster, &[leader, follower], "half-sent");
    let got = cluster.client(leader).cmd(&["GET", "half"]).expect("GET");
    assert_eq!(got, Reply::Bulk(None), "a half-sent SET must not apply");

    // Many connections each declaring an 8 MB value and a 65,536-element array, then
    // stalling: memory must not grow with what was declared, only with what was sent.
    let mut stalled = Vec::new();
    for i in 0..STALLED_CONNECTIONS {
        let mut client = Client::connect(addr).expect("connect");
        let header: &[u8] = if i % 2 == 0 {
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8000000\r\nabc"
        } else {
            b"*65536\r\n$3\r\nSET\r\n"
        };
        client.write_raw(header).expect("stalled header");
        stalled.push(client);
    }
    still_serving(&cluster, &[leader, follower], "stalled");
    let rss_stalled = rss_kib(pid);
    eprintln!("leader RSS: {rss_start} KiB at start, {rss_stalled} KiB with {STALLED_CONNECTIONS} stalled connections");
    assert!(
        rss_stalled < RSS_KIB_MAX,
        "leader RSS {rss_stalled} KiB with stalled connections (limit {RSS_KIB_MAX} KiB)"
    );
    drop(stalled);

    // Repeat the size attacks many times: memory stays bounded, nothing leaks per attack.
    for _ in 0..200 {
        expect_closed_after_error(addr, b"*1\r\n$4294967296\r\n", "4 GiB bulk length");
        expect_closed_after_error(addr, b"*1000000\r\n", "1M-element array");
    }
    still_serving(&cluster, &[leader, follower], "repeated");
    let rss_end = rss_kib(pid);
    eprintln!("leader RSS at end: {rss_end} KiB");
    assert!(rss_end < RSS_KIB_MAX, "leader RSS {rss_end} KiB at the end");

    // The process is alive and well (not merely answering on a leftover connection).
    let mut probe = Client::connect(addr).expect("connect");
    probe.write_raw(b"PING\r\n").expect("inline PING");
    let reply = probe.read_reply().expect("PONG");
    assert_eq!(reply, Reply::Simple("PONG".into()));
}
