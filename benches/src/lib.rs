//! Shared helpers for the criterion benches (and, later, the load tool).
//!
//! - [`chaos`]: the fault suite behind `src/bin/chaos.rs`: kvnode processes in network
//!   namespaces, a seeded nemesis, Redis-protocol workloads, linearizability and other checkers.
//! - [`follower_batch`]: what a follower writes to its WAL per batch (WAL bench, examples).
//! - [`in_process`]: a cluster of raft-core nodes on memory stores, joined by an in-process
//!   FIFO "network", for measuring the consensus algorithm alone.
//! - [`kvbench`]: the `kvbench` load generator (Redis protocol over TCP) behind
//!   `src/bin/kvbench.rs`.
//! - [`tcp_cluster`]: three raft-core nodes on syncing raft-wal stores, joined by raft-net
//!   over loopback TCP, one thread per node, for end-to-end commit latency.

pub mod chaos;
pub mod follower_batch;
pub mod in_process;
pub mod kvbench;
pub mod raw_file;
pub mod tcp_cluster;
