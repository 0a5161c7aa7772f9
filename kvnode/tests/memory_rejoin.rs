//! `--storage memory`: after kill -9 and `RAFT.REMOVE id`, the node must not come back
//! under its old id, even with `--join`: ids are never reused (peers may still hold
//! messages from its previous life). The restart is refused with a message naming the
//! remedy, and the cluster keeps every acknowledged write. (crash_leader.rs tests the
//! remedy: re-adding the node under a new id.)

#[path = "support/cluster.rs"]
mod support;

use std::time::Duration;

use support::{check_everywhere, summarize, Cluster, Options, WriteStream};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn memory_node_is_refused_under_its_old_id_even_after_removal_and_with_join() {
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

    // Same id, same ports, same data dir, now with --join: refused.
    let (peer, client) = (cluster.nodes[&victim].peer, cluster.nodes[&victim].client);
    cluster.nodes.remove(&victim);
    cluster.add_joining_node_at(victim, peer, client);
    cluster.start_node(victim);
    let status = cluster
        .wait_exit(victim, TIMEOUT)
        .expect("the restart exits by itself");
    assert!(
        !status.success(),
        "a same-id memory restart must be refused: {status:?}"
    );
    let log = cluster.log(victim);
    assert!(
        log.contains("restarting it under the same id is unsafe"),
        "{log}"
    );
    let acked = stream.acked();
    stream.wait_acked(acked + 300, TIMEOUT);
    let records = stream.stop();
    eprintln!("writes: {}", summarize(&records));
    cluster.wait_for_leader(TIMEOUT);
    check_everywhere(&cluster, &survivors, &records);
}
