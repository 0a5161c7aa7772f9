//! The short fault battery CI runs: real kvnode processes in network namespaces under kill,
//! pause and partition faults (and membership changes with small snapshots), on 3 and 5
//! nodes; any anomaly fails the test. A seeded bug (stale READONLY reads) must be caught. A
//! node cut off for 1 s and 5 s must know the leader within two heartbeats of the heal.
//!
//! Needs root and `ip netns`; without them each test prints why and passes as skipped.
//!
//! Binaries: `chaos` is this package's own (`CARGO_BIN_EXE_chaos`). kvnode belongs to another
//! package, so Cargo gives no path to it here: the test runs `cargo build -p kvnode --bin
//! kvnode` into the same target directory and profile as this test (a no-op when
//! `cargo test --workspace` already built it; Cargo has released its lock by the time tests
//! run), or takes `CHAOS_KVNODE=/path/to/kvnode` as it is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One cluster at a time: the machine has two cores, and the tests would otherwise run in
/// parallel threads.
static SERIAL: Mutex<()> = Mutex::new(());

/// Why the battery cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".to_owned());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Some(format!("`ip` is not available: {error}")),
    }
}

/// The kvnode binary for this test's profile, built if need be.
fn kvnode() -> PathBuf {
    if let Some(path) = std::env::var_os("CHAOS_KVNODE") {
        return PathBuf::from(path);
    }
    let chaos = Path::new(env!("CARGO_BIN_EXE_chaos"));
    let profile_dir = chaos.parent().expect("target/<profile>");
    let target_dir = profile_dir.parent().expect("target dir");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "-p", "kvnode", "--bin", "kvnode", "--target-dir"])
        .arg(target_dir);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let status = command.status().expect("run cargo build for kvnode");
    assert!(status.success(), "cargo build -p kvnode failed: {status}");
    let path = profile_dir.join("kvnode");
    assert!(path.is_file(), "no kvnode at {}", path.display());
    path
}

/// Runs `chaos run` with `args`; returns its exit code and output (printed as well).
fn chaos(args: &[&str], out: &Path) -> (i32, String) {
    chaos_command("run", args, out)
}

/// Runs `chaos SUBCOMMAND` with `args`; returns its exit code and output (printed as well).
fn chaos_command(subcommand: &str, args: &[&str], out: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .arg(subcommand)
        .args(args)
        .arg("--kvnode")
        .arg(kvnode())
        .arg("--out")
        .arg(out)
        .output()
        .expect("run chaos");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("chaos {}:\n{text}", args.join(" "));
    (output.status.code().unwrap_or(-1), text)
}

/// Runs one battery entry and fails on any anomaly, keeping the report directory then.
fn battery(args: &[&str]) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(reason) = skip_reason() {
        println!("SKIPPED chaos battery {args:?}: {reason}");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("chaos-battery-")
        .tempdir()
        .expect("temp dir");
    let (code, text) = chaos(args, dir.path());
    if code != 0 {
        let kept = dir.keep();
        panic!(
            "chaos {args:?} exited {code} (1 = anomalies, 2 = could not run); report kept in {}\n{text}",
            kept.display()
        );
    }
    assert!(text.contains("anomalies 0"), "no summary line:\n{text}");
}

#[test]
fn three_nodes_kill_pause_partition() {
    battery(&[
        "--seed",
        "101",
        "--duration",
        "30",
        "--nodes",
        "3",
        "--nemesis",
        "kill,pause,partition",
    ]);
}

#[test]
fn five_nodes_kill_pause_partition() {
    battery(&[
        "--seed",
        "202",
        "--duration",
        "30",
        "--nodes",
        "5",
        "--nemesis",
        "kill,pause,partition",
    ]);
}

#[test]
fn three_nodes_membership_and_partitions_with_small_snapshots() {
    battery(&[
        "--seed",
        "303",
        "--duration",
        "30",
        "--nodes",
        "3",
        "--nemesis",
        "partition,membership,kill",
        "--snapshot-entries",
        "200",
    ]);
}

/// The seeded bug: reads on READONLY connections skip the ReadIndex round. The suite must
/// report it (exit 1 with a linearizability or lost-element anomaly) within one short run.
#[test]
fn stale_reads_are_caught() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(reason) = skip_reason() {
        println!("SKIPPED stale-read detection: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, text) = chaos(
        &[
            "--seed",
            "404",
            "--duration",
            "15",
            "--nodes",
            "3",
            "--nemesis",
            "partition",
            "--stale-reads",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "stale reads went unnoticed:\n{text}");
    assert!(
        text.contains("ANOMALY not-linearizable") || text.contains("ANOMALY lost"),
        "{text}"
    );
}

/// Two heartbeats (kvnode's default heartbeat, 50 ms): the bound issue 18 asks for.
const REJOIN_HEARTBEATS_MS: u64 = 2 * 50;
/// Scheduling allowance on top: on a loaded two-core runner each of the hops between the
/// heal and the status that shows the leader (the redial timer, the leader's tick and
/// send, the follower's raft loop, the poller's next request) can wait tens of
/// milliseconds for a core. Measured here (load 12 on two cores) the rejoin took 1 to
/// 35 ms; the behaviour issue 18 fixed took 410 ms after a 1 s cut and 2.5 s after a 4 s
/// one, which this bound still fails.
const REJOIN_ALLOWANCE_MS: u64 = 200;

/// A node cut off from every other member for 1 s and for 5 s knows the leader within two
/// heartbeats (plus the allowance) of the heal, measured by `chaos rejoin` from the end of
/// the heal to the first RAFT.STATUS reply in which it follows the leader.
#[test]
fn a_node_cut_off_knows_the_leader_within_two_heartbeats_of_the_heal() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(reason) = skip_reason() {
        println!("SKIPPED rejoin: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bound = (REJOIN_HEARTBEATS_MS + REJOIN_ALLOWANCE_MS).to_string();
    let args = [
        "--cuts-ms",
        "1000,5000",
        "--repeat",
        "2",
        "--bound-ms",
        &bound,
    ];
    let (code, text) = chaos_command("rejoin", &args, dir.path());
    assert_eq!(
        code, 0,
        "the rejoin bound was exceeded or the run failed:\n{text}"
    );
    assert!(text.contains(&format!("bound {bound} ms: held")), "{text}");
}
