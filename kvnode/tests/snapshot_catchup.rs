//! A follower paused with SIGSTOP falls behind a compaction (`--snapshot-entries 200` and
//! thousands of writes), and after SIGCONT catches up through a snapshot sent by the leader:
//! its applied index reaches the leader's, its data matches, and its log records that it
//! restored a snapshot from the leader.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{
    check_everywhere, set_pipelined, Cluster, Options, Outcome, WriteRecord, POLL_INTERVAL,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const SNAPSHOT_ENTRIES: u64 = 200;
/// Writes per round while the follower is paused.
const ROUND_WRITES: usize = 1000;
/// Rounds of writes while the follower is paused. The kernel keeps receiving for a stopped
/// process, so the leader's appends sent before it compacted can sit in socket buffers and
/// the transport queue (a few MiB); with 2 KiB values, 8 rounds (16 MiB) outgrow them, so
/// the follower cannot catch up from buffered appends alone.
const ROUNDS: usize = 8;
/// Bytes per value.
const VALUE_BYTES: usize = 2048;

#[test]
fn paused_follower_catches_up_through_a_snapshot_after_sigcont() {
    let cluster = Cluster::start(
        3,
        Options {
            snapshot_entries: Some(SNAPSHOT_ENTRIES),
            ..Options::default()
        },
    );
    let leader = cluster.wait_for_leader(TIMEOUT);
    let follower = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let before = cluster.status(follower).expect("follower status");
    let follower_last = before.last_index.0;
    cluster.pause(follower);

    // Write through the leader until its log starts past the follower's last entry, so
    // only a snapshot can bring the follower up to date.
    let mut records: Vec<WriteRecord> = Vec::new();
    let padding = "p".repeat(VALUE_BYTES);
    for round in 0..ROUNDS {
        let batch: Vec<WriteRecord> = (0..ROUND_WRITES)
            .map(|i| WriteRecord {
                key: format!("snap:{round}:{i}"),
                value: format!("value-{round}-{i}-{padding}"),
                outcome: Outcome::Acked,
            })
            .collect();
        set_pipelined(&cluster, leader, &batch);
        records.extend(batch);
    }
    let leader_status = cluster.status(leader).expect("leader status");
    let leader_first = leader_status.first_index.0;
    assert!(
        leader_first > follower_last + 1,
        "the leader compacted past the paused follower's log (first_index {leader_first}, \
         follower's last index {follower_last}): {leader_status:?}"
    );
    let leader_commit = leader_status.commit_index.0;

    cluster.resume(follower);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let applied = cluster
            .status(follower)
            .map(|s| s.applied_index.0)
            .unwrap_or(0);
        if applied >= leader_commit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "follower {follower} applied only {applied} of {leader_commit} within {TIMEOUT:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    let log = cluster.log(follower);
    assert!(
        log.contains("restored a snapshot from the leader"),
        "follower {follower} caught up without a snapshot from the leader:\n{log}"
    );
    let status = cluster.status(follower).expect("follower status");
    assert!(
        status.first_index.0 > follower_last + 1,
        "follower's log starts after the snapshot: {status:?}"
    );
    check_everywhere(&cluster, &[1, 2, 3], &records);
}
