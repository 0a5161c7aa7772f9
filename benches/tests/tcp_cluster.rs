//! The in-process TCP + WAL cluster the commit bench drives: it elects a leader, commits
//! what it is given, and leaves nothing behind (threads joined, transports shut down,
//! temp dirs removed). Every wait is bounded by a deadline.

use std::time::{Duration, Instant};

use benches::tcp_cluster::{TcpCluster, NODE_COUNT};
use bytes::Bytes;
use raft_core::LogIndex;

/// Generous for a loaded 2-core machine: an election takes 150–300 ms plus a pre-vote.
const ELECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Per batch of proposals: a few WAL syncs of a few ms each, plus scheduling noise.
const COMMIT_DEADLINE: Duration = Duration::from_secs(5);
const PROPOSALS: usize = 100;
const BATCH: usize = 10;

#[test]
fn three_nodes_elect_commit_100_proposals_and_shut_down_cleanly() {
    let started = Instant::now();
    let cluster = TcpCluster::start().expect("start the cluster");
    let dirs = cluster.data_dirs();
    assert_eq!(dirs.len() as u64, NODE_COUNT);
    for dir in &dirs {
        assert!(dir.exists(), "{} exists while running", dir.display());
    }
    let leader = cluster
        .wait_for_leader(ELECTION_DEADLINE)
        .expect("a leader is elected");

    // Half one at a time, half in batches of 10 in flight together.
    let payload = Bytes::from(vec![0x42u8; 128]);
    let mut last = LogIndex::ZERO;
    for _ in 0..PROPOSALS / 2 {
        let commits = cluster
            .commit(std::slice::from_ref(&payload), COMMIT_DEADLINE)
            .expect("a single proposal commits");
        assert!(commits[0].index > last, "indexes grow");
        last = commits[0].index;
    }
    for _ in 0..PROPOSALS / 2 / BATCH {
        let commits = cluster
            .commit(&vec![payload.clone(); BATCH], COMMIT_DEADLINE)
            .expect("a batch commits");
        assert_eq!(commits.len(), BATCH);
        for commit in &commits {
            assert!(
                commit.index > last,
                "indexes grow: {:?} after {last:?}",
                commit.index
            );
            last = commit.index;
        }
    }
    assert_eq!(cluster.leader(), Some(leader), "no leader change");
    assert_eq!(cluster.elections_won(), 1, "one election");

    let stats = cluster
        .take_stats(COMMIT_DEADLINE)
        .expect("every node answers");
    let leader_stats = &stats
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1;
    assert!(
        !leader_stats.broadcast.is_empty(),
        "one-entry appends were timed"
    );
    for (id, node_stats) in &stats {
        assert!(!node_stats.sync.is_empty(), "node {id} synced its WAL");
    }

    cluster.shutdown().expect("clean shutdown");
    for dir in &dirs {
        assert!(!dir.exists(), "{} removed", dir.display());
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded: took {:?}",
        started.elapsed()
    );
}
