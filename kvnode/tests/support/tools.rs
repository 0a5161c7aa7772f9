//! Outside programs the black-box tests drive: making a Debian package's binary available
//! (installed with apt-get when missing and running as root, as CI does; otherwise the
//! test skips with the reason), and a real `redis-server` to compare raftkv with.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True if `binary` runs (with `probe` as its arguments) and exits 0.
pub fn runs(binary: &str, probe: &[&str]) -> bool {
    Command::new(binary)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Makes `binary` available, installing Debian's `package` when it is missing and this
/// runs as root, or says why it cannot.
pub fn ensure(binary: &str, probe: &[&str], package: &str) -> Result<(), String> {
    if runs(binary, probe) {
        return Ok(());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err(format!(
            "{binary} is missing and this is not root (cannot apt-get install {package})"
        ));
    }
    let script = format!(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package} >/dev/null"
    );
    let install = Command::new("sh")
        .args(["-c", &script])
        .status()
        .map_err(|e| format!("running apt-get: {e}"))?;
    if !install.success() || !runs(binary, probe) {
        return Err(format!("apt-get install {package} failed ({install})"));
    }
    Ok(())
}

/// A `redis-server` on a free loopback port, without persistence; killed when dropped.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts one (installing `redis-server` if needed and possible), or says why not.
    pub fn start() -> Result<RedisServer, String> {
        ensure("redis-server", &["--version"], "redis-server")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--databases",
                "16",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting redis-server: {e}"))?;
        let server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(server.addr).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill(); // it may have exited already; wait() reaps either way
        let _ = self.child.wait(); // reaping only
    }
}
