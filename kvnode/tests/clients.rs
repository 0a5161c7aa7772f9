//! Real client libraries against a 3-node raftkv cluster, through the leader and a
//! follower: redis-py (its `Lock`, the default transactional `pipeline()`, a `WATCH`-retry
//! `transaction()` loop run by several processes at once, `info()`, `db=1`, CLIENT, CONFIG
//! and OBJECT), and ioredis and node-redis (`multi().exec()`, `db: 1`, pipelining). The
//! scripts are in `tests/clients/`; each check in them raises on failure.
//!
//! A library that is not installed skips its test with the reason and the command that
//! installs it (`.ci/run` installs both): redis-py with
//! `python3 -m pip install --break-system-packages redis`; ioredis and node-redis with
//! `npm install --prefix DIR ioredis redis`, found through `RAFTKV_NODE_MODULES`
//! (default `~/.cache/raftkv-node-clients/node_modules`).

#[path = "support/cluster.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{Cluster, Options};

/// A leader and a follower's client ports, with the cluster they belong to.
fn cluster() -> (Cluster, u16, u16) {
    let options = Options {
        storage: "memory",
        ..Options::default()
    };
    let cluster = Cluster::start(3, options);
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let leader = cluster.wait_for_leader_among(&ids, Duration::from_secs(20));
    let follower = *ids.iter().find(|id| **id != leader).expect("3 nodes");
    let (leader_port, follower_port) = (cluster.addr(leader).port(), cluster.addr(follower).port());
    (cluster, leader_port, follower_port)
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Asserts the script succeeded, showing everything it printed; returns its last line.
fn passed(what: &str, output: Output, cluster: &Cluster) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let logs: String = cluster
            .nodes
            .keys()
            .map(|id| format!("--- node {id} log tail ---\n{}\n", tail(&cluster.log(*id))))
            .collect();
        panic!(
            "{what} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\n{logs}",
            output.status
        );
    }
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    eprintln!("{stdout}");
    last
}

fn tail(log: &str) -> &str {
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|at| log.is_char_boundary(*at))
        .unwrap_or(0);
    &log[start..]
}

fn python_has_redis() -> Result<(), String> {
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .map_err(|e| format!("python3 does not run: {e}"))?;
    if probe.status.success() {
        Ok(())
    } else {
        Err(
            "redis-py is not installed (python3 -m pip install --break-system-packages redis)"
                .into(),
        )
    }
}

#[test]
fn redis_py_lock_pipeline_watch_retry_info_and_databases() {
    if let Err(reason) = python_has_redis() {
        eprintln!("skipped: {reason}");
        return;
    }
    let (cluster, leader, follower) = cluster();
    let output = Command::new("python3")
        .arg(script("redis_py.py"))
        .args([leader.to_string(), follower.to_string()])
        .output()
        .expect("run python3");
    let last = passed("redis-py script", output, &cluster);
    assert!(
        last.contains("checks passed"),
        "unexpected last line: {last}"
    );
}

/// The node_modules directory holding ioredis and redis, or why there is none.
fn node_modules() -> Result<PathBuf, String> {
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
    {
        return Err("node is not installed (apt-get install nodejs)".into());
    }
    let dir = std::env::var_os("RAFTKV_NODE_MODULES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/raftkv-node-clients/node_modules"))
        })
        .ok_or("neither RAFTKV_NODE_MODULES nor HOME is set")?;
    if dir.join("ioredis").is_dir() && dir.join("redis").is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "ioredis and redis are not in {} (npm install --prefix {} ioredis redis)",
            dir.display(),
            dir.parent().unwrap_or(&dir).display()
        ))
    }
}

#[test]
fn ioredis_and_node_redis_multi_exec_databases_and_pipelining() {
    let modules = match node_modules() {
        Ok(modules) => modules,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let (cluster, leader, follower) = cluster();
    let output = Command::new("node")
        .arg(script("node_clients.js"))
        .args([leader.to_string(), follower.to_string()])
        .env("NODE_PATH", &modules)
        .output()
        .expect("run node");
    let last = passed("node clients script", output, &cluster);
    assert!(
        last.contains("checks passed"),
        "unexpected last line: {last}"
    );
}
