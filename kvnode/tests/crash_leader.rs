//! kill -9 of the leader in the middle of a write stream: a new leader is elected, writes
//! resume, the old node comes back, and every acknowledged write is on all three members.
//!
//! With `--storage wal` the old leader restarts from its WAL under the same id.
//!
//! With `--storage memory` the killed node's Raft log (its votes and the entries it
//! acknowledged) is gone. The server refuses to restart it under the same id: the process
//! exits with an error naming `RAFT.REMOVE` and a new `--node-id` (coming back empty under
//! the old id could let it vote twice in a term or deny an entry it helped commit). So the
//! test checks that refusal, that the cluster keeps serving meanwhile, and then does what
//! the message says: `RAFT.REMOVE` the old id and add the node back under a new id with
//! `--join` (learner, then voter).

#[path = "support/cluster.rs"]
mod support;

use std::time::Duration;

use support::{check_everywhere, summarize, Cluster, Options, Reply, WriteStream};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Starts three nodes and a write stream through all of them, kills the leader once some
/// writes are acknowledged, and waits for a new leader and for writes to resume.
/// Returns the cluster, the stream (still running) and the killed leader's id.
fn kill_leader_mid_stream(options: Options) -> (Cluster, WriteStream, u64) {
    let mut cluster = Cluster::start(3, options);
    let old_leader = cluster.wait_for_leader(TIMEOUT);
    let stream = WriteStream::start(
        "crash",
        [1, 2, 3].iter().map(|id| cluster.addr(*id)).collect(),
        3,
    );
    stream.wait_acked(1000, TIMEOUT);

    cluster.kill(old_leader);
    let acked_at_kill = stream.acked();
    let survivors: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != old_leader)
        .collect();
    let new_leader = cluster.wait_for_leader_among(&survivors, TIMEOUT);
    assert_ne!(new_leader, old_leader);
    // Writes resume under the new leader.
    stream.wait_acked(acked_at_kill + 500, TIMEOUT);
    (cluster, stream, old_leader)
}

/// Rounds of kill-leader / restart in the WAL test: each round kills whoever leads then.
const WAL_ROUNDS: usize = 3;

#[test]
fn leader_killed_mid_stream_wal_restart_keeps_every_acknowledged_write() {
    leader_killed_mid_stream_wal_restart(Options::default());
}

/// The same with TLS on both ports (mutual between peers, server-only for clients):
/// restarted nodes make new TLS connections (their peers' certificates checked afresh),
/// writes sent to followers are forwarded to the leader over TLS, and nothing
/// acknowledged is lost.
#[test]
fn leader_killed_mid_stream_wal_restart_keeps_every_acknowledged_write_over_tls() {
    leader_killed_mid_stream_wal_restart(Options::tls_everywhere(false));
}

fn leader_killed_mid_stream_wal_restart(options: Options) {
    let (mut cluster, stream, mut old_leader) = kill_leader_mid_stream(options);
    for round in 1..=WAL_ROUNDS {
        cluster.start_node(old_leader);
        cluster.wait_serving(old_leader, TIMEOUT);
        let acked = stream.acked();
        stream.wait_acked(acked + 500, TIMEOUT);
        if round == WAL_ROUNDS {
            break;
        }
        // Kill whoever leads now, with the stream still flowing.
        let leader = cluster.wait_for_leader(TIMEOUT);
        cluster.kill(leader);
        let acked = stream.acked();
        let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
        cluster.wait_for_leader_among(&survivors, TIMEOUT);
        stream.wait_acked(acked + 500, TIMEOUT);
        old_leader = leader;
    }
    let records = stream.stop();
    eprintln!("writes: {}", summarize(&records));

    cluster.wait_for_leader(TIMEOUT);
    check_everywhere(&cluster, &[1, 2, 3], &records);
    cluster.check_peer_security_logged();
}

#[test]
fn leader_killed_mid_stream_memory_node_is_refused_then_readded_under_new_id() {
    let (mut cluster, stream, old_leader) = kill_leader_mid_stream(Options {
        storage: "memory",
        ..Options::default()
    });

    // Same id, same arguments: refused, and nothing else is disturbed.
    cluster.start_node(old_leader);
    let status = cluster
        .wait_exit(old_leader, TIMEOUT)
        .expect("a restarted memory node under its old id must refuse to start");
    assert!(!status.success(), "refusal exits non-zero, got {status}");
    let log = cluster.log(old_leader);
    assert!(
        log.contains("restarting it under the same id is unsafe"),
        "the refusal says why:\n{log}"
    );
    let acked = stream.acked();
    stream.wait_acked(acked + 200, TIMEOUT);

    // Remove the old id, then add the node back empty under a new id.
    let survivors: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != old_leader)
        .collect();
    let removed = cluster.admin(
        &survivors,
        &["RAFT.REMOVE", &old_leader.to_string()],
        TIMEOUT,
    );
    assert!(removed.is_ok(), "RAFT.REMOVE {old_leader}: {removed:?}");
    // Keep the stream off the removed id's address.
    stream.set_targets(survivors.iter().map(|id| cluster.addr(*id)).collect());

    let new_id = 4;
    cluster.nodes.remove(&old_leader);
    cluster.add_joining_node(new_id);
    cluster.start_node(new_id);
    cluster.wait_serving(new_id, TIMEOUT);
    let (peer, client) = (cluster.nodes[&new_id].peer, cluster.nodes[&new_id].client);
    let added = cluster.admin(
        &survivors,
        &[
            "RAFT.ADDLEARNER",
            &new_id.to_string(),
            &peer.to_string(),
            &client.to_string(),
        ],
        TIMEOUT,
    );
    assert!(added.is_ok(), "RAFT.ADDLEARNER {new_id}: {added:?}");
    let promoted = cluster.admin(&survivors, &["RAFT.PROMOTE", &new_id.to_string()], TIMEOUT);
    assert!(promoted.is_ok(), "RAFT.PROMOTE {new_id}: {promoted:?}");

    let members: Vec<u64> = survivors.iter().copied().chain([new_id]).collect();
    stream.set_targets(members.iter().map(|id| cluster.addr(*id)).collect());
    let acked = stream.acked();
    stream.wait_acked(acked + 300, TIMEOUT);
    let records = stream.stop();
    eprintln!("writes: {}", summarize(&records));

    let leader = cluster.wait_for_leader_among(&members, TIMEOUT);
    let status = cluster.status(leader).expect("leader status");
    assert_eq!(
        support::sorted_ids(&status.voters),
        members,
        "voters after the swap: {status:?}"
    );
    check_everywhere(&cluster, &members, &records);
    // The refused node did not come back as a member of anything.
    assert!(matches!(
        cluster.client(new_id).cmd(&["PING"]),
        Ok(Reply::Simple(_))
    ));
}
