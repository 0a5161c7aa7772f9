//! A 3-node cluster elects a leader; 10,000 pipelined SETs from clients connected to all
//! three nodes (followers forward to the leader); every acknowledged value reads back the
//! same from every node, with linearizable reads and with READONLY local reads once every
//! node has applied the same index.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{check_everywhere, set_pipelined, Cluster, Options, Outcome, Reply, WriteRecord};

const TIMEOUT: Duration = Duration::from_secs(20);
const SETS_TOTAL: usize = 10_000;
#[test]
fn ten_thousand_sets_through_all_nodes_read_back_everywhere() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.wait_for_leader(TIMEOUT);
    eprintln!("leader: node {leader}");
    let per_node = SETS_TOTAL / 3 + 1;
    let records: Vec<Vec<WriteRecord>> = (1..=3u64)
        .map(|id| {
            (0..per_node)
                .map(|i| WriteRecord {
                    key: format!("k{id}:{i}"),
                    value: format!("v{id}:{i}:{}", "x".repeat(i % 64)),
                    outcome: Outcome::Acked,
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (id, records) in (1..=3u64).zip(&records) {
            let cluster = &cluster;
            scope.spawn(move || set_pipelined(cluster, id, records));
        }
    });
    let all: Vec<WriteRecord> = records.into_iter().flatten().collect();
    eprintln!("{} SETs acknowledged in {:?}", all.len(), started.elapsed());
    assert!(all.len() >= SETS_TOTAL);

    check_everywhere(&cluster, &[1, 2, 3], &all);
    for id in [1, 2, 3] {
        let keys = cluster.client(id).cmd(&["DBSIZE"]).expect("DBSIZE");
        assert_eq!(
            keys,
            Reply::Integer(all.len() as i64),
            "DBSIZE on node {id}"
        );
    }
}
