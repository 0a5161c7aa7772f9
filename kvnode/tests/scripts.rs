//! The launch scripts: `scripts/deploy.sh --dry-run` (never contacts a host: ssh, scp,
//! systemctl and cargo are replaced by stubs that record any call, and none may happen)
//! and a `scripts/cluster.sh` lifecycle on 127.0.0.1 with the test build's binaries.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kvnode::config::{Settings, StorageKind};
use raft_core::NodeId;

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kvnode sits in the workspace")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

// ----- deploy.sh --dry-run -----

/// A PATH directory whose ssh, scp, systemctl and cargo only record that they were called.
fn tripwire_path(dir: &Path) -> (String, PathBuf) {
    let bin = dir.join("stubs");
    std::fs::create_dir_all(&bin).expect("stub dir");
    let record = dir.join("stub-calls");
    for name in ["ssh", "scp", "systemctl", "cargo"] {
        let stub = bin.join(name);
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 97\n",
            record.display()
        );
        std::fs::write(&stub, script).expect("write stub");
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, record)
}

fn deploy_dry_run(dir: &Path, args: &[&str]) -> Output {
    let (path, _) = tripwire_path(dir);
    Command::new("bash")
        .arg(repo_dir().join("scripts/deploy.sh"))
        .arg("--dry-run")
        .args(args)
        .env("PATH", path)
        .env("DEPLOY_OUT_DIR", dir.join("out"))
        .env("DEPLOY_BIN_DIR", dir.join("bin"))
        .env_remove("DEPLOY_CLUSTER_ID")
        .env_remove("DEPLOY_REMOTE_DIR")
        .output()
        .expect("run deploy.sh")
}

const HOSTS: &str = "# three test hosts (TEST-NET-1 addresses: never routed)\n\
    192.0.2.1\n\
    \n\
    192.0.2.2 admin@192.0.2.2   # a comment after the host\n\
    192.0.2.3 root@192.0.2.3\n";

#[test]
fn deploy_dry_run_prints_every_command_and_writes_valid_configs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, HOSTS).expect("hosts file");
    let hosts = hosts.to_str().expect("utf-8 path");
    let stdout = assert_success(&deploy_dry_run(dir.path(), &[hosts]));
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |needle: &str| lines.iter().any(|line| line.contains(needle));

    assert!(has("+ cargo build --release -p kvnode"), "{stdout}");
    for (id, target) in [
        (1, "192.0.2.1"),
        (2, "admin@192.0.2.2"),
        (3, "root@192.0.2.3"),
    ] {
        let ssh = "ssh -o BatchMode=yes";
        let to_target: Vec<&&str> = lines
            .iter()
            .filter(|line| line.starts_with("+ timeout") && line.contains(&format!(" {target} ")))
            .collect();
        assert!(to_target.len() >= 2, "ssh to {target}:\n{stdout}");
        assert!(to_target.iter().all(|line| line.contains(ssh)), "{stdout}");
        let install = to_target
            .iter()
            .find(|line| line.contains("systemctl enable raftkv"))
            .unwrap_or_else(|| panic!("no systemd install for {target}:\n{stdout}"));
        assert!(install.contains("systemctl restart raftkv"), "{install}");
        assert!(
            install.contains("nohup /opt/raftkv/bin/kvnode --config /opt/raftkv/kvnode.toml"),
            "{install}"
        );
        let scp = lines
            .iter()
            .find(|line| line.contains(" scp ") && line.contains(&format!(" {target}:")))
            .unwrap_or_else(|| panic!("no scp to {target}:\n{stdout}"));
        for file in [
            "bin/kvnode",
            &format!("out/node-{id}/kvnode.toml"),
            &format!("out/node-{id}/raftkv.service"),
        ] {
            assert!(scp.contains(file), "{scp} lacks {file}");
        }
    }
    assert!(
        has("kvctl --endpoints 192.0.2.1:6379,192.0.2.2:6379,192.0.2.3:6379 leader"),
        "{stdout}"
    );

    // Each generated config is one kvnode accepts, naming every member by host:port.
    for id in 1..=3u64 {
        let node_dir = dir.path().join(format!("out/node-{id}"));
        let flags = Settings {
            config: Some(node_dir.join("kvnode.toml")),
            ..Settings::default()
        };
        let config = Settings::load(flags)
            .and_then(Settings::resolve)
            .unwrap_or_else(|error| panic!("node {id}: {error:#}"));
        assert_eq!(config.node_id, NodeId(id));
        assert_eq!(config.storage, StorageKind::Wal);
        assert_eq!(config.data_dir, PathBuf::from("/opt/raftkv/data"));
        assert_eq!(
            config.metrics_listen,
            Some(format!("192.0.2.{id}:9100").parse().unwrap())
        );
        let members: BTreeMap<u64, (String, String)> = config
            .members
            .iter()
            .map(|(id, address)| (id.0, (address.peer.clone(), address.client.clone())))
            .collect();
        for member in 1..=3u64 {
            assert_eq!(
                members[&member],
                (
                    format!("192.0.2.{member}:7000"),
                    format!("192.0.2.{member}:6379")
                )
            );
        }
        let unit = std::fs::read_to_string(node_dir.join("raftkv.service")).expect("unit file");
        assert!(
            unit.contains("ExecStart=/opt/raftkv/bin/kvnode --config /opt/raftkv/kvnode.toml"),
            "{unit}"
        );
        assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");
    }

    for (command, needle) in [
        ("stop", "systemctl stop raftkv"),
        ("status", "systemctl is-active raftkv"),
    ] {
        let stdout = assert_success(&deploy_dry_run(dir.path(), &[command, hosts]));
        assert_eq!(stdout.matches(needle).count(), 3, "{stdout}");
    }
    let stdout = assert_success(&deploy_dry_run(dir.path(), &["status", hosts]));
    assert!(
        stdout.contains("kvctl --endpoints 192.0.2.1:6379,192.0.2.2:6379,192.0.2.3:6379 status"),
        "{stdout}"
    );

    let record = dir.path().join("stub-calls");
    assert!(
        !record.exists(),
        "a dry run ran a real command: {}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
}

#[test]
fn deploy_refuses_a_bad_hosts_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (contents, reason) in [
        ("192.0.2.1\n192.0.2.1\n", "twice"),
        (
            "192.0.2.1 a@b extra\n",
            "expected 'HOST' or 'HOST SSH_TARGET'",
        ),
        ("bad;host\n", "not a host name"),
        ("# nothing\n", "no hosts"),
    ] {
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, contents).expect("hosts file");
        let output = deploy_dry_run(dir.path(), &[hosts.to_str().expect("utf-8")]);
        assert!(!output.status.success(), "{contents:?} accepted");
        assert!(
            text(&output.stderr).contains(reason),
            "{contents:?}: {}",
            text(&output.stderr)
        );
    }
}

// ----- cluster.sh -----

/// A local cluster run by cluster.sh; dropping it runs `down` and then SIGKILLs whatever
/// pid files are left, so no node outlives the test.
struct ScriptCluster {
    dir: tempfile::TempDir,
    base_ports: [u16; 3],
}

impl ScriptCluster {
    fn run(&self, args: &[&str]) -> Output {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_kvnode"))
            .parent()
            .expect("bin dir");
        Command::new("bash")
            .arg(repo_dir().join("scripts/cluster.sh"))
            .args(args)
            .env("RAFTKV_DATA_DIR", self.dir.path().join("data"))
            .env("RAFTKV_BIN_DIR", bin_dir)
            .env("RAFTKV_SKIP_BUILD", "1")
            .env("RAFTKV_BASE_PEER_PORT", self.base_ports[0].to_string())
            .env("RAFTKV_BASE_CLIENT_PORT", self.base_ports[1].to_string())
            .env("RAFTKV_BASE_METRICS_PORT", self.base_ports[2].to_string())
            .env("RAFTKV_STOP_WAIT_SECS", "5")
            .output()
            .expect("run cluster.sh")
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        // Best effort: a failed `down` is followed by the pid-file sweep below.
        let _ = self.run(&["down"]);
        for id in 1..=9 {
            let pid_file = self.dir.path().join(format!("data/node-{id}/kvnode.pid"));
            if let Ok(pid) = std::fs::read_to_string(pid_file) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).output();
            }
        }
    }
}

/// Three bases such that base+1..=base+3 are all free right now, for each of the three.
fn free_base_ports() -> [u16; 3] {
    let mut found = Vec::new();
    let seed = u16::try_from(std::process::id() % 2000).expect("small");
    // Bounded search over a range the OS does not hand out as ephemeral ports by default.
    for attempt in 0..200u16 {
        let base = 20_000 + (seed * 10 + attempt * 10) % 12_000;
        let free = (1..=3).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free && !found.iter().any(|b: &u16| b.abs_diff(base) < 10) {
            found.push(base);
            if found.len() == 3 {
                return [found[0], found[1], found[2]];
            }
        }
    }
    panic!("no free port ranges found");
}

#[test]
fn cluster_script_runs_a_local_cluster_through_its_lifecycle() {
    let cluster = ScriptCluster {
        dir: tempfile::tempdir().expect("temporary directory"),
        base_ports: free_base_ports(),
    };
    let stdout = assert_success(&cluster.run(&["up", "3"]));
    assert!(stdout.contains("Leader: node"), "{stdout}");
    assert!(stdout.contains("redis-cli -h 127.0.0.1"), "{stdout}");

    let stdout = assert_success(&cluster.run(&["up"]));
    assert!(stdout.contains("already running"), "{stdout}");
    let output = cluster.run(&["up", "5"]);
    assert!(
        !output.status.success(),
        "up 5 on a 3-node cluster must refuse"
    );

    let stdout = assert_success(&cluster.run(&["status"]));
    assert_eq!(stdout.matches("running (pid").count(), 3, "{stdout}");
    assert_eq!(stdout.matches(" leader ").count(), 1, "{stdout}");

    assert_success(&cluster.run(&["kill", "2"]));
    let stdout = assert_success(&cluster.run(&["status"]));
    assert!(stdout.contains("node 2: stopped"), "{stdout}");
    assert!(stdout.contains("unreachable"), "{stdout}");
    assert!(
        !cluster.run(&["kill", "2"]).status.success(),
        "killing a dead node must fail"
    );

    // A stale pid file (a pid that is not a kvnode) is cleaned up, not trusted.
    let pid_file = cluster.dir.path().join("data/node-2/kvnode.pid");
    std::fs::write(&pid_file, "1\n").expect("stale pid file");
    assert_success(&cluster.run(&["restart", "2"]));
    let stdout = assert_success(&cluster.run(&["status"]));
    assert_eq!(stdout.matches("running (pid").count(), 3, "{stdout}");

    let stdout = assert_success(&cluster.run(&["logs", "2"]));
    assert!(stdout.contains("cluster.sh starting node 2"), "{stdout}");

    let stdout = assert_success(&cluster.run(&["down"]));
    assert_eq!(stdout.matches("stopped (pid").count(), 3, "{stdout}");
    // `up` again restarts the same cluster from its WALs.
    let stdout = assert_success(&cluster.run(&["up"]));
    assert!(
        stdout.contains("Starting the existing 3-node cluster"),
        "{stdout}"
    );
    assert!(stdout.contains("Leader: node"), "{stdout}");

    assert_success(&cluster.run(&["clean"]));
    assert!(!cluster.dir.path().join("data").exists());
}
