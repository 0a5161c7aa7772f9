//! Shared helpers for the criterion benches (and, later, the load tool).
//!
//! - [`in_process`]: a cluster of raft-core nodes on memory stores, joined by an in-process
//!   FIFO "network", for measuring the consensus algorithm alone.
//! - [`kvbench`]: the `kvbench` load generator (Redis protocol over TCP) behind
//!   `src/bin/kvbench.rs`.

pub mod in_process;
pub mod kvbench;
