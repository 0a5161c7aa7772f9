//! Operating a node: graceful shutdown on SIGTERM, the Prometheus endpoint, refusal of
//! invalid settings, and a real Redis client library (the `redis` crate) using the
//! cluster unchanged, pipelines included.

#[path = "support/cluster.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::{free_ports, Cluster, Options, Reply};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn sigterm_stops_a_node_gracefully_with_exit_0_and_it_restarts_from_its_wal() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let reply = cluster
        .client(leader)
        .cmd(&["SET", "before-term", "1"])
        .expect("SET");
    assert!(reply.is_ok(), "{reply:?}");
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    cluster.wait_converged(&[1, 2, 3], TIMEOUT);
    cluster.signal(follower, "TERM");
    let status = cluster
        .wait_exit(follower, TIMEOUT)
        .expect("exits after SIGTERM");
    assert!(status.success(), "SIGTERM must end in exit 0: {status:?}");
    assert!(
        cluster.log(follower).contains("stopped"),
        "{}",
        cluster.log(follower)
    );
    cluster.start_node(follower);
    cluster.wait_serving(follower, TIMEOUT);
    let got = support::read_retrying(&mut cluster.client(follower), &[b"GET", b"before-term"]);
    assert_eq!(got, Reply::Bulk(Some(b"1".to_vec())));
}

/// SIGTERM to the leader under write load: it answers what it has read, exits 0 within the
/// drain and close bounds, and no write it acknowledged is lost.
#[test]
fn sigterm_under_load_answers_in_flight_requests_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let others: Vec<_> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != leader)
        .map(|id| cluster.addr(id))
        .collect();
    let mut targets = vec![cluster.addr(leader)];
    targets.extend(others);
    let stream = support::WriteStream::start("term", targets, 16);
    stream.wait_acked(500, TIMEOUT);
    let signalled = std::time::Instant::now();
    cluster.signal(leader, "TERM");
    let status = cluster
        .wait_exit(leader, TIMEOUT)
        .expect("exits after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "SIGTERM must end in exit 0: {status:?}");
    // Drain (3 s) and close (1 s) bounds, plus the last sync and the transport's stop.
    assert!(took < Duration::from_secs(8), "took {took:?} to exit");
    let acked_at_exit = stream.acked();
    stream.wait_acked(acked_at_exit + 200, TIMEOUT);
    let records = stream.stop();
    cluster.start_node(leader);
    cluster.wait_serving(leader, TIMEOUT);
    support::check_everywhere(&cluster, &[1, 2, 3], &records);
    let log = cluster.log(leader);
    assert!(log.contains("draining client connections"), "{log}");
    eprintln!(
        "{} (the leader exited {took:?} after SIGTERM)",
        support::summarize(&records)
    );
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let metrics_port = free_ports(1)[0];
    cluster.kill(leader);
    cluster.add_arg(leader, format!("--metrics-addr=127.0.0.1:{metrics_port}"));
    cluster.start_node(leader);
    cluster.wait_serving(leader, TIMEOUT);
    let now_leader = cluster.wait_for_leader(TIMEOUT);
    let reply = cluster
        .client(now_leader)
        .cmd(&["SET", "m", "1"])
        .expect("SET");
    assert!(reply.is_ok(), "{reply:?}");
    cluster.wait_converged(&[1, 2, 3], TIMEOUT);
    let response = http_get(&format!("127.0.0.1:{metrics_port}"), "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for metric in [
        "raftkv_term ",
        "raftkv_role{role=\"",
        "raftkv_leader_id ",
        "raftkv_commit_index ",
        "raftkv_applied_index ",
        "raftkv_proposals_total ",
        "raftkv_proposal_seconds_bucket{le=\"",
        "raftkv_fsync_seconds_count ",
        "raftkv_snapshots_total ",
        "raftkv_peer_bytes_sent_total{peer=\"",
        "raftkv_peer_drops_total{peer=\"",
        "raftkv_peer_inbound_drops_total{peer=\"",
    ] {
        assert!(
            response.contains(metric),
            "missing {metric:?} in:\n{response}"
        );
    }
    let fsyncs = response
        .lines()
        .find_map(|line| line.strip_prefix("raftkv_fsync_seconds_count "))
        .and_then(|count| count.parse::<u64>().ok())
        .expect("fsync count");
    assert!(fsyncs > 0, "a node that persisted entries has synced");
    // One connection per peer pair, dialled by either side: the restarted, caught-up node
    // holds one with each of its two peers.
    let mut connections = std::collections::BTreeMap::<String, u64>::new();
    for line in response.lines() {
        let Some(rest) = line
            .strip_prefix("raftkv_peer_connects_total{peer=\"")
            .or_else(|| line.strip_prefix("raftkv_peer_accepts_total{peer=\""))
        else {
            continue;
        };
        let (peer, count) = rest.split_once("\"} ").expect("a labelled counter line");
        *connections.entry(peer.to_owned()).or_default() += count.parse::<u64>().expect("count");
    }
    assert_eq!(connections.len(), 2, "{response}");
    assert!(
        connections.values().all(|count| *count >= 1),
        "{connections:?}"
    );
}

#[test]
fn invalid_settings_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let member = "--member=1=127.0.0.1:1,127.0.0.1:2";
    let cases: [(&[&str], &str); 6] = [
        (
            &["--node-id=1", member, "--storage=disk"],
            "invalid config: storage",
        ),
        (
            &["--node-id=1", member, "--election-ms=10"],
            "invalid config: election_ms",
        ),
        (&[member], "invalid config: node_id"),
        (
            &["--node-id=1", "--member=1=nonsense"],
            "invalid config: member",
        ),
        // A segment that cannot hold the largest entry: refused, not stopped on the first
        // large SET.
        (
            &["--node-id=1", member, "--wal-segment-bytes=1048576"],
            "invalid config: wal_segment_bytes",
        ),
        (
            &["--node-id=1", member, "--entry-bytes-max=65536"],
            "invalid config: entry_bytes_max",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(args)
            .arg(format!("--data-dir={}", dir.path().display()))
            .output()
            .expect("run kvnode");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "node_id = 1\nsnapshot_entrys = 5\n").expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .arg(format!("--config={}", config.display()))
        .output()
        .expect("run kvnode");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("snapshot_entrys"),
        "an unknown key is named: {stderr}"
    );
}

#[test]
fn the_redis_crate_works_unchanged_including_pipelines() {
    let cluster = Cluster::start(3, Options::default());
    // A follower, so requests are forwarded and reads go through ReadIndex.
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let client = redis::Client::open(format!("redis://{}/", cluster.addr(follower))).expect("url");
    let mut connection = client
        .get_connection_with_timeout(TIMEOUT)
        .expect("connect with the redis crate");
    connection.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let (): () = redis::cmd("SET")
        .arg("lib:a")
        .arg("1")
        .query(&mut connection)
        .expect("SET");
    let value: String = redis::cmd("GET")
        .arg("lib:a")
        .query(&mut connection)
        .expect("GET");
    assert_eq!(value, "1");
    let mut pipeline = redis::pipe();
    for i in 0..100 {
        pipeline.cmd("SET").arg(format!("lib:{i}")).arg(i).ignore();
    }
    pipeline.cmd("INCRBY").arg("lib:counter").arg(5);
    pipeline.cmd("MGET").arg("lib:0").arg("lib:99");
    pipeline.cmd("DBSIZE");
    let (counter, values, keys): (i64, Vec<String>, i64) =
        pipeline.query(&mut connection).expect("pipeline");
    assert_eq!(counter, 5);
    assert_eq!(values, vec!["0".to_string(), "99".to_string()]);
    assert_eq!(keys, 102, "lib:a, lib:0..lib:99 and lib:counter");
}

/// With a password configured, commands before AUTH get NOAUTH, a wrong password
/// WRONGPASS, and after AUTH a write sent to a follower is forwarded (the follower
/// authenticates to the leader itself) and applied.
#[test]
fn password_protected_cluster_requires_auth_and_still_forwards_writes() {
    let mut cluster = Cluster::start(3, Options::default());
    cluster.wait_for_leader(TIMEOUT);
    for id in [1, 2, 3] {
        cluster.kill(id);
        cluster.add_arg(id, "--password=s3cret".to_string());
    }
    for id in [1, 2, 3] {
        cluster.start_node(id);
    }
    // PING needs AUTH too (as in Redis), so wait for the ports to accept instead.
    for id in [1, 2, 3] {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while support::Client::connect_with(cluster.addr(id), Duration::from_secs(1)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "node {id} never listened"
            );
            std::thread::sleep(support::POLL_INTERVAL);
        }
    }
    let authed = |id: u64| {
        let mut client = cluster.client(id);
        let reply = client.cmd(&["AUTH", "s3cret"]).expect("AUTH");
        assert!(reply.is_ok(), "{reply:?}");
        client
    };
    let mut probe = authed(1);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let leader = loop {
        let status = probe.status().expect("RAFT.STATUS");
        if let Some(leader) = status.leader {
            break leader.0;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader: {status:?}"
        );
        std::thread::sleep(support::POLL_INTERVAL);
    };
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let mut anonymous = cluster.client(follower);
    match anonymous.cmd(&["GET", "k"]).expect("GET") {
        Reply::Error(message) => assert!(message.starts_with("NOAUTH"), "{message}"),
        other => panic!("expected NOAUTH, got {other:?}"),
    }
    match anonymous.cmd(&["AUTH", "wrong"]).expect("AUTH") {
        Reply::Error(message) => assert!(message.starts_with("WRONGPASS"), "{message}"),
        other => panic!("expected WRONGPASS, got {other:?}"),
    }
    let mut client = authed(follower);
    let reply = client
        .cmd(&["SET", "k", "v"])
        .expect("SET through a follower");
    assert!(
        reply.is_ok(),
        "a forwarded write must authenticate to the leader: {reply:?}"
    );
    let got = support::read_retrying(&mut authed(leader), &[b"GET", b"k"]);
    assert_eq!(got, Reply::Bulk(Some(b"v".to_vec())));
}
