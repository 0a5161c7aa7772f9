//! A memory-backed node restarted empty under its old id *with --join* while that id is
//! still a voter would vote with an empty log: it could elect a candidate that lacks an
//! entry it had acknowledged, losing a committed write. The start-up guard
//! (MEMORY_NODE_STARTED) must refuse that restart, `--join` or not.

#[path = "support/cluster.rs"]
mod support;

use std::time::Duration;

use support::{Cluster, Options};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn memory_node_rejoining_under_a_live_voter_id_must_not_lose_acknowledged_writes() {
    let mut cluster = Cluster::start(
        3,
        Options {
            storage: "memory",
            ..Options::default()
        },
    );
    let a = cluster.wait_for_leader(TIMEOUT);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != a).collect();
    let (b, c) = (others[0], others[1]);

    // C misses the write: it is acknowledged by the quorum {A, B}.
    cluster.pause(c);
    // Fill C's socket buffers and its outbound queue on A first (the kernel keeps
    // receiving for a stopped process), so the append carrying "e" is dropped for C.
    let padding = "p".repeat(2048);
    let filler: Vec<support::WriteRecord> = (0..8000)
        .map(|i| support::WriteRecord {
            key: format!("fill:{i}"),
            value: format!("{i}-{padding}"),
            outcome: support::Outcome::Acked,
        })
        .collect();
    support::set_pipelined(&cluster, a, &filler);
    let reply = cluster.client(a).cmd(&["SET", "e", "acked"]).expect("SET");
    assert!(reply.is_ok(), "SET e: {reply:?}");

    // B dies and tries to come back empty under its own id with --join: refused.
    cluster.kill(b);
    cluster.kill(a);
    let (peer, client) = (cluster.nodes[&b].peer, cluster.nodes[&b].client);
    cluster.nodes.remove(&b);
    cluster.add_joining_node_at(b, peer, client);
    cluster.start_node(b);
    let status = cluster
        .wait_exit(b, TIMEOUT)
        .expect("the restart exits by itself");
    assert!(
        !status.success(),
        "node {b} must refuse to restart empty: {status:?}"
    );
    assert!(cluster
        .log(b)
        .contains("restarting it under the same id is unsafe"));
    cluster.resume(c);

    // C alone cannot win: no leader can emerge that lacks "e".
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if let Some(status) = cluster.status(c) {
            assert!(
                !status.is_leader(),
                "node {c} became leader without a quorum: {status:?}"
            );
        }
        std::thread::sleep(support::POLL_INTERVAL);
    }
}
