//! TLS on the client port: a cluster with TLS on both ports serves through any node (a
//! follower forwards to the leader over TLS), real Redis clients connect with their own
//! TLS (redis-cli --tls, redis-py ssl=True), mutual TLS refuses clients without a trusted
//! certificate, bad handshakes are closed, counted and logged while the node keeps
//! serving, SIGHUP reloads the files, and bad settings stop the node naming the key.
//! (The kill -9 and membership tests run over TLS on both ports too: crash_leader.rs,
//! membership.rs.)

#[path = "support/cluster.rs"]
mod support;
#[path = "support/tools.rs"]
mod tools;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvnode::client_tls::tool_config;
use raft_net::certgen::{Authority, Validity};
use support::{Client, Cluster, Options, Reply, POLL_INTERVAL};

const TIMEOUT: Duration = Duration::from_secs(20);
/// The handshake timeout of the bad-input test's node.
const HANDSHAKE_MS: u64 = 500;

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

/// Polls until node `id` counts at least `count` rejections for `reason`.
fn wait_rejections(cluster: &Cluster, id: u64, reason: &str, count: u64) {
    let series = format!("raftkv_client_tls_rejections_total{{reason=\"{reason}\"}}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let counted = cluster.metric(id, &series);
        if counted >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: {series} is {counted}, expected at least {count}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn other_node(leader: u64) -> u64 {
    if leader == 1 {
        2
    } else {
        1
    }
}

/// The node answers a TLS client: PING, and a write read back.
fn check_serving(cluster: &Cluster, id: u64, key: &str) {
    let mut client = cluster.client(id);
    assert_eq!(
        client.cmd(&["PING"]).expect("PING"),
        Reply::Simple("PONG".into())
    );
    assert!(client.cmd(&["SET", key, "still"]).expect("SET").is_ok());
    let value = client.cmd(&["GET", key]).expect("GET");
    assert_eq!(value.bulk_string().as_deref(), Some("still"));
}

/// A plain RESP client on the TLS port is told why and closed.
fn check_plain_client_refused(cluster: &Cluster, id: u64) {
    let mut plain = Client::connect_plain(cluster.addr(id), Duration::from_secs(5)).expect("TCP");
    match plain.cmd(&["PING"]) {
        Ok(Reply::Error(error)) => assert!(error.contains("TLS only"), "{error}"),
        other => panic!("a plain client on the TLS port got {other:?}"),
    }
}

#[test]
fn tls_on_both_ports_serves_through_any_node_and_real_redis_clients_connect() {
    let options = Options {
        metrics: true,
        ..Options::tls_everywhere(false)
    };
    let cluster = Cluster::start(3, options);
    cluster.check_peer_security_logged();
    for id in 1..=3 {
        wait_logged(&cluster, id, "client port security");
        let log = cluster.log(id);
        let line = log
            .lines()
            .find(|line| line.contains("client port security"));
        assert!(
            line.is_some_and(|line| line.contains("tls=true")),
            "node {id}: {line:?}"
        );
    }
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = other_node(leader);
    let mut client = cluster.client(follower);
    assert!(client.cmd(&["SET", "k", "v"]).expect("SET").is_ok());
    assert!(
        cluster.metric(follower, "raftkv_forwarded_total") >= 1,
        "the follower's write was not forwarded"
    );
    for id in 1..=3 {
        let value = cluster.client(id).cmd(&["GET", "k"]).expect("GET");
        assert_eq!(value.bulk_string().as_deref(), Some("v"), "node {id}");
    }
    // Every port is TLS only, so the forwarding above went over TLS.
    for id in 1..=3 {
        check_plain_client_refused(&cluster, id);
    }
    wait_rejections(&cluster, follower, "not_tls", 1);
    let (ca, _, _) = cluster.client_tls_paths();
    let ca_flag = format!("--cacert={}", ca.display());
    let endpoints = format!("--endpoints={}", cluster.addr(follower));
    let (ok, out) = kvctl(&[&endpoints, "--tls", &ca_flag, "set", "ctl:k", "ctl-v"]);
    assert!(ok && out.contains("OK"), "kvctl over TLS: {out}");
    let (ok, out) = kvctl(&[&endpoints, "--tls", &ca_flag, "get", "ctl:k"]);
    assert!(ok && out.contains("ctl-v"), "kvctl over TLS: {out}");
    redis_cli_over_tls(&cluster, follower);
    redis_py_over_tls(&cluster, follower);
}

/// Runs kvctl; returns whether it succeeded, and its output.
fn kvctl(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .args(["--timeout-ms=5000", "--rounds=2"])
        .args(args)
        .output()
        .expect("run kvctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `redis-cli --tls --cacert` writes through a follower and reads back.
fn redis_cli_over_tls(cluster: &Cluster, id: u64) {
    if let Err(reason) = tools::ensure("redis-cli", &["--version"], "redis-tools") {
        eprintln!("skipping redis-cli over TLS: {reason}");
        return;
    }
    let help = Command::new("redis-cli").arg("--help").output();
    let has_tls = help.is_ok_and(|out| {
        String::from_utf8_lossy(&out.stdout).contains("--tls")
            || String::from_utf8_lossy(&out.stderr).contains("--tls")
    });
    if !has_tls {
        eprintln!("skipping redis-cli over TLS: this redis-cli is built without TLS");
        return;
    }
    let (ca, _, _) = cluster.client_tls_paths();
    let addr = cluster.addr(id);
    let run = |args: &[&str]| {
        let output = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&ca)
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(run(&["SET", "cli:k", "cli-v"]), "OK");
    assert_eq!(run(&["GET", "cli:k"]), "cli-v");
}

/// redis-py with `ssl=True` (hostname checked against the certificate's IP address).
fn redis_py_over_tls(cluster: &Cluster, id: u64) {
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipping redis-py over TLS: python3 with the redis package is missing (pip install redis)");
        return;
    }
    let (ca, _, _) = cluster.client_tls_paths();
    let addr = cluster.addr(id);
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='{}', port={}, ssl=True, ssl_ca_certs='{}', ssl_check_hostname=True, socket_timeout=10)\n\
         assert r.set('py:k', 'py-v')\n\
         print(r.get('py:k').decode())\n",
        addr.ip(),
        addr.port(),
        ca.display()
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    assert!(output.status.success(), "redis-py: {output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "py-v");
}

/// A TLS client with `config` gets no reply: the handshake or the first request fails.
fn assert_refused(cluster: &Cluster, id: u64, config: Arc<rustls::ClientConfig>, what: &str) {
    let addr = cluster.addr(id);
    let result = Client::connect_tls(addr, Duration::from_secs(5), config)
        .and_then(|mut client| client.cmd(&["PING"]));
    assert!(result.is_err(), "{what}: the node answered {result:?}");
}

#[test]
fn mutual_tls_refuses_clients_without_a_trusted_certificate_and_keeps_serving() {
    let options = Options {
        metrics: true,
        ..Options::tls_everywhere(true)
    };
    let cluster = Cluster::start(3, options);
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = other_node(leader);
    // The follower forwards with its own certificate.
    check_serving(&cluster, follower, "mutual:k");
    assert!(cluster.metric(follower, "raftkv_forwarded_total") >= 1);

    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, _, _) = cluster.client_tls_paths();
    let cluster_ca = cluster.ca.as_ref().expect("the cluster's CA");
    let stranger_ca = Authority::new("stranger CA").expect("CA");
    let write = |name: &str, issued: raft_net::certgen::Issued| {
        let (cert, key) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cert, issued.cert_pem).expect("write");
        std::fs::write(&key, issued.key_pem).expect("write");
        tool_config(&ca, Some((cert.as_path(), key.as_path()))).expect("config")
    };
    let names = || vec!["raftkv-client".to_owned()];
    let untrusted = write(
        "untrusted",
        stranger_ca
            .issue_names(names(), Validity::Current)
            .expect("issue"),
    );
    let expired = write(
        "expired",
        cluster_ca
            .issue_names(names(), Validity::Expired)
            .expect("issue"),
    );
    let cases = [
        ("no certificate", tool_config(&ca, None).expect("config")),
        ("a certificate from another CA", untrusted),
        ("an expired certificate", expired),
    ];
    for (what, config) in cases {
        assert_refused(&cluster, follower, config, what);
    }
    // kvctl shows the client certificate with --cert/--key, and is refused without.
    let (_, client_cert, client_key) = cluster.client_tls_paths();
    let endpoints = format!("--endpoints={}", cluster.addr(follower));
    let tls = ["--tls".to_owned(), format!("--cacert={}", ca.display())];
    let identity = [
        format!("--cert={}", client_cert.display()),
        format!("--key={}", client_key.display()),
    ];
    let with_identity: Vec<&str> = [endpoints.as_str()]
        .into_iter()
        .chain(tls.iter().map(String::as_str))
        .chain(identity.iter().map(String::as_str))
        .chain(["get", "mutual:k"])
        .collect();
    let (ok, out) = kvctl(&with_identity);
    assert!(
        ok && out.contains("still"),
        "kvctl with a certificate: {out}"
    );
    let without: Vec<&str> = [endpoints.as_str()]
        .into_iter()
        .chain(tls.iter().map(String::as_str))
        .chain(["get", "mutual:k"])
        .collect();
    let (ok, out) = kvctl(&without);
    assert!(!ok, "kvctl without a certificate was served: {out}");
    wait_rejections(&cluster, follower, "client_certificate", 4);
    wait_logged(&cluster, follower, "client TLS handshake refused");
    check_serving(&cluster, follower, "mutual:after");
}

/// Sends `bytes` on a fresh TCP connection and reads until the node closes it (bounded).
fn send_and_wait_closed(cluster: &Cluster, id: u64, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(cluster.addr(id)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(bytes).expect("send");
    let mut answer = Vec::new();
    let started = Instant::now();
    match stream.take(1 << 20).read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset is a close too.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the node did not close {bytes:?} within 10 s: {error}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    answer
}

#[test]
fn bad_handshakes_are_closed_counted_and_logged_and_the_node_keeps_serving() {
    let options = Options {
        metrics: true,
        client_tls_handshake_ms: Some(HANDSHAKE_MS),
        ..Options::tls_everywhere(false)
    };
    let cluster = Cluster::start(1, options);
    // Garbage that is not TLS at all gets the clear-text error.
    let answer = send_and_wait_closed(&cluster, 1, b"\x00\xffgarbage\r\n");
    assert!(String::from_utf8_lossy(&answer).contains("TLS only"));
    check_plain_client_refused(&cluster, 1);
    wait_rejections(&cluster, 1, "not_tls", 2);
    // A TLS record header followed by garbage.
    send_and_wait_closed(&cluster, 1, b"\x16\x03\x01\x00\x10garbage-garbage!");
    wait_rejections(&cluster, 1, "handshake_failed", 1);
    // A client that stalls after the first bytes of a handshake.
    let started = Instant::now();
    send_and_wait_closed(&cluster, 1, b"\x16\x03");
    assert!(started.elapsed() >= Duration::from_millis(HANDSHAKE_MS - 50));
    wait_rejections(&cluster, 1, "handshake_timeout", 1);
    // A client that trusts another CA refuses the node's certificate.
    let stranger = tempfile::tempdir().expect("temp dir");
    let stranger_ca = stranger.path().join("ca.pem");
    std::fs::write(
        &stranger_ca,
        Authority::new("stranger").expect("CA").cert_pem(),
    )
    .expect("write");
    assert_refused(
        &cluster,
        1,
        tool_config(&stranger_ca, None).expect("config"),
        "a client trusting another CA",
    );
    wait_rejections(&cluster, 1, "handshake_failed", 2);
    for reason in ["not_tls", "handshake_failed", "handshake_timeout"] {
        wait_logged(&cluster, 1, reason);
    }
    check_serving(&cluster, 1, "bad-input:after");
}

#[test]
fn sighup_reloads_the_client_certificate_for_new_connections() {
    let cluster = Cluster::start(1, Options::tls_everywhere(false));
    let old = cluster.client_tls_config();
    let mut before = cluster.client(1);
    let addr = cluster.addr(1);
    // A new CA and certificate in place of the old files.
    let certs = cluster.dir.path().join("certs");
    let new_ca = Authority::new("rotated CA").expect("CA");
    let issued = new_ca
        .issue_names(vec![addr.ip().to_string()], Validity::Current)
        .expect("issue");
    std::fs::write(certs.join("client-port-1.pem"), issued.cert_pem).expect("write");
    std::fs::write(certs.join("client-port-1.key"), issued.key_pem).expect("write");
    let new_ca_path = cluster.dir.path().join("new-ca.pem");
    std::fs::write(&new_ca_path, new_ca.cert_pem()).expect("write");
    std::fs::copy(&new_ca_path, certs.join("ca.pem")).expect("copy");
    cluster.signal(1, "HUP");
    wait_logged(&cluster, 1, "client TLS certificate, key and CA reloaded");
    let new = tool_config(&new_ca_path, None).expect("config");
    let mut after = Client::connect_tls(addr, Duration::from_secs(5), new).expect("connect");
    assert_eq!(
        after.cmd(&["PING"]).expect("PING"),
        Reply::Simple("PONG".into())
    );
    assert_refused(&cluster, 1, old, "a client trusting only the old CA");
    // The connection made before keeps its session.
    assert_eq!(
        before.cmd(&["PING"]).expect("PING"),
        Reply::Simple("PONG".into())
    );
}

#[test]
fn bad_client_tls_settings_stop_the_node_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let ca = Authority::new("test CA").expect("CA");
    let issue = |host: &str, validity| {
        ca.issue_names(vec![host.to_owned()], validity)
            .expect("issue")
    };
    let (good, other) = (
        issue("127.0.0.1", Validity::Current),
        issue("127.0.0.1", Validity::Current),
    );
    let (expired, elsewhere) = (
        issue("127.0.0.1", Validity::Expired),
        issue("10.9.8.7", Validity::Current),
    );
    for (name, text) in [
        ("ca.pem", ca.cert_pem()),
        ("good.pem", good.cert_pem),
        ("good.key", good.key_pem),
        ("other.key", other.key_pem),
        ("expired.pem", expired.cert_pem),
        ("expired.key", expired.key_pem),
        ("elsewhere.pem", elsewhere.cert_pem),
        ("elsewhere.key", elsewhere.key_pem),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let tls = |cert: &str, key: &str| {
        vec![
            format!("--client-tls-cert={}", path(cert)),
            format!("--client-tls-key={}", path(key)),
            format!("--client-tls-ca={}", path("ca.pem")),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            tls("good.pem", "missing.key"),
            "invalid config: client_tls_key: cannot read",
        ),
        (
            tls("good.pem", "other.key"),
            "invalid config: client_tls_key",
        ),
        (
            tls("expired.pem", "expired.key"),
            "invalid config: client_tls_cert",
        ),
        (
            tls("elsewhere.pem", "elsewhere.key"),
            "invalid config: client_tls_cert: does not verify against client_tls_ca for 127.0.0.1",
        ),
        (
            vec![
                format!("--client-tls-cert={}", path("good.pem")),
                format!("--client-tls-key={}", path("good.key")),
            ],
            "invalid config: client_tls_ca: required",
        ),
        (
            vec!["--client-tls-auth-clients".to_owned()],
            "invalid config: client_tls_auth_clients",
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
    assert!(
        !Path::new(&path("data")).exists(),
        "a refused start wrote data"
    );
}
