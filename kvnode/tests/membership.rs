//! Membership changes with writes flowing throughout: a 4th node started with `--join` is
//! added as a learner, catches up, is promoted to voter; then the leader itself is removed.
//! A new leader is elected among the remaining three, and every acknowledged write is
//! readable on each of them at the end.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use raft_core::NodeId;
use support::{
    check_everywhere, sorted_ids, summarize, Cluster, Options, Reply, WriteStream, POLL_INTERVAL,
};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn add_learner_promote_then_remove_leader_loses_no_write() {
    add_learner_promote_then_remove_leader(Options::default());
}

/// The same with TLS on both ports, clients showing certificates too: the joining node
/// gets its own peer and client port certificates from the cluster's CA, every
/// connection to it is verified, and followers forward to the leader with their own
/// certificates.
#[test]
fn add_learner_promote_then_remove_leader_loses_no_write_over_tls() {
    add_learner_promote_then_remove_leader(Options::tls_everywhere(true));
}

fn add_learner_promote_then_remove_leader(options: Options) {
    let mut cluster = Cluster::start(3, options);
    let old_leader = cluster.wait_for_leader(TIMEOUT);
    let stream = WriteStream::start(
        "member",
        [1, 2, 3].iter().map(|id| cluster.addr(*id)).collect(),
        3,
    );
    stream.wait_acked(500, TIMEOUT);

    // Add node 4 as a learner.
    cluster.add_joining_node(4);
    cluster.start_node(4);
    cluster.wait_serving(4, TIMEOUT);
    let (peer, client) = (cluster.nodes[&4].peer, cluster.nodes[&4].client);
    let reply = cluster.admin(
        &[1, 2, 3],
        &[
            "RAFT.ADDLEARNER",
            "4",
            &peer.to_string(),
            &client.to_string(),
        ],
        TIMEOUT,
    );
    assert!(reply.is_ok(), "RAFT.ADDLEARNER 4: {reply:?}");
    let status = cluster.status(old_leader).expect("leader status");
    assert_eq!(status.learners, [NodeId(4)], "{status:?}");

    // It catches up while writes continue.
    let acked = stream.acked();
    stream.wait_acked(acked + 300, TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let leader_commit = cluster
            .status(old_leader)
            .map(|s| s.commit_index.0)
            .unwrap_or(u64::MAX);
        let learner_applied = cluster.status(4).map(|s| s.applied_index.0).unwrap_or(0);
        if learner_applied + 50 >= leader_commit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "learner 4 applied {learner_applied}, leader committed {leader_commit}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }

    let reply = cluster.admin(&[1, 2, 3], &["RAFT.PROMOTE", "4"], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.PROMOTE 4: {reply:?}");
    let leader = cluster.wait_for_leader_among(&[1, 2, 3, 4], TIMEOUT);
    let status = cluster.status(leader).expect("status");
    assert_eq!(sorted_ids(&status.voters), [1, 2, 3, 4]);
    stream.set_targets([1, 2, 3, 4].iter().map(|id| cluster.addr(*id)).collect());
    let acked = stream.acked();
    stream.wait_acked(acked + 300, TIMEOUT);

    // Remove the current leader, with the stream still flowing through the others.
    let removed = leader;
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|id| *id != removed)
        .collect();
    stream.set_targets(remaining.iter().map(|id| cluster.addr(*id)).collect());
    let reply = cluster
        .client(removed)
        .cmd(&["RAFT.REMOVE", &removed.to_string()])
        .expect("RAFT.REMOVE");
    assert!(
        reply.is_ok(),
        "RAFT.REMOVE {removed} (the leader): {reply:?}"
    );
    let new_leader = cluster.wait_for_leader_among(&remaining, TIMEOUT);
    assert_ne!(new_leader, removed);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = cluster.status(new_leader).expect("status");
        if sorted_ids(&status.voters) == remaining && status.voters_outgoing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voters after removal: {status:?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
    let acked = stream.acked();
    stream.wait_acked(acked + 300, TIMEOUT);
    let records = stream.stop();
    eprintln!("writes: {}", summarize(&records));

    // The removed node is stopped; the rest hold every acknowledged write.
    cluster.kill(removed);
    check_everywhere(&cluster, &remaining, &records);
    cluster.check_peer_security_logged();
}

/// Promoting an id that was never added as a learner would add a voter nobody can reach
/// (and raise the quorum): it is refused, and the voters stay as they were.
#[test]
fn promoting_an_id_that_is_not_a_learner_is_refused() {
    let cluster = Cluster::start(3, Options::default());
    cluster.wait_for_leader(TIMEOUT);
    let reply = cluster.admin(&[1, 2, 3], &["RAFT.PROMOTE", "9"], TIMEOUT);
    match reply {
        Reply::Error(message) => {
            assert!(message.starts_with("ERR"), "{message}");
            assert!(message.contains("not a learner"), "{message}");
        }
        other => panic!("RAFT.PROMOTE 9 must be refused, got {other:?}"),
    }
    let leader = cluster.wait_for_leader(TIMEOUT);
    let status = cluster.status(leader).expect("leader answers RAFT.STATUS");
    assert_eq!(status.voters, [NodeId(1), NodeId(2), NodeId(3)]);
}

/// How long a new learner may take to catch up while writes flow: a few seconds of log
/// replay or one snapshot; a learner cut off from its leader never gets there.
const CATCH_UP: Duration = Duration::from_secs(20);

/// Polls until node `learner` has applied what `leader` had committed when asked (within
/// `slack` entries), returning how long it took.
fn wait_caught_up(cluster: &Cluster, leader: u64, learner: u64) -> Duration {
    let started = Instant::now();
    loop {
        let commit = cluster.status(leader).map(|s| s.commit_index.0);
        let applied = cluster.status(learner).map(|s| s.applied_index.0);
        if let (Some(commit), Some(applied)) = (commit, applied) {
            if applied + 50 >= commit {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < CATCH_UP,
                "learner {learner} applied {applied}, leader {leader} committed {commit}"
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn add_learner(cluster: &mut Cluster, ids: &[u64], id: u64) {
    cluster.add_joining_node(id);
    cluster.start_node(id);
    cluster.wait_serving(id, TIMEOUT);
    let (peer, client) = (cluster.nodes[&id].peer, cluster.nodes[&id].client);
    let reply = cluster.admin(
        ids,
        &[
            "RAFT.ADDLEARNER",
            &id.to_string(),
            &peer.to_string(),
            &client.to_string(),
        ],
        TIMEOUT,
    );
    assert!(reply.is_ok(), "RAFT.ADDLEARNER {id}: {reply:?}");
}

/// A learner replays the log from the start, meeting the founding configuration, which
/// does not hold the current leader. Its peers follow the newest configuration it knows
/// plus the leader, so it keeps hearing the leader and catches up (before, replication to
/// it stopped until leadership went back to a founder).
fn learner_added_while_a_non_founder_leads_catches_up(snapshot_entries: Option<u64>) {
    let options = Options {
        snapshot_entries,
        ..Options::default()
    };
    let mut cluster = Cluster::start(3, options);
    cluster.wait_for_leader(TIMEOUT);
    let stream = WriteStream::start(
        "replay",
        [1, 2, 3].iter().map(|id| cluster.addr(*id)).collect(),
        3,
    );
    stream.wait_acked(300, TIMEOUT);
    add_learner(&mut cluster, &[1, 2, 3], 4);
    let leader = cluster.wait_for_leader(TIMEOUT);
    wait_caught_up(&cluster, leader, 4);
    let reply = cluster.admin(&[1, 2, 3], &["RAFT.PROMOTE", "4"], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.PROMOTE 4: {reply:?}");
    // Node 4, not a founder, takes over (the transfer answers once it leads).
    let reply = cluster.admin(&[1, 2, 3, 4], &["RAFT.TRANSFER", "4"], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.TRANSFER 4: {reply:?}");
    stream.set_targets([1, 2, 3, 4].iter().map(|id| cluster.addr(*id)).collect());
    let acked = stream.acked();
    stream.wait_acked(acked + 1500, TIMEOUT);

    add_learner(&mut cluster, &[1, 2, 3, 4], 5);
    let leader = cluster.wait_for_leader(TIMEOUT);
    let took = wait_caught_up(&cluster, leader, 5);
    eprintln!("learner 5 caught up with leader {leader} in {took:?} (snapshot_entries {snapshot_entries:?})");
    let reply = cluster.admin(&[1, 2, 3, 4], &["RAFT.PROMOTE", "5"], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.PROMOTE 5: {reply:?}");
    let records = stream.stop();
    eprintln!("writes: {}", summarize(&records));
    check_everywhere(&cluster, &[1, 2, 3, 4, 5], &records);
}

#[test]
fn a_learner_added_while_a_non_founder_leads_catches_up_by_replaying_the_log() {
    learner_added_while_a_non_founder_leads_catches_up(None);
}

#[test]
fn a_learner_added_while_a_non_founder_leads_catches_up_from_a_snapshot() {
    learner_added_while_a_non_founder_leads_catches_up(Some(200));
}

/// A learner the leader cannot hear from would, as a voter, stall every commit of the
/// joint configuration: promoting it is refused (TRYAGAIN) until it is back in sync.
#[test]
fn promoting_a_learner_that_is_down_is_refused_until_it_is_back_in_sync() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    add_learner(&mut cluster, &[1, 2, 3], 4);
    wait_caught_up(&cluster, leader, 4);
    cluster.kill(4);
    // Past an election timeout of silence.
    std::thread::sleep(Duration::from_secs(1));
    let leader = cluster.wait_for_leader_among(&[1, 2, 3], TIMEOUT);
    let reply = cluster
        .client(leader)
        .cmd(&["RAFT.PROMOTE", "4"])
        .expect("RAFT.PROMOTE");
    match &reply {
        Reply::Error(message) => {
            assert!(message.starts_with("TRYAGAIN"), "{message}");
            assert!(message.contains("not in sync"), "{message}");
        }
        other => panic!("promoting a dead learner must be refused, got {other:?}"),
    }
    let status = cluster.status(leader).expect("status");
    assert_eq!(sorted_ids(&status.voters), [1, 2, 3]);
    cluster.start_node(4);
    cluster.wait_serving(4, TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reply = cluster.admin(&[1, 2, 3], &["RAFT.PROMOTE", "4"], TIMEOUT);
        if reply.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "never promoted: {reply:?}");
        std::thread::sleep(POLL_INTERVAL);
    }
}
