//! All three nodes killed with -9 in the middle of a write stream and restarted from their
//! WALs: every acknowledged write is there on every node, and the cluster serves again.

#[path = "support/cluster.rs"]
mod support;

use std::time::Duration;

use support::{check_everywhere, summarize, Cluster, Options, Reply, WriteStream};

const TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn all_nodes_killed_and_restarted_from_wal_keep_every_acknowledged_write() {
    let mut cluster = Cluster::start(3, Options::default());
    cluster.wait_for_leader(TIMEOUT);
    let stream = WriteStream::start(
        "all",
        [1, 2, 3].iter().map(|id| cluster.addr(*id)).collect(),
        3,
    );
    stream.wait_acked(2000, TIMEOUT);
    for id in [1, 2, 3] {
        cluster.kill(id);
    }
    // Writes in flight when the nodes died fail as unknown; nothing more is acknowledged.
    let records = stream.stop();
    eprintln!("writes before the crash: {}", summarize(&records));

    for id in [1, 2, 3] {
        cluster.start_node(id);
    }
    for id in [1, 2, 3] {
        cluster.wait_serving(id, TIMEOUT);
    }
    let leader = cluster.wait_for_leader(TIMEOUT);
    check_everywhere(&cluster, &[1, 2, 3], &records);

    // The cluster serves again: a new stream through every node makes progress, and its
    // writes are on every node too.
    let stream = WriteStream::start(
        "after",
        [1, 2, 3].iter().map(|id| cluster.addr(*id)).collect(),
        2,
    );
    stream.wait_acked(500, TIMEOUT);
    let after = stream.stop();
    check_everywhere(&cluster, &[1, 2, 3], &after);
    let mut client = cluster.client(leader);
    let dbsize = client.cmd(&["DBSIZE"]).expect("DBSIZE");
    let acked = records
        .iter()
        .chain(&after)
        .filter(|r| r.outcome == support::Outcome::Acked)
        .count() as i64;
    let Reply::Integer(keys) = dbsize else {
        panic!("DBSIZE replied {dbsize:?}");
    };
    assert!(keys >= acked, "DBSIZE {keys} < {acked} acknowledged keys");
}
