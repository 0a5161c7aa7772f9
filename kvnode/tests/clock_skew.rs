//! Expiry with one node's clock skewed by ±5 s (libfaketime, Debian's `faketime`
//! package, installed by the test when missing and running as root; otherwise it skips
//! with the reason), as leader and as follower, through leader kills.
//!
//! The documented bound (README, "Time and the clock assumption"): with every clock within
//! ε of true time, a key disappears within 2ε of its TTL, and replicas agree whatever the
//! clocks say. Here one node is off by 5 s and the others are exact, so reads must honour
//! each deadline within 5 s (plus slack for the test's own timing), deadlines survive the
//! kills unchanged, and every node holds the same state at the end.

#[path = "support/cluster.rs"]
mod support;
#[path = "support/tools.rs"]
mod tools;

use std::time::Duration;

use support::deadlines::{check_deadlines_kept, check_reads, integer, now_ms, set_ttl_keys};
use support::{read_retrying, Cluster, Options, Reply};

const TIMEOUT: Duration = Duration::from_secs(30);
const SKEW_MS: i64 = 5_000;
/// The bound the reads are held to: the skew, plus the test's timing slack.
const BOUND_MS: i64 = SKEW_MS + 100;
/// libfaketime for multi-threaded programs, as Debian installs it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Restarts node 1 with its clock moved by `skew_ms`, and checks that it took.
fn skew_node_one(cluster: &mut Cluster, skew_ms: i64) {
    cluster.kill(1);
    cluster.set_env(1, "LD_PRELOAD", LIBFAKETIME);
    cluster.set_env(1, "FAKETIME", &format!("{:+}", skew_ms as f64 / 1000.0));
    cluster.start_node(1);
    cluster.wait_serving(1, TIMEOUT);
    cluster.wait_for_leader(TIMEOUT);
    // TIME on a READONLY connection reads the node's own clock (clamped to its applied
    // time, which a node behind may not have reached: only the ahead case shows it).
    let mut client = cluster.client(1);
    assert!(client.cmd(&["READONLY"]).expect("READONLY").is_ok());
    let Reply::Array(Some(parts)) = client.cmd(&["TIME"]).expect("TIME") else {
        panic!("TIME");
    };
    let seconds: i64 = parts[0]
        .bulk_string()
        .expect("seconds")
        .parse()
        .expect("a number");
    if skew_ms > 0 {
        let offset = seconds * 1000 - now_ms();
        assert!(
            (skew_ms - 1_500..=skew_ms + 1_500).contains(&offset),
            "node 1's clock is off by {offset} ms, not {skew_ms}"
        );
    }
}

fn transfer_to(cluster: &Cluster, target: u64) {
    if cluster.wait_for_leader(TIMEOUT) == target {
        return;
    }
    let reply = cluster.admin(&[1, 2, 3], &["RAFT.TRANSFER", &target.to_string()], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.TRANSFER {target}: {reply:?}");
    let leader = cluster.wait_for_leader(TIMEOUT);
    assert_eq!(leader, target);
}

/// TTLs longer than the skew, so that even a node 5 s ahead sees each key for a while.
const TTL_MS: i64 = 6_500;

/// Keys set while `leader` leads, then the leader killed: deadlines kept, linearizable
/// reads within the bound on the survivors, the node restarted.
fn set_then_kill_leader(cluster: &mut Cluster, leader: u64, prefix: &str) {
    let writer = if leader == 1 { 2 } else { 1 };
    let keys = set_ttl_keys(&mut cluster.client(writer), prefix, 10, TTL_MS, SKEW_MS);
    cluster.kill(leader);
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    cluster.wait_for_leader_among(&survivors, TIMEOUT);
    check_deadlines_kept(cluster, &survivors, &keys, BOUND_MS);
    check_reads(cluster, &survivors, &keys, false, BOUND_MS);
    cluster.start_node(leader);
    cluster.wait_serving(leader, TIMEOUT);
}

/// Every node's state digest is the same.
fn check_replicas_agree(cluster: &Cluster) {
    let digest = |id: u64| {
        let mut client = cluster.client(id);
        assert!(client.cmd(&["READONLY"]).expect("READONLY").is_ok());
        read_retrying(&mut client, &[b"RAFTKV.DIGEST"])
    };
    // Bounded: a reclamation entry may land between two digests; a few tries suffice.
    for _ in 0..20 {
        cluster.wait_converged(&[1, 2, 3], TIMEOUT);
        let digests: Vec<Reply> = (1..=3).map(digest).collect();
        if digests.iter().all(|reply| reply == &digests[0]) {
            return;
        }
        let applied: Vec<i64> = digests
            .iter()
            .map(|reply| match reply {
                Reply::Array(Some(parts)) => integer(&parts[0]),
                other => panic!("RAFTKV.DIGEST: {other:?}"),
            })
            .collect();
        assert!(
            applied.iter().any(|a| *a != applied[0]),
            "replicas diverged: {digests:?}"
        );
    }
    panic!("replicas never reached one applied index to compare");
}

#[test]
fn expiry_holds_within_the_skew_with_a_node_five_seconds_off_as_leader_and_as_follower() {
    if let Err(reason) = tools::ensure("faketime", &["--version"], "faketime") {
        eprintln!("skipped: libfaketime is not available: {reason}");
        return;
    }
    if !std::path::Path::new(LIBFAKETIME).exists() {
        eprintln!("skipped: {LIBFAKETIME} is missing");
        return;
    }
    for skew_ms in [SKEW_MS, -SKEW_MS] {
        let mut cluster = Cluster::start(3, Options::default());
        skew_node_one(&mut cluster, skew_ms);
        // The skewed node leads, then is killed.
        transfer_to(&cluster, 1);
        set_then_kill_leader(&mut cluster, 1, &format!("lead{skew_ms}"));
        // The skewed node follows (and may take over when the leader is killed).
        transfer_to(&cluster, 2);
        set_then_kill_leader(&mut cluster, 2, &format!("follow{skew_ms}"));
        // READONLY reads judge by each node's own clock: the skewed one within its skew.
        let stale = set_ttl_keys(&mut cluster.client(1), "stale", 10, TTL_MS, SKEW_MS);
        let long = set_ttl_keys(&mut cluster.client(1), "long", 5, 100_000, SKEW_MS);
        cluster.wait_converged(&[1, 2, 3], TIMEOUT);
        check_reads(&cluster, &[1, 2, 3], &stale, true, BOUND_MS);
        check_deadlines_kept(&cluster, &[1, 2, 3], &long, BOUND_MS);
        check_replicas_agree(&cluster);
        eprintln!("skew {skew_ms} ms: deadlines kept, reads within {BOUND_MS} ms, replicas agree");
    }
}
