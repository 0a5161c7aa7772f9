//! raft-core alone: proposals committed per second in a 3-node cluster whose network is an
//! in-process queue, with 1 and 64 proposals per batch (128-byte commands).
//!
//! `cargo bench -p benches --bench core`

use benches::in_process::InProcessCluster;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn commit_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("core_commit_3_nodes");
    for batch in [1usize, 64] {
        let payloads: Vec<Bytes> = (0..batch).map(|_| Bytes::from(vec![7u8; 128])).collect();
        let mut cluster = InProcessCluster::new(3);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::new("proposals_per_batch", batch),
            &batch,
            |b, _| {
                b.iter(|| cluster.commit_batch(&payloads));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, commit_throughput);
criterion_main!(benches);
