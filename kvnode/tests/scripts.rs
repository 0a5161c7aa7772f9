//! The launch scripts: `scripts/deploy.sh` in `--dry-run`, and its refusals (ssh, scp, tar,
//! systemctl and cargo are replaced by stubs that record any call, and none may happen; the
//! real deploy is tests/deploy.rs), and a `scripts/cluster.sh` lifecycle on 127.0.0.1 with
//! the test build's binaries.

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

/// A PATH directory whose ssh, scp, tar, systemctl and cargo only record that they were
/// called.
fn tripwire_path(dir: &Path) -> (String, PathBuf) {
    let bin = dir.join("stubs");
    std::fs::create_dir_all(&bin).expect("stub dir");
    let record = dir.join("stub-calls");
    for name in ["ssh", "scp", "tar", "systemctl", "cargo"] {
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

/// Runs deploy.sh with the tripwires on PATH and no DEPLOY_* setting from the caller's
/// environment but `env`; cargo's output directory is `dir/target`.
fn deploy_sh(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let (path, _) = tripwire_path(dir);
    let mut command = Command::new("bash");
    command
        .arg(repo_dir().join("scripts/deploy.sh"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("DEPLOY_OUT_DIR", dir.join("out"));
    for (key, _) in std::env::vars() {
        if key.starts_with("DEPLOY_") && key != "DEPLOY_OUT_DIR" {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run deploy.sh")
}

fn deploy_dry_run(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--dry-run"];
    all.extend_from_slice(args);
    deploy_sh(dir, &all, &[])
}

/// Fails if any stubbed command ran.
fn assert_no_stub_ran(dir: &Path) {
    let record = dir.join("stub-calls");
    assert!(
        !record.exists(),
        "a command that must not run ran: {}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
}

const HOSTS: &str = "# three test hosts (TEST-NET-1 addresses: never routed)\n\
    192.0.2.1\n\
    \n\
    192.0.2.2 admin@192.0.2.2   # a comment after the host\n\
    192.0.2.3 root@192.0.2.3 listen=192.0.2.3\n";

const TARGETS: [&str; 3] = ["192.0.2.1", "admin@192.0.2.2", "root@192.0.2.3"];

/// The lines that run deploy-host.sh COMMAND on `target`, over ssh in batch mode.
fn host_steps<'a>(lines: &[&'a str], target: &str, command: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|line| {
            line.starts_with("+ timeout")
                && line.contains(" ssh -o BatchMode=yes ")
                && [" ", ";"]
                    .iter()
                    .any(|end| line.contains(&format!(" {target} 'set -- {command}{end}")))
                && line.ends_with("< scripts/deploy-host.sh")
        })
        .copied()
        .collect()
}

#[test]
fn deploy_dry_run_prints_every_command_and_writes_valid_configs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("hosts"), HOSTS).expect("hosts file");
    let stdout = assert_success(&deploy_dry_run(dir.path(), &["deploy", "hosts"]));
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |needle: &str| lines.iter().any(|line| line.contains(needle));

    assert!(has("+ cargo build --release -p kvnode"), "{stdout}");
    for (index, target) in TARGETS.iter().enumerate() {
        // Preflight, then the copy and its check, then install-and-start, in that order.
        for command in [
            "preflight /opt/raftkv 7000 6379 9100",
            "check-stage",
            "apply",
        ] {
            assert_eq!(
                host_steps(&lines, target, command).len(),
                1,
                "{command} on {target}:\n{stdout}"
            );
        }
        let position = |needle: &str| {
            lines
                .iter()
                .position(|line| line.contains(needle) && line.contains(&format!(" {target} ")))
                .unwrap_or_else(|| panic!("no {needle} for {target}:\n{stdout}"))
        };
        assert!(position("'set -- preflight") < position("tar --create"));
        assert!(position("tar --create") < position("'set -- apply"));
        let copy = lines[position("tar --create")];
        let node = format!("out/node-{}", index + 1);
        assert!(copy.contains(&node), "{copy}");
        for file in [
            "kvnode",
            "deploy-host.sh",
            "kvnode.toml",
            "raftkv.service",
            "SHA256SUMS",
        ] {
            assert!(copy.contains(&format!(" {file}")), "{copy} lacks {file}");
        }
    }
    // Every host passes the preflight before anything is copied to any host.
    let last_preflight = lines.iter().rposition(|l| l.contains("'set -- preflight"));
    let first_copy = lines.iter().position(|l| l.contains("tar --create"));
    assert!(last_preflight < first_copy, "{stdout}");
    assert!(
        has("kvctl --endpoints 192.0.2.1:6379,192.0.2.2:6379,192.0.2.3:6379 --timeout-ms 1000 leader"),
        "{stdout}"
    );
    check_generated_configs(dir.path());
    assert!(
        !dir.path().join("hosts.state").exists(),
        "a dry run wrote the state file"
    );
    assert_no_stub_ran(dir.path());
}

/// Each generated config is one kvnode accepts: one random cluster id (not kvnode's
/// default 1), every member advertised by its hosts-file address, listening on 0.0.0.0 or
/// the line's listen= address.
fn check_generated_configs(dir: &Path) {
    let mut cluster_ids = Vec::new();
    for id in 1..=3u64 {
        let node_dir = dir.join(format!("out/node-{id}"));
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
        cluster_ids.push(config.cluster_id);
        let listen = if id == 3 { "192.0.2.3" } else { "0.0.0.0" };
        assert_eq!(
            config.peer_listen,
            format!("{listen}:7000").parse().unwrap()
        );
        assert_eq!(
            config.client_listen,
            format!("{listen}:6379").parse().unwrap()
        );
        assert_eq!(
            config.metrics_listen,
            Some(format!("{listen}:9100").parse().unwrap())
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
        assert!(unit.contains("Restart=always"), "{unit}");
        assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");
    }
    assert!(
        cluster_ids
            .iter()
            .all(|id| *id == cluster_ids[0] && *id != 1),
        "{cluster_ids:?}"
    );
}

#[test]
fn deploy_dry_run_of_the_other_commands() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("hosts"), HOSTS).expect("hosts file");
    let endpoints = "kvctl --endpoints 192.0.2.1:6379,192.0.2.2:6379,192.0.2.3:6379";
    for (args, step, extra) in [
        (vec!["stop", "hosts"], "stop /opt/raftkv", None),
        (
            vec!["status", "hosts"],
            "status /opt/raftkv",
            Some(" status"),
        ),
        (
            vec!["rolling-restart", "hosts"],
            "restart /opt/raftkv",
            Some(" leader"),
        ),
        (
            vec!["upgrade", "hosts", env!("CARGO_BIN_EXE_kvnode")],
            "apply /opt/raftkv",
            Some(" leader"),
        ),
        (
            vec!["logs", "hosts", "2", "10"],
            "logs /opt/raftkv 10",
            None,
        ),
    ] {
        let stdout = assert_success(&deploy_dry_run(dir.path(), &args));
        let lines: Vec<&str> = stdout.lines().collect();
        let targets: Vec<&str> = if args[0] == "logs" {
            vec![TARGETS[1]]
        } else {
            TARGETS.to_vec()
        };
        for target in targets {
            assert_eq!(
                host_steps(&lines, target, step).len(),
                1,
                "{args:?} on {target}:\n{stdout}"
            );
        }
        if let Some(extra) = extra {
            assert!(stdout.contains(endpoints), "{args:?}:\n{stdout}");
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("+ ") && l.contains(extra)),
                "{args:?}:\n{stdout}"
            );
        }
    }
    // With binaries given, nothing is built.
    let stdout = assert_success(&deploy_dry_run(
        dir.path(),
        &["--bin-dir", ".", "deploy", "hosts"],
    ));
    assert!(!stdout.contains("cargo build"), "{stdout}");
    assert_no_stub_ran(dir.path());
}

/// A hand-written state as `deploy` writes it: ports and paths unlike the defaults.
const STATE: &str = "# raftkv deploy state: written by scripts/deploy.sh deploy\n\
    STATE_VERSION=1\nCLUSTER_ID=424242\nPEER_PORT=17000\nCLIENT_PORT=16379\nMETRICS_PORT=19100\n\
    REMOTE_DIR=/srv/kv\nBIN_DIR=/nonexistent/bin\nSSH_CONFIG=\nLISTEN=0.0.0.0\nSUPERVISOR=shell\n\
    HOSTS_FILE=/nonexistent/hosts\nNODE_COUNT=2\n\
    NODE_1_HOST=192.0.2.1\nNODE_1_TARGET=ops@192.0.2.1\nNODE_1_LISTEN=\n\
    NODE_2_HOST=192.0.2.2\nNODE_2_TARGET=ops@192.0.2.2\nNODE_2_LISTEN=\n";

#[test]
fn deploy_commands_act_on_the_recorded_deployment_not_the_environment() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        dir.path().join("hosts"),
        "192.0.2.1 ops@192.0.2.1\n192.0.2.2 ops@192.0.2.2\n",
    )
    .expect("hosts");
    std::fs::write(dir.path().join("hosts.state"), STATE).expect("state");
    let elsewhere = [
        ("DEPLOY_CLIENT_PORT", "6379"),
        ("DEPLOY_REMOTE_DIR", "/opt/other"),
    ];
    for deployment in ["hosts", "hosts.state"] {
        let output = deploy_sh(dir.path(), &["--dry-run", "status", deployment], &elsewhere);
        let stdout = assert_success(&output);
        assert!(
            stdout.contains("cluster 424242, 2 nodes, install directory /srv/kv"),
            "{stdout}"
        );
        assert!(stdout.contains("'set -- status /srv/kv;"), "{stdout}");
        assert!(
            stdout.contains("/nonexistent/bin/kvctl --endpoints 192.0.2.1:16379,192.0.2.2:16379"),
            "{stdout}"
        );
    }
    // A fixed setting cannot change under a deployed cluster, nor the hosts.
    let output = deploy_sh(
        dir.path(),
        &["--dry-run", "deploy", "hosts"],
        &[("DEPLOY_PEER_PORT", "7000")],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("PEER_PORT is 17000 in"),
        "{}",
        text(&output.stderr)
    );
    std::fs::write(dir.path().join("hosts"), "192.0.2.1\n192.0.2.3\n").expect("hosts");
    let output = deploy_dry_run(dir.path(), &["deploy", "hosts"]);
    assert!(
        text(&output.stderr).contains("does not change membership"),
        "{}",
        text(&output.stderr)
    );
    // Without a state, commands other than deploy refuse (a dry run aside) and run nothing.
    std::fs::remove_file(dir.path().join("hosts.state")).expect("remove state");
    for command in ["stop", "status", "rolling-restart"] {
        let output = deploy_sh(dir.path(), &[command, "hosts"], &[]);
        assert!(!output.status.success(), "{command} without a state");
        assert!(
            text(&output.stderr).contains("no deployment recorded"),
            "{}",
            text(&output.stderr)
        );
    }
    assert_no_stub_ran(dir.path());
}

#[test]
fn deploy_refuses_a_bad_hosts_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (contents, env, reason) in [
        ("192.0.2.1\n192.0.2.1\n", None, "lists a host twice"),
        ("192.0.2.1\n192.0.2.01\n", None, "both resolve to 192.0.2.1"),
        (
            "192.0.2.1 x@192.0.2.9\n192.0.2.2 x@192.0.2.9\n",
            None,
            "an ssh target twice",
        ),
        (
            "192.0.2.1 a@b listen=0.0.0.0 extra\n",
            None,
            "expected 'HOST [SSH_TARGET] [listen=ADDRESS]'",
        ),
        (
            "192.0.2.1 a@b color=blue\n",
            None,
            "unknown option 'color=blue'",
        ),
        ("192.0.2.1 listen=10.1.2\n", None, "is not an IPv4 address"),
        ("bad;host\n", None, "not a host name"),
        ("192.0.2.1 Bad@User@x\n", None, "is not [user@]host"),
        ("# nothing\n", None, "no hosts"),
        (
            "192.0.2.1\nno-such-host.invalid\n",
            None,
            "'no-such-host.invalid' does not resolve",
        ),
        ("localhost\n192.0.2.2\n", None, "(loopback)"),
        (
            "192.0.2.1\n",
            Some(("DEPLOY_CLUSTER_ID", "1")),
            "1 is kvnode's default",
        ),
        (
            "192.0.2.1\n",
            Some(("DEPLOY_PEER_PORT", "6379")),
            "ports must differ",
        ),
    ] {
        std::fs::write(dir.path().join("hosts"), contents).expect("hosts file");
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        // Not a dry run: the refusal comes before any host is contacted (the stubs say so).
        let output = deploy_sh(dir.path(), &["--bin-dir", ".", "deploy", "hosts"], &env);
        assert!(!output.status.success(), "{contents:?} accepted");
        assert!(
            text(&output.stderr).contains(reason),
            "{contents:?}: {}",
            text(&output.stderr)
        );
        assert!(
            !dir.path().join("hosts.state").exists(),
            "{contents:?} left a state file"
        );
    }
    assert_no_stub_ran(dir.path());
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
    // Tests of this file run in parallel in one process: each call searches from its own
    // offset, so that two clusters never pick the same ranges.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 12;
    let mut found = Vec::new();
    let seed = u16::try_from(std::process::id() % 2000).expect("small");
    // Bounded search over a range the OS does not hand out as ephemeral ports by default.
    for attempt in 0..200u16 {
        let base = 20_000 + (seed * 10 + call * 1000 + attempt * 10) % 12_000;
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

/// `up --tls --secret`: the script makes a CA, node certificates and a secret, and the
/// nodes use them on both ports (each logs its peer and client port security; kvctl
/// reaches the TLS client ports); a second `up --tls` keeps them.
#[test]
fn cluster_script_runs_a_tls_cluster_with_a_secret() {
    let cluster = ScriptCluster {
        dir: tempfile::tempdir().expect("temporary directory"),
        base_ports: free_base_ports(),
    };
    let stdout = assert_success(&cluster.run(&["up", "3", "--tls", "--secret"]));
    assert!(stdout.contains("Leader: node"), "{stdout}");
    assert!(stdout.contains("redis-cli --tls --cacert"), "{stdout}");
    let data = cluster.dir.path().join("data");
    for file in [
        "certs/ca.pem",
        "certs/node-3.pem",
        "certs/node-3.key",
        "certs/client-port-3.pem",
        "certs/client-port-3.key",
        "cluster.secret",
    ] {
        assert!(data.join(file).is_file(), "{file} missing");
    }
    let mode = std::fs::metadata(data.join("cluster.secret"))
        .expect("secret")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the secret is private: {mode:o}");
    for id in 1..=3 {
        let log = std::fs::read_to_string(data.join(format!("node-{id}/kvnode.log"))).expect("log");
        assert!(log.contains("tls=true secret=true"), "node {id}:\n{log}");
        assert!(
            log.contains("client port security")
                && log.contains("tls=true client_certificates=false"),
            "node {id}:\n{log}"
        );
    }
    let stdout = assert_success(&cluster.run(&["up", "--tls"]));
    assert!(stdout.contains("already running"), "{stdout}");
    assert_success(&cluster.run(&["clean"]));
}

/// A cluster made without TLS is not silently kept plain when asked for TLS.
#[test]
fn cluster_script_refuses_tls_on_a_plain_cluster() {
    let cluster = ScriptCluster {
        dir: tempfile::tempdir().expect("temporary directory"),
        base_ports: free_base_ports(),
    };
    assert_success(&cluster.run(&["up", "1"]));
    let output = cluster.run(&["up", "--tls"]);
    assert!(!output.status.success(), "{output:?}");
    assert!(text(&output.stderr).contains("without --tls"), "{output:?}");
    assert_success(&cluster.run(&["clean"]));
}
