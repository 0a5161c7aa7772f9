//! The few things the tool asks of the operating system: running a command with a deadline,
//! checking for root, entering a network namespace, and signalling a process by pid.
//!
//! Every external command is waited for at most [`COMMAND_TIMEOUT`] and killed past it, so no
//! step of a run can hang on a stuck `ip` or `tc`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Longest an `ip`, `nft` or `tc` command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `program args...` to completion (at most [`COMMAND_TIMEOUT`]); returns its stdout.
///
/// # Errors
/// If it cannot start, exits non-zero (the error holds its stderr) or overruns the timeout.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program} {}", args.join(" ")))?;
    let pid = child.id();
    // A helper thread drains both pipes while waiting, so a chatty command cannot block on
    // a full pipe; this thread waits for it at most COMMAND_TIMEOUT.
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        // The receiver may be gone after a timeout; nothing is left to tell then.
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(COMMAND_TIMEOUT) {
        Ok(output) => output?,
        Err(_) => {
            // It may have exited just now; the helper thread reaps it either way.
            let _ = signal(pid, libc::SIGKILL);
            bail!(
                "{program} {} did not finish within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            );
        }
    };
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `program` can be found on the PATH.
pub fn has_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Fails with a clear message unless the process runs as root.
///
/// # Errors
/// When not root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "chaos must run as root (it creates network namespaces, veth pairs and firewall \
             rules, and signals processes); effective uid is {euid}"
        );
    }
    Ok(())
}

/// Moves the calling thread into network namespace `name` (`/run/netns/NAME`). Only this
/// thread moves; threads it creates afterwards start in the namespace too.
///
/// # Errors
/// If the namespace does not exist or `setns` fails.
pub fn enter_namespace(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: the fd is valid for the call; CLONE_NEWNET asks for a network namespace fd.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns into {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The inode of namespace `name`'s file, which identifies it.
///
/// # Errors
/// If it does not exist.
pub fn namespace_inode(name: &str) -> Result<u64> {
    let path = format!("/run/netns/{name}");
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("stat {path}"))?
        .ino())
}

/// The inode of the calling thread's network namespace.
///
/// # Errors
/// If /proc is not mounted.
pub fn current_namespace_inode() -> Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")
        .context("stat /proc/thread-self/ns/net")?
        .ino())
}

/// Sends `signal` to `pid`.
///
/// # Errors
/// If the process does not exist (or cannot be signalled).
pub fn signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a process with this pid exists.
pub fn is_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_stdout_and_reports_failures() {
        assert_eq!(run("echo", &["hi"]).expect("echo runs"), "hi\n");
        let error = run("sh", &["-c", "echo oops >&2; exit 3"]).expect_err("fails");
        let text = format!("{error:#}");
        assert!(text.contains("oops") && text.contains('3'), "{text}");
        assert!(has_program("sh"));
        assert!(!has_program("no-such-program-chaos"));
        // More output than a pipe holds must not block the command.
        let big = run("sh", &["-c", "head -c 300000 /dev/zero | tr '\\0' x"]).expect("runs");
        assert_eq!(big.len(), 300_000);
    }
}
