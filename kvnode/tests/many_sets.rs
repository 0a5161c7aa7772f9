//! A 3-node cluster elects a leader; 10,000 pipelined SETs from clients connected to all
//! three nodes (followers forward to the leader); every acknowledged value reads back the
//! same from every node, with linearizable reads and with READONLY local reads once every
//! node has applied the same index.

#[path = "support/cluster.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{check_everywhere, Cluster, Options, Outcome, Reply, WriteRecord};

const TIMEOUT: Duration = Duration::from_secs(20);
const SETS_TOTAL: usize = 10_000;
/// SETs sent per pipelined batch.
const PIPELINE_DEPTH: usize = 100;
/// Attempts per batch before the test gives up (a retry re-sends the same key and value,
/// so an unknown earlier outcome cannot leave a different value behind).
const BATCH_ATTEMPTS_MAX: usize = 20;

/// Sends `keys` as pipelined SETs to node `id`, re-sending any that did not get `+OK`.
fn set_all_through(cluster: &Cluster, id: u64, records: &[WriteRecord]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for batch in records.chunks(PIPELINE_DEPTH) {
        let mut todo: Vec<&WriteRecord> = batch.iter().collect();
        for attempt in 1.. {
            assert!(
                attempt <= BATCH_ATTEMPTS_MAX && Instant::now() < deadline,
                "node {id}: {} SETs still not acknowledged after {attempt} attempts",
                todo.len()
            );
            let mut client = cluster.client(id);
            for record in &todo {
                client.queue(&[b"SET", record.key.as_bytes(), record.value.as_bytes()]);
            }
            client.flush().expect("send pipeline");
            let mut failed = Vec::new();
            for record in todo {
                match client.read_reply() {
                    Ok(reply) if reply.is_ok() => {}
                    Ok(Reply::Error(e))
                        if e.starts_with("TRYAGAIN") || e.starts_with("UNKNOWN") =>
                    {
                        failed.push(record)
                    }
                    Ok(other) => panic!("SET {} replied {other:?}", record.key),
                    Err(_) => failed.push(record),
                }
            }
            if failed.is_empty() {
                break;
            }
            todo = failed;
            std::thread::sleep(support::POLL_INTERVAL);
        }
    }
}

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
            scope.spawn(move || set_all_through(cluster, id, records));
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
