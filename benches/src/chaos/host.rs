//! One kvnode host: its namespace, directory, generated config, and the process.
//!
//! The process is started as `ip netns exec NS kvnode --config FILE [extra args]`; `ip netns
//! exec` execs, so the child's pid is kvnode's, and every signal goes to that pid. A host with
//! clock skew enabled runs under libfaketime (`LD_PRELOAD`), reading its offset from a file
//! the nemesis rewrites; only the real-time clock is faked, never the monotonic one that
//! timers use.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

use super::sys;

/// The Redis-protocol port on every host (each host has its own address).
pub const CLIENT_PORT: u16 = 6379;
/// The Raft peer port on every host.
pub const PEER_PORT: u16 = 7000;
/// Longest a node may take to shut down after SIGTERM.
pub const TERMINATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Where Debian's `libfaketime` package puts the library.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Settings every host of a run shares.
#[derive(Clone, Debug)]
pub struct HostOptions {
    pub kvnode: PathBuf,
    /// kvnode's heartbeat; `None` leaves kvnode's default.
    pub heartbeat_ms: Option<u64>,
    /// kvnode's minimum election timeout; `None` leaves kvnode's default.
    pub election_ms: Option<u64>,
    pub snapshot_entries: Option<u64>,
    /// Passed through to kvnode after `--config` (e.g. a test-only fault switch).
    pub extra_args: Vec<String>,
    /// Run under libfaketime so the skew nemesis can move the clock.
    pub faketime: bool,
}

/// What the host's process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostState {
    Running,
    Paused,
    Killed,
    /// Removed from the cluster and stopped for good.
    Removed,
}

pub struct Host {
    pub id: u64,
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    pub state: HostState,
    child: Option<Child>,
    /// Exit statuses of processes that ended without being killed by the tool.
    pub crashes: Vec<ExitStatus>,
}

impl Host {
    /// Writes the host's config; `members` are the (id, ip) pairs it is told about.
    ///
    /// # Errors
    /// If the directory or file cannot be written.
    pub fn create(
        id: u64,
        namespace: String,
        ip: Ipv4Addr,
        run_dir: &Path,
        members: &[(u64, Ipv4Addr)],
        join: bool,
        options: &HostOptions,
    ) -> Result<Host> {
        let dir = run_dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = render_config(id, ip, &dir, members, join, options);
        let path = dir.join("kvnode.toml");
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        std::fs::write(dir.join("faketime"), "+0\n")
            .with_context(|| format!("writing {}/faketime", dir.display()))?;
        Ok(Host {
            id,
            namespace,
            ip,
            dir,
            state: HostState::Killed,
            child: None,
            crashes: Vec::new(),
        })
    }

    pub fn client_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, CLIENT_PORT)
    }

    pub fn peer_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, PEER_PORT)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kvnode.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (the host must not be running).
    ///
    /// # Errors
    /// If it cannot be spawned.
    pub fn start(&mut self, options: &HostOptions) -> Result<()> {
        assert!(self.child.is_none(), "host {} is already running", self.id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(&options.kvnode)
            .arg("--config")
            .arg(self.dir.join("kvnode.toml"))
            .args(&options.extra_args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if options.faketime {
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", self.dir.join("faketime"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting kvnode on host {}", self.id))?;
        self.child = Some(child);
        self.state = HostState::Running;
        Ok(())
    }

    /// SIGKILLs the process (also a paused one) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = sys::signal(child.id(), libc::SIGKILL) {
                // It exited on its own meanwhile; wait() below reaps it.
                eprintln!("chaos: host {}: {error:#}", self.id);
            }
            match child.wait() {
                Ok(status) if !is_sigkill(status) => self.crashes.push(status),
                _ => {}
            }
        }
        if self.state != HostState::Removed {
            self.state = HostState::Killed;
        }
    }

    /// SIGTERM, then waits up to [`TERMINATE_TIMEOUT`] for a graceful exit (SIGKILL after
    /// that). An exit other than success, or a hang, is recorded as a crash.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.state == HostState::Paused {
            // A stopped process cannot handle SIGTERM until it runs again.
            let _ = sys::signal(child.id(), libc::SIGCONT); // it may have exited meanwhile
        }
        if let Err(error) = sys::signal(child.id(), libc::SIGTERM) {
            eprintln!("chaos: host {}: {error:#}", self.id);
        }
        let deadline = std::time::Instant::now() + TERMINATE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => break None,
            }
        };
        match status {
            Some(status) if status.success() => {}
            Some(status) => self.crashes.push(status),
            None => {
                // Hung in shutdown: kill it, and record how it ended (SIGKILL, so the
                // report says "signal: 9" for a node that ignored SIGTERM).
                let _ = sys::signal(child.id(), libc::SIGKILL); // it may have exited just now
                if let Ok(status) = child.wait() {
                    self.crashes.push(status);
                }
            }
        }
        if self.state != HostState::Removed {
            self.state = HostState::Killed;
        }
    }

    /// SIGSTOP.
    ///
    /// # Errors
    /// If the process is gone.
    pub fn pause(&mut self) -> Result<()> {
        let pid = self.pid().context("pausing a host that is not running")?;
        sys::signal(pid, libc::SIGSTOP)?;
        self.state = HostState::Paused;
        Ok(())
    }

    /// SIGCONT.
    ///
    /// # Errors
    /// If the process is gone.
    pub fn resume(&mut self) -> Result<()> {
        let pid = self.pid().context("resuming a host that is not running")?;
        sys::signal(pid, libc::SIGCONT)?;
        self.state = HostState::Running;
        Ok(())
    }

    /// Moves this host's real-time clock by `offset_s` seconds (0: back to true time).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn skew(&self, offset_s: i64) -> Result<()> {
        let path = self.dir.join("faketime");
        std::fs::write(&path, format!("{offset_s:+}\n"))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Notices a process that ended by itself (a crash or an abort), recording its status.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                self.crashes.push(status);
                if self.state != HostState::Removed {
                    self.state = HostState::Killed;
                }
                Some(status)
            }
            _ => None,
        }
    }

    /// Stops the host for good (after its removal from the cluster).
    pub fn retire(&mut self) {
        self.kill();
        self.state = HostState::Removed;
    }
}

fn is_sigkill(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

/// The TOML config of one host.
pub fn render_config(
    id: u64,
    ip: Ipv4Addr,
    dir: &Path,
    members: &[(u64, Ipv4Addr)],
    join: bool,
    options: &HostOptions,
) -> String {
    let member_list: Vec<String> = members
        .iter()
        .map(|(member, ip)| format!("\"{member}={ip}:{PEER_PORT},{ip}:{CLIENT_PORT}\""))
        .collect();
    let mut config = format!(
        "node_id = {id}\nmember = [{}]\ndata_dir = \"{}\"\n\
         peer_addr = \"{ip}:{PEER_PORT}\"\nclient_addr = \"{ip}:{CLIENT_PORT}\"\nlog_level = \"info\"\n",
        member_list.join(", "),
        dir.join("data").display(),
    );
    if let Some(ms) = options.heartbeat_ms {
        config.push_str(&format!("heartbeat_ms = {ms}\n"));
    }
    if let Some(ms) = options.election_ms {
        config.push_str(&format!("election_ms = {ms}\n"));
    }
    if join {
        config.push_str("join = true\n");
    }
    if let Some(entries) = options.snapshot_entries {
        config.push_str(&format!("snapshot_entries = {entries}\n"));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_members_and_options() {
        let options = HostOptions {
            kvnode: PathBuf::from("kvnode"),
            heartbeat_ms: Some(50),
            election_ms: None,
            snapshot_entries: Some(200),
            extra_args: Vec::new(),
            faketime: false,
        };
        let ip = Ipv4Addr::new(10, 231, 1, 14);
        let members = [(1, Ipv4Addr::new(10, 231, 1, 11))];
        let config = render_config(4, ip, Path::new("/d"), &members, true, &options);
        assert!(config.contains("node_id = 4\n"), "{config}");
        assert!(
            config.contains("member = [\"1=10.231.1.11:7000,10.231.1.11:6379\"]"),
            "{config}"
        );
        assert!(config.contains("join = true"));
        assert!(config.contains("snapshot_entries = 200"));
        assert!(config.contains("client_addr = \"10.231.1.14:6379\""));
        assert!(config.contains("data_dir = \"/d/data\""));
        assert!(config.contains("heartbeat_ms = 50\n"), "{config}");
        assert!(
            !config.contains("election_ms"),
            "kvnode's default: {config}"
        );
    }
}
