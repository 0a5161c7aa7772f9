//! `--storage memory`: after kill -9, can the node come back under its *old* id by
//! `RAFT.REMOVE id`, then restarting it empty with `--join` and `RAFT.ADDLEARNER` /
//! `RAFT.PROMOTE` under the same id? (The server's refusal message recommends a new id;
//! crash_leader.rs tests that path.) This checks the same-id path either works and loses
//! nothing, or is refused cleanly.

#[path = "support/cluster.rs"]
mod support;

use std::time::Duration;

use support::{check_everywhere, summarize, Cluster, Options, WriteStream};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn memory_node_removed_then_readded_under_the_same_id_with_join() {
    let mut cluster = Cluster::start(
        3,
        Options {
            storage: "memory",
            ..Options::default()
        },
    );
    let leader = cluster.wait_for_leader(TIMEOUT);
    let victim = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("follower");
    let stream = WriteStream::start(
        "same-id",
        [1, 2, 3].iter().map(|id| cluster.addr(*id)).collect(),
        2,
    );
    stream.wait_acked(500, TIMEOUT);
    cluster.kill(victim);
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != victim).collect();
    stream.set_targets(survivors.iter().map(|id| cluster.addr(*id)).collect());
    let reply = cluster.admin(&survivors, &["RAFT.REMOVE", &victim.to_string()], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.REMOVE {victim}: {reply:?}");

    // Same id, same ports, same data dir, now with --join.
    let (peer, client) = (cluster.nodes[&victim].peer, cluster.nodes[&victim].client);
    cluster.nodes.remove(&victim);
    cluster.add_joining_node_at(victim, peer, client);
    cluster.start_node(victim);
    cluster.wait_serving(victim, TIMEOUT);
    let reply = cluster.admin(
        &survivors,
        &[
            "RAFT.ADDLEARNER",
            &victim.to_string(),
            &peer.to_string(),
            &client.to_string(),
        ],
        TIMEOUT,
    );
    assert!(reply.is_ok(), "RAFT.ADDLEARNER {victim} again: {reply:?}");
    let reply = cluster.admin(&survivors, &["RAFT.PROMOTE", &victim.to_string()], TIMEOUT);
    assert!(reply.is_ok(), "RAFT.PROMOTE {victim} again: {reply:?}");
    stream.set_targets([1, 2, 3].iter().map(|id| cluster.addr(*id)).collect());
    let acked = stream.acked();
    stream.wait_acked(acked + 300, TIMEOUT);
    let records = stream.stop();
    eprintln!("writes: {}", summarize(&records));
    cluster.wait_for_leader(TIMEOUT);
    check_everywhere(&cluster, &[1, 2, 3], &records);
}
