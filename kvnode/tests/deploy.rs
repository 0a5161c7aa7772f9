//! `scripts/deploy.sh` for real, on three hosts emulated on this machine.
//!
//! Each host is a network namespace (a veth to a bridge in the operator's namespace) running
//! Debian's `sshd` with a throwaway key and root login, in its own mount namespace where a
//! tmpfs over /opt and a bind mount of a test directory make /opt/raftkv private to it. Each
//! host's /etc/hosts (iproute2's /etc/netns/NAME/hosts) maps its own name to 127.0.1.1, as
//! stock Debian does, and the other hosts to their addresses. The operator's commands
//! (deploy.sh, and the load writer: this test binary run again with
//! `load_writer_in_operator_namespace`) run in the operator's namespace, never in the root
//! namespace; every socket goes to an address inside the namespaces the test made.
//!
//! The scenario: two bad hosts files refused with no host changed; deploy (exit 0; plain
//! logs); status (exit 0); kill -9 the leader, which its supervisor restarts; a rolling
//! upgrade to a new binary and a rolling restart under a light write load with every
//! acknowledged write read back from every node, no error but -TRYAGAIN, and the longest
//! write gap printed; a host down (sshd and node killed): status exits 1 naming it, stop
//! stops the others and exits 1 naming it.
//!
//! Skips (with the reason printed) unless run as root with `ip`, `unshare`, `ssh` and
//! Debian's `/usr/sbin/sshd` (.ci/run installs openssh-server). Every process the test
//! starts is killed by pid and every namespace and /etc/netns entry removed by the `Lab`
//! and `LoadWriter` guards, also when the test fails.

#[path = "support/cluster.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{Client, Reply, POLL_INTERVAL};

const HOSTS: usize = 3;
/// The emulated network: the operator's bridge is .1, host i is .(10 + i).
const SUBNET: &str = "10.231.0";
const CLIENT_PORT: u16 = 6379;
/// Appended to the copy of kvnode that the upgrade installs (an ELF ignores trailing bytes).
const UPGRADE_MARKER: &[u8] = b"raftkv-deploy-test-upgrade-marker";
/// Bound of every wait in the test; deploy.sh's own waits are shorter.
const WAIT: Duration = Duration::from_secs(60);
const LOAD_DIR_ENV: &str = "RAFTKV_DEPLOY_TEST_LOAD_DIR";
const LOAD_ENDPOINTS_ENV: &str = "RAFTKV_DEPLOY_TEST_LOAD_ENDPOINTS";
/// Upper bound on the load writer's life, whatever the parent does.
const LOAD_LIFETIME_MAX: Duration = Duration::from_secs(300);
/// Pause between two writes: a light load (pacing only).
const LOAD_PAUSE: Duration = Duration::from_millis(5);

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kvnode sits in the workspace")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a setup command; panics with its output if it fails.
fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{program} {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        == Some("0");
    if !root {
        return Some("not running as root (network namespaces and sshd need it)".into());
    }
    if !Path::new("/opt").is_dir() {
        return Some("no /opt to mount each host's private /opt/raftkv under".into());
    }
    if !Path::new("/usr/sbin/sshd").exists() {
        return Some("/usr/sbin/sshd missing (apt-get install openssh-server)".into());
    }
    for tool in [
        "ip",
        "unshare",
        "ssh",
        "ssh-keygen",
        "tar",
        "setsid",
        "timeout",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            return Some(format!("'{tool}' not found"));
        }
    }
    None
}

// ----- the lab: namespaces, sshd, and their cleanup -----

/// The emulated hosts and the operator's namespace. Dropping it kills every process in
/// those namespaces by pid, then removes the namespaces and their /etc/netns entries.
struct Lab {
    dir: tempfile::TempDir,
    prefix: String,
    /// Namespaces created so far (the operator's first).
    namespaces: Vec<String>,
    /// /etc/netns/NAME directories created so far.
    etc_dirs: Vec<PathBuf>,
    /// Each host's sshd (`ip netns exec` execs into unshare, sh and sshd: one pid).
    sshd: Vec<Option<Child>>,
}

impl Lab {
    fn ops(&self) -> String {
        format!("{}-ops", self.prefix)
    }

    fn host_ns(&self, host: usize) -> String {
        format!("{}-h{host}", self.prefix)
    }

    fn host_dir(&self, host: usize) -> PathBuf {
        self.dir.path().join(format!("h{host}"))
    }

    fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// Creates the operator's namespace, or says why it cannot (the test then skips).
    fn create() -> Result<Lab, String> {
        let mut lab = Lab {
            dir: tempfile::tempdir().expect("temporary directory"),
            prefix: format!("rkvdeploy{}", std::process::id()),
            namespaces: Vec::new(),
            etc_dirs: Vec::new(),
            sshd: Vec::new(),
        };
        let ops = lab.ops();
        let added = Command::new("ip")
            .args(["netns", "add", &ops])
            .output()
            .map_err(|error| format!("ip netns add: {error}"))?;
        if !added.status.success() {
            return Err(format!(
                "cannot create a network namespace: {}",
                text(&added.stderr).trim()
            ));
        }
        lab.namespaces.push(ops.clone());
        sh("ip", &["-n", &ops, "link", "set", "lo", "up"]);
        sh("ip", &["-n", &ops, "link", "add", "br0", "type", "bridge"]);
        sh(
            "ip",
            &[
                "-n",
                &ops,
                "addr",
                "add",
                &format!("{SUBNET}.1/24"),
                "dev",
                "br0",
            ],
        );
        sh("ip", &["-n", &ops, "link", "set", "br0", "up"]);
        lab.write_keys();
        lab.write_etc_hosts(&ops, None);
        lab.write_binaries();
        Ok(lab)
    }

    /// The prebuilt binaries deploy.sh installs: this build's kvnode without its debug
    /// information (a tenth of the size, so copies are quick; `strip` comes with the
    /// linker) and kvctl.
    fn write_binaries(&self) {
        let bin = self.dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin directory");
        let kvnode = bin.join("kvnode");
        let stripped = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&kvnode)
            .arg(env!("CARGO_BIN_EXE_kvnode"))
            .status()
            .is_ok_and(|status| status.success());
        if !stripped {
            std::fs::copy(env!("CARGO_BIN_EXE_kvnode"), &kvnode).expect("copy kvnode");
        }
        std::fs::copy(env!("CARGO_BIN_EXE_kvctl"), bin.join("kvctl")).expect("copy kvctl");
    }

    fn write_keys(&self) {
        let dir = self.dir.path();
        for key in ["client_key", "host_key"] {
            let path = dir.join(key);
            let path = path.to_str().expect("utf-8 path");
            sh("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", path]);
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        let config = format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
             StrictHostKeyChecking accept-new\n  LogLevel ERROR\n",
            dir.join("client_key").display(),
            dir.join("known_hosts").display()
        );
        std::fs::write(self.ssh_config(), config).expect("ssh_config");
    }

    /// /etc/hosts as seen in namespace `ns`: every host by name, and `own` (a host's own
    /// name) on 127.0.1.1 as Debian's installer writes it.
    fn write_etc_hosts(&mut self, ns: &str, own: Option<usize>) {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("/etc/netns entry");
        self.etc_dirs.push(dir.clone());
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for host in 1..=HOSTS {
            if Some(host) == own {
                hosts.push_str(&format!("127.0.1.1 h{host}\n"));
            } else {
                hosts.push_str(&format!("{SUBNET}.{} h{host}\n", 10 + host));
            }
        }
        std::fs::write(dir.join("hosts"), hosts).expect("hosts file");
    }

    /// Host `host`: its namespace, its link to the bridge, and its sshd.
    fn add_host(&mut self, host: usize) {
        let ns = self.host_ns(host);
        let ops = self.ops();
        sh("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let link = format!("h{host}");
        sh(
            "ip",
            &[
                "-n", &ops, "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        );
        sh(
            "ip",
            &["-n", &ops, "link", "set", &link, "master", "br0", "up"],
        );
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        let address = format!("{SUBNET}.{}/24", 10 + host);
        sh("ip", &["-n", &ns, "addr", "add", &address, "dev", "eth0"]);
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        self.write_etc_hosts(&ns, Some(host));
        self.start_sshd(host);
    }

    fn start_sshd(&mut self, host: usize) {
        let dir = self.host_dir(host);
        for sub in ["opt", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("host directory");
        }
        let config = format!(
            "ListenAddress {SUBNET}.{}\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             Subsystem sftp internal-sftp\nSetEnv TMPDIR={}\nLogLevel ERROR\n",
            10 + host,
            self.dir.path().join("host_key").display(),
            self.dir.path().join("authorized_keys").display(),
            dir.join("tmp").display()
        );
        std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
        // sshd's privilege separation directory, as its service would create it.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let script = format!(
            "mount -t tmpfs raftkv-test-opt /opt && mkdir /opt/raftkv && \
             mount --bind {} /opt/raftkv && exec /usr/sbin/sshd -D -e -f {}",
            dir.join("opt").display(),
            dir.join("sshd_config").display()
        );
        let log = File::create(dir.join("sshd.log")).expect("sshd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host_ns(host), "unshare", "--mount"])
            .args(["--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sshd");
        if self.sshd.len() < host {
            self.sshd.resize_with(host, || None);
        }
        self.sshd[host - 1] = Some(child);
    }

    /// Polls until every host's sshd lets the operator in.
    fn wait_for_sshd(&self) {
        let deadline = Instant::now() + WAIT;
        for host in 1..=HOSTS {
            loop {
                let output = self
                    .in_ops("ssh", &["-F", self.ssh_config().to_str().expect("utf-8")])
                    .args([
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "ConnectTimeout=2",
                        &format!("h{host}"),
                        "true",
                    ])
                    .output()
                    .expect("ssh");
                if output.status.success() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sshd on h{host} did not let us in: {}\n{}",
                    text(&output.stderr),
                    std::fs::read_to_string(self.host_dir(host).join("sshd.log"))
                        .unwrap_or_default()
                );
                std::thread::sleep(POLL_INTERVAL * 5);
            }
        }
    }

    /// A command run in the operator's namespace.
    fn in_ops(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ops(), program])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Takes host `host` down: its sshd and every process in its namespace killed.
    fn host_down(&mut self, host: usize) {
        if let Some(mut child) = self.sshd[host - 1].take() {
            // Best effort: it may have exited; the namespace sweep below follows.
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_namespace_processes(&self.host_ns(host));
    }

    /// Processes running in host `host`'s namespace, as (pid, command name).
    fn host_processes(&self, host: usize) -> Vec<(u32, String)> {
        namespace_pids(&self.host_ns(host))
            .into_iter()
            .map(|pid| {
                let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                (pid, name.trim().to_owned())
            })
            .collect()
    }
}

fn namespace_pids(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|output| text(&output.stdout))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// SIGKILLs every process in namespace `ns` (all started by this test, directly or through
/// its sshd) and polls until they are gone.
fn kill_namespace_processes(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = namespace_pids(ns);
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            // Best effort: the process may be gone already.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.sshd.iter_mut().flatten() {
            // Best effort: a child that already exited cannot be killed.
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            kill_namespace_processes(ns);
            // Best effort: report, but go on removing the rest.
            if let Ok(output) = Command::new("ip").args(["netns", "del", ns]).output() {
                if !output.status.success() {
                    eprintln!("could not remove namespace {ns}: {}", text(&output.stderr));
                }
            }
        }
        for dir in &self.etc_dirs {
            // Best effort: nothing else uses these directories.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ----- the operator -----

impl Lab {
    /// Runs `deploy.sh ARGS` in the operator's namespace, printing its output.
    fn deploy_sh(&self, args: &[&str]) -> Output {
        self.deploy_sh_with(args, &[])
    }

    /// `deploy_sh` with DEPLOY_* settings in the environment.
    fn deploy_sh_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let script = repo_dir().join("scripts/deploy.sh");
        let bin_dir = self.dir.path().join("bin");
        let mut command = self.in_ops("timeout", &["600", "bash"]);
        command
            .arg(script)
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg("--ssh-config")
            .arg(self.ssh_config())
            .args(args)
            .current_dir(self.dir.path())
            .env("DEPLOY_OUT_DIR", self.dir.path().join("out"));
        for (key, _) in std::env::vars() {
            if key.starts_with("DEPLOY_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        let started = Instant::now();
        let output = command.output().expect("run deploy.sh");
        eprintln!(
            "$ deploy.sh {} -> {} in {:.1} s\n{}{}",
            args.join(" "),
            output.status,
            started.elapsed().as_secs_f64(),
            text(&output.stdout),
            text(&output.stderr)
        );
        output
    }

    /// Staging directories left on any host.
    fn leftover_stages(&self) -> Vec<PathBuf> {
        (1..=HOSTS)
            .flat_map(|host| {
                std::fs::read_dir(self.host_dir(host).join("tmp"))
                    .into_iter()
                    .flatten()
            })
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect()
    }

    fn installed_anything(&self) -> bool {
        (1..=HOSTS).any(|host| {
            std::fs::read_dir(self.host_dir(host).join("opt"))
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false)
        })
    }

    /// Host `host`'s kvnode pid from its pid file, once the process it names is alive, has
    /// the recorded start time and runs the installed kvnode (never trusting a stale file).
    fn node_pid(&self, host: usize) -> Option<u32> {
        let file = self.host_dir(host).join("opt/run/kvnode.pid");
        let contents = std::fs::read_to_string(file).ok()?;
        let mut words = contents.split_whitespace();
        let pid: u32 = words.next()?.parse().ok()?;
        let started = words.next()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (fields.get(19) == Some(&started) && text(&cmdline).contains("/opt/raftkv/bin/kvnode"))
            .then_some(pid)
    }

    fn wait_node_pid_other_than(&self, host: usize, old: u32) -> u32 {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.node_pid(host) {
                Some(pid) if pid != old => return pid,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "node {host} did not come back after kill -9"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls `deploy.sh status` until it exits 0; returns its stdout.
    fn wait_status_ok(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let output = self.deploy_sh(&["status", "hosts"]);
            if output.status.success() {
                return text(&output.stdout);
            }
            assert!(
                Instant::now() < deadline,
                "status did not exit 0 within {WAIT:?}"
            );
            std::thread::sleep(POLL_INTERVAL * 10);
        }
    }
}

fn assert_ok(output: &Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {}", output.status);
    text(&output.stdout)
}

fn leader_of(status_stdout: &str) -> usize {
    status_stdout
        .lines()
        .find_map(|line| line.split("leader node ").nth(1))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no leader in:\n{status_stdout}"))
}

/// Whether file `path` ends with the upgrade marker (read through /proc/PID/exe too, which
/// reaches a binary in another mount namespace).
fn ends_with_marker(path: &Path) -> bool {
    let mut file = File::open(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let length = i64::try_from(UPGRADE_MARKER.len()).expect("short marker");
    file.seek(SeekFrom::End(-length)).expect("seek");
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).expect("read");
    tail == UPGRADE_MARKER
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

// ----- the scenario -----

#[test]
fn deploy_sh_deploys_supervises_upgrades_and_stops_real_hosts() {
    let started = Instant::now();
    if let Some(reason) = skip_reason() {
        eprintln!("SKIPPED deploy test: {reason}");
        return;
    }
    let mut lab = match Lab::create() {
        Ok(lab) => lab,
        Err(reason) => {
            eprintln!("SKIPPED deploy test: {reason}");
            return;
        }
    };
    for host in 1..=HOSTS {
        lab.add_host(host);
    }
    lab.wait_for_sshd();
    eprintln!("lab ready after {:.1} s", started.elapsed().as_secs_f64());

    refuses_bad_hosts_files(&lab);
    std::fs::write(lab.dir.path().join("hosts"), "h1 root@h1\nh2\nh3 root@h3\n").expect("hosts");
    deploys_and_reports_status(&lab);
    kill_minus_nine_comes_back(&lab);
    a_bad_config_stops_at_one_node_and_a_good_one_applies(&lab);
    a_binary_that_does_not_run_changes_nothing(&lab);
    a_stopped_node_is_started_first(&lab);
    let gaps = upgrades_and_restarts_under_load(&lab);
    host_down_is_named_and_stop_goes_on(&mut lab);
    stale_pid_files_are_not_trusted(&lab);
    eprintln!(
        "deploy test: longest write gap during the rolling upgrade {} ms (leader-aware client; \
         {} ms through one node), during the rolling restart {} ms ({} ms); total {:.1} s",
        gaps["Leader upgrade"],
        gaps["Sticky upgrade"],
        gaps["Leader rolling-restart"],
        gaps["Sticky rolling-restart"],
        started.elapsed().as_secs_f64()
    );
}

/// An unresolvable name and an unknown ssh user are refused before any host is changed.
fn refuses_bad_hosts_files(lab: &Lab) {
    let bad = lab.dir.path().join("bad-hosts");
    std::fs::write(&bad, "h1\nh2\nno-such-host.invalid\n").expect("hosts");
    let output = lab.deploy_sh(&["deploy", "bad-hosts"]);
    assert!(
        !output.status.success(),
        "an unresolvable host was accepted"
    );
    assert!(text(&output.stderr).contains("'no-such-host.invalid' does not resolve"));

    std::fs::write(&bad, "h1\nh2 nobody-here@h2\nh3\n").expect("hosts");
    let output = lab.deploy_sh(&["deploy", "bad-hosts"]);
    assert!(!output.status.success(), "an unknown user was accepted");
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("node 2 (h2): FAIL: ssh as nobody-here@h2 failed"),
        "{stdout}"
    );
    assert!(text(&output.stderr).contains("preflight failed on node 2 (h2); no host was changed"));
    // The preflight reached the other hosts, and nothing was installed or staged anywhere.
    assert!(
        stdout.contains("node 1 (h1): ok: privilege: root"),
        "{stdout}"
    );
    assert!(
        stdout.contains("node 3 (h3): ok: privilege: root"),
        "{stdout}"
    );
    assert!(!lab.installed_anything(), "a refused deploy changed a host");
    assert!(
        lab.leftover_stages().is_empty(),
        "{:?}",
        lab.leftover_stages()
    );
    assert!(
        !lab.dir.path().join("bad-hosts.state").exists(),
        "a refused deploy wrote state"
    );
}

fn deploys_and_reports_status(lab: &Lab) {
    let stdout = assert_ok(&lab.deploy_sh(&["deploy", "hosts"]), "deploy");
    assert!(
        stdout.contains("all 3 nodes serve; leader node"),
        "{stdout}"
    );
    assert!(
        lab.leftover_stages().is_empty(),
        "{:?}",
        lab.leftover_stages()
    );
    let state = std::fs::read_to_string(lab.dir.path().join("hosts.state")).expect("state file");
    let cluster_id = state
        .lines()
        .find_map(|line| line.strip_prefix("CLUSTER_ID="))
        .expect("cluster id in the state");
    assert_ne!(
        cluster_id, "1",
        "a deployment got kvnode's default cluster id"
    );
    for host in 1..=HOSTS {
        let dir = lab.host_dir(host).join("opt");
        let config = std::fs::read_to_string(dir.join("kvnode.toml")).expect("config");
        assert!(
            config.contains("client_addr = \"0.0.0.0:6379\""),
            "{config}"
        );
        assert!(
            config.contains(&format!("cluster_id = {cluster_id}")),
            "{config}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("supervisor")).expect("mode"),
            "shell\n"
        );
        let log = std::fs::read(dir.join("kvnode.log")).expect("log");
        assert!(!log.contains(&0x1b), "node {host} logged ANSI escape codes");
    }
    // A redeploy of the same files changes nothing.
    let stdout = assert_ok(&lab.deploy_sh(&["deploy", "hosts"]), "redeploy");
    assert!(
        stdout.contains("every running node already has these files"),
        "{stdout}"
    );
    let stdout = assert_ok(&lab.deploy_sh(&["status", "hosts"]), "status");
    assert_eq!(stdout.matches("state=running").count(), HOSTS, "{stdout}");
}

fn kill_minus_nine_comes_back(lab: &Lab) {
    let leader = leader_of(&lab.wait_status_ok());
    let pid = lab.node_pid(leader).expect("the leader's pid");
    sh("kill", &["-KILL", &pid.to_string()]);
    let new_pid = lab.wait_node_pid_other_than(leader, pid);
    eprintln!("node {leader} (leader) killed with -9 (pid {pid}); its supervisor restarted it as pid {new_pid}");
    let stdout = lab.wait_status_ok();
    assert!(stdout.contains("restarts=1"), "{stdout}");
}

fn node_pids(lab: &Lab) -> Vec<Option<u32>> {
    (1..=HOSTS).map(|host| lab.node_pid(host)).collect()
}

/// A redeploy with a config kvnode refuses stops after the first node (which does not come
/// back; the others keep serving), and a redeploy with a good config applies it everywhere,
/// the failed node first.
fn a_bad_config_stops_at_one_node_and_a_good_one_applies(lab: &Lab) {
    let before = node_pids(lab);
    std::fs::write(lab.dir.path().join("bad.toml"), "heartbeat_ms = 0\n").expect("config");
    let output = lab.deploy_sh_with(
        &["--extra-config", "bad.toml", "deploy", "hosts"],
        &[("DEPLOY_NODE_WAIT_SECS", "5")],
    );
    assert!(
        !output.status.success(),
        "a refused config was reported deployed"
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("did not come back within 5 s"), "{stderr}");
    assert!(stderr.contains("invalid config: heartbeat_ms"), "{stderr}");
    assert!(
        lab.leftover_stages().is_empty(),
        "{:?}",
        lab.leftover_stages()
    );
    let output = lab.deploy_sh(&["status", "hosts"]);
    assert!(!output.status.success(), "status exited 0 with a node down");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches(": not serving").count(), 1, "{stderr}");
    let unchanged = node_pids(lab)
        .iter()
        .zip(&before)
        .filter(|(now, then)| now == then)
        .count();
    assert_eq!(
        unchanged,
        HOSTS - 1,
        "only one node may have been restarted"
    );

    std::fs::write(
        lab.dir.path().join("good.toml"),
        "snapshot_entries = 20000\n",
    )
    .expect("config");
    let stdout = assert_ok(
        &lab.deploy_sh(&["--extra-config", "good.toml", "deploy", "hosts"]),
        "deploy with a good config",
    );
    assert!(stdout.contains("runs but does not serve"), "{stdout}");
    for (host, (now, then)) in node_pids(lab).iter().zip(&before).enumerate() {
        assert_ne!(now, then, "node {} kept its old config", host + 1);
        let config = std::fs::read_to_string(lab.host_dir(host + 1).join("opt/kvnode.toml"))
            .expect("config");
        assert!(config.contains("snapshot_entries = 20000"), "{config}");
    }
}

/// An upgrade to a binary that does not run on the hosts stops before any node is touched,
/// and leaves no staging directory behind.
fn a_binary_that_does_not_run_changes_nothing(lab: &Lab) {
    let before = node_pids(lab);
    let broken = lab.dir.path().join("kvnode-broken");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'cannot execute binary file' >&2\nexit 126\n",
    )
    .expect("binary");
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let output = lab.deploy_sh(&["upgrade", "hosts", "kvnode-broken"]);
    assert!(!output.status.success(), "a broken binary was installed");
    assert!(text(&output.stderr).contains("does not run on this host"));
    assert!(
        lab.leftover_stages().is_empty(),
        "{:?}",
        lab.leftover_stages()
    );
    assert_eq!(node_pids(lab), before, "a node was restarted");
}

/// SIGTERM to a node's supervisor stops the node and the supervisor; `rolling-restart`
/// then starts that node at once and restarts the others one at a time.
fn a_stopped_node_is_started_first(lab: &Lab) {
    let file = lab.host_dir(3).join("opt/run/supervisor.pid");
    let contents = std::fs::read_to_string(&file).expect("supervisor pid file");
    let supervisor = contents.split_whitespace().next().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{supervisor}/cmdline")).expect("cmdline");
    assert!(
        text(&cmdline).contains("raftkv-host\0supervise"),
        "{}",
        text(&cmdline)
    );
    sh("kill", &["-TERM", supervisor]);
    let deadline = Instant::now() + WAIT;
    while Path::new(&format!("/proc/{supervisor}")).exists() || lab.node_pid(3).is_some() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop node 3 and its supervisor"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    let stdout = assert_ok(
        &lab.deploy_sh(&["rolling-restart", "hosts"]),
        "rolling-restart",
    );
    assert!(stdout.contains("node 3 (h3): does not serve"), "{stdout}");
    assert!(
        stdout.contains("restarting 2 serving node(s) one at a time"),
        "{stdout}"
    );
    assert!(stdout.contains("all 3 nodes serve"), "{stdout}");
}

/// Pid files naming a live process that is not the node (another command line, or another
/// start time) are neither trusted nor signalled.
fn stale_pid_files_are_not_trusted(lab: &Lab) {
    let sshd = lab.sshd[0].as_ref().expect("h1's sshd").id();
    let stat = std::fs::read_to_string(format!("/proc/{sshd}/stat")).expect("sshd stat");
    let started = stat
        .rsplit_once(") ")
        .expect("stat")
        .1
        .split_whitespace()
        .nth(19)
        .expect("start");
    let run = lab.host_dir(1).join("opt/run");
    std::fs::write(run.join("kvnode.pid"), format!("{sshd} {started}\n")).expect("pid file");
    std::fs::write(run.join("supervisor.pid"), format!("{sshd} 1\n")).expect("pid file");
    let output = lab.deploy_sh(&["status", "hosts"]);
    assert!(text(&output.stdout).contains("node 1 (h1) ssh root@h1: state=stopped"));
    std::fs::write(run.join("kvnode.pid"), format!("{sshd} {started}\n")).expect("pid file");
    let output = lab.deploy_sh(&["stop", "hosts"]);
    assert!(text(&output.stdout).contains("node 1 (h1): not running"));
    assert!(
        Path::new(&format!("/proc/{sshd}")).exists(),
        "stop signalled h1's sshd"
    );
    assert!(
        !run.join("kvnode.pid").exists(),
        "a stale pid file was kept"
    );
}

/// The rolling upgrade and a rolling restart under a light write load; returns the longest
/// write gap of each, in milliseconds.
fn upgrades_and_restarts_under_load(lab: &Lab) -> BTreeMap<String, u64> {
    let upgrade = lab.dir.path().join("kvnode-v2");
    let mut binary = std::fs::read(lab.dir.path().join("bin/kvnode")).expect("kvnode");
    binary.extend_from_slice(UPGRADE_MARKER);
    std::fs::write(&upgrade, binary).expect("new binary");
    std::fs::set_permissions(
        &upgrade,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let before: Vec<u32> = (1..=HOSTS)
        .map(|host| lab.node_pid(host).expect("pid"))
        .collect();

    let writer = LoadWriter::start(lab);
    writer.wait_acked(300);
    let mut windows = String::new();
    let start = now_ms();
    assert_ok(
        &lab.deploy_sh(&["upgrade", "hosts", "kvnode-v2"]),
        "upgrade",
    );
    windows.push_str(&format!("upgrade {start} {}\n", now_ms()));
    for host in 1..=HOSTS {
        let pid = lab.node_pid(host).expect("pid after the upgrade");
        assert_ne!(pid, before[host - 1], "node {host} was not restarted");
        assert!(ends_with_marker(&lab.host_dir(host).join("opt/bin/kvnode")));
        assert!(
            ends_with_marker(Path::new(&format!("/proc/{pid}/exe"))),
            "node {host} runs the old binary"
        );
    }
    assert!(
        lab.leftover_stages().is_empty(),
        "{:?}",
        lab.leftover_stages()
    );
    writer.wait_acked(writer.acked() + 100);
    let start = now_ms();
    assert_ok(
        &lab.deploy_sh(&["rolling-restart", "hosts"]),
        "rolling-restart",
    );
    windows.push_str(&format!("rolling-restart {start} {}\n", now_ms()));
    writer.wait_acked(writer.acked() + 100);
    writer.finish(&windows)
}

fn host_down_is_named_and_stop_goes_on(lab: &mut Lab) {
    lab.host_down(3);
    let output = lab.deploy_sh(&["status", "hosts"]);
    assert!(!output.status.success(), "status exited 0 with a host down");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("node 3 (h3): host unreachable over ssh"),
        "{stderr}"
    );
    assert!(stderr.contains("node 3 (h3): not serving"), "{stderr}");
    assert!(
        !stderr.contains("node 1 (h1)") && !stderr.contains("node 2 (h2)"),
        "{stderr}"
    );

    let output = lab.deploy_sh(&["stop", "hosts"]);
    assert!(!output.status.success(), "stop exited 0 with a host down");
    assert!(text(&output.stderr).contains("could not stop node 3 (h3)"));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("node 1 (h1): stopped") && stdout.contains("node 2 (h2): stopped"),
        "{stdout}"
    );
    for host in 1..=2 {
        let left: Vec<_> = lab
            .host_processes(host)
            .into_iter()
            .filter(|(_, name)| name != "sshd")
            .collect();
        assert!(left.is_empty(), "h{host} still runs {left:?} after stop");
        assert!(!lab.host_dir(host).join("opt/run/kvnode.pid").exists());
    }
}

// ----- the load writer -----

/// This test binary, run again in the operator's namespace as the load writer. Dropping it
/// kills the process by pid.
struct LoadWriter {
    child: Option<Child>,
    dir: PathBuf,
}

impl LoadWriter {
    fn start(lab: &Lab) -> LoadWriter {
        let dir = lab.dir.path().join("load");
        std::fs::create_dir_all(&dir).expect("load directory");
        let endpoints: Vec<String> = (1..=HOSTS)
            .map(|host| format!("{SUBNET}.{}:{CLIENT_PORT}", 10 + host))
            .collect();
        let exe = std::env::current_exe().expect("test binary");
        let log = File::create(dir.join("writer.log")).expect("writer log");
        let child = lab
            .in_ops(
                exe.to_str().expect("utf-8 path"),
                &["--exact", "load_writer_in_operator_namespace"],
            )
            .args(["--ignored", "--nocapture", "--test-threads", "1"])
            .env(LOAD_DIR_ENV, &dir)
            .env(LOAD_ENDPOINTS_ENV, endpoints.join(","))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the load writer");
        LoadWriter {
            child: Some(child),
            dir,
        }
    }

    /// Writes acknowledged so far, the fewer of the two writers'.
    fn acked(&self) -> u64 {
        ["Leader", "Sticky"]
            .iter()
            .map(|writer| {
                std::fs::read_to_string(self.dir.join(format!("progress-{writer}")))
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0)
    }

    fn wait_acked(&self, count: u64) {
        let deadline = Instant::now() + WAIT;
        while self.acked() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes acknowledged\n{}",
                self.acked(),
                std::fs::read_to_string(self.dir.join("writer.log")).unwrap_or_default()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops the writes, lets the writer check every one on every node, and returns the
    /// longest gap between acknowledged writes in each window, by "WRITER WINDOW".
    fn finish(mut self, windows: &str) -> BTreeMap<String, u64> {
        std::fs::write(self.dir.join("windows"), windows).expect("windows");
        std::fs::write(self.dir.join("stop"), "").expect("stop file");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the load writer did not finish");
            std::thread::sleep(POLL_INTERVAL);
        };
        let log = std::fs::read_to_string(self.dir.join("writer.log")).unwrap_or_default();
        eprintln!("load writer:\n{log}");
        assert!(status.success(), "the load writer failed: {status}");
        let results = std::fs::read_to_string(self.dir.join("results")).expect("results");
        results
            .lines()
            .filter_map(|line| line.strip_prefix("gap_ms "))
            .filter_map(|rest| rest.rsplit_once(' '))
            .map(|(name, gap)| (name.to_owned(), gap.parse().expect("gap")))
            .collect()
    }
}

impl Drop for LoadWriter {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort: it may have exited.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What became of one SET.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Acked,
    /// -TRYAGAIN: not applied.
    NotApplied,
    /// The connection failed with the request sent: either outcome is possible.
    ConnectionLost(String),
    /// Any other error reply (-UNKNOWN included: either outcome is possible).
    Error(String),
}

struct Write {
    key: String,
    value: String,
    outcome: Outcome,
    /// When the reply came, in ms since the UNIX epoch.
    done_ms: u128,
}

/// How a writer picks the node it writes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Routing {
    /// Like a leader-aware client: writes go to the leader, found again (RAFT.STATUS) every
    /// LEADER_CHECK_INTERVAL and after a failure. A rolling restart must not fail one of
    /// them: deploy.sh moves leadership off a node before stopping it.
    Leader,
    /// Like a plain Redis client: stays on one node (followers forward) until a failure,
    /// then moves to the next.
    Sticky,
}

/// How often the leader-aware writer asks who leads.
const LEADER_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The error a node gives requests that arrive once it is shutting down (see the report in
/// `load_writer_in_operator_namespace`).
const SHUTTING_DOWN: &str = "UNKNOWN the node is shutting down";

/// The load writer: a leader-aware and a sticky writer side by side. Does nothing unless the
/// deploy test started it (with its environment).
#[test]
#[ignore = "run by the deploy test inside the operator's network namespace"]
fn load_writer_in_operator_namespace() {
    let Ok(dir) = std::env::var(LOAD_DIR_ENV) else {
        eprintln!("not started by the deploy test: nothing to do");
        return;
    };
    let dir = PathBuf::from(dir);
    let endpoints: Vec<SocketAddr> = std::env::var(LOAD_ENDPOINTS_ENV)
        .expect("endpoints")
        .split(',')
        .map(|endpoint| endpoint.parse().expect("endpoint"))
        .collect();
    let writers: Vec<(Routing, Vec<Write>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = [Routing::Leader, Routing::Sticky]
            .into_iter()
            .map(|routing| {
                let (dir, endpoints) = (&dir, &endpoints);
                scope.spawn(move || (routing, write_until_stopped(dir, endpoints, routing)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer"))
            .collect()
    });
    let all: Vec<&Write> = writers.iter().flat_map(|(_, writes)| writes).collect();
    for endpoint in &endpoints {
        check_writes(*endpoint, &all);
    }
    eprintln!(
        "every acknowledged write read back from {} nodes",
        endpoints.len()
    );
    let windows = std::fs::read_to_string(dir.join("windows")).expect("windows");
    let restarts = windows.lines().count() * HOSTS;
    let mut results = String::new();
    for (routing, writes) in &writers {
        results.push_str(&report_writer(*routing, writes, &windows, restarts));
    }
    std::fs::write(dir.join("results"), results).expect("results");
}

/// Prints one writer's counts and gaps, checks its errors; returns its `gap_ms` lines.
fn report_writer(routing: Routing, writes: &[Write], windows: &str, restarts: usize) -> String {
    let count = |f: &dyn Fn(&Outcome) -> bool| writes.iter().filter(|w| f(&w.outcome)).count();
    let acked = count(&|o| *o == Outcome::Acked);
    let not_applied = count(&|o| *o == Outcome::NotApplied);
    let lost = count(&|o| matches!(o, Outcome::ConnectionLost(_)));
    let shutting_down = count(&|o| matches!(o, Outcome::Error(e) if e.starts_with(SHUTTING_DOWN)));
    let errors: Vec<(&str, &Outcome)> = writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Error(_) | Outcome::ConnectionLost(_)))
        .map(|w| (w.key.as_str(), &w.outcome))
        .collect();
    eprintln!(
        "{routing:?} writer: {} writes: {acked} acknowledged, {not_applied} -TRYAGAIN, {lost} \
         without a reply (connection closed in flight), {} error replies ({shutting_down} of \
         them '{SHUTTING_DOWN}'): {errors:?}",
        writes.len(),
        errors.len() - lost
    );
    let mut lines = String::new();
    for line in windows.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, start, end] = words[..] else {
            panic!("bad window {line:?}")
        };
        let gap = longest_gap(writes, start.parse().expect("ms"), end.parse().expect("ms"));
        eprintln!(
            "{routing:?} writer: longest gap between acknowledged writes during {name}: {gap} ms"
        );
        lines.push_str(&format!("gap_ms {routing:?} {name} {gap}\n"));
    }
    // A write in flight to a node being stopped may get no reply: at most one per restart,
    // as the writer moves on at once.
    assert!(
        lost <= restarts,
        "{routing:?}: {lost} writes without a reply for {restarts} restarts"
    );
    match routing {
        // deploy.sh hands leadership off before stopping a node: a leader-aware client
        // sees nothing but -TRYAGAIN.
        Routing::Leader => assert_eq!(errors.len(), lost, "{routing:?}: error replies {errors:?}"),
        // A client on a node being stopped gets SHUTTING_DOWN (a kvnode limitation, see
        // docs/deploy.md); anything else is a failure.
        Routing::Sticky => {
            assert_eq!(
                errors.len() - lost,
                shutting_down,
                "{routing:?}: error replies {errors:?}"
            );
            assert!(
                shutting_down <= restarts,
                "{routing:?}: {shutting_down} for {restarts} restarts"
            );
        }
    }
    lines
}

/// SETs fresh keys one at a time, routed as `routing` says, until the stop file appears.
fn write_until_stopped(dir: &Path, endpoints: &[SocketAddr], routing: Routing) -> Vec<Write> {
    let started = Instant::now();
    let mut writes = Vec::new();
    let mut target = endpoints[0];
    let mut client: Option<Client> = None;
    let mut leader_checked = started;
    while !dir.join("stop").exists() && started.elapsed() < LOAD_LIFETIME_MAX {
        let Some(connection) = client.as_mut() else {
            match Client::connect_with(target, Duration::from_secs(5)) {
                Ok(connected) => client = Some(connected),
                Err(_) => {
                    target = next_endpoint(endpoints, target);
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
            leader_checked = started;
            continue;
        };
        if routing == Routing::Leader && leader_checked.elapsed() >= LEADER_CHECK_INTERVAL {
            leader_checked = Instant::now();
            match leader_address(connection) {
                Ok(Some(leader)) if leader != target => {
                    target = leader;
                    client = None;
                    continue;
                }
                Ok(_) => {}
                Err(_) => {
                    target = next_endpoint(endpoints, target);
                    client = None;
                    continue;
                }
            }
        }
        let write = set_once(connection, routing, writes.len(), target);
        if matches!(
            write.outcome,
            Outcome::ConnectionLost(_) | Outcome::Error(_)
        ) {
            client = None;
            target = next_endpoint(endpoints, target);
        }
        writes.push(write);
        if writes.len() % 20 == 0 {
            let acked = writes
                .iter()
                .filter(|w| w.outcome == Outcome::Acked)
                .count();
            let progress = dir.join(format!("progress-{routing:?}"));
            std::fs::write(progress, acked.to_string()).expect("progress");
        }
        std::thread::sleep(LOAD_PAUSE);
    }
    writes
}

fn next_endpoint(endpoints: &[SocketAddr], current: SocketAddr) -> SocketAddr {
    let index = endpoints
        .iter()
        .position(|e| *e == current)
        .map_or(0, |i| i + 1);
    endpoints[index % endpoints.len()]
}

/// The leader's client address as the connected node reports it (None: this node leads,
/// or it knows no leader).
fn leader_address(client: &mut Client) -> std::io::Result<Option<SocketAddr>> {
    let status = client.status()?;
    if status.is_leader() {
        return Ok(None);
    }
    let address = status.leader_client.unwrap_or_default();
    Ok(std::net::ToSocketAddrs::to_socket_addrs(address.as_str())
        .ok()
        .and_then(|mut found| found.next()))
}

fn set_once(client: &mut Client, routing: Routing, seq: usize, target: SocketAddr) -> Write {
    let key = format!("deploy-test:{routing:?}:{seq}");
    let value = format!("value-{routing:?}-{seq}");
    let outcome = match client.cmd(&["SET", &key, &value]) {
        Ok(reply) if reply.is_ok() => Outcome::Acked,
        Ok(Reply::Error(error)) if error.starts_with("TRYAGAIN") => Outcome::NotApplied,
        Ok(Reply::Error(error)) => Outcome::Error(error),
        Ok(other) => Outcome::Error(format!("{other:?}")),
        Err(error) => Outcome::ConnectionLost(format!("{target}: {error}")),
    };
    Write {
        key,
        value,
        outcome,
        done_ms: now_ms(),
    }
}

/// Reads every write back through `endpoint` (linearizable MGETs): an acknowledged one
/// must be there, a -TRYAGAIN one must not; any other may be either.
fn check_writes(endpoint: SocketAddr, writes: &[&Write]) {
    let mut client = Client::connect(endpoint).expect("connect for the check");
    for chunk in writes.chunks(500) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(chunk.iter().map(|write| write.key.as_bytes()));
        let reply = support::read_retrying(&mut client, &args);
        let Reply::Array(Some(values)) = reply else {
            panic!("MGET on {endpoint}: {reply:?}")
        };
        for (write, found) in chunk.iter().zip(values) {
            let found = found.bulk_string();
            match write.outcome {
                Outcome::Acked => assert_eq!(
                    found.as_deref(),
                    Some(write.value.as_str()),
                    "{endpoint} lost acknowledged write {}",
                    write.key
                ),
                Outcome::NotApplied => assert_eq!(
                    found, None,
                    "{endpoint} has {} although it got -TRYAGAIN",
                    write.key
                ),
                _ => {}
            }
        }
    }
}

/// The longest time between consecutive acknowledged writes within [start, end] (its
/// edges count as acknowledgements).
fn longest_gap(writes: &[Write], start: u128, end: u128) -> u64 {
    let mut previous = start;
    let mut longest = 0;
    for write in writes.iter().filter(|w| w.outcome == Outcome::Acked) {
        if write.done_ms < start {
            continue;
        }
        let at = write.done_ms.min(end);
        longest = longest.max(at - previous);
        previous = at;
        if write.done_ms >= end {
            break;
        }
    }
    longest = longest.max(end.saturating_sub(previous));
    u64::try_from(longest).expect("a gap fits in u64 ms")
}
