//! Backup and restore: `kvctl snapshot save` under write load, `kvnode --restore` into a
//! fresh 3-node cluster with a new cluster id; every write acknowledged before the save
//! began is there, none sent after it ended is; a damaged backup restores nothing.

#[path = "support/cluster.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Cluster, Options, Outcome, Reply, WriteRecord, WriteStream};

const TIMEOUT: Duration = Duration::from_secs(20);
/// The restored cluster's id (the original uses kvnode's default, 1).
const NEW_CLUSTER: u64 = 77;

fn kvctl(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let endpoints: Vec<String> = cluster
        .nodes
        .values()
        .map(|n| n.client.to_string())
        .collect();
    Command::new(env!("CARGO_BIN_EXE_kvctl"))
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(args)
        .output()
        .expect("run kvctl")
}

fn acknowledged(records: &[WriteRecord]) -> Vec<&WriteRecord> {
    records
        .iter()
        .filter(|r| r.outcome == Outcome::Acked)
        .collect()
}

/// Reads `key` through node `id` of `cluster`.
fn get(cluster: &Cluster, id: u64, key: &str) -> Option<String> {
    let reply = support::read_retrying(&mut cluster.client(id), &[b"GET", key.as_bytes()]);
    match reply {
        Reply::Bulk(value) => value.map(|v| String::from_utf8(v).expect("utf-8")),
        other => panic!("GET {key}: {other:?}"),
    }
}

#[test]
fn a_backup_taken_under_load_restores_every_write_before_it_and_none_after() {
    let original = Cluster::start(3, Options::default());
    original.wait_for_leader(TIMEOUT);
    let addrs: Vec<_> = [1, 2, 3].iter().map(|id| original.addr(*id)).collect();
    let before = WriteStream::start("before", addrs.clone(), 4);
    before.wait_acked(2000, TIMEOUT);
    let before = before.stop();
    // Writes go on while the backup is taken; they may or may not be in it.
    let during = WriteStream::start("during", addrs.clone(), 4);
    during.wait_acked(200, TIMEOUT);
    let file = original.dir.path().join("cluster.backup");
    let saved = kvctl(
        &original,
        &["snapshot", "save", &file.display().to_string()],
    );
    assert!(saved.status.success(), "{saved:?}");
    let during = during.stop();
    let after = WriteStream::start("after", addrs, 4);
    after.wait_acked(200, TIMEOUT);
    let after = after.stop();
    eprintln!(
        "{}; backup: {}",
        support::summarize(&before),
        String::from_utf8_lossy(&saved.stdout).trim()
    );

    let restored = Cluster::start(
        3,
        Options {
            cluster_id: Some(NEW_CLUSTER),
            restore_from: Some(file),
            ..Options::default()
        },
    );
    restored.wait_for_leader(TIMEOUT);
    for record in acknowledged(&before) {
        assert_eq!(
            get(&restored, 1, &record.key).as_deref(),
            Some(record.value.as_str()),
            "acknowledged before the backup: {}",
            record.key
        );
    }
    for record in &during {
        if let Some(value) = get(&restored, 2, &record.key) {
            assert_eq!(value, record.value, "a value never written");
        }
    }
    for record in &after {
        assert_eq!(
            get(&restored, 3, &record.key),
            None,
            "written after the backup"
        );
    }
    // The restored cluster takes writes, and its members are the new ones.
    let mut client = restored.client(1);
    assert!(support::read_retrying(&mut client, &[b"SET", b"new", b"cluster"]).is_ok());
    let status = restored.status(1).expect("status");
    assert_eq!(support::sorted_ids(&status.voters), [1, 2, 3]);
}

fn restore_args(dir: &Path, data_dir: &Path, cluster_id: u64) -> Vec<String> {
    let ports = support::free_ports(2);
    vec![
        "--node-id=1".into(),
        format!("--member=1=127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]),
        format!("--cluster-id={cluster_id}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--restore={}", dir.join("cluster.backup").display()),
    ]
}

#[test]
fn a_damaged_backup_or_a_reused_cluster_id_restores_nothing_and_says_why() {
    let original = Cluster::start(1, Options::default());
    original.wait_for_leader(TIMEOUT);
    let mut client = original.client(1);
    assert!(client.cmd(&["SET", "k", "v"]).expect("SET").is_ok());
    let dir = original.dir.path();
    let file = dir.join("cluster.backup");
    let saved = kvctl(
        &original,
        &["snapshot", "save", &file.display().to_string()],
    );
    assert!(saved.status.success(), "{saved:?}");
    let good = std::fs::read(&file).expect("read backup");

    let run = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_kvnode"))
            .args(args)
            .output()
            .expect("run kvnode --restore")
    };
    let data_dir = dir.join("restored");
    let cases: Vec<(Vec<u8>, u64, i32, &str)> = vec![
        (good[..good.len() / 2].to_vec(), NEW_CLUSTER, 1, "declares"),
        (
            {
                let mut flipped = good.clone();
                let middle = flipped.len() / 2;
                flipped[middle] ^= 0x40;
                flipped
            },
            NEW_CLUSTER,
            1,
            "checksum",
        ),
        (good.clone(), 1, 2, "cluster_id"),
    ];
    for (bytes, cluster_id, code, expected) in cases {
        std::fs::write(&file, &bytes).expect("write backup");
        let output = run(&restore_args(dir, &data_dir, cluster_id));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!data_dir.exists(), "nothing half-restored: {stderr}");
    }
    std::fs::write(&file, &good).expect("write backup");
    let output = run(&restore_args(dir, &data_dir, NEW_CLUSTER));
    assert!(output.status.success(), "{output:?}");
    // The directory now belongs to the new cluster: started with another id, it is refused.
    let mut args = restore_args(dir, &data_dir, 5);
    args.pop();
    let output = run(&args);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("belongs to cluster 77"));
}
