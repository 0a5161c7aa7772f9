//! `redis-benchmark -t set,get -n 10000` runs to completion against the cluster, both
//! against the leader and against a follower (which forwards the writes). The test
//! installs redis-tools with apt-get when `redis-benchmark` is missing and it runs as
//! root; otherwise it skips with a printed reason.

#[path = "support/cluster.rs"]
mod support;
#[path = "support/tools.rs"]
mod tools;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Cluster, Options, Reply, POLL_INTERVAL};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Longest one benchmark run may take before it is killed and the test fails.
const BENCHMARK_TIMEOUT: Duration = Duration::from_secs(90);

/// Makes `redis-benchmark` available, or says why it cannot.
fn ensure_redis_benchmark() -> Result<(), String> {
    tools::ensure("redis-benchmark", &["--version"], "redis-tools")
}

/// Runs redis-benchmark against `port` and returns its output; fails on a non-zero exit, a
/// timeout, or missing SET/GET result lines.
fn run_benchmark(port: u16) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("out.txt");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut child = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "set,get", "-n", "10000", "-q"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out)
        .spawn()
        .expect("spawn redis-benchmark");
    let deadline = Instant::now() + BENCHMARK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill(); // best effort; wait() reaps it
            let _ = child.wait(); // reaping only
            panic!(
                "redis-benchmark did not finish within {BENCHMARK_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "redis-benchmark exited {status}:\n{output}"
    );
    let lines: Vec<&str> = output.split(['\r', '\n']).collect();
    for test in ["SET", "GET"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{test}: ")) && l.contains("requests per second")),
            "no {test} result in redis-benchmark output:\n{output}"
        );
    }
    assert!(
        !output.contains("ERR") && !output.contains("Error"),
        "redis-benchmark saw errors:\n{output}"
    );
    output
}

#[test]
fn redis_benchmark_set_get_runs_to_completion_against_leader_and_follower() {
    if let Err(reason) = ensure_redis_benchmark() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    for id in [leader, follower] {
        let output = run_benchmark(cluster.addr(id).port());
        let results: Vec<&str> = output
            .split(['\r', '\n'])
            .filter(|l| l.contains("requests per second"))
            .collect();
        eprintln!("node {id}: {results:?}");
    }
    // redis-benchmark's key:__rand_int__ was written and is readable everywhere.
    for id in [1, 2, 3] {
        let reply = cluster
            .client(id)
            .cmd(&["GET", "key:__rand_int__"])
            .expect("GET");
        assert!(
            matches!(reply, Reply::Bulk(Some(_))),
            "node {id}: {reply:?}"
        );
    }
}
