//! Peer security of real `kvnode` processes: bad TLS or secret settings stop a node at
//! start naming the key (exit 2); a cluster with a secret, or with TLS, serves; a stranger
//! on a TLS peer port is logged and changes nothing; SIGHUP reloads the certificates (and
//! refuses bad ones, keeping the old). The kill -9 and membership scenarios over peer TLS
//! live beside their plain versions (crash_leader.rs, membership.rs).

#[path = "support/cluster.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use raft_core::NodeId;
use raft_net::certgen::{Authority, Validity};
use raft_net::ClusterId;
use support::{Cluster, Options, Reply, POLL_INTERVAL};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls node `id`'s log until it contains `text`.
fn wait_logged(cluster: &Cluster, id: u64, text: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !cluster.log(id).contains(text) {
        assert!(
            Instant::now() < deadline,
            "node {id} never logged {text:?}:\n{}",
            cluster.log(id)
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A write through `id`, then read back through every other node.
fn write_and_read_everywhere(cluster: &Cluster, id: u64, key: &str) {
    let reply = cluster.client(id).cmd(&["SET", key, "v"]).expect("SET");
    assert!(reply.is_ok(), "SET {key}: {reply:?}");
    for other in cluster.running_ids() {
        let got = cluster.client(other).cmd(&["GET", key]).expect("GET");
        assert_eq!(got, Reply::Bulk(Some(b"v".to_vec())), "node {other}");
    }
}

#[test]
fn bad_peer_security_settings_stop_the_node_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let ca = Authority::new("test CA").expect("CA");
    let cluster = ClusterId(1);
    let issue = |id, validity| ca.issue(cluster, NodeId(id), validity).expect("issue");
    let (good, expired) = (issue(1, Validity::Current), issue(1, Validity::Expired));
    let other = issue(2, Validity::Current);
    for (name, text) in [
        ("ca.pem", ca.cert_pem()),
        ("node-1.pem", good.cert_pem),
        ("node-1.key", good.key_pem),
        ("expired.pem", expired.cert_pem),
        ("expired.key", expired.key_pem),
        ("node-2.pem", other.cert_pem),
        ("node-2.key", other.key_pem),
        ("short.secret", "0123456789\n".into()),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let tls = |cert: &str, key: &str| {
        vec![
            format!("--peer-tls-cert={}", path(cert)),
            format!("--peer-tls-key={}", path(key)),
            format!("--peer-tls-ca={}", path("ca.pem")),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            tls("node-1.pem", "missing.key"),
            "invalid config: peer_tls_key: cannot read",
        ),
        (
            tls("expired.pem", "expired.key"),
            "invalid config: peer_tls_cert",
        ),
        (
            tls("node-2.pem", "node-2.key"),
            "invalid config: peer_tls_cert",
        ),
        (
            tls("node-1.pem", "node-2.key"),
            "invalid config: peer_tls_key",
        ),
        (
            vec![format!("--peer-tls-cert={}", path("node-1.pem"))],
            "invalid config: peer_tls_key: required",
        ),
        (
            vec![format!("--cluster-secret-file={}", path("short.secret"))],
            "invalid config: cluster_secret_file",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(["--node-id=1", "--member=1=127.0.0.1:1,127.0.0.1:2"])
            .args(&args)
            .arg(format!("--data-dir={}", path("data")))
            .output()
            .expect("run kvnode");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn cluster_with_a_secret_elects_and_replicates() {
    let cluster = Cluster::start(
        3,
        Options {
            cluster_secret: true,
            ..Options::default()
        },
    );
    let leader = cluster.wait_for_leader(TIMEOUT);
    write_and_read_everywhere(&cluster, leader, "secret-key");
    cluster.check_peer_security_logged();
}

/// A stranger who speaks plain raft-net to a TLS peer port: refused with a log line that
/// says what happened, and the cluster goes on serving. Then SIGHUP reloads node 1's
/// (renewed) certificate, refuses a broken one keeping the old, and node 1 still
/// reconnects to its peers with what it has.
#[test]
fn tls_cluster_refuses_a_stranger_and_reloads_certificates_on_sighup() {
    let mut cluster = Cluster::start(3, Options::peer_tls());
    let leader = cluster.wait_for_leader(TIMEOUT);
    write_and_read_everywhere(&cluster, leader, "before");

    let mut hello = Vec::new();
    // A version-4 hello from "node 2" to node 1, in plain TCP.
    hello.extend_from_slice(&[
        0, 0, 0, 0x0b, 4, 0, 0xce, 0xac, 0xad, 0x92, 0x05, 1, 2, 1, 0,
    ]);
    let mut stranger = TcpStream::connect(cluster.nodes[&1].peer).expect("connect");
    stranger.write_all(&hello).expect("write");
    stranger
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut answer = Vec::new();
    let _ = stranger.read_to_end(&mut answer); // closed, maybe with a reset
    assert!(answer.is_empty(), "the stranger got {answer:?}");
    wait_logged(&cluster, 1, "did not start a TLS handshake");
    write_and_read_everywhere(&cluster, leader, "after-stranger");

    // A renewed certificate from the same CA: reloaded.
    let (cert, key, _) = cluster.tls_paths(1);
    let renewed = cluster
        .ca
        .as_ref()
        .expect("TLS cluster")
        .issue(ClusterId(1), NodeId(1), Validity::Current)
        .expect("issue");
    std::fs::write(&cert, renewed.cert_pem).expect("write cert");
    std::fs::write(&key, renewed.key_pem).expect("write key");
    cluster.signal(1, "HUP");
    wait_logged(&cluster, 1, "peer TLS certificate, key and CA reloaded");
    // A broken one: refused, the renewed one stays.
    std::fs::write(&cert, "not a certificate").expect("write cert");
    cluster.signal(1, "HUP");
    wait_logged(
        &cluster,
        1,
        "peer TLS files refused; keeping the current ones",
    );
    // Node 1's next connections use the renewed identity: restart its peers so that every
    // connection is made anew, and the cluster must still work through node 1.
    for id in [2, 3] {
        cluster.restart(id);
        cluster.wait_serving(id, TIMEOUT);
    }
    let leader = cluster.wait_for_leader(TIMEOUT);
    write_and_read_everywhere(&cluster, leader, "after-reload");
    assert!(
        cluster.nodes[&1].is_running(),
        "SIGHUP must not stop the node"
    );
}
